"""Value evidence per label: what share of a column's sampled values look like each label.

Regexes and Luhn run over the whole sample at once (Arrow compute, RE2; numpy); phone
numbers, national ids and IBANs are checked by libphonenumber and python-stdnum on a
bounded subsample of the values already in the right shape (`validators`). The formats
are in `formats`; names, clinical text, embedded identifiers and secrets in `freetext`;
addresses in `addresses`; dates in `birthdates`.

Example:
    >>> import pyarrow as pa
    >>> ev = value_evidence(pa.array(["ann@example.org", "bo@example.net"]))
    >>> ev["email"].detector, ev["email"].pattern_share
    ('email', 1.0)
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .addresses import street_address_evidence
from .birthdates import birth_date_evidence, text_dates
from .evidence import Evidence, as_text, match, score_from_share, share_of
from .formats import _BY_LABEL, _DIGIT_LABELS, _L, DETECTORS, Detector, gx_patterns
from .freetext import (
    clinical_evidence,
    embedded_evidence,
    password_evidence,
    person_name_evidence,
    secret_evidence,
)
from .validators import counts_up, iban_evidence, national_id_evidence, phone_evidence

__all__ = ["DETECTORS", "Detector", "Evidence", "birth_date_evidence", "gx_patterns", "score_from_share",
           "value_evidence"]


def _digit_count(text: pa.Array) -> np.ndarray:
    core = pc.replace_substring_regex(text, r"(?i)\s*(x|ext\.?)\s*[0-9]+$", "")
    return np.asarray(pc.utf8_length(pc.replace_substring_regex(core, "[^0-9]", "")))


_DISTINCTIVE = frozenset({"email", "payment_card", "iban", "national_id", "ip_address", "mac_address", "phone"})
PARTIAL_SHARE = 0.3


def _hits(det: Detector, text: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(format matches, format-and-checksum matches) of one detector."""
    hit = match(text, det.pattern)
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
    ones are at least a third of them (Brazilian CEPs written 01310-100 and 01310100); a format whose
    checksum fails is weak evidence of its own.
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
                formatted = match(text, "[^0-9]") if formatted is None else formatted
                distinct |= ok & formatted
        else:
            weak |= ok
        if ok.sum() > best_count:
            best_name, best_count = det.name, int(ok.sum())
            best_checksum = share_of(ok, n) if det.checksum is not None else None
    union = strong | weak
    if not union.any() and not shape_only.any():
        return None
    share = share_of(union, n)
    score = score_from_share(share) if strong.sum() >= 0.3 * union.sum() else 0.6 * score_from_share(share)
    # Right format, wrong checksum (test data, typos): only the name can make that the label.
    score = max(score, 0.5 * score_from_share(share_of(union | shape_only, n)))
    # A distinctive format in a good part of the rows is sensitive data even if the rest is something else:
    # random data does not produce e-mail addresses or Luhn-valid card numbers 30% of the time.
    distinct_share = share_of(distinct, n)
    if label in _DISTINCTIVE and distinct_share >= PARTIAL_SHARE:
        score = max(score, 0.82 + 0.17 * (distinct_share - PARTIAL_SHARE) / (1 - PARTIAL_SHARE))
    if best_count == 0:
        best_name = next(d.name for d in dets if match(text, d.pattern).any())
    return Evidence(label, best_name, score, max(share, share_of(union | shape_only, n)), best_checksum, int(union.sum()), n,
                    strong_matched=int(distinct.sum()))


def fixed_width_code_evidence(text: pa.Array) -> Evidence | None:
    """Bare postcodes (`80636`, `04122`, `250008`): digits of one width (4 to 6), in no order, not years.

    Order numbers count up, years sit in 1900-2100, quantities and ids vary in width; a text column
    of same-width digits in no order is most often a postal code. It scores just over the default
    threshold: a zero-configuration guess that fails closed.
    """
    n = len(text)
    lengths = np.asarray(pc.utf8_length(text))
    digits = match(text, "^[0-9]+$")
    if n < 10 or digits.mean() < 0.95:
        return None
    width = int(np.bincount(lengths[digits]).argmax())
    same = digits & (lengths == width)
    if not 4 <= width <= 6 or same.mean() < 0.95:
        return None
    numbers = np.asarray(pc.cast(text.filter(pa.array(same)), pa.int64()))
    if counts_up(text) or (width == 4 and ((numbers >= 1900) & (numbers <= 2100)).mean() > 0.9):
        return None
    if len(np.unique(numbers)) < 0.1 * len(numbers):
        return None  # a handful of codes repeated: a category, not addresses
    return Evidence("postal_code", f"fixed_width_{width}", 0.82, float(same.mean()), None, int(same.sum()), n)


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
    text = as_text(sample)
    if not len(text):
        return out
    # Cheap gates first: most labels need digits, e-mail needs '@'; skipping saves whole regex passes.
    has_digit = bool(match(text, "[0-9]").any())
    has_at = bool(np.asarray(pc.match_substring(text, "@")).any())
    has_word = bool(match(text, f"[{_L}]{{3}}").any())
    for label, dets in _BY_LABEL.items():
        if ((label == "email" and not has_at) or (label in _DIGIT_LABELS and not has_digit)
                or (label == "street_address" and not (has_word and has_digit))):
            continue
        ev = _label_evidence(label, dets, text)
        if ev is not None:
            out[label] = ev
    if has_digit:
        for ev in (phone_evidence(text), national_id_evidence(text), iban_evidence(text), fixed_width_code_evidence(text)):
            if ev is not None and (ev.label not in out or ev.score > out[ev.label].score):
                out[ev.label] = ev
    worded = (person_name_evidence(text), street_address_evidence(text), clinical_evidence(text),
              *embedded_evidence(text)) if has_word else ()
    for ev in (*worded, secret_evidence(text), password_evidence(text)):
        if ev.matched and (ev.label not in out or ev.score > out[ev.label].score):
            out[ev.label] = ev
    dates = text_dates(text)
    if dates is not None:
        out["date_of_birth"] = birth_date_evidence(dates)
    return out
