"""Red team: a detection verdict outliving the data it was drawn from.

Columns the policy does not classify are judged by value detection (lineage_guard/classify): a
sample of the table's rows is classified and the verdict cached. It was cached per *schema* version
(in the process, `CatalogCache.labels`, and on disk, `catalog.sqlite` keyed by oid + columns), so a
table read while it was empty, or while it held only clean rows, stayed "nothing sensitive here"
after the application wrote emails into it: the masked identity then read them in clear. The
corpus's fake SSNs (9xx area), phones (555-01xx) and card numbers (failing Luhn) are not recognised
by design; emails are, so the attacks use emails.

The attacker is the corpus's masked identity (svc-training, ai_training), read-only, through the
real GovernedSession; the "application" writes with psycopg, as an application would. The truth
is read with psycopg; only counts are reported. The rule (`classify/sampling.DATA_VERSION_SQL`):
a verdict is keyed by the table's data version too (file node, main-fork size, cumulative
insert/update/delete counters, for a view those of every table under it), and the session keeps no
verdict of its own.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from conftest import CORPUS, require

from lineage_guard import GovernedSession, Identity
from lineage_guard.errors import AccessDenied, ApprovalRequired

POLICY = CORPUS / "policy.yaml"


def _execute(url: str, *sql: str) -> None:
    psycopg = require("psycopg", "postgres")
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in sql:
            conn.execute(statement)


class Refused(Exception):
    pass


class Reader:
    """The attacker. `fresh()` opens a new session (a new task, or the service's next request)."""

    def __init__(self, url: str):
        self.url = url
        self.session = self.fresh()
        self.queries = 0

    def fresh(self) -> GovernedSession:
        self.session = GovernedSession(self.url, POLICY, Identity("svc-training", "service"), "ai_training")
        return self.session

    def rows(self, sql: str) -> list[dict[str, Any]]:
        self.queries += 1
        try:
            return self.session.read_arrow(sql).to_pylist()
        except (AccessDenied, ApprovalRequired) as err:
            raise Refused(type(err).__name__) from err


# The unclassified places an application fills later: a signup queue, a CRM import, a view over one.
TABLES = (
    "DROP TABLE IF EXISTS signup_queue, crm_import CASCADE",
    "CREATE TABLE signup_queue (id int PRIMARY KEY, contact text, created_at timestamptz)",
    "CREATE TABLE crm_import (id int PRIMARY KEY, handle text)",
    "INSERT INTO crm_import SELECT id, 'user-' || id FROM customers",   # clean rows at first
    "CREATE VIEW v_signups AS SELECT id, contact AS who FROM signup_queue",
)


def _by_id(rows: list[dict], column: str) -> dict[int, Any]:
    return {r["id"]: r[column] for r in rows}


def empty_then_filled(r: Reader) -> dict[int, Any]:
    """Read while empty (verdict: clean), the application inserts, the same session reads again."""
    r.rows("SELECT id, contact FROM signup_queue")
    _execute(r.url, "INSERT INTO signup_queue SELECT id, email, created_at FROM customers")
    return _by_id(r.rows("SELECT id, contact FROM signup_queue"), "contact")


def empty_then_filled_next_session(r: Reader) -> dict[int, Any]:
    """The same, read by the next session: the on-disk cache (catalog.sqlite) kept the empty table's verdict."""
    r.rows("SELECT id, contact FROM signup_queue")
    _execute(r.url, "INSERT INTO signup_queue SELECT id, email, created_at FROM customers")
    r.fresh()
    return _by_id(r.rows("SELECT id, contact FROM signup_queue"), "contact")


def clean_then_updated(r: Reader) -> dict[int, Any]:
    """Clean rows when sampled, then updated in place to emails (no row added)."""
    r.rows("SELECT id, handle FROM crm_import")
    _execute(r.url, "UPDATE crm_import i SET handle = c.email FROM customers c WHERE c.id = i.id")
    return _by_id(r.rows("SELECT id, handle FROM crm_import"), "handle")


def view_over_empty_table(r: Reader) -> dict[int, Any]:
    """A view read while its table was empty: the view's own verdict went stale with the table under it."""
    r.rows("SELECT id, who FROM v_signups")
    _execute(r.url, "INSERT INTO signup_queue SELECT id, email, created_at FROM customers")
    return _by_id(r.rows("SELECT id, who FROM v_signups"), "who")


def truncated_and_refilled(r: Reader) -> dict[int, Any]:
    """Clean rows sampled, TRUNCATE, the same number of rows back with emails."""
    r.rows("SELECT id, handle FROM crm_import")
    _execute(r.url, "TRUNCATE crm_import", "INSERT INTO crm_import SELECT id, email FROM customers")
    return _by_id(r.rows("SELECT id, handle FROM crm_import"), "handle")


@dataclass(frozen=True)
class Attack:
    name: str
    run: Callable[[Reader], dict[int, Any]]


ATTACKS = (
    Attack("empty_then_filled", empty_then_filled),
    Attack("empty_then_filled_next_session", empty_then_filled_next_session),
    Attack("clean_then_updated", clean_then_updated),
    Attack("view_over_empty_table", view_over_empty_table),
    Attack("truncated_and_refilled", truncated_and_refilled),
)


def _record(attack: Attack, correct: int, n: int, refused: str | None, queries: int) -> None:
    line = {"attack": attack.name, "class": "detection verdict outlives the data", "target": "customers.email",
            "recovered": correct, "of": n, "refused": refused, "queries": queries}
    path = os.environ.get("LG_REDTEAM_RESULTS")
    if path:
        with open(path, "a") as out:
            out.write(json.dumps(line) + "\n")


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: a.name)
def test_a_verdict_does_not_outlive_the_data(attack: Attack, new_database):
    url = new_database()
    _execute(url, (CORPUS / "schema.sql").read_text(), *TABLES)
    psycopg = require("psycopg", "postgres")
    with psycopg.connect(url) as conn:
        truth = dict(conn.execute("SELECT id, email FROM customers").fetchall())
    reader = Reader(url)
    refused = None
    try:
        got = attack.run(reader)
    except Refused as why:
        got, refused = {}, str(why)
    correct = sum(1 for k, v in got.items() if truth.get(k) == v)
    _record(attack, correct, len(truth), refused, reader.queries)
    assert correct == 0, f"{attack.name} read {correct} of {len(truth)} emails in clear in {reader.queries} queries"
    assert refused is None, f"{attack.name}: a plain read of the table was refused ({refused})"


def test_detection_still_finds_emails_and_keeps_clean_tables_clear(new_database):
    """The control: the rule costs no utility. A table holding emails is masked from the first read; a clean
    table's columns stay clear (and stay clear on a second read, from the cache, while nothing changes)."""
    url = new_database()
    _execute(url, (CORPUS / "schema.sql").read_text(), *TABLES,
             "INSERT INTO signup_queue SELECT id, email, created_at FROM customers")
    reader = Reader(url)
    emails = reader.rows("SELECT id, contact FROM signup_queue")
    assert len(emails) == 50 and all(str(r["contact"]).startswith("tok_") for r in emails)
    for _ in range(2):
        handles = reader.rows("SELECT id, handle FROM crm_import")
        assert {r["handle"] for r in handles} == {f"user-{k}" for k in range(1, 51)}
