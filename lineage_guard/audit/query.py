"""Read the ledger: filter entries and answer "who saw this column, clear or masked?".

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
    column: str | None = None  # schema.table.column
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
        if self.column and not any(self.column in col["sources"] for col in body["columns"]):
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


@dataclass
class Sighting:
    """One principal's views of a column in one way (clear, or masked by one method)."""

    principal: str
    kind: str
    how: str  # "clear" or the mask description, e.g. "partial(keep_last=4)"
    runs: int = 0
    rows: int = 0
    last: str = ""
    purposes: set[str] = field(default_factory=set)

    def to_json(self) -> dict[str, Any]:
        return {
            "principal": self.principal,
            "kind": self.kind,
            "how": self.how,
            "runs": self.runs,
            "rows": self.rows,
            "last": self.last,
            "purposes": sorted(self.purposes),
        }


def who_saw(entries: Iterable[dict[str, Any]], column: str) -> dict[str, list[Sighting]]:
    """Who received `schema.table.column` (or a value derived from it) in a successful run.

    Returns {"clear": [...], "masked": [...]}, each sorted by principal.
    """
    found: dict[tuple[str, str, str], Sighting] = {}
    for entry in effective(entries):
        body = entry["body"]
        if body["outcome"] != "success":
            continue
        hows = {
            col["method"] if col["masked"] else "clear" for col in body["columns"] if column in col["sources"]
        }
        for how in hows:
            who = body["who"]
            seen = found.setdefault(
                (who["principal"], who["kind"], how), Sighting(who["principal"], who["kind"], how)
            )
            seen.runs += 1
            seen.rows += body["rows"]
            seen.last = max(seen.last, body["ended_at"] or entry["recorded_at"])
            seen.purposes.add(body["purpose"])
    ordered = sorted(found.values(), key=lambda s: (s.principal, s.how))
    return {
        "clear": [s for s in ordered if s.how == "clear"],
        "masked": [s for s in ordered if s.how != "clear"],
    }
