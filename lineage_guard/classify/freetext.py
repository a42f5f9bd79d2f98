"""Signals in free text and names: given-name dictionaries, clinical vocabulary, identifiers
written inside prose, and high-entropy secrets. All vectorized over the whole sample.

Example:
    >>> import pyarrow as pa
    >>> person_name_evidence(pa.array(["Maria Lopez", "John Smith"])).dictionary_share
    1.0
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import checksums
from .evidence import Evidence, match, score_from_share, share_of
from .formats import NAME_SHAPE, Check
from .lexicon import person_names, street_suffixes
from .validators import embedded_phone_share

_CLINICAL_TERMS = (
    r"(?i)(^|[^a-z])(patient|pt\.|diagnos|prescri|[0-9] ?mg|dose|dosage|symptom|pain|hypertension|diabet|fever|"
    r"blood pressure|bp [0-9]|history of|follow[- ]?up|exam|medication|treatment|chronic|acute|allerg|admitted|"
    r"discharg|complain|c/o|x-ray|mri|ct scan|therapy|surgery|prognosis|clinic|nausea|cough|infection|asthma|"
    r"copd|fracture|visit|icd|vitals|bmi|referred|referral|biopsy|lesion|tumou?r|cardiac|insulin|antibiotic|"
    r"schmerz|befund|douleur|patiënt|klachten)"
)
_ICD10 = r"(^|[^A-Za-z0-9])[A-TV-Z][0-9]{2}(\.[0-9]{1,2})?([^A-Za-z0-9]|$)"
_TOKEN_LIKE = r"^[\x21-\x7e]{20,}$"


@lru_cache(maxsize=1)
def _street_words() -> pa.Array:
    return pa.array(sorted({w.lower() for w in street_suffixes()}))


# One capitalized word: a given name or a surname alone (`Maria`, `Kowalski`, `O'Neill`).
_ONE_NAME = r"^[A-ZÀ-ÖØ-ÞĀ-ž][A-Za-zÀ-ÖØ-öø-ÿĀ-ž'’-]+$"


# Not a person: companies (`Dupont et Fils`, `Schmidt GmbH`, `Smith, Jones and Brown`) and saints' towns.
_NOT_PERSON = (r"(?i)(,|&|\s(et|and|und|en|e|y|i|és|ve|şi|a)\s|\s(sa|sarl|sas|gmbh|ag|kg|ltd|inc|llc|plc|bv|b\.v\.|nv|"
               r"spa|srl|kft|zrt|bt|ab|as|oy|group|gruppe|sons|fils|co|kgaa|ohg|([a-z]\.){2,}[a-z]?)\.?$|"
               r"^(saint|sainte|san|santa|são|sankt|st\.?)\s)")
# Lower-case particles and honorifics may open a name: `van den Broek`, `de la Cruz`, `pani Justyna Majtyka`.
_PARTICLES = r"^((van|von|de|der|den|da|di|del|la|le|du|ten|ter|dos|das|do|pan|pani)\s)+"


def person_name_evidence(text: pa.Array) -> Evidence:
    """Values shaped like names (one to six capitalized words), most of whose words are known names."""
    n = len(text)
    bare = pc.replace_substring_regex(text, _PARTICLES, "")
    shape = (match(bare, NAME_SHAPE) | match(bare, _ONE_NAME)) & ~match(text, _NOT_PERSON)
    words = pc.split_pattern(pc.utf8_lower(text), " ")
    flat = pc.list_flatten(words)
    parents = np.asarray(pc.list_parent_indices(words))
    trimmed = pc.utf8_trim(flat, ".,'’")
    known = np.asarray(pc.fill_null(pc.is_in(trimmed, value_set=person_names()), False))
    per_row_known = np.bincount(parents, weights=known, minlength=n)
    per_row_words = np.bincount(parents, minlength=n)
    # "Smith Avenue", "Kirstin-Mies-Ring": a name followed by a street word is a place, not a person
    last = np.asarray(words.offsets)[1:] - 1
    street = np.asarray(pc.fill_null(pc.is_in(trimmed, value_set=_street_words()), False))
    ends_in_street = np.zeros(n, bool)
    has_words = per_row_words > 0
    ends_in_street[has_words] = street[last[has_words]]
    lexical = shape & ~ends_in_street & (per_row_known >= np.maximum(1, per_row_words / 2))
    share, lex_share = share_of(shape, n), share_of(lexical, n)
    if lex_share >= 0.6:
        score = score_from_share(lex_share)
    elif lex_share >= 0.4 and share >= 0.9:
        score = 0.82  # names of a language the dictionary lacks: shaped like names, many of them known
    else:
        score = 0.45 * score_from_share(share)
    return Evidence("person_name", "name_lexicon" if lex_share >= 0.4 else "name_shape", score, share, None,
                    int(lexical.sum()), n, lex_share)


_PASSWORD = r"^[\x21-\x7e]{8,64}$"


def password_evidence(text: pa.Array) -> Evidence:
    """Plaintext passwords: 8-64 printable characters with no space, three or more character classes,
    and (as a column) almost no two values of the same layout, unlike codes from one template."""
    n = len(text)
    hit = match(text, _PASSWORD)
    if hit.sum() < 0.5 * n:
        return Evidence("credential", "password_like", 0.0, share_of(hit, n), None, 0, n)
    classes = (match(text, "[a-z]").astype(int) + match(text, "[A-Z]") + match(text, "[0-9]")
               + match(text, r"[^A-Za-z0-9]"))
    hit &= (classes >= 3) & ~match(text, r"^[0-9a-fA-F:.-]+$")
    layouts = pc.replace_substring_regex(pc.replace_substring_regex(pc.replace_substring_regex(
        text.filter(pa.array(hit)), "[a-z]", "a"), "[A-Z]", "A"), "[0-9]", "9")
    varied = hit.sum() >= 10 and pc.count_distinct(layouts).as_py() >= 0.8 * hit.sum()
    share = share_of(hit, n) if varied else 0.0
    return Evidence("credential", "password_like", 0.88 * score_from_share(share), share, None, int(hit.sum()), n)


def clinical_evidence(text: pa.Array) -> Evidence:
    """Free text with two or more clinical terms or ICD-10 codes per value."""
    n = len(text)
    terms = np.asarray(pc.count_substring_regex(text, _CLINICAL_TERMS)) + match(text, _ICD10)
    words = np.asarray(pc.count_substring_regex(text, r"[^\s]+"))
    hit = (terms >= 2) & (words >= 3)
    share = share_of(hit, n)
    return Evidence("clinical_note", "clinical_terms", score_from_share(share / 0.8 if share < 0.8 else 1.0) * 0.97,
                    share, None, int(hit.sum()), n)


# Identifiers written inside free text ("call me on +44 20 7946 0958"): a column of notes or comments
# where a fifth of the rows carry one is as sensitive as a column of them.
_EMBEDDED: tuple[tuple[str, str, Check | None], ...] = (
    ("email", r"(?P<v>[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,})", None),
    ("national_id", r"(^|[^0-9-])(?P<v>[0-9]{3}-[0-9]{2}-[0-9]{4})([^0-9-]|$)", None),
    ("payment_card", r"(^|[^0-9])(?P<v>([0-9]{4}[ -]?){3}[0-9]{1,7})([^0-9]|$)", checksums.luhn),
    ("iban", r"(^|[^A-Z0-9])(?P<v>[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30})([^A-Z0-9]|$)", checksums.iban),
)
EMBEDDED_SHARE = 0.2
_UNNAMED = re.compile(r"(?<!\\)\((?!\?)")  # extract_regex wants every group named


def embedded_evidence(text: pa.Array) -> list[Evidence]:
    """Evidence for identifiers inside free-text values (three words or more)."""
    n = len(text)
    prose = np.asarray(pc.count_substring_regex(text, r"[^\s]+")) >= 3
    if prose.sum() < max(3, 0.5 * n):
        return []
    out = []
    for label, pattern, check in _EMBEDDED:
        found = np.asarray(pc.fill_null(pc.match_substring_regex(text, pattern), False), dtype=bool) & prose
        if found.any() and check is not None:
            # the checksum runs on what was found, separators removed
            value = pc.struct_field(pc.extract_regex(text, _UNNAMED.sub("(?:", pattern)), "v")
            found &= check(pc.replace_substring_regex(pc.fill_null(value, ""), r"[ -]", ""))
        share = share_of(found, n)
        if found.any():
            score = 0.85 * min(1.0, share / EMBEDDED_SHARE)
            out.append(Evidence(label, f"embedded_{label}", score, share, None, int(found.sum()), n))
    share = embedded_phone_share(text, prose)  # any country's layout, judged by libphonenumber
    if share:
        out.append(Evidence("phone", "embedded_phone", 0.85 * min(1.0, share / EMBEDDED_SHARE), share, None,
                            int(share * n), n))
    return out


def secret_evidence(text: pa.Array) -> Evidence:
    """Opaque tokens: 20+ printable characters without spaces, mixed case and digits, high entropy."""
    n = len(text)
    shaped = match(text, _TOKEN_LIKE)
    if shaped.any():
        shaped &= match(text, "[A-Z]") & match(text, "[a-z]") & match(text, "[0-9]")
    # Hex (UUIDs, digests) is an identifier or a hash, not a secret; URLs and paths are addresses.
    if shaped.any():
        shaped &= ~(match(text, r"^[0-9a-fA-F-]+$") | match(text, r"^([a-zA-Z][a-zA-Z0-9+.-]*://[^@]*|/.*)$"))
    hit = shaped.copy()
    if hit.any():
        idx = np.flatnonzero(hit)
        hit[idx] = checksums.shannon_entropy(text.take(pa.array(idx))) >= 3.5
    share = share_of(hit, n)
    return Evidence("credential", "high_entropy", 0.88 * score_from_share(share), share, None, int(hit.sum()), n)
