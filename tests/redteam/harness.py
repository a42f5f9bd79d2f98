"""The red-team harness: a governed session as the corpus's masked identity, ground truth read beside it.

An attack is a function `attack(rt: RedTeam) -> Recovery`. It talks to the database only through
`rt.read(...)` / `rt.probe_error(...)` (the real `GovernedSession`, as `svc-training` for
`ai_training`), and returns the values it believes it recovered, keyed by row id. The test compares
them with the ground truth, which the harness reads directly with psycopg and never shows: reports
carry counts only ("recovered k of n").
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from lineage_guard import GovernedSession, Identity
from lineage_guard.errors import AccessDenied, ApprovalRequired, ConfigError, SourceError

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
CORPUS_POLICY = REPO / "tests" / "corpus" / "policy.yaml"
POLICIES = HERE / "policies"


def demo_policy_on_corpus() -> Path:
    """The demo policy, moved from its own schema (lineage_guard_demo) onto the corpus's public tables.

    Attacked on the corpus, the shipped policy must name the tables the corpus has; else every read
    would fail on a missing schema and the attack would 'recover nothing' for the wrong reason.
    """
    import tempfile

    text = (REPO / "lineage_guard" / "demo" / "policy.yaml").read_text()
    moved = text.replace("lineage_guard_demo.", "public.").replace("search_path: [lineage_guard_demo]",
                                                                 "search_path: [public]")
    assert moved != text and "lineage_guard_demo" not in moved.split("\n# ---")[0].split("classifications:")[1]
    path = Path(tempfile.mkdtemp(prefix="lg-redteam-")) / "demo_policy_on_public.yaml"
    path.write_text(moved)
    return path


DEMO_POLICY_ON_CORPUS = demo_policy_on_corpus()
IDENTITY = "svc-training"
PURPOSE = "ai_training"


class Refused(Exception):
    """The governed path refused the attack's request (plan denied, approval needed, policy refused)."""


@dataclass
class Recovery:
    """What one attack believes it recovered: `values[row id] = recovered value` for `target`.

    `keys` is the set of rows the attack went after (n); `refused` tells why it stopped early.
    `channel_open` is for side channels scored by the plan, not the values (timing).
    """

    target: str
    keys: tuple[int, ...]
    values: dict[int, Any] = field(default_factory=dict)
    refused: str | None = None
    channel_open: bool = False
    queries: int = 0


# Ground truth: (target name) -> SQL returning (row id, true value). Read by the test harness only.
TRUTH_SQL: dict[str, str] = {
    "customers.ssn": "SELECT id, ssn FROM customers",
    "customers.zip": "SELECT id, zip FROM customers",
    "customers.email_length": "SELECT id, length(email) FROM customers",
    "customers.same_zip_as_1": "SELECT id, zip = (SELECT zip FROM customers WHERE id = 1) FROM customers",
    "customers.born_before_1970": "SELECT id, birth_date < date '1970-01-01' FROM customers",
    "orders.card_number": "SELECT id, card_number FROM orders",
    "patients.hiv": "SELECT id, diagnosis LIKE 'B20%' FROM patients",
    "patients.category": "SELECT id, left(diagnosis, 3) FROM patients",
    "patients.birth_date": "SELECT id, birth_date FROM patients",
    "patients.born_before_1980": "SELECT id, birth_date < date '1980-01-01' FROM patients",
}


def ground_truth(url: str) -> dict[str, dict[int, Any]]:
    import psycopg

    with psycopg.connect(url) as conn:
        return {name: dict(conn.execute(sql).fetchall()) for name, sql in TRUTH_SQL.items()}


class SessionPool:
    """One governed session per policy, shared by the attacks of a test module (opening one costs a catalog read)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._open: dict[Path, GovernedSession] = {}

    def get(self, policy: Path) -> GovernedSession:
        if policy not in self._open:
            try:
                self._open[policy] = GovernedSession(self.url, policy, Identity(IDENTITY, "service"), PURPOSE)
            except ConfigError as err:  # a policy the product refuses to load is a refusal, not a leak
                raise Refused(f"policy refused: {type(err).__name__}") from err
        return self._open[policy]

    def close(self) -> None:
        for session in self._open.values():
            session.close()


class RedTeam:
    """One attacker: a governed session as svc-training/ai_training under `policy`."""

    def __init__(self, url: str, policy: str | Path = CORPUS_POLICY, truth: dict[str, dict[int, Any]] | None = None,
                 sessions: SessionPool | None = None):
        self.url = url
        self.policy = Path(policy)
        self._truth = truth or {}
        self._sessions = sessions if sessions is not None else SessionPool(url)
        self.queries = 0
        self.allowed = 0

    @property
    def session(self) -> GovernedSession:
        return self._sessions.get(self.policy)

    def known(self, target: str, key: int) -> Any:
        """Side knowledge an attacker legitimately has about ONE record (e.g. its own)."""
        return self._truth[target][key]

    def read(self, sql: str) -> pa.Table:
        """Run `sql` through the governed path; `Refused` when the plan does not allow it."""
        self.queries += 1
        try:
            table = self.session.read_arrow(sql)
        except (AccessDenied, ApprovalRequired) as err:
            raise Refused(type(err).__name__) from err
        self.allowed += 1
        return table

    def rows(self, sql: str) -> list[dict[str, Any]]:
        return self.read(sql).to_pylist()

    def probe_error(self, sql: str) -> bool:
        """True when the allowed statement failed in the database (an error channel's bit)."""
        try:
            self.read(sql)
        except SourceError:
            self.allowed += 1
            return True
        return False

    def timed(self, sql: str) -> float:
        """Wall time of one governed read: what a timing attacker measures (used, never asserted)."""
        start = time.perf_counter()
        try:
            self.read(sql)
        except SourceError:
            pass
        return time.perf_counter() - start


def run_attack(attack: Callable[[RedTeam], Recovery], rt: RedTeam, keys: Iterable[int], target: str) -> Recovery:
    """Call `attack`; a refusal (or a statement failing in the database) ends it with what it had so far."""
    partial = Recovery(target, tuple(keys))
    try:
        result = attack(rt, partial)
    except Refused as why:
        partial.refused = str(why)
        result = partial
    except SourceError as err:   # an error-channel attack reads errors itself (probe_error); here it is a dead end
        partial.refused = f"failed in the database (SQLSTATE {err.sqlstate})"
        result = partial
    result.queries = rt.queries
    return result


def score(recovery: Recovery, truth: dict[str, dict[int, Any]]) -> int:
    """How many of the attacked rows the attack got exactly right (a constant answer scores nothing)."""
    real = truth[recovery.target]
    guesses = [recovery.values[k] for k in recovery.keys if k in recovery.values]
    if len(recovery.keys) > 1 and len({repr(g) for g in guesses}) <= 1:
        return 0  # the same answer for every row is no information about any of them
    return sum(1 for k in recovery.keys if k in recovery.values and recovery.values[k] == real.get(k))


def record(name: str, cls: str, recovery: Recovery, correct: int) -> None:
    """Append one line to $LG_REDTEAM_RESULTS (JSON lines) for RESULTS.md; counts only, no values."""
    path = os.environ.get("LG_REDTEAM_RESULTS")
    if not path:
        return
    line = {"attack": name, "class": cls, "target": recovery.target, "recovered": correct, "of": len(recovery.keys),
            "refused": recovery.refused, "channel_open": recovery.channel_open, "queries": recovery.queries}
    with open(path, "a") as out:
        out.write(json.dumps(line) + "\n")
