"""The write-path attacker the red-team tests share: governed reads and writes as svc-training/ai_training.

A refusal by the governed path becomes `Refused`; a statement the path allowed but the database rejected is
`fails()` (an error channel's bit). `statements` counts what the attack sent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lineage_guard.errors import AccessDenied, ApprovalRequired, SourceError
from lineage_guard.identity import Identity
from lineage_guard.session import GovernedSession


class Refused(Exception):
    """The governed path refused the attack's statement."""


class Writer:
    """The attacker's governed session; `fresh()` opens another (a new session sees new tables)."""

    def __init__(self, url: str, policy: Path):
        self.url, self.policy = url, policy
        self.session = self.fresh()
        self.statements = 0

    def fresh(self) -> GovernedSession:
        return GovernedSession(self.url, self.policy, Identity("svc-training", "service"), "ai_training")

    def write(self, sql: str) -> int:
        self.statements += 1
        try:
            return self.session.execute(sql).rows_affected
        except (AccessDenied, ApprovalRequired) as err:
            raise Refused(type(err).__name__) from err

    def fails(self, sql: str) -> bool:
        """True when the allowed write failed in the database (an error channel's bit)."""
        try:
            self.write(sql)
        except SourceError:
            return True
        return False

    def rows(self, sql: str, session: GovernedSession | None = None) -> list[dict[str, Any]]:
        self.statements += 1
        try:
            return (session or self.session).read_arrow(sql).to_pylist()
        except (AccessDenied, ApprovalRequired) as err:
            raise Refused(type(err).__name__) from err
