"""The value formats of each label: anchored regexes, checksums and digit counts.

A `Detector` is `strong` when a column of matching values is that label whatever
its name (a Luhn-valid card number, an e-mail address), `weak` when the format is
shared with harmless data (five digits: a ZIP code or an order number) and the
name has to agree. Patterns are anchored and written in the common subset of RE2
(Arrow) and Python `re`, so the Great Expectations integration reuses them as-is.

Example:
    >>> [d.name for d in DETECTORS if d.label == "iban"]
    ['iban']
    >>> gx_patterns("email")[0].startswith("^")
    True
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow as pa

from . import checksums
from .lexicon import street_suffixes

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
    scored: bool = True             # False: only a GX pattern; the evidence comes from `validators` (a library)


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
        # Phones and national ids are judged by libphonenumber and stdnum (`validators`); these shapes only
        # serve Great Expectations ("no masked value may look like one").
        Detector("phone_international", "phone",
                 r"^(\+|00)[1-9][0-9]{0,2}[ .-]?(\(0\)[ .-]?)?\(?[0-9]{1,5}\)?([ .-]?[0-9]{2,5}){1,4}( ?(x|ext\.?) ?[0-9]{1,5})?$",
                 scored=False),
        Detector("phone_nanp", "phone",
                 r"^(\+?1[ .-]?|001[ .-]?)?(\([0-9]{3}\) ?|[0-9]{3}[ .-])[0-9]{3}[ .-][0-9]{4}( ?(x|ext\.?) ?[0-9]{1,5})?$",
                 scored=False),
        Detector("phone_trunk", "phone", r"^(\(0[0-9]{1,4}\)[ -]?|0[0-9]{1,4}[ ./-])[0-9]{2,8}([ .-][0-9]{2,4}){0,4}$",
                 scored=False),
        Detector("us_ssn", "national_id", r"^[0-9]{3}-[0-9]{2}-[0-9]{4}$", scored=False),
        Detector("fr_insee", "national_id", r"^[12] ?[0-9]{2} ?[0-9]{2} ?([0-9]{2}|2A|2B) ?[0-9]{3} ?[0-9]{3} ?[0-9]{2}$",
                 scored=False),
        Detector("it_codice_fiscale", "national_id",
                 r"^[A-Z]{6}[0-9LMNPQRSTUV]{2}[ABCDEHLMPRST][0-9LMNPQRSTUV]{2}[A-Z][0-9LMNPQRSTUV]{3}[A-Z]$", scored=False),
        Detector("es_dni", "national_id", r"^[0-9XYZ][0-9]{7}-?[TRWAGMYFPDXBNJZSQVHLCKE]$", scored=False),
        # stdnum has no UK National Insurance number: its prefix rules are the check
        Detector("uk_nino", "national_id", r"^[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?[0-9]{2} ?[0-9]{2} ?[0-9]{2} ?[A-Z]$"),
        # money
        Detector("payment_card", "payment_card", r"^([0-9]{4}[ -]?){2,4}[0-9]{1,4}$|^3[47][0-9]{2}[ -]?[0-9]{6}[ -]?[0-9]{5}$|^[0-9]{12,19}$",
                 checksum=checksums.luhn, strip=r"[ -]"),
        Detector("iban", "iban", r"^[A-Z]{2}[0-9]{2} ?[A-Z0-9]{4}( ?[A-Z0-9]{1,4}){2,7}$", scored=False),  # stdnum
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
        Detector("pl_postcode", "postal_code", r"^[0-9]{2}-[0-9]{3}$"),
        Detector("pt_jp_postcode", "postal_code", r"^[0-9]{3,4}-[0-9]{3,4}$"),
        Detector("br_cep", "postal_code", r"^[0-9]{5}-[0-9]{3}$"),
        Detector("se_cz_gr_postcode", "postal_code", r"^[0-9]{3} [0-9]{2}$"),
        Detector("prefixed_postcode", "postal_code", r"^[A-Z]{1,2}-[0-9]{4,5}$"),  # H-1748, CH-8000 (not ORD-12345)
        Detector("zip5", "postal_code", r"^[0-9]{5}$", "weak", gx=False),
        Detector("zip6", "postal_code", r"^[0-9]{6}$", "weak", gx=False),
        Detector("cep_bare", "postal_code", r"^[0-9]{8}$", "weak", gx=False),  # counts only beside written CEPs
        Detector("zip4", "postal_code", r"^[0-9]{4}$", "weak", gx=False),
        Detector("street_number_first", "street_address", street_a, scored=False),
        Detector("street_compound", "street_address", street_b, scored=False),
        Detector("street_leading", "street_address", street_c, scored=False),
        # health
        Detector("mrn_prefixed", "medical_record_number", r"(?i)^(mrn|mr|pt|pat|pid|hosp|med)[-#: ]?[A-Z0-9]+([-][A-Z0-9]+){0,3}$"),
        # letters then digits (`K4829104`, `AB123456`): a hospital's record numbers, as a whole column
        Detector("record_number", "medical_record_number", r"^[A-Z]{1,3}[0-9]{6,10}$", gx=False),
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
# Two to six words of letters, the first capitalized: the shape of a person's name (and of many other things).
NAME_SHAPE = rf"^[A-ZÀ-ÖØ-ÞĀ-ž][{_L}'’.-]*( [{_L}'’.-]+){{1,5}}$"
# Patterns GX can check on names (the detectors above cover the rest).
EXTRA_GX_PATTERNS: dict[str, tuple[str, ...]] = {"person_name": (NAME_SHAPE,)}

_BY_LABEL: dict[str, list[Detector]] = {}
for _det in DETECTORS:
    if _det.scored:
        _BY_LABEL.setdefault(_det.label, []).append(_det)
# Every format of these labels contains a digit.
_DIGIT_LABELS = frozenset({"payment_card", "postal_code",
                           "medical_record_number"})


def gx_patterns(label: str) -> tuple[str, ...]:
    """Regexes whose match in a masked column means the label's values leaked (Python `re` compatible)."""
    pats = tuple(d.pattern for d in DETECTORS if d.label == label and d.gx)
    return pats + EXTRA_GX_PATTERNS.get(label, ())
