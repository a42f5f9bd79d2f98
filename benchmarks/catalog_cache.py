"""Per-call cost of the plan's catalog: loaded afresh (before) vs cached per schema version (one version query).

    .venv/bin/python benchmarks/catalog_cache.py --tables 200 --rounds 30

A scratch database with `--tables` tables of 10 columns and a view each; every call is a fresh
`GovernedSession` planning one SELECT (what the service does per request). "uncached" clears the
process cache first, so the call loads the whole catalog as before; "cached" pays the schema-version
query only. Calls alternate; medians of CPU (this process) and wall per call. Not a test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from urllib.parse import urlsplit, urlunsplit

import psycopg

from lineage_guard.identity import Identity
from lineage_guard.policy import parse_policy
from lineage_guard.session import GovernedSession
from lineage_guard.sql.catalog_cache import CACHE

POLICY = """
version: 1
identities: {svc-bench: {kind: service, groups: [bench]}}
purposes: [benchmark]
classifications: {public.t0.c1: email}
rules:
  - {classifications: [email], action: mask, mask: {method: tokenize}}
detection: {enabled: false}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--url", default=os.environ.get("LINEAGE_GUARD_TEST_POSTGRES_URL")
                        or "postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    name = f"perf_catalog_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = urlunsplit(urlsplit(args.url)._replace(path="/" + name))
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            cols = ", ".join(f"c{i} text" for i in range(1, 10))
            for t in range(args.tables):
                conn.execute(f"CREATE TABLE t{t} (id int primary key, {cols})")
                conn.execute(f"CREATE VIEW v{t} AS SELECT id, c1, c2 FROM t{t}")
        policy = parse_policy(POLICY)
        times: dict[str, list[tuple[float, float]]] = {"uncached": [], "cached": []}
        CACHE.clear()
        with GovernedSession(url, policy, Identity("svc-bench"), "benchmark") as s:
            s.plan("SELECT id, c1 FROM t0")   # warm imports
        for _ in range(args.rounds):
            for kind in ("uncached", "cached"):
                if kind == "uncached":
                    CACHE.clear()
                c0, w0 = time.process_time(), time.perf_counter()
                with GovernedSession(url, policy, Identity("svc-bench"), "benchmark") as s:
                    s.plan("SELECT id, c1 FROM t0")
                times[kind].append((time.process_time() - c0, time.perf_counter() - w0))
    finally:
        with psycopg.connect(args.url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    load = os.getloadavg()[0]
    print(f"# fresh session + plan, {args.tables} tables x 10 columns + {args.tables} views, "
          f"{args.rounds} alternating rounds, load average {load:.2f}")
    print("| catalog | median CPU ms | median wall ms |\n|---|---:|---:|")
    for kind, runs in times.items():
        print(f"| {kind} | {statistics.median(c for c, _ in runs) * 1000:.1f} | "
              f"{statistics.median(w for _, w in runs) * 1000:.1f} |")
    cpu = statistics.median(a[0] / b[0] for a, b in zip(times["uncached"], times["cached"], strict=True))
    wall = statistics.median(a[1] / b[1] for a, b in zip(times["uncached"], times["cached"], strict=True))
    print(f"\nuncached / cached per call (paired): CPU {cpu:.1f}x, wall {wall:.1f}x")


if __name__ == "__main__":
    main()
