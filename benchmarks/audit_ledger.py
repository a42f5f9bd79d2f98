"""Ledger benchmark: what one receipt costs, and how fast a chain verifies.

For each backend it times `Ledger.record()` (canonical JSON, sha256, Ed25519 sign,
a serialized append made durable) against a baseline measured in the same run: a
bare durable INSERT of the same bytes with the same settings (SQLite WAL +
synchronous=FULL; PostgreSQL autocommit, synchronous_commit on), no hashing, no
signing, no locking. Then it times `verify()` over the whole chain. Run:

    .venv/bin/python benchmarks/audit_ledger.py                       # SQLite only
    .venv/bin/python benchmarks/audit_ledger.py --postgres postgresql://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import os
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
os.environ.setdefault("LINEAGE_GUARD_MASTER_KEY", secrets.token_hex(32))

from test_audit import make_run

from lineage_guard.audit import Ledger
from lineage_guard.audit.canonical import canonical


def _timed_ms(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


def bench(name: str, ledger: Ledger, baseline, n: int) -> None:
    run = make_run()
    # Interleaved, so both see the same disk and CPU contention (the machine is shared).
    pairs = [(_timed_ms(lambda: ledger.record(run)), _timed_ms(baseline)) for _ in range(n)]
    record = statistics.median(p[0] for p in pairs)
    base = statistics.median(p[1] for p in pairs)
    t0 = time.perf_counter()
    report = ledger.verify()
    verify_s = time.perf_counter() - t0
    assert report.ok
    print(
        f"| {name} | {record:.2f} | {base:.2f} | {record / base:.2f}x | {report.entries} | "
        f"{report.entries / verify_s:,.0f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200, help="appends timed per backend")
    parser.add_argument(
        "--postgres", help="a PostgreSQL server URL (a scratch schema is created and dropped)"
    )
    args = parser.parse_args()
    payload = canonical({"x": "y" * 1500})  # about the size of an entry
    print(
        "| backend | record() median ms | bare durable insert ms | ratio | entries verified | verify entries/s |"
    )
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        ledger = Ledger.open(str(Path(tmp) / "ledger.sqlite"))
        conn = sqlite3.connect(Path(tmp) / "base.sqlite", isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("CREATE TABLE t (id TEXT PRIMARY KEY, entry BLOB)")
        bench(
            "sqlite",
            ledger,
            lambda: conn.execute("INSERT INTO t VALUES (?, ?)", (str(uuid.uuid4()), payload)),
            args.n,
        )
        conn.close()
    if args.postgres:
        import psycopg

        schema = f"bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(args.postgres, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
            conn.execute(f"CREATE TABLE {schema}.t (id text PRIMARY KEY, entry bytea)")
            try:
                ledger = Ledger.open(args.postgres, schema=schema + "_ledger")

                def base() -> None:  # one open connection, as the ledger keeps per thread
                    conn.execute(f"INSERT INTO {schema}.t VALUES (%s, %s)", (str(uuid.uuid4()), payload))

                bench("postgresql", ledger, base, args.n)
            finally:
                conn.execute(f"DROP SCHEMA {schema} CASCADE")
                conn.execute(f"DROP SCHEMA IF EXISTS {schema}_ledger CASCADE")


if __name__ == "__main__":
    main()
