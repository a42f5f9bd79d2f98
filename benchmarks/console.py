"""Timeline page latency of the web console at 10k, 100k and 1M ledger entries (median, p95), with filters.

Each size gets a fresh SQLite ledger (or a PostgreSQL schema with --postgres URL) filled in bulk with real
signed, hash-chained entries (`seal` with an Ed25519 key; inserted in batches, not one `record` per entry),
then indexed once (`LedgerIndex.sync`, timed). Each timeline query is then fetched as a signed-in auditor
through the real app (Starlette's TestClient: routing, index queries, entry parsing, template rendering)
`--repeat` times; the first fetch of each is a warm-up and not counted.

    .venv/bin/python benchmarks/console.py                         # 10k, 100k, 1M on SQLite
    .venv/bin/python benchmarks/console.py --sizes 10000,100000 --postgres postgresql://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

PRINCIPALS = [f"svc-job-{i:02d}" for i in range(40)] + [f"analyst-{i:02d}" for i in range(60)]
PURPOSES = ["ai_training", "reporting", "treatment", "billing", "maintenance"]
TABLES = [f"public.t{i:02d}" for i in range(30)]
OUTCOMES = ["success"] * 8 + ["denied", "failed"]


def body(i: int, rng: random.Random) -> dict:
    table = rng.choice(TABLES)
    principal = "rare-auditor" if i % 9973 == 0 else rng.choice(PRINCIPALS)
    outcome = rng.choice(OUTCOMES)
    masked = rng.random() < 0.6
    cols = [{"position": 0, "name": "id", "sources": [f"{table}.id"], "masked": False, "method": None, "scope": None,
             "key_id": None},
            {"position": 1, "name": "email", "sources": [f"{table}.email"], "masked": masked,
             "method": "tokenize" if masked else None, "scope": "purpose:x" if masked else None,
             "key_id": "k1" if masked else None}]
    return {
        "run_id": str(uuid.UUID(int=rng.getrandbits(128))), "job": {"namespace": "bench", "name": f"job_{table[-3:]}"},
        "parent": None, "who": {"principal": principal, "kind": "service", "groups": ["g" + principal[-1]],
                                "auth": {"method": "jwt", "issuer": "https://idp"}},
        "purpose": rng.choice(PURPOSES),
        "statement": {"text": f"SELECT id, email FROM {table} WHERE region = ?", "sha256": "0" * 64},
        "source": {"namespace": "postgres://db:5432", "database": "app", "environment": "production",
                   "tables": [table], "datasets": [f"app.{table}"]},
        "columns": cols, "used": [{"column": f"{table}.region", "clause": "where"}],
        "rows": 10, "delivered_rows": 10 if outcome == "success" else 0, "bytes": 100, "sink": None,
        "decision": {"action": "allow" if outcome != "denied" else "deny", "reasons": []}, "approval_id": None,
        "started_at": None, "ended_at": None, "outcome": outcome, "validation": None, "error": None,
    }


def fill(ledger, n: int, signer, start: datetime) -> float:
    """Append n signed, chained entries in bulk; returns seconds taken."""
    from lineage_guard.audit.canonical import canonical
    from lineage_guard.audit.entry import GENESIS, seal
    from lineage_guard.audit.postgres_store import PostgresStore

    rng = random.Random(n)
    pg = isinstance(ledger.store, PostgresStore)
    prefix = f'"{ledger.store.schema}".' if pg else ""
    mark = "%s" if pg else "?"
    insert = f"INSERT INTO {prefix}ledger_entries (seq, id, run_id, hash, entry) VALUES ({', '.join([mark] * 5)})"
    t0 = time.perf_counter()
    prev, batch = GENESIS, []
    step = timedelta(days=120) / n  # entries spread over four months
    with ledger.store.connection() as conn:
        for seq in range(1, n + 1):
            doc = seal(body(seq, rng), seq=seq, prev=prev, entry_id=str(uuid.UUID(int=rng.getrandbits(128))),
                       recorded_at=(start + step * seq).isoformat(), signer=signer)
            prev = doc["hash"]
            batch.append((seq, doc["id"], doc["body"]["run_id"], doc["hash"], canonical(doc, check=False)))  # seal checked it
            if len(batch) == 20_000 or seq == n:
                if pg:
                    with conn.transaction(), conn.cursor() as cur:
                        cur.executemany(insert, batch)
                else:
                    conn.execute("BEGIN")
                    conn.executemany(insert, batch)
                    conn.execute("COMMIT")
                batch = []
        conn.execute(f"UPDATE {prefix}ledger_head SET seq = {mark}, hash = {mark} WHERE one = 1", (n, prev))
        conn.execute(f"INSERT INTO {prefix}ledger_keys (epoch, key_id, public_key, since_seq) VALUES "
                     f"(1, {mark}, {mark}, 1)", (signer.key_id, signer.public_key))
    return time.perf_counter() - t0


def queries(n: int, start: datetime) -> dict[str, str]:
    mid = (start + timedelta(days=60)).date().isoformat()
    end = (start + timedelta(days=67)).date().isoformat()
    day = (start + timedelta(days=90)).date().isoformat()
    day_end = (start + timedelta(days=91)).date().isoformat()
    return {
        "newest page, no filter": "",
        "identity": "identity=svc-job-07",
        "identity (rare: 1 in 9973)": "identity=rare-auditor",
        "table": "table=public.t03",
        "column (any treatment)": "column=public.t05.email",
        "purpose": "purpose=reporting",
        "decision": "outcome=denied",
        "time range (1 day)": f"since={day}&until={day_end}",
        "table + decision": "table=public.t03&outcome=denied",
        "column masked + purpose": "column=public.t05.email&treatment=masked&purpose=reporting",
        "column used to filter": "column=public.t11.region&treatment=used",
        "purpose + 1-week range": f"purpose=billing&since={mid}&until={end}",
        "free text word": "q=job_t07",
        "free text, two words": "q=job_t07 region",
        f"deep page (before seq {n // 2})": f"before={n // 2}",
        "deep page, oldest (before seq 60)": "before=60",
        f"identity, deep page (before {n // 10})": f"identity=svc-job-07&before={n // 10}",
        "table + decision, deep page": f"table=public.t03&outcome=denied&before={n // 10}",
    }


def explain(ledger, qs: str) -> list[str]:
    """The database's plan for the statements the index runs for one query string (to show index use)."""
    from urllib.parse import parse_qsl

    from lineage_guard.audit.index import LedgerIndex, TimelineQuery
    from lineage_guard.audit.query import parse_time

    p = dict(parse_qsl(qs))
    q = TimelineQuery(identity=p.get("identity"), table=p.get("table"), column=p.get("column"),
                      treatment=p.get("treatment"), purpose=p.get("purpose"), outcome=p.get("outcome"),
                      text=p.get("q"), since=parse_time(p["since"]) if p.get("since") else None,
                      until=parse_time(p["until"]) if p.get("until") else None,
                      before=int(p["before"]) if p.get("before") else None)
    index = LedgerIndex(ledger)
    statements: list[tuple[str, tuple]] = []
    real_all = index._all

    def spy(sql: str, params: tuple = ()) -> list[tuple]:
        statements.append((sql, params))
        return real_all(sql, params)

    index._all = spy  # type: ignore[method-assign]
    index.page(q)
    index._all = real_all  # type: ignore[method-assign]
    out = []
    for sql, params in statements:
        if "ledger_term_counts" in sql:
            continue  # a primary-key lookup of one term's count
        prefix = "EXPLAIN " if index.pg else "EXPLAIN QUERY PLAN "
        rows = real_all(prefix + sql, params)
        plan = [str(r[0]) for r in rows] if index.pg else [str(r[-1]) for r in rows]
        out.append(" | ".join(plan))
    return out


