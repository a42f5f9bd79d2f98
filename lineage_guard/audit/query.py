"""Read the ledger: filter entries and answer "who saw this column, clear or masked, or used it to filter?".

Example:
    >>> f = Filters(purpose="ai_training")
    >>> f.matches({"body": {"purpose": "ai_training", "who": {"principal": "a", "groups": []},
    ...            "source": {"tables": []}, "columns": []}, "recorded_at": "2026-01-01T00:00:00+00:00"})
    True
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..errors import ConfigError


def parse_time(text: str) -> datetime:
    """An ISO date or datetime (naive means UTC), for --since/--until."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(
            f"time {text!r} is not ISO 8601; use e.g. 2026-03-01 or 2026-03-01T12:00:00+00:00"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _when(entry: dict[str, Any]) -> datetime:
    return parse_time(entry["recorded_at"])


@dataclass(frozen=True)
class Filters:
    """Entry filters; None means any. `identity` matches the principal or one of its groups."""

    identity: str | None = None
    table: str | None = None  # schema.table
    column: str | None = None  # schema.table.column, returned or used (filter, join, ...)
    purpose: str | None = None
    outcome: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def matches(self, entry: dict[str, Any]) -> bool:
        body = entry["body"]
        who = body["who"]
        if self.identity and self.identity != who["principal"] and self.identity not in who.get("groups", ()):
            return False
        if self.table and self.table not in body["source"]["tables"]:
            return False
        if self.column and not (
            any(self.column in col["sources"] for col in body["columns"])
            or any(use["column"] == self.column for use in body.get("used", ()))
        ):
            return False
        if self.purpose and self.purpose != body["purpose"]:
            return False
        if self.outcome and self.outcome != body.get("outcome"):
            return False
        if self.since and _when(entry) < self.since:
            return False
        return not (self.until and _when(entry) > self.until)


def effective(entries: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The latest entry per run id, in chain order: a later record of a run supersedes the earlier."""
    latest: dict[str, dict[str, Any]] = {}
    for entry in entries:
        latest.pop(entry["body"]["run_id"], None)
        latest[entry["body"]["run_id"]] = entry
    return list(latest.values())


def open_runs(entries: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Runs whose intent was recorded and that never completed: streams (the process died mid-stream,
    or is still streaming) that may have delivered data the ledger has no final count for, and
    writes (`body.write`) whose outcome was never recorded: they may have committed."""
    return [e for e in effective(entries) if e["body"].get("outcome") == "open"]


def returned_data(body: dict[str, Any]) -> bool:
    """Did the run hand data to its caller? A success did; an open stream may have; a failed
    run did if it had delivered rows before it failed (a stream, or a sink that was committed)."""
    outcome = body.get("outcome")
    return outcome in ("success", "open") or (outcome == "failed" and body.get("delivered_rows", 0) > 0)


def auth_method(body: dict[str, Any]) -> str:
    """How the identity of the entry was established (entries before this field: asserted)."""
    return str((body["who"].get("auth") or {}).get("method", "asserted"))


@dataclass
class Sighting:
    """One principal's views of a column in one way (clear, or masked by one method)."""

    principal: str
    kind: str
    how: str  # "clear", the mask description (e.g. "partial(keep_last=4)"), or "used to filter (where)"
    runs: int = 0
    rows: int = 0
    last: str = ""
    purposes: set[str] = field(default_factory=set)
    auth: set[str] = field(default_factory=set)     # how the identity was established: asserted, jwt, ...
    incomplete: int = 0  # runs among `runs` that failed after returning data, or never completed (open)

    def to_json(self) -> dict[str, Any]:
        return {
            "principal": self.principal,
            "kind": self.kind,
            "how": self.how,
            "runs": self.runs,
            "rows": self.rows,
            "last": self.last,
            "purposes": sorted(self.purposes),
            "auth": sorted(self.auth),
            "incomplete": self.incomplete,
        }


def who_saw(entries: Iterable[dict[str, Any]], column: str) -> dict[str, list[Sighting]]:
    """Who received `schema.table.column` (or a value derived from it), and who used it only to
    choose rows (a filter, a join, a grouping: it leaks by inference), in runs that returned data:
    successes, streams left open, failures after data had left.

    Returns {"clear": [...], "masked": [...], "filtered": [...]}, each sorted by principal; `rows`
    counts rows delivered (an open stream's are unknown: 0).
    """
    found: dict[tuple[str, str, str], Sighting] = {}
    # A split read's endpoint fetched again (a retry) is the same rows: counted once, at its largest.
    partition_rows: dict[tuple, int] = {}
    for entry in effective(entries):
        body = entry["body"]
        split = body.get("split") or {}
        if not returned_data(body) or split.get("role") == "summary":   # a summary hands over no rows
            continue
        hows = {
            col["method"] if col["masked"] else "clear" for col in body["columns"] if column in col["sources"]
        }
        if not hows:
            clauses = sorted({use["clause"] for use in body.get("used", ()) if use["column"] == column})
            if clauses:
                hows = {f"used to filter ({', '.join(clauses)})"}
        for how in hows:
            who = body["who"]
            seen = found.setdefault(
                (who["principal"], who["kind"], how), Sighting(who["principal"], who["kind"], how)
            )
            rows = body.get("delivered_rows", body["rows"])
            if split.get("role") == "endpoint":
                part = (who["principal"], who["kind"], how, split.get("summary_receipt_id"), split.get("index"))
                before = partition_rows.get(part)
                partition_rows[part] = max(before or 0, rows)
                seen.runs += before is None
                seen.rows += max(0, rows - (before or 0))
            else:
                seen.runs += 1
                seen.rows += rows
            seen.last = max(seen.last, body["ended_at"] or entry["recorded_at"])
            seen.purposes.add(body["purpose"])
            seen.auth.add(auth_method(body))
            seen.incomplete += body["outcome"] != "success"
    ordered = sorted(found.values(), key=lambda s: (s.principal, s.how))
    return {
        "clear": [s for s in ordered if s.how == "clear"],
        "masked": [s for s in ordered if s.how != "clear" and not s.how.startswith("used to filter")],
        "filtered": [s for s in ordered if s.how.startswith("used to filter")],
    }
