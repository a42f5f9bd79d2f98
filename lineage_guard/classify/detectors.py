"""Value detectors: what share of a column's sampled values look like each label.

Every detector runs over the whole sample at once (Arrow compute regexes, RE2;
numpy checksums), never a Python call per value. A detector is `strong` when a
column of matching values is that label whatever its name (a Luhn-valid card
number, an e-mail address), `weak` when the format is shared with harmless data
(five digits: a ZIP code or an order number) and the name has to agree.

Patterns are anchored and written in the common subset of RE2 and Python `re`,
so `lineage_guard.integrations.great_expectations` reuses them as-is.

Example:
    >>> import pyarrow as pa
    >>> ev = value_evidence(pa.array(["ann@example.org", "bo@example.net"]))
    >>> ev["email"].detector, ev["email"].pattern_share
    ('email', 1.0)
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import checksums
from .lexicon import person_names, street_suffixes

Strength = Literal["strong", "weak"]
Check = Callable[[pa.Array], np.ndarray]

_L = "A-Za-zÀ-ÖØ-öø-ÿĀ-ž"  # Latin letters with diacritics, as a character-class body


@dataclass(frozen=True)
class Detector:
    """A value format of a label: an anchored regex, optionally a checksum over the normalized value."""

    name: str
    label: str
    pattern: str
    strength: Strength = "strong"
    checksum: Check | None = None
    strip: str | None = None        # regex of characters removed before the checksum (separators)
    gx: bool = True                 # usable as a "must not match after masking" regex
    digits: tuple[int, int] | None = None  # allowed count of digits (extensions excluded)


@dataclass(frozen=True)
class Evidence:
    """How well a label's best detector fits the sample. Counts and shares only, never values."""

    label: str
    detector: str
    score: float                    # value-only confidence in [0, 1]
    pattern_share: float
    checksum_share: float | None = None
    matched: int = 0
    non_null: int = 0
    dictionary_share: float | None = None  # share of values made of known given names / surnames
    strong_matched: int = 0                # values in a distinctive written format (checksum included)


def _alt(words) -> str:
    return "|".join(words)


def _street_patterns() -> tuple[str, str, str]:
    en = _alt(street_suffixes())
    number_first = rf"(?i)^([0-9]+[a-z]?|(flat|studio|apt\.?|unit|suite) [0-9]+[a-z]?)[,]?\s+[{_L} .'-]+\s({en})\.?(\s+(apt\.?|suite|unit|flat|#)\s*[0-9a-z]+)?$"
    compound = (
        rf"(?i)[{_L}-](straße|strasse|str\.|weg|allee|ring|platz|gasse|damm|ufer|chaussee|steig|straat|laan|plein|"
        rf"gracht|kade|singel|hof|dreef|steeg|pad|boulevard|park|markt|dijk|baan)\s+[0-9]+[a-z]?([/-][0-9a-z]+)?$"
    )
    leading = (
        r"(?i)^([0-9]+[a-z]?,?\s+)?(rue|avenue|av\.?|boulevard|bd|chemin|impasse|allée|place|quai|route|cours|rond-point|"
        r"via|viale|vial|piazza|piazzale|corso|vicolo|largo|canale|borgo|contrada|strada|rotonda|incrocio|stretto|calle|"
        r"c\.|avenida|avda\.|paseo|plaza|camino|carrera|ronda|pasaje|pasadizo|callejón|cuesta|vía|acceso|alameda|glorieta|"
        r"urbanización|cañada|rambla|travessa|rua|r\.|praça)\s"
        rf"[{_L} .'-]+(,?\s+[0-9]+[a-z]?)?(\s+(piano|appartamento|interno|scala|puerta|piso|apt\.?|bajo|esc\.|"
        r"andar|porta)\s*[0-9a-z]+)*\s*$"
    )
    return number_first, compound, leading


