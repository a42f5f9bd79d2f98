"""Verify a sequence of stored entries as one chain and name the first bad entry.

Each stored row is checked on its own (bytes, hash, its signature), then against its
position (its `seq` must be the position, so a deleted, inserted or swapped entry shows
up where it happened), against the previous entry's hash, and against the chain's
signing key at that point: every entry is signed by the key of the entry before it,
unless that entry is a key rotation (signed by the old key, endorsed by the new one,
see `rotation.py`). The chain is authentic when one of its keys is a key the verifier
pinned. The head (count and hash of the last entry, kept apart from the entries) catches
a truncated tail; an anchor (a head hash published earlier) catches a tail truncated
together with its head.

Example:
    >>> verify_chain([], trusted={}).ok
    True
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from .entry import GENESIS, inspect_entry, parse_entry
from .rotation import rotation_problem


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
class KeySpan:
    """One signing key of the chain and the first entry it signed (a rotation hands over to the next)."""

    key_id: str
    public_key: str
    since: int


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of a chain verification."""

    entries: int
    head_hash: str | None
    problem: Problem | None = None
    keys: tuple[KeySpan, ...] = ()          # the chain's signing keys in order; the last one signs now
    trusted_by: str | None = None           # the pinned key id that anchors the chain's authenticity

    @property
    def ok(self) -> bool:
        return self.problem is None

    @property
    def key_ids(self) -> frozenset[str]:
        return frozenset(k.key_id for k in self.keys)

    @property
    def current_key(self) -> KeySpan | None:
        return self.keys[-1] if self.keys else None


def _vouched(rows: list[StoredRow], trusted: Mapping[str, str]) -> set[str]:
    """Key ids that are trusted, or linked by a rotation entry to a vouched key (the old key signs the
    handover, the new one endorses it): what an entry may be signed by. Only for naming the first
    bad entry; the rotations themselves are checked in sequence."""
    handovers: list[tuple[str, str]] = []
    for row in rows:
        if b'"rotation":' not in row.entry:  # cheap: most entries are no rotation, and parsing is not
            continue
        try:
            doc = parse_entry(row.entry)
        except ValueError:
            continue
        rotation = doc["body"].get("rotation") if isinstance(doc["body"], dict) else None
        if isinstance(rotation, dict):
            handovers.append((doc["key_id"], str(rotation.get("new_key_id"))))
    vouched = set(trusted)
    while True:
        more = {old for old, new in handovers if new in vouched} | {new for old, new in handovers if old in vouched}
        more -= vouched
        if not more:
            return vouched
        vouched |= more


def _row_problem(row: StoredRow, position: int, prev: str, key: KeySpan | None) -> tuple[str | None, str | None, dict]:
    """(reason, entry id, entry) for the row at `position`; reason None when the row is good."""
    doc, reason = inspect_entry(row.entry)
    if reason is not None or doc is None:
        return reason, row.id or None, {}
    entry_id = doc["id"] if isinstance(doc["id"], str) else None
    if doc["seq"] != position:
        return ((f"sequence number {doc['seq']!r} at position {position} (entries were deleted, inserted or "
                "reordered)"), entry_id, doc)
    if row.seq != position or row.id != doc["id"] or row.hash != doc["hash"]:
        return "the row's indexed columns (seq, id, hash) disagree with the signed entry", entry_id, doc
    body = doc["body"]
    if not isinstance(body, dict) or row.run_id != body.get("run_id"):
        return "the row's run id disagrees with the signed entry", entry_id, doc
    if doc["prev"] != prev:
        return ("does not link to the previous entry's hash (an entry before it was changed, removed or added)",
                entry_id, doc)
    if key is not None and (doc["key_id"], doc["public_key"]) != (key.key_id, key.public_key):
        return ((f"signed by key {doc['key_id']}, but the chain's key here is {key.key_id} (since entry "
                f"#{key.since}) and no rotation entry hands over to it (re-signed or forged)"), entry_id, doc)
    return None, entry_id, doc


