"""A purpose's re-identification floor, enforced on the masked output of one read before it is committed.

`plan_problems` is the plan-time half (no data touched): `no_sensitive_clear`, and a `subject`
column the floor needs but the read does not return. `FloorCheck` is the run-time half: the
session hands it every masked batch (`observe`), keeps only the columns the floor reads, and
`measure()` gives a value-free summary (for the ledger) and, below the floor, the
`ReidentificationRisk` to fail the read with, before the sink is sealed.

Which output columns are quasi-identifiers: those whose classification is listed under
`quasi_identifiers` and that the output still distinguishes, i.e. clear, generalized, or any
deterministic mask (a token, a pseudonym, a partial or a hash partitions the rows exactly as the
value does: joined with another extract under the same key scope it links just as well). A
redacted, nulled or dropped column carries nothing and is left out. This is stricter than
counting clear and generalized columns only, never weaker.

A class is the rows sharing one combination of those columns; its size is its number of rows,
or of distinct people when the purpose names a `subject` (rows overstate k when one person has
several rows). With no quasi-identifier left in the output there is nothing to link on and the
floor holds; an empty result holds too.

Example:
    >>> import pyarrow as pa
    >>> from lineage_guard.policy.purposes import PurposeRequirement
    >>> check = FloorCheck(PurposeRequirement(k_anonymity=2), "ai_training", quasi=[(0, "zip")])
    >>> check.observe(pa.record_batch({"zip": ["021**", "021**", "946**"], "y": [1, 2, 3]}))
    >>> summary, error = check.measure()
    >>> (summary["k"], summary["smallest_classes"], type(error).__name__)
    (1, [{'size': 1, 'classes': 1}, {'size': 2, 'classes': 1}], 'ReidentificationRisk')
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pyarrow as pa

from ..errors import ReidentificationRisk

if TYPE_CHECKING:  # pragma: no cover
    from ..decision import ColumnDecision, Decision
    from ..policy.model import Policy
    from ..policy.purposes import PurposeRequirement

# Masks after which a column no longer tells rows apart (constant, null, or gone).
HIDES_ALL = frozenset({"redact", "null", "drop"})

Columns = list[tuple[int, str]]   # (index in the masked batch, output column name)


def _out_index(columns: Sequence[ColumnDecision]) -> dict[int, int]:
    """Output position -> index in the masked batch (a `drop` mask removes its column, shifting the rest)."""
    out, i = {}, 0
    for col in sorted(columns, key=lambda c: c.position):
        if col.mask is not None and col.mask.method == "drop":
            continue
        out[col.position] = i
        i += 1
    return out


def _carrying(columns: Sequence[ColumnDecision], labels: set[str]) -> Columns:
    """Output columns of one of `labels` whose values still tell rows apart."""
    index = _out_index(columns)
    return [(index[c.position], c.name) for c in columns
            if set(c.labels) & labels and (c.mask is None or c.mask.method not in HIDES_ALL)]


def plan_problems(columns: Sequence[ColumnDecision], policy: Policy, purpose: str) -> list[str]:
    """Deny reasons `purpose_requirements` gives this read at plan time (empty: no objection)."""
    req = policy.requirement(purpose)
    if req is None:
        return []
    problems = []
    quasi = set(policy.quasi_identifiers)
    if req.no_sensitive_clear:
        for c in columns:
            clear = sorted(set(c.labels) - quasi) if c.mask is None else []
            if clear:
                problems.append(f"purpose {purpose!r} requires no sensitive column clear (purpose_requirements in "
                                f"{policy.source}), but output column {c.name!r} ({', '.join(clear)}) would be "
                                "returned clear; mask it in a rule for this purpose or leave it out of the query")
    if req.subject is not None and not _carrying(columns, {req.subject}):
        problems.append(f"purpose {purpose!r} counts k-anonymity in people, identified by the {req.subject!r} "
                        f"column (purpose_requirements.{purpose}.subject in {policy.source}), but this read does "
                        f"not return one (tokenized is enough); add it to the query")
    return problems


class FloorCheck:
    """Collect the floor's columns of every masked batch of one read; `measure()` at the end."""

    def __init__(self, requirement: PurposeRequirement, purpose: str, *, quasi: Columns,
                 sensitive: Columns = (), subject: tuple[int, str] | None = None) -> None:
        self.requirement = requirement
        self.purpose = purpose
        self.quasi = list(quasi)
        self.sensitive = list(sensitive)
        self.subject = subject
        self._wanted = [i for i, _ in (*self.quasi, *self.sensitive, *([subject] if subject else []))]
        self._parts: list[pa.RecordBatch] = []
        self.rows = 0

    @classmethod
    def for_read(cls, decision: Decision, policy: Policy, purpose: str) -> FloorCheck | None:
        """The check a read for `purpose` must pass, or None when its purpose sets no floor."""
        req = policy.requirement(purpose)
        if req is None or not req.has_floor:
            return None
        subject = None
        if req.subject is not None:
            found = _carrying(decision.columns, {req.subject})
            subject = found[0] if found else None  # the plan refused a read without one
        sensitive = _carrying(decision.columns, {req.l_diversity.attribute}) if req.l_diversity else []
        return cls(req, purpose, quasi=_carrying(decision.columns, set(policy.quasi_identifiers)),
                   sensitive=sensitive, subject=subject)

    def observe(self, batch: pa.RecordBatch) -> None:
        """Keep the floor's columns of one masked batch (only those: the rest is not held in memory)."""
        self.rows += batch.num_rows
        if self.quasi and batch.num_rows:
            # Positional names: output names can repeat, and a value-free error names the real ones.
            self._parts.append(pa.record_batch([batch.column(i) for i in self._wanted],
                                               names=[f"c{n}" for n in range(len(self._wanted))]))

    def measure(self) -> tuple[dict, ReidentificationRisk | None]:
        """(a value-free summary for the ledger, the error to fail the read with or None)."""
        import polars as pl

        from .risk import measure

        req = self.requirement
        summary: dict = {"purpose": self.purpose, "rows": self.rows,
                         "quasi_identifiers": [name for _, name in self.quasi],
                         "counted": "people" if self.subject else "rows",
                         "required_k": req.k_anonymity,
                         "required_l": req.l_diversity.l if req.l_diversity else None,
                         "k": None, "l": None, "classes": 0, "smallest_classes": []}
        if not self.quasi or not self.rows:
            return summary, None   # nothing to link on, or nothing released
        frame = pl.from_arrow(pa.Table.from_batches(self._parts))
        self._parts = []
        nq = len(self.quasi)
        q_names = [f"c{n}" for n in range(nq)]
        s_names = [f"c{nq + n}" for n in range(len(self.sensitive))]
        subject = f"c{nq + len(self.sensitive)}" if self.subject else None
        # Every size under K is listed (at most K-1 of them), so the error can count all too-rare classes.
        show = max(3, (req.k_anonymity or 0) - 1)
        risks = [measure(frame, q_names, sensitive=s, subject=subject, show=show) for s in s_names] or \
                [measure(frame, q_names, subject=subject, show=show)]
        risk = risks[0]
        l_values = [r.l for r in risks if r.l is not None]
        below = [(s, n) for s, n in risk.smallest if req.k_anonymity is not None and s < req.k_anonymity]
        summary.update(k=risk.k, classes=risk.classes,
                       classes_below_k=sum(n for _, n in below), rows_below_k=sum(s * n for s, n in below),
                       smallest_classes=[{"size": s, "classes": n} for s, n in risk.smallest[:3]],
                       l=min(l_values) if l_values else None,
                       sensitive=[name for _, name in self.sensitive])
        return summary, self._error(summary)

    def _error(self, summary: dict) -> ReidentificationRisk | None:
        req, unit = self.requirement, "row(s)" if not self.subject else "person(s)"
        columns = ", ".join(summary["quasi_identifiers"])
        reasons = []
        if req.k_anonymity is not None and summary["k"] < req.k_anonymity:
            rare = [c for c in summary["smallest_classes"] if c["size"] < req.k_anonymity]
            sizes = ", ".join(f"{c['classes']} of {c['size']} {unit}" for c in rare)
            more = "" if sum(c["classes"] for c in rare) == summary["classes_below_k"] else ", ..."
            reasons.append(
                f"purpose {self.purpose!r} requires k-anonymity >= {req.k_anonymity} over ({columns}), counted in "
                f"{'people' if self.subject else 'rows'}; the masked output has k = {summary['k']}: "
                f"{summary['classes_below_k']} of its {summary['classes']} combinations of these columns are too "
                f"rare ({sizes}{more}; {summary['rows_below_k']} of {summary['rows']} rows). Nothing was written: "
                "generalize these columns further (a coarser `generalize`), leave one out of the query, or read "
                "more rows")
        if req.l_diversity is not None and summary["l"] is not None and summary["l"] < req.l_diversity.l:
            reasons.append(
                f"purpose {self.purpose!r} requires l-diversity >= {req.l_diversity.l} of "
                f"{', '.join(summary['sensitive'])} ({req.l_diversity.attribute}) within every class of ({columns}); "
                f"the masked output has l = {summary['l']}: some class holds fewer distinct values. Nothing was "
                "written: generalize the quasi-identifiers further so classes mix more values")
        return ReidentificationRisk(reasons) if reasons else None
