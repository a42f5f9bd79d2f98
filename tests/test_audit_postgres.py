"""The ledger on the real PostgreSQL: one chain under concurrent writers, tamper detection, no secrets."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import require
from test_audit import make_run

from lineage_guard.audit import Ledger, LedgerError, Signer

psycopg = require("psycopg", "postgres")  # fails under CI=true instead of skipping


@pytest.fixture
def schema() -> str:
    return f"ledger_{uuid.uuid4().hex[:10]}"


def test_sixteen_concurrent_threads_keep_one_chain(pg_url, schema):
    barrier = threading.Barrier(16)

    def task(i: int):
        ledger = Ledger.open(pg_url, schema=schema)  # each task opens its own, as separate extractions do
        barrier.wait()
        return ledger.record(make_run(principal=f"task-{i}"))

    with ThreadPoolExecutor(16) as pool:
        receipts = list(pool.map(task, range(16)))  # re-raises a task's exception here
    ledger = Ledger.open(pg_url, schema=schema)
    report = ledger.verify()
    assert (report.ok, report.entries, len({r.id for r in receipts})) == (True, 16, 16)
    entries = list(ledger.entries())
    assert [e["seq"] for e in entries] == list(range(1, 17))
    assert sorted(e["body"]["who"]["principal"] for e in entries) == sorted(f"task-{i}" for i in range(16))
    assert all(ledger.verify_receipt(r).ok for r in receipts)


def test_concurrent_records_of_one_run_each_supersede_the_one_before(pg_url, schema):
    run = make_run()
    barrier = threading.Barrier(8)

    def task(_: int):
        ledger = Ledger.open(pg_url, schema=schema)
        barrier.wait()
        return ledger.record(run)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(task, range(8)))
    entries = list(Ledger.open(pg_url, schema=schema).entries())
    assert [e["body"]["supersedes"] for e in entries] == [None] + [e["id"] for e in entries[:-1]]


CHILD = """
import sys
sys.path.insert(0, sys.argv[3])
from lineage_guard.audit import Ledger
from test_audit import make_run
ledger = Ledger.open(sys.argv[1], schema=sys.argv[2])
for i in range(4):
    print(ledger.record(make_run(principal="proc")).id)
"""


def test_concurrent_processes_keep_one_chain(pg_url, schema, tmp_path):
    tests_dir = os.path.dirname(__file__)
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, pg_url, schema, tests_dir], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [err[-500:] for _, err in outputs]
    ids = [line for out, _ in outputs for line in out.split()]
    ledger = Ledger.open(pg_url, schema=schema)
    report = ledger.verify()
    assert (report.ok, report.entries, len(set(ids))) == (True, 16, 16)


def _connect(pg_url):
    return psycopg.connect(pg_url, autocommit=True)


def test_postgres_tampering_is_named_and_entries_are_append_only(pg_url, schema):
    ledger = Ledger.open(pg_url, schema=schema)
    receipts = [ledger.record(make_run(outcome=o)) for o in ("success", "denied", "failed", "success")]
    assert ledger.verify().ok
    with _connect(pg_url) as conn:
        with pytest.raises(psycopg.errors.RaiseException):
            conn.execute(f"UPDATE {schema}.ledger_entries SET run_id = 'x'")
        with pytest.raises(psycopg.errors.RaiseException):
            conn.execute(f"DELETE FROM {schema}.ledger_entries WHERE seq = 2")
        conn.execute(f"ALTER TABLE {schema}.ledger_entries DISABLE TRIGGER ledger_entries_append_only")
        # An edit of one byte of entry 3: its outcome "failed" becomes "fai1ed".
        edit = "convert_to(replace(convert_from(entry, 'UTF8'), '\"failed\"', '\"fai1ed\"'), 'UTF8')"
        conn.execute(f"UPDATE {schema}.ledger_entries SET entry = {edit} WHERE seq = 3")
    report = ledger.verify()
    assert (report.ok, report.problem.position, report.problem.entry_id) == (False, 3, receipts[2].id)
    assert not ledger.verify_receipt(receipts[2]).ok and ledger.verify_receipt(receipts[1]).ok
    with _connect(pg_url) as conn:
        conn.execute(f"DELETE FROM {schema}.ledger_entries WHERE seq = 3")
        conn.execute(f"DELETE FROM {schema}.ledger_entries WHERE seq = 2")
    report = ledger.verify()
    assert (report.problem.position, "sequence number 4" in report.problem.reason) == (2, True)


def test_postgres_ledger_holds_no_key_or_literal_value(pg_url, schema, master_key):
    values = ["078-05-1120", "jane.roe@example.org", "4111111111111111"]
    ledger = Ledger.open(pg_url, schema=schema)
    for value in values:
        ledger.record(make_run(sql=f"SELECT name, ssn, dob FROM public.patients WHERE ssn = '{value}' OR card = {value[:4]}9"))
    with _connect(pg_url) as conn, conn.cursor() as cur:
        with cur.copy(f"COPY (SELECT * FROM {schema}.ledger_entries, {schema}.ledger_head) TO STDOUT") as copy:
            dump = b"".join(bytes(chunk) for chunk in copy).lower()
        dump += b"".join(bytes(r[0]) for r in conn.execute(f"SELECT entry FROM {schema}.ledger_entries"))
    assert b"public.patients.ssn" in dump and master_key.encode() not in dump
    for value in values:
        assert value.encode() not in dump, value


def test_connection_errors_are_sanitized(pg_url):
    from lineage_guard.sources.pg_url import compose_url, url_parts

    parts = url_parts(pg_url)
    bad = compose_url(host=parts["host"], port=parts["port"], user="postgres", password="s3cr3t-pw",
                      database=f"lg_no_such_db_{uuid.uuid4().hex[:6]}")
    with pytest.raises(LedgerError) as caught:
        Ledger.open(bad)
    message = str(caught.value)
    assert "s3cr3t-pw" not in message and "does not exist" not in message and "OperationalError" in message


def test_reader_refuses_a_missing_postgres_ledger(pg_url, schema):
    with pytest.raises(LedgerError, match="no ledger in schema"):
        Ledger.open(pg_url, schema=schema, create=False)
    Ledger.open(pg_url, schema=schema)
    assert Ledger.open(pg_url, schema=schema, create=False).verify([Signer.generate().public_key]).entries == 0
