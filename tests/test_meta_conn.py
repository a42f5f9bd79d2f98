"""A session plans on one connection, and a long-lived connection never serves stale statistics.

Since the detection verdicts are keyed by the table's data (file node, size, pg_stat counters), every plan
opened a connection for the schema version and one for detection. They now share the session's
`MetaConnection`. A long-lived connection has one trap: PostgreSQL caches `pg_stat_*` values for the rest
of a transaction, so a connection left inside one would keep reporting the counters of its first read, and
an UPDATE in place (same size, same file node) would leave the cached "clean" verdict standing. The
attacks here inject exactly that state and check the emails still come back masked.
"""

from __future__ import annotations

import pytest
from conftest import CORPUS, require

from lineage_guard import GovernedSession, Identity
from lineage_guard.classify.sampling import DATA_VERSION_SQL

POLICY = CORPUS / "policy.yaml"
SETUP = (
    "CREATE TABLE crm_import (id int PRIMARY KEY, handle text)",
    "INSERT INTO crm_import SELECT id, 'user-' || id FROM customers",  # clean rows at first
)


def _execute(url: str, *sql: str) -> None:
    psycopg = require("psycopg", "postgres")
    with psycopg.connect(url, autocommit=True) as conn:  # closed: its statistics are flushed on exit
        for statement in sql:
            conn.execute(statement)


@pytest.fixture
def url(new_database):
    url = new_database()
    _execute(url, (CORPUS / "schema.sql").read_text(), *SETUP)
    return url


def _session(url: str) -> GovernedSession:
    return GovernedSession(url, POLICY, Identity("svc-training", "service"), "ai_training")


def _emails(url: str) -> set[str]:
    psycopg = require("psycopg", "postgres")
    with psycopg.connect(url) as conn:
        return {e for (e,) in conn.execute("SELECT email FROM customers").fetchall()}


def test_a_warm_session_plans_without_opening_a_connection(url, monkeypatch):
    psycopg = require("psycopg", "postgres")
    real, opened = psycopg.connect, []
    monkeypatch.setattr(psycopg, "connect", lambda *a, **k: opened.append(1) or real(*a, **k))
    with _session(url) as s:
        s.plan("SELECT c.id, c.email, o.amount FROM customers c JOIN orders o ON o.customer_id = c.id")
        first = len(opened)
        for _ in range(5):
            decision = s.plan("SELECT id, handle FROM crm_import")
        assert decision.action == "allow"
        assert first >= 1 and len(opened) == first, f"{len(opened) - first} connections opened by 5 warm plans"
        assert s._meta.opened == 1


def test_an_update_in_place_is_seen_even_if_the_connection_was_left_in_a_transaction(url):
    with _session(url) as s:
        assert {r["handle"] for r in s.read_arrow("SELECT id, handle FROM crm_import").to_pylist()} == {
            f"user-{k}" for k in range(1, 51)}
        # The trap: a transaction left open on the session's connection, having read the counters once.
        with s._meta.statement() as conn:
            conn.execute("BEGIN READ ONLY")
            conn.execute(DATA_VERSION_SQL, ([conn.execute("SELECT 'crm_import'::regclass::oid").fetchone()[0]],))
        # Same rows, same pages, same file node: only the update counter moves.
        _execute(url, "UPDATE crm_import i SET handle = c.email FROM customers c WHERE c.id = i.id")
        got = {r["handle"] for r in s.read_arrow("SELECT id, handle FROM crm_import").to_pylist()}
    leaked, untokenized = len(got & _emails(url)), sum(not str(h).startswith("tok_") for h in got)
    assert (leaked, untokenized) == (0, 0), f"{leaked} emails read in clear, {untokenized} values not tokens"


def test_a_killed_connection_is_replaced_and_the_verdict_still_follows_the_data(url):
    with _session(url) as s:
        s.plan("SELECT id, handle FROM crm_import")
        with s._meta.statement() as conn:
            pid = conn.info.backend_pid
        _execute(url, f"SELECT pg_terminate_backend({pid})",
                 "UPDATE crm_import i SET handle = c.email FROM customers c WHERE c.id = i.id")
        got = {r["handle"] for r in s.read_arrow("SELECT id, handle FROM crm_import").to_pylist()}
        assert s._meta.opened == 2
    leaked, untokenized = len(got & _emails(url)), sum(not str(h).startswith("tok_") for h in got)
    assert (leaked, untokenized) == (0, 0), f"{leaked} emails read in clear, {untokenized} values not tokens"


def test_closing_the_session_closes_its_connection(url):
    psycopg = require("psycopg", "postgres")
    s = _session(url)
    s.plan("SELECT id, handle FROM crm_import")
    with s._meta.statement() as conn:
        pid = conn.info.backend_pid
    s.close()
    with psycopg.connect(url) as check:
        assert check.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone() == (0,)


def test_a_table_asked_twice_has_its_columns_once(url):
    from lineage_guard.classify.sampling import read_only, table_columns
    from lineage_guard.sql.model import TableRef

    t = TableRef("public", "crm_import")
    with read_only(url) as conn:
        once, twice = table_columns(conn, [t]), table_columns(conn, [t, t, TableRef("public", "absent")])
    assert once == twice and once[t].columns == (("id", "integer"), ("handle", "text"))
