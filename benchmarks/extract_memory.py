"""Peak memory of a streamed governed extraction: `GovernedSession.extract` to Parquet.

The whole path runs: plan, ADBC read, mask (tokenize + partial), atomic Parquet sink, ledger
receipt, lineage outbox. Rows come from an unlogged table the server fills with
`generate_series`, in a scratch database created for the run and dropped after it. Each size runs in a fresh Python process so its
peak RSS (`resource.getrusage(...).ru_maxrss`) is its own. A small extraction
(10k rows) measured in the same run is the baseline: the ratio of each size's peak
to it shows whether memory grows with the row count (streaming: it should not).

    .venv/bin/python benchmarks/extract_memory.py                       # 1M and 10M rows
    .venv/bin/python benchmarks/extract_memory.py --sizes 1000000 --repeat 3
    LINEAGE_GUARD_BENCH_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/postgres ...

Not run as a test: timings depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from urllib.parse import urlsplit, urlunsplit

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
BASELINE_ROWS = 10_000

# Four columns, two of them classified (and so masked): an email (tokenized) and an SSN (partial).
TABLE = """
CREATE UNLOGGED TABLE people AS
SELECT g AS id,
       'user' || g || '@example.invalid' AS email,
       '9' || lpad((g %% 100)::text, 2, '0') || '-' || lpad((g %% 97 + 1)::text, 2, '0') || '-'
           || lpad((g %% 9999 + 1)::text, 4, '0') AS ssn,
       timestamptz '2024-01-01' + g * interval '1 second' AS created_at
FROM generate_series(1, %s::bigint) AS g
"""
POLICY = """
version: 1
identities: {svc-bench: {kind: service, groups: [bench]}}
purposes: [benchmark]
classifications: {public.people.email: email, public.people.ssn: national_id}
rules:
  - {classifications: [email], action: mask, mask: {method: tokenize}}
  - {classifications: [national_id], action: mask, mask: {method: partial, params: {keep_last: 4}}}
detection: {enabled: false}
"""


def child(url: str, rows: int, out: str) -> None:
    """One governed extraction in this process; prints a JSON line with its measurements."""
    from lineage_guard import GovernedSession, Identity
    from lineage_guard.policy import parse_policy

    started = time.perf_counter()
    with GovernedSession(url, parse_policy(POLICY), Identity("svc-bench"), "benchmark") as session:
        result = session.extract(f"SELECT id, email, ssn, created_at FROM people WHERE id <= {int(rows)}", to=out)
    seconds = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    assert set(result.masked_columns) == {"email", "ssn"}, result.masked_columns
    print(json.dumps({"rows": result.rows, "seconds": seconds,
                      "peak_rss_mb": peak_kb / 1024, "parquet_mb": result.bytes / 2**20}))


def run_child(url: str, rows: int, folder: str) -> dict:
    env = dict(os.environ)
    env.setdefault("LINEAGE_GUARD_MASTER_KEY", secrets.token_hex(32))  # a throwaway key, never printed
    env.setdefault("LINEAGE_GUARD_HOME", folder)
    out = os.path.join(folder, f"extract_{rows}.parquet")
    proc = subprocess.run([sys.executable, __file__, "--child", str(rows), "--url", url, "--out", out],
                          capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        sys.exit(f"extraction of {rows} rows failed:\n{proc.stderr[-2000:]}")
    os.remove(out)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def scratch_database(server_url: str):
    import psycopg

    name = f"lg_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name, urlunsplit(urlsplit(server_url)._replace(path="/" + name))


def drop_database(server_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,10000000", help="comma-separated row counts")
    parser.add_argument("--repeat", type=int, default=1, help="runs per size (the median is reported)")
    parser.add_argument("--url", default=os.environ.get("LINEAGE_GUARD_BENCH_POSTGRES_URL")
                        or os.environ.get("LINEAGE_GUARD_TEST_POSTGRES_URL") or DEFAULT_URL)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        return child(args.url, args.child, args.out)

    sizes = [int(s) for s in args.sizes.split(",")]
    name, url = scratch_database(args.url)
    try:
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(TABLE, (max(sizes),))
            conn.execute("CREATE INDEX ON people (id)")
        with tempfile.TemporaryDirectory(prefix="lg_bench_") as folder:
            results = {}
            for rows in [BASELINE_ROWS, *sizes]:
                runs = [run_child(url, rows, folder) for _ in range(args.repeat)]
                results[rows] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
                print(f"  measured {rows:>11,} rows", file=sys.stderr)
    finally:
        drop_database(args.url, name)

    base = results[BASELINE_ROWS]["peak_rss_mb"]
    first = results[sizes[0]]["peak_rss_mb"]
    print(f"\nGoverned streamed extraction (plan, read, tokenize + partial, Parquet, ledger, lineage), "
          f"median of {args.repeat} run(s) per size, each in a fresh process")
    print(f"{'rows':>12} {'peak RSS MB':>12} {'x baseline':>11} {f'x {sizes[0]:,}':>12} "
          f"{'seconds':>8} {'rows/s':>11} {'parquet MB':>11}")
    for rows, r in results.items():
        print(f"{rows:>12,} {r['peak_rss_mb']:>12.1f} {r['peak_rss_mb'] / base:>11.2f} "
              f"{r['peak_rss_mb'] / first:>12.2f} {r['seconds']:>8.2f} {rows / r['seconds']:>11,.0f} "
              f"{r['parquet_mb']:>11.1f}")
    print(f"\nbaseline: {BASELINE_ROWS:,} rows (imports + one batch); python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
