"""A governed write records its intent (`open`) in the ledger before it touches the database.

The attack: make the ledger store refuse appends (a real SQLite trigger on the ledger's own file,
as a full disk or a read-only volume would refuse them; no mock anywhere), then run a governed
write on the real PostgreSQL. Before this change the write committed and only then failed to be
recorded: a row in the database with no ledger entry. Now nothing is written and the caller is
told why. When only the final entry fails (after the commit), the `open` entry stays, `lineage-guard
audit verify` / `audit log` (the real CLI) show it as a write that may have committed, and the
caller's error says the write committed.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest

from lineage_guard.audit import Ledger, effective, open_runs
from lineage_guard.errors import LineageGuardError
from lineage_guard.identity import Identity
from lineage_guard.policy import parse_policy
from lineage_guard.session import GovernedSession

POLICY_TEXT = """
version: 1
identities:
  etl-bot: {kind: service, groups: [etl]}
groups: [etl]
purposes: [maintenance]
detection: {enabled: false}
"""
POLICY = parse_policy(POLICY_TEXT + "writes: {allowed_groups: [etl]}\n")
# DDL goes through the same write path; ALTER is refused unless the policy relaxes it.
DDL_POLICY = parse_policy(POLICY_TEXT + "writes: {allowed_groups: [etl], relax: [{allow: [alter], environments: [default]}]}\n")
CLI = [sys.executable, "-m", "lineage_guard.cli", "audit"]


def break_store(path: Path, *, only_final: bool = False) -> None:
    """Make the ledger file refuse appends (every one, or every one but an `open` intent), from outside
    the process that records: SQLite itself aborts the INSERT, as a full disk would."""
    when = """WHEN instr(CAST(NEW.entry AS TEXT), '"outcome":"open"') = 0""" if only_final else ""
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TRIGGER IF EXISTS lg_test_store_refuses")
        conn.execute(f"CREATE TRIGGER lg_test_store_refuses BEFORE INSERT ON ledger_entries {when} "
                     "BEGIN SELECT RAISE(ABORT, 'the ledger volume is full'); END")


def mend_store(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TRIGGER IF EXISTS lg_test_store_refuses")


@pytest.fixture
def table(pg_url):
    name = f"wi_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {name} (id int primary key, note text)")
    yield name
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {name}")


def rows_in(pg_url: str, table: str) -> list[tuple]:
    with psycopg.connect(pg_url) as conn:
        return conn.execute(f"SELECT id, note FROM {table} ORDER BY id").fetchall()


def has_column(pg_url: str, table: str, column: str) -> bool:
    with psycopg.connect(pg_url) as conn:
        return conn.execute("SELECT 1 FROM information_schema.columns WHERE table_name = %s AND column_name = %s",
                            (table, column)).fetchone() is not None


def session(pg_url: str, ledger: Ledger, policy=POLICY) -> GovernedSession:
    return GovernedSession(pg_url, policy, Identity("etl-bot", "service", frozenset({"etl"})), "maintenance",
                           ledger=ledger)


def write(kind: str, s: GovernedSession, table: str):
    if kind == "execute":
        return s.execute(f"INSERT INTO {table} VALUES ($1, $2)", [1, "one"])
    if kind == "execute_many":
        return s.execute_many(f"INSERT INTO {table} VALUES ($1, $2)", [[1, "one"], [2, "two"]])
    return s.execute(f"ALTER TABLE {table} ADD COLUMN added text")   # DDL: the same path


WRITES = ["execute", "execute_many", "ddl"]


def ledger_at(tmp_path: Path) -> tuple[Ledger, Path]:
    path = tmp_path / "ledger.sqlite"
    return Ledger.open(str(path)), path


def _session_for(kind: str, pg_url: str, ledger: Ledger) -> GovernedSession:
    return session(pg_url, ledger, DDL_POLICY if kind == "ddl" else POLICY)


@pytest.mark.parametrize("kind", WRITES)
def test_a_write_whose_intent_cannot_be_recorded_never_reaches_the_database(kind, pg_url, table, tmp_path):
    ledger, path = ledger_at(tmp_path)
    break_store(path)
    with _session_for(kind, pg_url, ledger) as s, pytest.raises(LineageGuardError) as refused:
        write(kind, s, table)
    # Checked first: before this change the write was in the database here, with no ledger entry.
    assert rows_in(pg_url, table) == [] and not has_column(pg_url, table, "added")
    assert list(ledger.entries()) == []
    message = str(refused.value)
    assert "nothing was written" in message and "could not be recorded" in message, message
    assert "SQLite" in message   # the store's failure is named (class and code, no value)


@pytest.mark.parametrize("kind", WRITES)
def test_a_write_records_its_intent_then_its_outcome(kind, pg_url, table, tmp_path):
    ledger, _ = ledger_at(tmp_path)
    with _session_for(kind, pg_url, ledger) as s:
        result = write(kind, s, table)
    entries = list(ledger.entries())
    assert [e["body"]["outcome"] for e in entries] == ["open", "success"]
    intent, final = entries
    assert intent["body"]["write"] is True and final["body"]["write"] is True
    assert final["body"]["supersedes"] == intent["id"] and final["id"] == result.receipt_id
    assert intent["body"]["rows"] == 0 and final["body"]["rows"] == result.rows_affected
    assert effective(entries) == [final] and open_runs(entries) == []
    assert ledger.verify().ok


def test_a_failed_write_supersedes_its_intent_with_the_failure(pg_url, table, tmp_path):
    ledger, _ = ledger_at(tmp_path)
    with session(pg_url, ledger) as s:
        s.execute(f"INSERT INTO {table} VALUES (1, 'one')")
        with pytest.raises(LineageGuardError):
            s.execute_many(f"INSERT INTO {table} VALUES ($1, $2)", [[2, "two"], [1, "again"]])  # duplicate key
    outcomes = [e["body"]["outcome"] for e in ledger.entries()]
    assert outcomes == ["open", "success", "open", "failed"]
    assert [e["body"]["outcome"] for e in effective(ledger.entries())] == ["success", "failed"]
    assert rows_in(pg_url, table) == [(1, "one")]


def test_a_write_whose_final_entry_fails_says_it_committed_and_audit_shows_it_open(pg_url, table, tmp_path):
    ledger, path = ledger_at(tmp_path)
    with session(pg_url, ledger) as s:
        s.execute(f"INSERT INTO {table} VALUES (1, 'one')")   # pins the signing key, as a real ledger would have
        break_store(path, only_final=True)
        with pytest.raises(LineageGuardError) as unrecorded:
            s.execute(f"UPDATE {table} SET note = $1 WHERE id = $2", ["changed", 1])
    message = str(unrecorded.value)
    assert "committed" in message and "final ledger entry could not be recorded" in message, message
    (still_open,) = open_runs(ledger.entries())
    assert still_open["id"] in message   # the caller can find the open entry by its receipt
    assert rows_in(pg_url, table) == [(1, "changed")]   # the write did happen: the ledger says it may have
    mend_store(path)

    verify = subprocess.run([*CLI, "verify", "--ledger", str(path)], capture_output=True, text=True, timeout=120,
                            check=False)
    assert verify.returncode == 0, verify.stderr   # the chain is intact; the open write is listed
    assert still_open["id"][:8] in verify.stderr and "write" in verify.stderr and "may have committed" in verify.stderr
    as_json = subprocess.run([*CLI, "verify", "--ledger", str(path), "--json"], capture_output=True, text=True,
                             timeout=120, check=False)
    (listed,) = json.loads(as_json.stdout)["open"]
    assert listed["receipt"] == still_open["id"] and listed["write"] is True
    log = subprocess.run([*CLI, "log", "--ledger", str(path)], capture_output=True, text=True, timeout=120,
                         check=False, env={**os.environ, "COLUMNS": "200"})
    assert log.returncode == 0, log.stderr
    assert "open" in log.stdout and "may have committed" in log.stderr


def test_a_failed_write_whose_failure_cannot_be_recorded_keeps_its_intent_and_says_so(pg_url, table, tmp_path):
    ledger, path = ledger_at(tmp_path)
    with session(pg_url, ledger) as s:
        s.execute(f"INSERT INTO {table} VALUES (1, 'one')")
        break_store(path, only_final=True)
        with pytest.raises(LineageGuardError) as failed:
            s.execute(f"INSERT INTO {table} VALUES (1, 'duplicate')")
    message = str(failed.value)
    assert "failed" in message and "could not be recorded" in message and "open" in message, message
    assert rows_in(pg_url, table) == [(1, "one")]
    assert len(open_runs(ledger.entries())) == 1


# -- the service: DoPut runs the same session core (a real server subprocess over TLS) -----------------


@pytest.fixture(scope="module")
def write_service(new_database, tmp_path_factory):
    from conftest import require

    require("jwt", "service")
    from service_helpers import people_service

    with people_service(new_database(), tmp_path_factory.mktemp("write-intent-service"),
                        principals=("writer",)) as svc:
        yield {"url": svc.url, "tls": svc.tls, "home": svc.home, "db": svc.db, "token": svc.token}


def test_the_service_refuses_a_write_it_cannot_record_and_reports_one_it_committed_unrecorded(write_service):
    from service_helpers import server_key

    from lineage_guard.client import ServiceError, connect

    svc = write_service
    path = svc["home"] / "ledger.sqlite"

    def notes() -> list[tuple]:
        return rows_in(svc["db"], "audit_notes")

    with connect(svc["url"], purpose="maintenance", token=svc["token"], tls_root_certs=svc["tls"].pem) as s:
        assert s.execute("INSERT INTO audit_notes VALUES (1, 'first')").rows_affected == 1   # the ledger works
        break_store(path)
        with pytest.raises(ServiceError) as refused:
            s.execute("INSERT INTO audit_notes VALUES (2, 'second')")
        assert notes() == [(1, "first")]   # before this change: (2, 'second') committed with no entry
        assert "nothing was written" in str(refused.value), refused.value
        break_store(path, only_final=True)
        with pytest.raises(ServiceError) as unrecorded:
            s.execute("INSERT INTO audit_notes VALUES (3, 'third')")
        assert "committed" in str(unrecorded.value) and "final ledger entry could not be recorded" in str(
            unrecorded.value), unrecorded.value
    mend_store(path)
    assert notes() == [(1, "first"), (3, "third")]
    ledger = Ledger.open(f"sqlite:///{path}", create=False)
    (still_open,) = open_runs(ledger.entries())
    assert still_open["body"]["write"] is True and still_open["id"] in str(unrecorded.value)
    assert [e["body"]["outcome"] for e in effective(ledger.entries())] == ["success", "open"]
    verify = subprocess.run([*CLI, "verify", "--ledger", str(path), "--public-key", server_key(ledger)[0]],
                            capture_output=True, text=True, timeout=120, check=False)
    assert verify.returncode == 0, verify.stderr
    assert still_open["id"][:8] in verify.stderr and "may have committed" in verify.stderr