def _detectors() -> tuple[Detector, ...]:
    street_a, street_b, street_c = _street_patterns()
    return (
        Detector("email", "email", r"^[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$"),
        # phone: a country code, a trunk 0 or NANP grouping, written with separators or '+'
        Detector("phone_international", "phone",
                 r"^(\+|00)[1-9][0-9]{0,2}[ .-]?(\(0\)[ .-]?)?\(?[0-9]{1,5}\)?([ .-]?[0-9]{2,5}){1,4}( ?(x|ext\.?) ?[0-9]{1,5})?$", digits=(7, 15)),
        Detector("phone_nanp", "phone",
                 r"^(\+?1[ .-]?|001[ .-]?)?(\([0-9]{3}\) ?|[0-9]{3}[ .-])[0-9]{3}[ .-][0-9]{4}( ?(x|ext\.?) ?[0-9]{1,5})?$", digits=(7, 15)),
        Detector("phone_trunk", "phone", r"^(\(0[0-9]{1,4}\)[ -]?|0[0-9]{1,4}[ ./-])[0-9]{2,8}([ .-][0-9]{2,4}){0,4}$",
                 digits=(7, 15)),
        Detector("phone_digits", "phone", r"^(0[0-9]{8,11}|[1-9][0-9]{9})$", "weak", digits=(7, 15)),
        Detector("phone_generic", "phone", r"^[+(]?[0-9][0-9 ()./-]{5,18}[0-9]$", "weak", gx=False, digits=(7, 15)),
        # national identifiers
        Detector("us_ssn", "national_id", r"^[0-9]{3}-[0-9]{2}-[0-9]{4}$"),
        Detector("uk_nino", "national_id", r"^[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?[0-9]{2} ?[0-9]{2} ?[0-9]{2} ?[A-Z]$"),
        Detector("ca_sin", "national_id", r"^[1-79][0-9]{2}[ -]?[0-9]{3}[ -]?[0-9]{3}$", checksum=checksums.luhn,
                 strip=r"[ -]"),
        Detector("nl_bsn", "national_id", r"^[0-9]{8,9}$", checksum=checksums.elf_proof),
        Detector("fr_insee", "national_id", r"^[12] ?[0-9]{2} ?[0-9]{2} ?([0-9]{2}|2A|2B) ?[0-9]{3} ?[0-9]{3} ?[0-9]{2}$",
                 checksum=checksums.insee),
        Detector("uk_nhs", "national_id", r"^[0-9]{3}[ -]?[0-9]{3}[ -]?[0-9]{4}$", checksum=checksums.nhs, strip=r"[ -]"),
        Detector("it_codice_fiscale", "national_id", r"^[A-Z]{6}[0-9LMNPQRSTUV]{2}[ABCDEHLMPRST][0-9LMNPQRSTUV]{2}[A-Z][0-9LMNPQRSTUV]{3}[A-Z]$"),
        Detector("es_dni", "national_id", r"^[0-9XYZ][0-9]{7}-?[TRWAGMYFPDXBNJZSQVHLCKE]$"),
        Detector("us_ssn_digits", "national_id", r"^[0-9]{9}$", "weak", checksum=checksums.ssn_issuable),
        # money
        Detector("payment_card", "payment_card", r"^([0-9]{4}[ -]?){2,4}[0-9]{1,4}$|^3[47][0-9]{2}[ -]?[0-9]{6}[ -]?[0-9]{5}$|^[0-9]{12,19}$",
                 checksum=checksums.luhn, strip=r"[ -]"),
        Detector("iban", "iban", r"^[A-Z]{2}[0-9]{2} ?[A-Z0-9]{4}( ?[A-Z0-9]{1,4}){2,7}$", checksum=checksums.iban),
        # network
        Detector("mac_address", "mac_address", r"^([0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}$|^([0-9A-Fa-f]{4}\.){2}[0-9A-Fa-f]{4}$"),
        Detector("ipv4", "ip_address",
                 r"^((25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])(/[0-9]{1,2})?$"),
        Detector("ipv6", "ip_address",
                 r"^(([0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}|([0-9A-Fa-f]{1,4}:){1,7}:|([0-9A-Fa-f]{1,4}:){1,6}(:[0-9A-Fa-f]{1,4}){1,6}|:(:[0-9A-Fa-f]{1,4}){1,7})(/[0-9]{1,3})?$"),
        # places
        Detector("uk_postcode", "postal_code", r"^[A-Z]{1,2}[0-9][A-Z0-9]? ?[0-9][A-Z]{2}$"),
        Detector("nl_postcode", "postal_code", r"^[1-9][0-9]{3} ?[A-Z]{2}$"),
        Detector("ca_postcode", "postal_code", r"^[ABCEGHJ-NPRSTVXY][0-9][A-Z] ?[0-9][A-Z][0-9]$"),
        Detector("us_zip4", "postal_code", r"^[0-9]{5}-[0-9]{4}$"),
        Detector("zip5", "postal_code", r"^[0-9]{5}$", "weak", gx=False),
        Detector("zip4", "postal_code", r"^[0-9]{4}$", "weak", gx=False),
        Detector("street_number_first", "street_address", street_a),
        Detector("street_compound", "street_address", street_b),
        Detector("street_leading", "street_address", street_c),
        # health
        Detector("mrn_prefixed", "medical_record_number", r"(?i)^(mrn|mr|pt|pat|pid|hosp|med)[-#: ]?[A-Z0-9]+([-][A-Z0-9]+){0,3}$"),
        Detector("mrn_digits", "medical_record_number", r"^[A-Z]{0,3}[0-9]{6,10}$", "weak", gx=False),
        # secrets
        Detector("jwt", "credential", r"^eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*$"),
        Detector("private_key", "credential", r"-----BEGIN ([A-Z]+ )*PRIVATE KEY-----"),
        Detector("api_key", "credential",
                 r"^(sk_(live|test)_[A-Za-z0-9]{16,}|rk_live_[A-Za-z0-9]{16,}|gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,}|"
                 r"xox[abposr]-[A-Za-z0-9-]{10,}|(AKIA|ASIA)[0-9A-Z]{16}|AIza[0-9A-Za-z_-]{35}|glpat-[A-Za-z0-9_-]{20,}|"
                 r"SG\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}|npm_[A-Za-z0-9]{36}|hf_[A-Za-z0-9]{30,}|sk-[A-Za-z0-9_-]{20,})$"),
        Detector("password_in_url", "credential", r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]+:[^@\s]+@[^\s]+$"),
        Detector("password_in_dsn", "credential", r"(?i)(^|[;\s])(password|pwd)=[^;\s]+"),
        Detector("password_hash", "credential", r"^(\$2[aby]?\$[0-9]{2}\$[./A-Za-z0-9]{53}|\$argon2(id|i|d)\$\S+|\$[56]\$\S+\$\S+|pbkdf2_sha256\$\S+)$"),
    )


