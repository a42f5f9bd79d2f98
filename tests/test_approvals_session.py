"""Guarded writes through the one path on the real PostgreSQL: approval required, approved by someone else
(through the real CLI), run once, asked again; denials stand; a waiting session picks up an approval."""

from __future__ import annotations

import threading

import psycopg
import pytest
from typer.testing import CliRunner

from lineage_guard.approvals import ApprovalStore
from lineage_guard.cli.approvals import app
from lineage_guard.errors import AccessDenied, ApprovalRequired
from lineage_guard.identity import Identity
from lineage_guard.policy import parse_policy
from lineage_guard.session import GovernedSession

POLICY = parse_policy("""
purposes: [fulfilment]
groups: [data-eng]
identities:
  svc-etl: {kind: service, groups: [data-eng]}
writes:
  allowed_groups: [data-eng]
  approvals:
    - {environments: [production], tables: [public.shipments]}
approvals:
  ttl_seconds: 3600
""")


@pytest.fixture(scope="module")
def shop_url(pg_url):
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS shipments")
        conn.execute("CREATE TABLE shipments (id int primary key, status text)")
        conn.execute("INSERT INTO shipments SELECT g, 'new' FROM generate_series(1, 5) g")
    return pg_url


@pytest.fixture
def store_url(tmp_path):
    return f"sqlite:///{tmp_path}/approvals.sqlite"


def session(url, store_url, environment="production", **kw) -> GovernedSession:
    return GovernedSession(url, POLICY, Identity("svc-etl"), "fulfilment", environment=environment,
                           approvals=ApprovalStore.open(store_url, config=POLICY.approvals), **kw)


def status_of(url, row_id) -> str:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT status FROM shipments WHERE id = %s", (row_id,)).fetchone()[0]


def cli(*args, code=0) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result.output


def test_a_write_waits_for_someone_else_and_runs_once(shop_url, store_url):
    sql = "UPDATE shipments SET status = 'shipped' WHERE id = 1"
    with session(shop_url, store_url) as s:
        with pytest.raises(ApprovalRequired) as asked:
            s.execute(sql)
        req_id = asked.value.request_id
        assert asked.value.approve_command.startswith(f"lineage-guard approvals approve {req_id} --as <approver>")
        assert status_of(shop_url, 1) == "new"

        assert "cannot decide it" in cli("approve", req_id, "--as", "svc-etl", "--store", store_url, code=1)
        cli("approve", req_id, "--as", "dana", "--store", store_url)
        with pytest.raises(ApprovalRequired):  # the approval covers that statement only
            s.execute("UPDATE shipments SET status = 'shipped' WHERE id = 2")
        assert s.execute(sql).rows_affected == 1
        assert status_of(shop_url, 1) == "shipped"
        with pytest.raises(ApprovalRequired) as again:  # single use: the next run asks again
            s.execute(sql)
        assert again.value.request_id != req_id


def test_no_approval_needed_outside_production(shop_url, store_url):
    with session(shop_url, store_url, environment="staging") as s:
        assert s.execute("UPDATE shipments SET status = 'held' WHERE id = 3").rows_affected == 1
    assert ApprovalStore.open(store_url).list() == []


def test_a_denial_stands(shop_url, store_url):
    sql = "UPDATE shipments SET status = 'lost' WHERE id = 4"
    with session(shop_url, store_url) as s:
        with pytest.raises(ApprovalRequired) as asked:
            s.execute(sql)
        cli("deny", asked.value.request_id, "--as", "dana", "--note", "not today", "--store", store_url)
        with pytest.raises(AccessDenied, match="denied by dana"):
            s.execute(sql)
    assert status_of(shop_url, 4) == "new"


def test_a_waiting_session_proceeds_once_approved(shop_url, store_url):
    sql = "UPDATE shipments SET status = 'shipped' WHERE id = 5"
    store = ApprovalStore.open(store_url)

    def approve_when_asked():
        for _ in range(600):  # bounded: the request appears as soon as the session asks
            pending = store.list(status="pending")
            if pending:
                store.approve(pending[0].id, "dana")
                return
            threading.Event().wait(0.05)

    approver = threading.Thread(target=approve_when_asked)
    approver.start()
    try:
        with session(shop_url, store_url, approval_wait=60) as s:
            assert s.execute(sql).rows_affected == 1
    finally:
        approver.join()
    assert status_of(shop_url, 5) == "shipped"
    assert [r.status for r in store.list()] == ["used"]
