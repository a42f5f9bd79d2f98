"""The approvals store on real SQLite and the real PostgreSQL: lifecycle, isolation, expiry, concurrency."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
import uuid
from datetime import timedelta

import pytest

import lineage_guard.approvals.store as store_mod
from lineage_guard.approvals import (
    ApprovalError,
    ApprovalRequest,
    ApprovalsConfig,
    ApprovalStore,
    fingerprint,
)
from lineage_guard.errors import AccessDenied, ConfigError
from lineage_guard.identity import Identity
from lineage_guard.run import SourceInfo
from lineage_guard.sources.pg_url import with_params

PROD = SourceInfo("postgres", "db.internal", 5432, "shop", "production")
SQL = "DELETE FROM public.orders WHERE customer_email = 'alice@example.com'"
ME = Identity("svc-etl", "service")


@pytest.fixture(params=["sqlite", "postgres"])
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/approvals.sqlite"
    pg_url = request.getfixturevalue("pg_url")
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:10]}"  # one schema per test: tests never see each other's requests
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    return with_params(pg_url, options=f"-csearch_path={schema}")


@pytest.fixture
def store(url):
    return ApprovalStore.open(url)


def ask(store, sql=SQL, purpose="backfill", identity=ME, source=PROD, **kw):
    return store.request(identity=identity, statement=sql, purpose=purpose, source=source,
                         reasons=["writes touching public.orders in environment 'production' need an approval"], **kw)


def test_request_is_stored_pending_and_reused_for_the_same_fingerprint(store):
    first = ask(store, context={"dag_id": "nightly", "run_id": "r1", "task_id": "purge"})
    assert (first.status, first.requester, first.environment, first.single_use) == ("pending", "svc-etl",
                                                                                    "production", True)
    assert first.fingerprint == fingerprint(ME, SQL, "backfill", PROD)
    assert first.context == {"dag_id": "nightly", "run_id": "r1", "task_id": "purge"}
    assert first.expires_at - first.created_at == timedelta(hours=24)
    assert ask(store).id == first.id and len(store.list()) == 1
    assert store.get(first.id) == first
    assert first.approve_command.startswith(f"lineage-guard approvals approve {first.id} --as <approver>")


def test_the_store_keeps_the_statement_shape_never_its_literals(store):
    req = ask(store)
    assert req.statement_shape == "DELETE FROM public.orders WHERE customer_email = %s"
    assert "alice" not in json.dumps(store.get(req.id).to_json())
    assert ask(store, sql="DELETE FROM ((( 'alice@example.com'").statement_shape is None


def test_approve_then_consume_once(store):
    req = ask(store)
    assert store.consume(req.fingerprint) is None  # pending covers nothing
    approved = store.approve(req.id, "dana", note="ticket DATA-12")
    assert (approved.status, approved.approver, approved.note) == ("approved", "dana", "ticket DATA-12")
    used = store.consume(req.fingerprint)
    assert (used.id, used.status, used.uses) == (req.id, "used", 1)
    assert store.consume(req.fingerprint) is None
    assert ask(store).id != req.id  # the next run asks again


def test_multi_use_approval_covers_the_fingerprint_until_expiry(url):
    store = ApprovalStore.open(url, config=ApprovalsConfig(single_use=False))
    req = ask(store)
    store.approve(req.id, "dana")
    assert [store.consume(req.fingerprint).uses for _ in range(3)] == [1, 2, 3]
    assert store.get(req.id).status == "approved"


def test_requester_cannot_decide_their_own_request(store):
    req = ask(store)
    for name in ("svc-etl", " SVC-ETL "):
        with pytest.raises(ApprovalError, match="asked for request .* cannot decide it; another person"):
            store.approve(req.id, name)
        with pytest.raises(ApprovalError, match="cannot decide"):
            store.deny(req.id, name)
    assert store.get(req.id).status == "pending"


def test_deny_is_final_and_decisions_are_not_repeated(store):
    req = ask(store)
    denied = store.deny(req.id, "dana", note="use staging")
    assert (denied.status, denied.approver) == ("denied", "dana")
    assert store.consume(req.fingerprint) is None
    with pytest.raises(ApprovalError, match="already denied by dana"):
        store.approve(req.id, "erin")
    assert store.list(status="denied") == [store.get(req.id)] and store.list(status="pending") == []


def test_a_denial_stands_until_it_expires(store, monkeypatch):
    store.deny(ask(store, ttl_seconds=60).id, "dana")
    with pytest.raises(AccessDenied, match="denied by dana .* the denial stands until"):
        ask(store)
    assert ask(store, purpose="other").status == "pending"  # another fingerprint is not affected
    real_now = store_mod._now
    monkeypatch.setattr(store_mod, "_now", lambda: real_now() + timedelta(seconds=61))
    assert ask(store).status == "pending"


@pytest.mark.parametrize("change", [
    {"sql": SQL.replace("alice", "bob")},
    {"purpose": "analytics"},
    {"identity": Identity("svc-other", "service")},
    {"source": SourceInfo("postgres", "db.internal", 5432, "shop_copy", "production")},
    {"source": SourceInfo("postgres", "db2.internal", 5432, "shop", "production")},
])
def test_an_approval_covers_only_its_fingerprint(store, change):
    store.approve(ask(store).id, "dana")
    other = ask(store, **change)
    assert other.fingerprint != fingerprint(ME, SQL, "backfill", PROD) and other.status == "pending"
    assert store.consume(other.fingerprint) is None
    assert store.consume(fingerprint(ME, SQL, "backfill", PROD)) is not None


def test_fingerprint_ignores_whitespace_only():
    assert fingerprint(ME, SQL, "p", PROD) == fingerprint("svc-etl", "  " + SQL.replace(" ", "\n  "), "p", PROD)
    assert fingerprint(ME, SQL, "p", PROD) != fingerprint(ME, SQL.upper(), "p", PROD)


def test_expiry_on_read(store, monkeypatch):
    pending, approved = ask(store, ttl_seconds=60), ask(store, purpose="other", ttl_seconds=60)
    store.approve(approved.id, "dana")
    real_now = store_mod._now
    monkeypatch.setattr(store_mod, "_now", lambda: real_now() + timedelta(seconds=61))
    assert store.get(pending.id).status == store.get(approved.id).status == "expired"
    assert store.consume(approved.fingerprint) is None
    with pytest.raises(ApprovalError, match="already expired; the requester must ask again"):
        store.approve(pending.id, "dana")
    fresh = ask(store)
    assert fresh.id != pending.id and fresh.status == "pending"


def test_wait_returns_the_decision_or_the_pending_request_at_timeout(store):
    req = ask(store)
    assert store.wait(req.id, timeout_s=0.05, poll_s=0.01).status == "pending"
    approver = threading.Timer(0.2, store.approve, args=(req.id, "dana"))
    approver.start()
    try:
        decided = store.wait(req.id, timeout_s=60, poll_s=0.05)
    finally:
        approver.join()
    assert decided.status == "approved"


def _race(n, work, hold=None):
    """Run `work(i)` in n threads at once. `hold` (a context manager) is held while they start, so all of
    them are inside their transaction, queued on the same row, before any proceeds."""
    results, started = [], threading.Barrier(n + 1)

    def run(i):
        started.wait()
        try:
            results.append(work(i))
        except ApprovalError as exc:
            results.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    with hold or contextlib.nullcontext():
        for t in threads:
            t.start()
        started.wait()
    for t in threads:
        t.join()
    return results


@contextlib.contextmanager
def row_locked(url, request_id, waiters):
    """Lock the request's row until `waiters` other sessions are blocked on it (Postgres), or hold SQLite's
    write lock while the threads queue on it."""
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url[len("sqlite:///"):], isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        yield
        time.sleep(0.3)  # let the threads reach the lock; correctness does not depend on it
        conn.execute("ROLLBACK")
        conn.close()
        return
    import psycopg

    with psycopg.connect(url) as conn:
        conn.execute("SELECT id FROM lineage_guard_approvals WHERE id = %s FOR UPDATE", (request_id,))
        yield
        with psycopg.connect(url, autocommit=True) as watcher:
            for _ in range(600):  # until every contender reads the row and waits on our lock (bounded)
                blocked = watcher.execute(
                    "SELECT count(DISTINCT l.pid) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                    "WHERE NOT l.granted AND a.datname = current_database()").fetchone()[0]
                if blocked >= waiters:
                    break
                time.sleep(0.05)
            else:
                pytest.fail(f"only {blocked} of {waiters} sessions reached the row lock")
        conn.rollback()


def test_concurrent_consumers_exactly_one_wins_a_single_use_approval(url):
    req = ask(ApprovalStore.open(url))
    ApprovalStore.open(url).approve(req.id, "dana")
    stores = [ApprovalStore.open(url) for _ in range(4)]
    results = _race(4, lambda i: stores[i].consume(req.fingerprint), row_locked(url, req.id, 4))
    assert [isinstance(r, ApprovalRequest) for r in results].count(True) == 1
    assert results.count(None) == 3
    assert ApprovalStore.open(url).get(req.id).uses == 1


def test_concurrent_approvers_exactly_one_decides(url):
    req = ask(ApprovalStore.open(url))
    stores = [ApprovalStore.open(url) for _ in range(4)]
    results = _race(4, lambda i: (stores[i].approve if i % 2 else stores[i].deny)(req.id, f"approver{i}"),
                    row_locked(url, req.id, 4))
    decided = [r for r in results if isinstance(r, ApprovalRequest)]
    refused = [r for r in results if isinstance(r, ApprovalError)]
    assert len(decided) == 1 and len(refused) == 3 and all("already" in str(r) for r in refused)
    assert ApprovalStore.open(url).get(req.id).approver == decided[0].approver


def test_concurrent_requests_for_one_fingerprint_make_one_request(url):
    results = _race(6, lambda i: ask(ApprovalStore.open(url)))
    assert len({r.id for r in results}) == 1


def test_store_location(monkeypatch, tmp_path, lg_home):
    ask(ApprovalStore.open())
    assert (lg_home / "approvals.sqlite").exists()
    monkeypatch.setenv("LINEAGE_GUARD_APPROVALS_URL", str(tmp_path / "from_env.sqlite"))
    ask(ApprovalStore.open(config=ApprovalsConfig(store=str(tmp_path / "from_policy.sqlite"))))
    assert (tmp_path / "from_env.sqlite").exists() and not (tmp_path / "from_policy.sqlite").exists()


@pytest.mark.parametrize("url, message", [
    ("mysql://x/y", "scheme 'mysql' is not supported"),
    ("sqlite://", "use sqlite:///relative.sqlite"),
])
def test_bad_store_urls(url, message):
    with pytest.raises(ConfigError, match=message):
        ApprovalStore.open(url)


def test_postgres_errors_never_show_the_password():
    with pytest.raises(ApprovalError) as err:
        ApprovalStore.open("postgresql://lg:s3cret-pw@127.0.0.1:1/nodb")
    assert "s3cret-pw" not in str(err.value) and "lg:***@127.0.0.1:1" in str(err.value)


def test_bad_input_is_refused_clearly(store):
    with pytest.raises(ApprovalError, match="no approval request 'nope'"):
        store.get("nope")
    with pytest.raises(ConfigError, match="unknown status 'done'"):
        store.list(status="done")
    with pytest.raises(ConfigError, match="strings to strings"):
        ask(store, context={"try_number": 1})
    with pytest.raises(ConfigError, match="does not match"):
        ask(store, fingerprint="0" * 64)
    with pytest.raises(ConfigError, match="approver name is required"):
        store.approve(ask(store).id, " ")