DETECTORS: tuple[Detector, ...] = _detectors()
_NAME_SHAPE = rf"^[A-ZÀ-ÖØ-ÞĀ-ž][{_L}'’.-]*( [{_L}'’.-]+){{1,5}}$"
_CLINICAL_TERMS = (
    r"(?i)(^|[^a-z])(patient|pt\.|diagnos|prescri|[0-9] ?mg|dose|dosage|symptom|pain|hypertension|diabet|fever|"
    r"blood pressure|bp [0-9]|history of|follow[- ]?up|exam|medication|treatment|chronic|acute|allerg|admitted|"
    r"discharg|complain|c/o|x-ray|mri|ct scan|therapy|surgery|prognosis|clinic|nausea|cough|infection|asthma|"
    r"copd|fracture|visit|icd|vitals|bmi|referred|referral|biopsy|lesion|tumou?r|cardiac|insulin|antibiotic|"
    r"schmerz|befund|douleur|patiënt|klachten)"
)
_ICD10 = r"(^|[^A-Za-z0-9])[A-TV-Z][0-9]{2}(\.[0-9]{1,2})?([^A-Za-z0-9]|$)"
_TOKEN_LIKE = r"^[\x21-\x7e]{20,}$"
# Patterns GX can check on free text / names (the detectors above cover the rest).
EXTRA_GX_PATTERNS: dict[str, tuple[str, ...]] = {"person_name": (_NAME_SHAPE,)}


def _share(mask: np.ndarray, n: int) -> float:
    return float(mask.sum()) / n if n else 0.0


def score_from_share(share: float) -> float:
    """Map the share of matching values to a confidence: 0.9 needs 90% of the sample to match."""
    if share >= 0.9:
        return 0.9 + 0.09 * (share - 0.9) / 0.1
    if share >= 0.5:
        return 0.5 + 0.4 * (share - 0.5) / 0.4
    return share


