"""Verify a sequence of stored entries as one chain and name the first bad entry.

Each stored row is checked on its own (`entry.check_entry`), then against its
position (its `seq` must be the position, so a deleted, inserted or swapped
entry shows up where it happened) and against the previous entry's hash. The
head (count and hash of the last entry, kept apart from the entries) catches a
truncated tail.

Example:
    >>> verify_chain([], trusted={}).ok
    True
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .entry import GENESIS, inspect_entry


@dataclass(frozen=True)
class StoredRow:
    """A row as a backend stores it: the indexed columns plus the entry's canonical bytes."""

    seq: int
    id: str
    run_id: str
    hash: str
    entry: bytes


@dataclass(frozen=True)
class Problem:
    """The first bad entry: its position in the chain (1-based), its id when readable, and why."""

    position: int
    entry_id: str | None
    reason: str

    def __str__(self) -> str:
        named = f" (id {self.entry_id})" if self.entry_id else ""
        return f"entry #{self.position}{named}: {self.reason}"


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of a chain verification."""

    entries: int
    head_hash: str | None
    problem: Problem | None = None
    key_ids: frozenset[str] = field(default_factory=frozenset)

    @property
    def ok(self) -> bool:
        return self.problem is None


def _row_problem(
    row: StoredRow, position: int, prev: str, trusted: Mapping[str, str]
) -> tuple[str | None, str | None, dict]:
    """(reason, entry id, entry) for the row at `position`; reason None when the row is good."""
    doc, reason = inspect_entry(row.entry, trusted)
    if reason is not None or doc is None:
        return reason, row.id or None, {}
    entry_id = doc["id"] if isinstance(doc["id"], str) else None
    if doc["seq"] != position:
        return (
            f"sequence number {doc['seq']!r} at position {position} (entries were deleted, inserted or reordered)",
            entry_id,
            doc,
        )
    if row.seq != position or row.id != doc["id"] or row.hash != doc["hash"]:
        return "the row's indexed columns (seq, id, hash) disagree with the signed entry", entry_id, doc
    body = doc["body"]
    if not isinstance(body, dict) or row.run_id != body.get("run_id"):
        return "the row's run id disagrees with the signed entry", entry_id, doc
    if doc["prev"] != prev:
        return (
            "does not link to the previous entry's hash (an entry before it was changed, removed or added)",
            entry_id,
            doc,
        )
    return None, entry_id, doc


def verify_chain(
    rows: Iterable[StoredRow], trusted: Mapping[str, str], head: tuple[int, str] | None = None,
    *, missing_head: str | None = None,
) -> VerifyReport:
    """Check `rows` (in stored order) form one authentic chain; `head` is the stored (count, last hash).

    With `missing_head` (the reason to report), a chain whose `head` is None fails even when
    every row checks out: without the head a truncated chain would look whole.
    """
    report = _verify_rows(rows, trusted, head)
    if head is None and missing_head is not None and report.ok:
        return VerifyReport(report.entries, report.head_hash, Problem(report.entries, None, missing_head),
                            report.key_ids)
    return report


def _verify_rows(
    rows: Iterable[StoredRow], trusted: Mapping[str, str], head: tuple[int, str] | None
) -> VerifyReport:
    prev = GENESIS
    position = 0
    key_ids: set[str] = set()
    for position, row in enumerate(rows, start=1):
        reason, entry_id, doc = _row_problem(row, position, prev, trusted)
        if reason is not None:
            return VerifyReport(
                position - 1,
                prev if position > 1 else None,
                Problem(position, entry_id, reason),
                frozenset(key_ids),
            )
        key_ids.add(doc["key_id"])
        prev = doc["hash"]
    count = position
    last = prev if count else None
    if head is not None and (head[0], head[1]) != (count, last if count else GENESIS):
        if head[0] > count:
            problem = Problem(
                count + 1,
                None,
                f"missing: the chain ends at entry #{count} but its head records {head[0]} entries",
            )
        else:
            problem = Problem(
                count,
                None,
                "the chain's head does not match its last entry (the head or the tail was changed)",
            )
        return VerifyReport(count, last, problem, frozenset(key_ids))
    return VerifyReport(count, last, None, frozenset(key_ids))