def verify_chain(
    rows: Iterable[StoredRow], trusted: Mapping[str, str], head: tuple[int, str] | None = None,
    *, missing_head: str | None = None, anchors: Sequence[str] = (),
) -> VerifyReport:
    """Check `rows` (in stored order) form one authentic chain; `head` is the stored (count, last hash).

    `trusted` maps key id -> hex public key, pinned by the verifier. With `missing_head` (the
    reason to report), a chain whose `head` is None fails even when every row checks out:
    without the head a truncated chain would look whole. Every hash in `anchors` (heads
    published earlier) must be the hash of an entry of the chain.
    """
    report = _verify_rows(rows, trusted, head, {a.strip().lower() for a in anchors})
    if head is None and missing_head is not None and report.ok:
        return _failed(report, Problem(report.entries, None, missing_head))
    return report


def _failed(report: VerifyReport, problem: Problem, entries: int | None = None) -> VerifyReport:
    count = report.entries if entries is None else entries
    return VerifyReport(count, report.head_hash if entries is None else None, problem, report.keys)


def _verify_rows(rows: Iterable[StoredRow], trusted: Mapping[str, str], head: tuple[int, str] | None,
                 anchors: set[str]) -> VerifyReport:
    prev = GENESIS
    position = 0
    keys: list[KeySpan] = []
    first_id: str | None = None
    seen: set[str] = set()
    rows = list(rows)
    vouched = _vouched(rows, trusted)
    for position, row in enumerate(rows, start=1):
        reason, entry_id, doc = _row_problem(row, position, prev, keys[-1] if keys else None)
        if reason is None and doc["key_id"] not in vouched:
            reason = _UNTRUSTED.format(doc["key_id"])
        if reason is None:
            reason = rotation_problem(doc)
        if reason is not None:
            return VerifyReport(position - 1, prev if position > 1 else None, Problem(position, entry_id, reason),
                                tuple(keys))
        if not keys:
            keys.append(KeySpan(doc["key_id"], doc["public_key"], position))
            first_id = entry_id
        new_key = _handover(doc)
        if new_key is not None:
            keys.append(KeySpan(new_key[0], new_key[1], position + 1))
        seen.add(doc["hash"])
        prev = doc["hash"]
    count = position
    last = prev if count else None
    report = VerifyReport(count, last, None, tuple(keys))
    if keys:
        pinned = [k.key_id for k in keys if trusted.get(k.key_id) == k.public_key]
        if not pinned:
            return _failed(report, Problem(1, first_id, _UNTRUSTED.format(", ".join(k.key_id for k in keys))),
                           entries=0)
        report = VerifyReport(count, last, None, tuple(keys), pinned[-1])
    if head is not None and (head[0], head[1]) != (count, last if count else GENESIS):
        if head[0] > count:
            problem = Problem(count + 1, None,
                              f"missing: the chain ends at entry #{count} but its head records {head[0]} entries")
        else:
            problem = Problem(count, None,
                              "the chain's head does not match its last entry (the head or the tail was changed)")
        return _failed(report, problem)
    for anchor in sorted(anchors - seen):
        return _failed(report, Problem(count + 1, None, f"the published head {anchor} is not in the chain: "
                                       "entries were removed after it was published (truncated) or the chain "
                                       "was rewritten"))
    return report


_UNTRUSTED = ("signed by key {}, which is not a trusted key (pin the ledger's public key with --public-key or "
              "LINEAGE_GUARD_LEDGER_PUBLIC_KEY; a forged or re-signed chain is signed by a key of its own)")


def _handover(doc: dict) -> tuple[str, str] | None:
    rotation = doc["body"].get("rotation") if isinstance(doc.get("body"), dict) else None
    return None if rotation is None else (rotation["new_key_id"], rotation["new_public_key"])
