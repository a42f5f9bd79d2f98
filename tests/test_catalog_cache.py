"""The live catalog and detected labels are cached per schema version, and a DDL change is seen by the next plan."""

from __future__ import annotations

import os

import psycopg
import pytest

from lineage_guard.identity import Identity
from lineage_guard.policy import parse_policy
from lineage_guard.session import GovernedSession
from lineage_guard.sql.catalog_cache import CACHE, schema_version

POLICY = """
version: 1
identities: {svc-training: {kind: service, groups: [training-jobs]}}
groups: [training-jobs]
purposes: [ai_training]
classifications: {public.accounts.ssn: national_id}
rules:
  - {classifications: [national_id], action: mask, mask: {method: partial, params: {keep_last: 4}}}
  - {classifications: [email], action: mask, mask: {method: tokenize}}
"""
EMAILS = [f"person{i}.name@example.org" for i in range(40)]


@pytest.fixture
def accounts_url(new_database):
    url = new_database()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE accounts (id int primary key, plan text)")
        conn.execute("INSERT INTO accounts SELECT g, 'free' FROM generate_series(1, 40) g")
    return url


def _session(url):
    return GovernedSession(url, parse_policy(POLICY), Identity("svc-training"), "ai_training")


def _ddl(url, *statements):
    with psycopg.connect(url, autocommit=True) as conn:
        for sql in statements:
            conn.execute(sql)


def test_a_column_added_by_alter_table_is_masked_by_the_next_read_in_the_same_session(accounts_url):
    with _session(accounts_url) as s:
        first = s.read_arrow("SELECT * FROM accounts ORDER BY id")
        assert first.column_names == ["id", "plan"]
        _ddl(accounts_url, "ALTER TABLE accounts ADD COLUMN ssn text",
             "UPDATE accounts SET ssn = '900-12-' || lpad(id::text, 4, '0')")
        second = s.read_arrow("SELECT * FROM accounts ORDER BY id")
        assert second.column_names == ["id", "plan", "ssn"]
        assert [v[-4:] for v in second.column("ssn").to_pylist()] == [f"{i:04d}" for i in range(1, 41)]
        assert not any(v.startswith("900-12") for v in second.column("ssn").to_pylist())
        # Detection sees a new undeclared column too: its sampled values are emails, the rule tokenizes them.
        _ddl(accounts_url, "ALTER TABLE accounts ADD COLUMN contact text",
             *[f"UPDATE accounts SET contact = '{e}' WHERE id = {i + 1}" for i, e in enumerate(EMAILS)])
        decision = s.plan("SELECT id, contact FROM accounts")
        assert "contact" in {c.name for c in decision.masked_columns}
        third = s.read_arrow("SELECT id, contact FROM accounts ORDER BY id")
        assert not set(third.column("contact").to_pylist()) & set(EMAILS)


def test_sessions_share_the_catalog_until_the_schema_version_moves(accounts_url):
    CACHE.clear()
    before = CACHE.loads
    for _ in range(3):  # fresh sessions, as the service makes per request
        with _session(accounts_url) as s:
            s.plan("SELECT id, plan FROM accounts")
    assert CACHE.loads - before == 1
    version = schema_version(accounts_url)
    assert version == schema_version(accounts_url)
    _ddl(accounts_url, "CREATE OR REPLACE VIEW plans AS SELECT plan FROM accounts")
    assert schema_version(accounts_url) != version
    _ddl(accounts_url, "CREATE OR REPLACE VIEW plans AS SELECT plan, id FROM accounts")
    moved = schema_version(accounts_url)
    _ddl(accounts_url, "ALTER TABLE accounts ADD COLUMN note text")
    assert schema_version(accounts_url) != moved
    moved = schema_version(accounts_url)
    _ddl(accounts_url, "ALTER TABLE accounts ALTER COLUMN note TYPE varchar(20)")
    assert schema_version(accounts_url) != moved
    with _session(accounts_url) as s:
        assert s.catalog.relation("plans") is not None
        assert s.plan("SELECT id, plan FROM plans").action
    assert CACHE.loads - before == 2


def test_the_service_warms_the_catalog_its_first_call_reads(accounts_url, tmp_path):
    """`serve` warms the cache before listening: the first call's plan must not load the catalog again."""
    from lineage_guard.audit import Ledger
    from lineage_guard.mask import Keyring
    from lineage_guard.service.server import GovernedFlightServer

    policy = parse_policy(POLICY)
    server = GovernedFlightServer("grpc://127.0.0.1:0", policy, accounts_url, keyring=Keyring(os.urandom(32)),
                                  ledger=Ledger.open(f"sqlite:///{tmp_path}/ledger.sqlite"))
    try:
        before = CACHE.loads
        server.warm()
        assert CACHE.loads - before == 1
        GovernedSession(accounts_url, policy, Identity("svc-training"), "ai_training").plan("SELECT * FROM accounts")
        assert CACHE.loads - before == 1
    finally:
        server.shutdown()