def _as_text(sample: pa.Array) -> pa.Array:
    """Non-empty, trimmed string values (nulls dropped)."""
    if isinstance(sample, pa.ChunkedArray):
        sample = sample.combine_chunks()
    if not (pa.types.is_string(sample.type) or pa.types.is_large_string(sample.type)):
        sample = pc.cast(sample, pa.string())
    text = pc.utf8_trim_whitespace(sample.drop_null())
    return text.filter(pc.not_equal(pc.utf8_length(text), 0))


def _match(text: pa.Array, pattern: str) -> np.ndarray:
    hit = pc.match_substring_regex(text, pattern)
    return (hit.fill_null(False) if hit.null_count else hit).to_numpy(zero_copy_only=False)


def _digit_count(text: pa.Array) -> np.ndarray:
    core = pc.replace_substring_regex(text, r"(?i)\s*(x|ext\.?)\s*[0-9]+$", "")
    return np.asarray(pc.utf8_length(pc.replace_substring_regex(core, "[^0-9]", "")))


_DISTINCTIVE = frozenset({"email", "payment_card", "iban", "national_id", "ip_address", "mac_address", "phone"})
PARTIAL_SHARE = 0.3


def _hits(det: Detector, text: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(format matches, format-and-checksum matches) of one detector."""
    hit = _match(text, det.pattern)
    if det.digits is not None and hit.any():
        count = _digit_count(text)
        hit &= (count >= det.digits[0]) & (count <= det.digits[1])
    if det.checksum is None or not hit.any():
        return hit, hit
    # only the values in the right format are checked: a long free-text value never reaches a digit matrix
    idx = np.flatnonzero(hit)
    candidates = text.take(pa.array(idx))
    normalized = pc.replace_substring_regex(candidates, det.strip, "") if det.strip else candidates
    ok = np.zeros(len(text), bool)
    ok[idx] = det.checksum(normalized)
    return hit, ok


def _label_evidence(label: str, dets: list[Detector], text: pa.Array) -> Evidence | None:
    """One label's evidence from all its formats: a column may mix them (SSNs and SINs, 06 and +33 phones).

    Values passing a strong format (checksum included) and a weak one count together when the strong
    ones are at least half of them; a format whose checksum fails is weak evidence of its own.
    """
    n = len(text)
    strong = np.zeros(n, bool)
    weak = np.zeros(n, bool)
    shape_only = np.zeros(n, bool)
    # Bare digits pass a mod-10/mod-11 check one time in ten by chance: only written-out formats
    # (separators, letters) count as distinctive on their own.
    distinct = np.zeros(n, bool)
    formatted: np.ndarray | None = None
    best_name, best_count, best_checksum = dets[0].name, -1, None
    for det in dets:
        hit, ok = _hits(det, text)
        if det.strength == "strong":
            strong |= ok
            shape_only |= hit & ~ok
            if det.checksum is None:
                distinct |= ok
            elif ok.any():
                formatted = _match(text, "[^0-9]") if formatted is None else formatted
                distinct |= ok & formatted
        else:
            weak |= ok
        if ok.sum() > best_count:
            best_name, best_count = det.name, int(ok.sum())
            best_checksum = _share(ok, n) if det.checksum is not None else None
    union = strong | weak
    if not union.any() and not shape_only.any():
        return None
    share = _share(union, n)
    score = score_from_share(share) if strong.sum() >= 0.5 * union.sum() else 0.6 * score_from_share(share)
    # Right format, wrong checksum (test data, typos): only the name can make that the label.
    score = max(score, 0.5 * score_from_share(_share(union | shape_only, n)))
    # A distinctive format in a good part of the rows is sensitive data even if the rest is something else:
    # random data does not produce e-mail addresses or Luhn-valid card numbers 30% of the time.
    distinct_share = _share(distinct, n)
    if label in _DISTINCTIVE and distinct_share >= PARTIAL_SHARE:
        score = max(score, 0.82 + 0.17 * (distinct_share - PARTIAL_SHARE) / (1 - PARTIAL_SHARE))
    if best_count == 0:
        best_name = next(d.name for d in dets if _match(text, d.pattern).any())
    return Evidence(label, best_name, score, max(share, _share(union | shape_only, n)), best_checksum, int(union.sum()), n,
                    strong_matched=int(distinct.sum()))


@lru_cache(maxsize=1)
def _street_words() -> pa.Array:
    return pa.array(sorted({w.lower() for w in street_suffixes()}))


def _person_names(text: pa.Array) -> Evidence:
    n = len(text)
    shape = _match(text, _NAME_SHAPE)
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
    share, lex_share = _share(shape, n), _share(lexical, n)
    score = score_from_share(lex_share) if lex_share >= 0.6 else 0.45 * score_from_share(share)
    return Evidence("person_name", "name_lexicon" if lex_share >= 0.6 else "name_shape", score, share, None,
                    int(lexical.sum()), n, lex_share)


def _clinical(text: pa.Array) -> Evidence:
    n = len(text)
    terms = np.asarray(pc.count_substring_regex(text, _CLINICAL_TERMS)) + _match(text, _ICD10)
    words = np.asarray(pc.count_substring_regex(text, r"[^\s]+"))
    hit = (terms >= 2) & (words >= 3)
    share = _share(hit, n)
    return Evidence("clinical_note", "clinical_terms", score_from_share(share / 0.8 if share < 0.8 else 1.0) * 0.97,
                    share, None, int(hit.sum()), n)


# Identifiers written inside free text ("call me on +44 20 7946 0958"): a column of notes or comments
# where a fifth of the rows carry one is as sensitive as a column of them.
_EMBEDDED: tuple[tuple[str, str, Check | None], ...] = (
    ("email", r"(?P<v>[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,})", None),
    ("national_id", r"(^|[^0-9-])(?P<v>[0-9]{3}-[0-9]{2}-[0-9]{4})([^0-9-]|$)", None),
    ("payment_card", r"(^|[^0-9])(?P<v>([0-9]{4}[ -]?){3}[0-9]{1,7})([^0-9]|$)", checksums.luhn),
    ("iban", r"(^|[^A-Z0-9])(?P<v>[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30})([^A-Z0-9]|$)", checksums.iban),
    ("phone", (r"(^|[^0-9])(?P<v>(\+[1-9][0-9]{0,2}[ .-]?(\(0\)[ .-]?)?\(?[0-9]{1,4}\)?([ .-]?[0-9]{2,4}){2,4})|"
               r"(\(?[0-9]{3}\)?[ .-]?[0-9]{3}[ .-][0-9]{4})|(\(0[0-9]{2,4}\)[ -]?[0-9]{3,8}([ .-][0-9]{2,4}){0,3})|"
               r"(0[1-9][0-9]{1,4}[ -][0-9]{4,8})|(0[1-9]([ .][0-9]{2}){4}))([^0-9]|$)"), None),
)
EMBEDDED_SHARE = 0.2
_UNNAMED = re.compile(r"(?<!\\)\((?!\?)")  # extract_regex wants every group named


def _embedded(text: pa.Array) -> list[Evidence]:
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
        share = _share(found, n)
        if found.any():
            score = 0.85 * min(1.0, share / EMBEDDED_SHARE)
            out.append(Evidence(label, f"embedded_{label}", score, share, None, int(found.sum()), n))
    return out


def _high_entropy(text: pa.Array) -> Evidence:
    n = len(text)
    shaped = _match(text, _TOKEN_LIKE)
    if shaped.any():
        shaped &= _match(text, "[A-Z]") & _match(text, "[a-z]") & _match(text, "[0-9]")
    # Hex (UUIDs, digests) is an identifier or a hash, not a secret; URLs and paths are addresses.
    if shaped.any():
        shaped &= ~(_match(text, r"^[0-9a-fA-F-]+$") | _match(text, r"^([a-zA-Z][a-zA-Z0-9+.-]*://[^@]*|/.*)$"))
    hit = shaped.copy()
    if hit.any():
        idx = np.flatnonzero(hit)
        hit[idx] = checksums.shannon_entropy(text.take(pa.array(idx))) >= 3.5
    share = _share(hit, n)
    return Evidence("credential", "high_entropy", 0.88 * score_from_share(share), share, None, int(hit.sum()), n)


def birth_date_evidence(dates: pa.Array, today: date | None = None) -> Evidence:
    """Dates that look like birth dates: all past, spread over decades, a plausible age profile."""
    days = np.asarray(pc.cast(pc.cast(dates.drop_null(), pa.date32()), pa.int32()), dtype=np.int64)
    n = len(days)
    if n == 0:
        return Evidence("date_of_birth", "birth_date_profile", 0.0, 0.0, None, 0, 0)
    today_days = ((today or date.today()) - date(1970, 1, 1)).days
    ages = (today_days - days) / 365.25
    plausible = (ages >= 0) & (ages <= 115)
    share = _share(plausible, n)
    p5, p50, p95 = np.percentile(ages, [5, 50, 95])
    profile = share >= 0.98 and (p95 - p5) >= 15 and 16 <= p50 <= 85
    score = 0.85 * score_from_share(share) if profile else 0.0
    return Evidence("date_of_birth", "birth_date_profile", score, share, None, int(plausible.sum()), n)


_DATE_FORMATS = ("%Y-%m-%d", "%d/%m/%Y", "%m/%d/%Y", "%d.%m.%Y", "%d-%m-%Y", "%Y/%m/%d")


def _text_dates(text: pa.Array) -> pa.Array | None:
    """The sample parsed as dates with the format that parses most of it (>= 90%), else None."""
    best, best_n = None, 0
    if not len(text) or not _match(text, r"^[0-9]{1,4}[-/.][0-9]{1,2}[-/.][0-9]{1,4}$").mean() >= 0.9:
        return None
    for fmt in _DATE_FORMATS:
        parsed = pc.strptime(text, format=fmt, unit="s", error_is_null=True)
        ok = len(parsed) - parsed.null_count
        if ok > best_n:
            best, best_n = parsed, ok
    return best if best is not None and best_n >= 0.9 * len(text) else None


_NO_VALUE_LABELS = ("bool",)


def value_evidence(sample: pa.Array, pg_type: str | None = None) -> dict[str, Evidence]:
    """The best evidence per label for a sample of one column's values (labels with no match left out)."""
    t = (pg_type or "").lower()
    out: dict[str, Evidence] = {}
    if t.startswith("bool") or pa.types.is_boolean(sample.type) or t in ("uuid", "bytea", "json", "jsonb"):
        return out
    if t in ("inet", "cidr") or t.startswith("macaddr"):
        label = "ip_address" if t in ("inet", "cidr") else "mac_address"
        n = len(sample) - sample.null_count
        return {label: Evidence(label, f"type_{t}", 0.97, 1.0, None, n, n)}
    if pa.types.is_temporal(sample.type):
        if pa.types.is_date(sample.type) or pa.types.is_timestamp(sample.type):
            out["date_of_birth"] = birth_date_evidence(sample)
        return out
    if pa.types.is_floating(sample.type) or pa.types.is_decimal(sample.type):
        return out
    text = _as_text(sample)
    if not len(text):
        return out
    # Cheap gates first: most labels need digits, e-mail needs '@'; skipping saves whole regex passes.
    has_digit = bool(_match(text, "[0-9]").any())
    has_at = bool(np.asarray(pc.match_substring(text, "@")).any())
    has_word = bool(_match(text, f"[{_L}]{{3}}").any())
    for label, dets in _BY_LABEL.items():
        if ((label == "email" and not has_at) or (label in _DIGIT_LABELS and not has_digit)
                or (label == "street_address" and not (has_word and has_digit))):
            continue
        ev = _label_evidence(label, dets, text)
        if ev is not None:
            out[label] = ev
    worded = (_person_names(text), _clinical(text), *_embedded(text)) if has_word else ()
    for ev in (*worded, _high_entropy(text)):
        if ev.matched and (ev.label not in out or ev.score > out[ev.label].score):
            out[ev.label] = ev
    dates = _text_dates(text)
    if dates is not None:
        out["date_of_birth"] = birth_date_evidence(dates)
    return out


_BY_LABEL: dict[str, list[Detector]] = {}
for _det in DETECTORS:
    _BY_LABEL.setdefault(_det.label, []).append(_det)
# Every format of these labels contains a digit.
_DIGIT_LABELS = frozenset({"phone", "national_id", "payment_card", "iban", "postal_code",
                           "medical_record_number"})


def gx_patterns(label: str) -> tuple[str, ...]:
    """Regexes whose match in a masked column means the label's values leaked (Python `re` compatible)."""
    pats = tuple(d.pattern for d in DETECTORS if d.label == label and d.gx)
    return pats + EXTRA_GX_PATTERNS.get(label, ())
