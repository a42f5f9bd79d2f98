"""Value checks by well-kept libraries: phone numbers (phonenumbers) and national identifiers (python-stdnum).

The libraries check one value at a time, so they see a bounded, evenly spaced subsample
of the candidates (at most `MAX_CHECKED` values that already have the right shape); the
column decision is ours and uses shares of that subsample:

- phones: a value counts when libphonenumber calls it a valid number of its country.
  Numbers written without a country code get the regions that the column's own values fit
  best (a column is mostly one country), so `030 1234567` is judged as German and
  `(415) 555-0132` as North American. Phone-shaped codes fail: NANP area codes and
  exchanges never start with 0 or 1, and every plan has its own lengths and prefixes.
- national identifiers: each stdnum format is tried on the values of its shape and the
  column takes the single best format (never the union: bare digits pass some mod-11
  check one time in ten, and a union of twenty checks would pass most numbers).

Both libraries load on first use, never at `import lineage_guard`.

Example:
    >>> import pyarrow as pa
    >>> ev = national_id_evidence(pa.array(["530117-2614", "420520-3674"] * 10))
    >>> ev.detector, ev.checksum_share
    ('se.personnummer', 1.0)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import import_module
from types import ModuleType

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .evidence import Evidence, match, score_from_share

MAX_CHECKED = 200
MAX_PHONES = 120  # libphonenumber parses take ~50 us each
PROBE = 24  # values tried first: a format (or a plan) that fails most of them is not tried on the rest


def subsample(values: pa.Array, limit: int = MAX_CHECKED) -> list[str]:
    """At most `limit` values, evenly spaced (a sample sorted by id stays representative)."""
    n = len(values)
    if n > limit:
        values = values.take(pa.array(np.linspace(0, n - 1, limit).astype(np.int64)))
    return values.to_pylist()


def _probe(values: list[str]) -> list[str]:
    """`PROBE` values spread over the list (a sorted sample's first values would all look alike)."""
    return values[:: max(1, len(values) // PROBE)][:PROBE]


# -- national identifiers ----------------------------------------------------------------------

@dataclass(frozen=True)
class IdFormat:
    """A stdnum module and the written shape its values take (the shape gates which values it sees)."""

    module: str
    shape: str
    checksum: bool = True  # False: no check digit (US SSN, Danish CPR): only the written form counts


# Personal identifiers of the countries stdnum covers with a check digit or date rules.
# Shapes are anchored, RE2-compatible, and as loose as each format's common spellings.
ID_FORMATS: tuple[IdFormat, ...] = (
    IdFormat("us.ssn", r"^[0-9]{3}-[0-9]{2}-[0-9]{4}$", checksum=False),
    IdFormat("ca.sin", r"^[0-9]{3}[ -]?[0-9]{3}[ -]?[0-9]{3}$"),
    IdFormat("gb.nhs", r"^[0-9]{3}[ -]?[0-9]{3}[ -]?[0-9]{4}$"),
    IdFormat("nl.bsn", r"^[0-9]{4}\.?[0-9]{2}\.?[0-9]{3}$|^[0-9]{8,9}$"),
    IdFormat("be.nn", r"^[0-9]{2}\.?[0-9]{2}\.?[0-9]{2}-?[0-9]{3}\.?[0-9]{2}$"),
    IdFormat("fr.nir", r"^[12] ?[0-9]{2} ?[0-9]{2} ?([0-9]{2}|2A|2B) ?[0-9]{3} ?[0-9]{3} ?[0-9]{2}$"),
    IdFormat("de.idnr", r"^[0-9]{2} ?[0-9]{3} ?[0-9]{3} ?[0-9]{3}$"),
    IdFormat("at.vnr", r"^[0-9]{4} ?[0-9]{6}$"),
    IdFormat("ch.ssn", r"^756\.?[0-9]{4}\.?[0-9]{4}\.?[0-9]{2}$"),
    IdFormat("it.codicefiscale", r"^[A-Za-z]{6}[0-9LMNPQRSTUVlmnpqrstuv]{2}[A-Za-z][0-9LMNPQRSTUVlmnpqrstuv]{2}[A-Za-z][0-9LMNPQRSTUVlmnpqrstuv]{3}[A-Za-z]$"),
    IdFormat("es.dni", r"^[0-9]{8}-?[A-Za-z]$"),
    IdFormat("es.nie", r"^[XYZxyz]-?[0-9]{7}-?[A-Za-z]$"),
    IdFormat("pt.cc", r"^[0-9]{8} ?[0-9] ?[A-Za-z]{2}[0-9]$"),
    IdFormat("br.cpf", r"^[0-9]{3}\.?[0-9]{3}\.?[0-9]{3}-?[0-9]{2}$"),
    IdFormat("pl.pesel", r"^[0-9]{11}$"),
    IdFormat("se.personnummer", r"^([0-9]{2})?[0-9]{6}[-+]?[0-9]{4}$"),
    IdFormat("dk.cpr", r"^[0-9]{6}-?[0-9]{4}$", checksum=False),  # no check digit since 2007: a date and four digits
    IdFormat("no.fodselsnummer", r"^[0-9]{6} ?[0-9]{5}$"),
    IdFormat("fi.hetu", r"^[0-9]{6}[-+A-Ya-y][0-9]{3}[0-9A-Ya-y]$"),
    IdFormat("ee.ik", r"^[1-6][0-9]{10}$"),
    IdFormat("lt.asmens", r"^[1-6][0-9]{10}$"),
    IdFormat("cz.rc", r"^[0-9]{6}/?[0-9]{3,4}$", checksum=False),  # pre-1954 numbers have none
    IdFormat("ro.cnp", r"^[1-9][0-9]{12}$"),
    IdFormat("bg.egn", r"^[0-9]{10}$"),
    IdFormat("hr.oib", r"^[0-9]{11}$"),
    IdFormat("tr.tckimlik", r"^[1-9][0-9]{10}$"),
    IdFormat("ie.pps", r"^[0-9]{7}[A-Wa-w][A-IWa-iw]?$"),
    IdFormat("mx.curp", r"^[A-Za-z]{4}[0-9]{6}[HMhm][A-Za-z]{5}[0-9A-Za-z][0-9]$"),
    IdFormat("cl.rut", r"^[0-9]{1,2}\.?[0-9]{3}\.?[0-9]{3}-[0-9Kk]$"),
    IdFormat("in_.aadhaar", r"^[2-9][0-9]{3} ?[0-9]{4} ?[0-9]{4}$"),
    IdFormat("za.idnr", r"^[0-9]{13}$"),
    IdFormat("kr.rrn", r"^[0-9]{6}-?[0-9]{7}$"),
    IdFormat("cn.ric", r"^[0-9]{17}[0-9Xx]$"),
)
# Any of the shapes above: the gate for the whole family (one regex pass instead of thirty).
_ID_GATE = r"^[0-9A-Za-z][0-9A-Za-z .+/-]{6,22}$"


@cache
def _stdnum(module: str) -> ModuleType:
    return import_module(f"stdnum.{module}")


def _valid_id(module: str, value: str) -> bool:
    try:
        return bool(_stdnum(module).is_valid(value))
    except Exception:  # noqa: BLE001 - a library bug on odd input must not fail a scan; the value just does not count
        return False


def _share_valid(module: str, values: list[str]) -> float:
    """Share of `values` the stdnum module accepts; a probe that is mostly rejected ends the count."""
    probe = _probe(values)
    hits = sum(_valid_id(module, v) for v in probe)
    if hits < 0.5 * len(probe):  # the right format passes nearly all; a wrong one one in ten
        return hits / len(probe)
    return sum(_valid_id(module, v) for v in values) / len(values)


def national_id_evidence(text: pa.Array) -> Evidence | None:
    """The best single stdnum format of the column, as the share of values it validates."""
    n = len(text)
    gate = match(text, _ID_GATE)
    if gate.sum() < 0.3 * n:
        return None
    best: tuple[float, int, IdFormat] | None = None
    for fmt in ID_FORMATS:
        shaped = gate & match(text, fmt.shape)
        count = int(shaped.sum())
        if count < 0.3 * n:
            continue
        checked = subsample(text.filter(pa.array(shaped)))
        valid = _share_valid(fmt.module, checked)
        share = valid * count / n
        if best is None or share > best[0]:
            best = (share, count, fmt)
    if best is None:
        return None
    share, count, fmt = best
    formatted = bool(match(text.filter(pa.array(gate)), "[^0-9]").mean() >= 0.5)
    if not fmt.checksum and not formatted or not formatted and counts_up(text):
        score = 0.0  # bare digits with no check digit, or ids counting up (order numbers, sequences)
    elif formatted:
        score = score_from_share(share)
    else:
        # Bare digits: a check digit passes one random number in ten; nine in ten is not chance.
        score = score_from_share(share) if share >= 0.9 else 0.5 * share
    return Evidence("national_id", fmt.module, float(score), count / n, float(share), int(share * n), n,
                    strong_matched=int(share * n) if formatted and fmt.checksum else 0)


IBAN_SHAPE = r"^[A-Za-z]{2}[0-9]{2} ?[A-Za-z0-9]{4}( ?[A-Za-z0-9]{1,4}){2,7}$"


def iban_evidence(text: pa.Array) -> Evidence | None:
    """IBANs by stdnum: mod 97 and each country's own length and BBAN layout, on a bounded subsample."""
    from stdnum import iban

    n = len(text)
    shaped = match(text, IBAN_SHAPE)
    count = int(shaped.sum())
    if not count:
        return None
    checked = subsample(text.filter(pa.array(shaped)))
    share = sum(iban.is_valid(v) for v in checked) / len(checked) * count / n
    score = score_from_share(share)
    if share >= 0.3:  # random text is not valid IBANs a third of the time: the rest of the column does not matter
        score = max(score, 0.82 + 0.17 * (share - 0.3) / 0.7)
    score = max(score, 0.5 * score_from_share(count / n))  # the layout without the checksum: test data
    return Evidence("iban", "stdnum.iban", float(score), count / n, float(share), int(share * n), n,
                    strong_matched=int(share * n))


def counts_up(text: pa.Array) -> bool:
    """Digits that mostly increase in sample order: a sequence (ids, order numbers), not people's numbers."""
    numbers = np.asarray(pc.cast(text.filter(match(text, "^[0-9]{1,18}$")), pa.int64()))
    return len(numbers) >= 10 and float((np.diff(numbers) > 0).mean()) > 0.9


# -- phone numbers -------------------------------------------------------------------------------

# Regions tried for numbers written without a country code; the column's own values pick among them.
REGIONS = (
    "US", "CA", "GB", "IE", "DE", "AT", "CH", "FR", "BE", "NL", "LU", "ES", "PT", "IT", "PL", "CZ", "SK", "HU",
    "RO", "BG", "GR", "TR", "SE", "NO", "DK", "FI", "EE", "LV", "LT", "SI", "HR", "RS", "UA", "BR", "MX", "AR",
    "CL", "CO", "AU", "NZ", "IN", "ZA", "JP", "CN", "KR", "SG", "IL", "PH",
)
_NANP = frozenset({"US", "CA"})
_NANP_REGIONS = ("US", "CA")
# NANP's trunk prefix is 1; Brazilians write (11) 91234-5678 without the trunk 0 and carrier code.
_TRUNK_OPTIONAL = frozenset({"US", "CA", "BR", "AR", "MX", "CO", "CL"})
# A phone's written shape: digits with the usual separators, an optional + or 00, an optional extension.
PHONE_SHAPE = r"^(\+|00)?[0-9 ()./-]{6,22}( ?(x|ext\.?|#) ?[0-9]{1,6})?$"
# Written forms of other things with 7+ digits: dates, SSNs (3-2-4), Brazilian CEPs (5-3).
_NOT_PHONES = r"^([0-9]{4}[-/.][0-9]{1,2}[-/.][0-9]{1,2}|[0-9]{1,2}[-/.][0-9]{1,2}[-/.][0-9]{2,4}|[0-9]{3}-[0-9]{2}-[0-9]{4}|[0-9]{5}-[0-9]{3})$"
_NANP_GROUPING = re.compile(r"^\(?[0-9]{3}\)?[ .-]?[0-9]{3}[ .-][0-9]{4}")
_EXT = re.compile(r"(?i)\s*(x|ext\.?|#)\s*[0-9]+$")


@cache
def _region_patterns() -> tuple[tuple[str, str, re.Pattern], ...]:
    """(region, national prefix, general number pattern) from libphonenumber's metadata."""
    from phonenumbers import PhoneMetadata

    out = []
    for region in REGIONS:
        md = PhoneMetadata.metadata_for_region(region)
        if md is not None and md.general_desc and md.general_desc.national_number_pattern:
            out.append((region, md.national_prefix or "", re.compile(md.general_desc.national_number_pattern)))
    return tuple(out)


def _national_fit(digits: str) -> set[str]:
    """Regions whose general number pattern this national number fits.

    Where the plan has a trunk prefix (0 in most of Europe), a national number is written with it;
    without it only regions with no trunk prefix, or where it is commonly left out (Brazil), qualify.
    """
    fits = set()
    for region, prefix, pattern in _region_patterns():
        if prefix and digits.startswith(prefix):
            national = digits[len(prefix):]
        elif prefix and region not in _TRUNK_OPTIONAL:
            continue
        else:
            national = digits
        if pattern.fullmatch(national):
            fits.add(region)
    return fits


def _check(value: str, region: str | None) -> tuple[bool, bool]:
    """(valid, possible): valid is an assigned range of the plan; possible only has a length the plan allows
    (local-only lengths included: `+1-555-0186` is test data, not a product code)."""
    import phonenumbers

    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return False, False
    if phonenumbers.is_valid_number(number):
        return True, True
    reason = phonenumbers.is_possible_number_with_reason(number)
    return False, reason in (phonenumbers.ValidationResult.IS_POSSIBLE, phonenumbers.ValidationResult.IS_POSSIBLE_LOCAL_ONLY)


def _is_valid(value: str, region: str | None) -> bool:
    return _check(value, region)[0]


def _nanp_only(value: str, digits: str) -> bool:
    """3-3-4 grouping without a trunk 0 is North American or nothing (`(160) 126-1537` is no German mobile)."""
    return bool(_NANP_GROUPING.match(value)) and not digits.startswith("0")


def _column_regions(nationals: list[tuple[str, str]]) -> list[str]:
    """The (at most three) regions most of the column's national numbers fit."""
    votes: dict[str, int] = {}
    for value, digits in nationals[:24]:
        fits = _national_fit(digits)
        if _nanp_only(value, digits):
            fits &= _NANP
        for region in fits:
            votes[region] = votes.get(region, 0) + 1
    ranked = sorted(votes, key=lambda r: (-votes[r], REGIONS.index(r)))
    return ranked[:3]


@dataclass(frozen=True)
class PhoneCounts:
    """How many of the checked values are valid numbers, fit a plan only, or are written as phones."""

    checked: int
    valid: int
    fitting: int  # fit their plan (length, pattern) without being in an assigned range
    written: int  # with separators, parentheses or a '+'


def count_phones(checked: list[str]) -> PhoneCounts:
    """Judge each value as a phone number; national numbers get the regions the values fit best."""
    intl: list[str] = []
    nationals: list[tuple[str, str]] = []
    bare: list[str] = []
    written = 0
    for value in checked:
        core = _EXT.sub("", value)
        digits = re.sub(r"[^0-9]", "", core)
        if not 7 <= len(digits) <= 15:
            continue
        if core.startswith(("+", "00")):
            intl.append("+" + digits[2:] if core.startswith("00") else core)
            written += 1
        elif digits == core and not digits.startswith("0"):
            # bare digits: E.164 stored without the '+' (a 13-digit mobile), or a NANP number; no other
            # plan writes national numbers without a trunk 0 as bare digits often enough to guess
            bare.append("+" + digits if len(digits) >= 11 else "+1" + digits)
        else:
            nationals.append((value, digits))
            written += digits != core
    valid = sum(_is_valid(v, None) for v in bare)
    fitting = 0
    for value in intl:
        ok, possible = _check(value, None)
        valid += ok
        fitting += possible and not ok
    regions = _column_regions(nationals)
    for value, digits in nationals:
        candidates = _NANP_REGIONS if _nanp_only(value, digits) else regions
        if any(_is_valid(value, r) for r in candidates):
            valid += 1
        elif digits != value and _national_fit(digits) & set(candidates):
            fitting += 1
    return PhoneCounts(len(checked), valid, fitting, written)


def phone_evidence(text: pa.Array) -> Evidence | None:
    """Share of values libphonenumber calls valid numbers (see the module docstring)."""
    n = len(text)
    shaped = match(text, PHONE_SHAPE) & ~match(text, _NOT_PHONES)
    if shaped.sum() < 0.3 * n:
        return None
    candidates = subsample(text.filter(pa.array(shaped)), MAX_PHONES)
    counts = count_phones(_probe(candidates))
    if counts.valid + counts.fitting >= 0.3 * counts.checked:  # a probe of non-numbers ends it
        counts = count_phones(candidates)
    scale = shaped.sum() / n / counts.checked
    share, fit_share = counts.valid * scale, (counts.valid + counts.fitting) * scale
    written = counts.written / counts.checked >= 0.5
    # Bare digits are phones only when nearly all are valid. Written numbers tolerate test data (Ofcom's
    # drama ranges, unassigned area codes) when some are real and the rest fit the plan's pattern.
    if not written:
        score = score_from_share(share) if share >= 0.85 else 0.5 * share
    else:
        score = score_from_share(fit_share) if share >= 0.2 and fit_share >= 0.5 else 0.5 * fit_share
    # pattern_share: values written as phones (separators, '+'); checksum_share: values valid as numbers
    written_share = counts.written * scale
    return Evidence("phone", "phonenumbers", float(score), float(written_share), float(share), int(fit_share * n), n,
                    strong_matched=int(fit_share * n) if written and share >= 0.2 else 0)


# A number written inside prose: `call me on +44 20 7946 0958`, `Rückruf unter (030) 1234567`.
EMBEDDED_PHONE = r"(?P<pre>^|[^0-9A-Za-z])(?P<v>(?P<cc>\+|00)?\(?[0-9][0-9 ()./-]{5,18}[0-9])(?P<post>[^0-9]|$)"


def embedded_phone_share(text: pa.Array, prose: np.ndarray) -> float:
    """Share of prose values that carry a valid (or plan-fitting, written) phone number."""
    found = prose & match(text, EMBEDDED_PHONE)
    if not found.any():
        return 0.0
    numbers = pc.utf8_trim_whitespace(pc.struct_field(pc.extract_regex(text.filter(pa.array(found)), EMBEDDED_PHONE), "v"))
    numbers = numbers.drop_null()
    # not dates, SSNs or CEPs, nor bare digits without a trunk 0 (order numbers, EAN-13 barcodes in prose)
    kept = numbers.filter(pa.array(~match(numbers, _NOT_PHONES) & ~match(numbers, "^[1-9][0-9]*$")))
    if not len(kept):
        return 0.0
    counts = count_phones(subsample(kept))
    real = counts.valid + (counts.fitting if counts.valid >= 0.2 * counts.checked else 0)
    return float(found.mean()) * len(kept) / len(numbers) * real / counts.checked