def measure(client, path: str, repeat: int) -> tuple[float, float, int]:
    client.get(path)  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        got = client.get(path)
        times.append((time.perf_counter() - t0) * 1000)
        assert got.status_code == 200, (path, got.status_code)
    rows = got.text.count("<tr data-seq=")
    times.sort()
    return statistics.median(times), times[max(0, int(len(times) * 0.95) - 1)], rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--postgres", help="a PostgreSQL server URL: each size gets its own schema there")
    ap.add_argument("--work", help="keep the SQLite ledgers (and their key) in this folder and reuse them on the "
                                   "next run (a 1M-entry ledger takes minutes to build)")
    ap.add_argument("--verify", action="store_true", help="verify each ledger's whole chain (timed) before measuring")
    ap.add_argument("--explain", action="store_true", help="print the database's plan for each query's statements")
    args = ap.parse_args()

    os.environ.setdefault("LINEAGE_GUARD_HOME", tempfile.mkdtemp(prefix="lg_bench_console_"))
    from console_helpers import console_policy, load, sign_in_directly
    from starlette.testclient import TestClient

    from lineage_guard.approvals import ApprovalStore
    from lineage_guard.audit import Ledger, Signer
    from lineage_guard.audit.index import LedgerIndex
    from lineage_guard.console.app import COOKIE, build_app

    policy = load(console_policy("http://127.0.0.1:9/unused"))
    from lineage_guard.audit.signing import write_key_file

    start = datetime(2026, 1, 1, tzinfo=UTC)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="lg_bench_console_"))
    work.mkdir(parents=True, exist_ok=True)
    key = work / "bench-signing.key"
    signer = Signer.from_file(key) if key.exists() else write_key_file(key)
    print(f"backend: {'postgresql' if args.postgres else 'sqlite'}; {args.repeat} fetches per query after a warm-up")
    for n in (int(s) for s in args.sizes.split(",")):
        if args.postgres:
            ledger = Ledger.open(args.postgres, schema=f"lg_bench_console_{n}", signer=signer)
            with ledger.store.connection() as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "lg_bench_console_{n}" CASCADE')
            ledger = Ledger.open(args.postgres, schema=f"lg_bench_console_{n}", signer=signer)
        else:
            ledger = Ledger.open(str(work / f"ledger-{n}.sqlite"), signer=signer)
        reused = not args.postgres and (ledger.store.head() or (0,))[0] == n
        c0 = time.process_time()
        filled = 0.0 if reused else fill(ledger, n, signer, start)
        fill_cpu = time.process_time() - c0
        t0, c0 = time.perf_counter(), time.process_time()
        LedgerIndex(ledger).sync()
        indexed, index_cpu = time.perf_counter() - t0, time.process_time() - c0
        if args.verify:
            t0, c0 = time.perf_counter(), time.process_time()
            report = ledger.verify((signer.public_key,))
            print(f"\n{n:,} entries: chain verify {'ok' if report.ok else 'FAILED'} ({report.entries:,} entries) in "
                  f"{time.perf_counter() - t0:.1f} s wall, {time.process_time() - c0:.1f} s CPU")
        store = ApprovalStore.open(f"sqlite:///{work}/approvals-{n}.sqlite")
        app = build_app(policy, approvals=store, ledger=ledger, secure_cookies=False, session_secret="bench" * 8,
                        public_keys=(signer.public_key,))
        me = sign_in_directly(app, "sam", issuer="bench")
        client = TestClient(app, base_url="http://127.0.0.1")
        client.cookies.set(COOKIE, me.sid)
        built = ("reused from --work" if reused else
                 f"bulk fill of signed entries {filled:.1f} s wall, {fill_cpu:.1f} s CPU ({n / filled:,.0f}/s)")
        print(f"\n{n:,} entries: {built}, index sync {indexed:.1f} s wall, {index_cpu:.1f} s CPU; "
              f"load average {os.getloadavg()[0]:.2f}")
        print(f"  {'query':<40} {'median ms':>10} {'p95 ms':>8} {'rows':>5}")
        for name, qs in queries(n, start).items():
            med, p95, rows = measure(client, f"/timeline?{qs}", args.repeat)
            print(f"  {name:<40} {med:>10.1f} {p95:>8.1f} {rows:>5}", flush=True)
            if args.explain:
                for plan in explain(ledger, qs):
                    print(f"      plan: {plan}")
        # The column view: the per-day chart (one grouped index read) and "who saw it" from the newest 2,000
        # entries touching the column (parsed and summed), over the whole generated period.
        med, p95, _ = measure(client, "/columns/public.t05.email?days=366", args.repeat)
        print(f"  {'column view (chart + who saw, 366 days)':<40} {med:>10.1f} {p95:>8.1f} {'-':>5}", flush=True)
        print(f"  load average after: {os.getloadavg()[0]:.2f}")
        ledger.close()


if __name__ == "__main__":
    main()
