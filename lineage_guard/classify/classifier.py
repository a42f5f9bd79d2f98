"""Classify a column from its name, its Postgres type and a sample of its values.

The name and the values are two independent witnesses, combined as a noisy-OR:
`confidence = 1 - (1 - name) * (1 - values)`. A strong name alone gives 0.85; a
column of Luhn-valid card numbers gives ~0.99 whatever it is called; a weak
format (five digits) needs the name to agree. A strong name whose values plainly
contradict it (`phone` full of words) drops to 0.5.

Example:
    >>> import pyarrow as pa
    >>> c = classify_column("col_7", "text", pa.array(["123-45-6789", "234-56-7890"] * 10))
    >>> c.label, c.confidence >= 0.9, c.evidence["detector"]
    ('national_id', True, 'us.ssn')
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from .detectors import Evidence, score_from_share, value_evidence
from .labels import LABELS, NOT_SENSITIVE
from .names import name_hints

NAME_SCORE = {"strong": 0.85, "weak": 0.4}
AGREEMENT = 1 - (1 - NAME_SCORE["strong"]) * (1 - 0.9)
REPORT_FLOOR = 0.6  # below this the column is reported not sensitive (a weak format alone stays under it)
# Labels whose values are recognizable enough that a sample with none of them refutes the name.
_REFUTABLE = frozenset({"email", "phone", "payment_card", "iban", "ip_address", "mac_address", "postal_code"})
# Formats distinctive enough to add up when a column mixes them.
_MIXABLE = frozenset({"email", "phone", "national_id", "payment_card", "iban", "ip_address", "mac_address"})


@dataclass(frozen=True)
class Classification:
    """A label with a confidence in [0, 1] and the evidence behind it (names, counts, shares; no values)."""

    label: str
    confidence: float
    evidence: Mapping[str, Any] = field(default_factory=dict)

    def is_sensitive(self, threshold: float = 0.8) -> bool:
        """True when the label is a sensitive one and the confidence reaches `threshold`."""
        return self.label != NOT_SENSITIVE and self.confidence >= threshold

    def to_json(self) -> dict:
        return {"label": self.label, "confidence": round(self.confidence, 4), "evidence": dict(self.evidence)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Classification:
        return cls(str(data["label"]), float(data["confidence"]), dict(data.get("evidence", {})))


def _sample_discount(ev: Evidence) -> float:
    """A handful of values proves little: full weight from 10 non-null values up."""
    return min(1.0, 0.6 + 0.04 * ev.non_null)


def classify_column(name: str, pg_type: str | None, sample: pa.Array | None, *, table: str | None = None) -> Classification:
    """Label one column. `sample` may be empty or None (then only name and type speak).

    `table` (the table's name) lets generic names such as `notes` count as clinical in `patients`.
    """
    hints = name_hints(name, table)
    t = (pg_type or "").lower()
    sample = sample if sample is not None else pa.array([], pa.string())
    non_null = len(sample) - sample.null_count
    if t.startswith("bool") or pa.types.is_boolean(sample.type):
        return Classification(NOT_SENSITIVE, 0.99, {"type": pg_type, "sampled": len(sample), "non_null": non_null,
                                                    "reason": "boolean"})
    values = value_evidence(sample, pg_type)

    scored: list[tuple[float, int, str]] = []
    for rank, label in enumerate(LABELS):
        hint, ev = hints.get(label), values.get(label)
        n = NAME_SCORE[hint.strength] if hint else 0.0
        v = ev.score * _sample_discount(ev) if ev else 0.0
        strong_name = bool(hint and hint.strength == "strong")
        if strong_name and label in _REFUTABLE and non_null >= 20 and _refuted(label, ev):
            n = 0.5
        conf = 1 - (1 - n) * (1 - v)
        if strong_name and ev and _agrees(ev):
            conf = max(conf, AGREEMENT)  # the name and the format agree, even if a checksum does not
        if conf > 0:
            scored.append((conf, -rank, label))
    scored.sort(reverse=True)
    evidence: dict[str, Any] = {"type": pg_type, "sampled": len(sample), "non_null": non_null}
    mixed = _mixed(values, non_null)
    if mixed and (not scored or scored[0][0] < mixed[0]):
        conf, label, shares = mixed
        evidence["mixed"] = shares  # e.g. a `contact` column holding e-mails and phone numbers
        return Classification(label, round(conf, 4), evidence)
    if not scored or scored[0][0] < REPORT_FLOOR:
        best = scored[0][0] if scored else 0.0
        if scored:
            evidence["closest"] = {"label": scored[0][2], "confidence": round(best, 4)}
        return Classification(NOT_SENSITIVE, round(1 - best, 4), evidence)
    conf, _, label = scored[0]
    hint, ev = hints.get(label), values.get(label)
    if hint:
        evidence["name"] = hint.keyword
        evidence["name_strength"] = hint.strength
    if ev:
        evidence["detector"] = ev.detector
        evidence["pattern_share"] = round(ev.pattern_share, 4)
        if ev.checksum_share is not None:
            evidence["checksum_share"] = round(ev.checksum_share, 4)
        if ev.dictionary_share is not None:
            evidence["dictionary_share"] = round(ev.dictionary_share, 4)
    if len(scored) > 1 and scored[1][0] >= REPORT_FLOOR:
        evidence["runner_up"] = {"label": scored[1][2], "confidence": round(scored[1][0], 4)}
    return Classification(label, round(conf, 4), evidence)


def _refuted(label: str, ev: Evidence | None) -> bool:
    """The sample plainly is not what a strong name says: few values in the label's format."""
    if ev is None:
        return True
    if label == "phone" and ev.checksum_share is not None:
        # nothing fits a numbering plan (a NANP area code starting with 1), or bare digits that are not numbers
        return _plan_fit(ev) < 0.05 or (ev.pattern_share < 0.2 and ev.checksum_share < 0.5)
    return ev.pattern_share < 0.2


def _plan_fit(ev: Evidence) -> float:
    """Phones: share of values that are valid numbers or at least fit their plan (test ranges such as 555-01xx)."""
    return ev.matched / ev.non_null if ev.non_null else 0.0


def _agrees(ev: Evidence) -> bool:
    """Most values have the named label's format; for phones they must also fit a numbering plan."""
    if ev.label == "phone" and ev.checksum_share is not None:
        return (ev.pattern_share >= 0.8 and _plan_fit(ev) >= 0.5) or ev.checksum_share >= 0.8
    return ev.pattern_share >= 0.8


def _mixed(values: Mapping[str, Evidence], non_null: int) -> tuple[float, str, dict[str, float]] | None:
    """A column whose values are mostly identifiers of several kinds: labeled with the most frequent one."""
    counts = {label: ev.strong_matched for label, ev in values.items() if label in _MIXABLE and ev.strong_matched}
    if len(counts) < 2 or not non_null:
        return None
    share = min(1.0, sum(counts.values()) / non_null)
    if share < 0.8:
        return None
    label = max(counts, key=lambda k: (counts[k], -LABELS.index(k)))
    conf = 0.9 * score_from_share(share) * min(1.0, 0.6 + 0.04 * non_null)
    return conf, label, {k: round(v / non_null, 4) for k, v in sorted(counts.items())}


def classify_table(
    table: pa.Table, pg_types: Mapping[str, str | None] | None = None, *, table_name: str | None = None
) -> dict[str, Classification]:
    """Label every column of a sampled table; `pg_types` maps column name to its Postgres type.

    Example:
        >>> t = pa.table({"notes": ["a@b.io", "c@d.org"], "qty": [1, 2]})
        >>> {k: v.label for k, v in classify_table(t).items()}
        {'notes': 'email', 'qty': 'not_sensitive'}
    """
    pg_types = pg_types or {}
    return {
        name: classify_column(name, pg_types.get(name), table.column(name).combine_chunks(), table=table_name)
        for name in table.column_names
    }
