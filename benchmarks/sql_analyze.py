"""SQL analysis benchmark: what `analyze` and `plan` cost per statement, against bare parsing.

For every statement of the adversarial corpus (plus its class variants) it times, in the same
run, the baseline `sqlglot.parse(sql, dialect="postgres")` (what any SQL-aware tool pays), then
`lineage_guard.sql.analyze` (parse + token checks + catalog resolution + lineage + uses), then
the whole `plan` (analysis + the opaque-values rule + policy). Offline catalog (DDL), so no I/O.
With `--live URL` (a database loaded with tests/corpus/schema*.sql) it also times, separately, the
live binding check a governed read adds before reading: `EXPLAIN (VERBOSE, FORMAT JSON)` of the
executed statement in the read's own transaction plus comparing the server's binding with the plan
(`lineage_guard.sql.explain`), beside running the statement itself. Run:

    .venv/bin/python benchmarks/sql_analyze.py [--repeat 20] [--live postgresql://postgres@127.0.0.1:5432/corpus]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import sqlglot

from lineage_guard.identity import Identity
from lineage_guard.planner import plan
from lineage_guard.policy import load_policy
from lineage_guard.sql import analyze
from lineage_guard.sql.catalog import Catalog

CORPUS = ROOT / "tests" / "corpus"


def _median_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--live", help="a PostgreSQL URL holding the corpus schema: also time the EXPLAIN check")
    args = parser.parse_args()
    from test_corpus_classes import CASES

    statements = [json.loads(line)["sql"] for line in (CORPUS / "sql-attacks.jsonl").read_text().splitlines()]
    statements += [line.split(" ", 2)[2] for line in CASES.strip().splitlines() if line.strip()]
    catalog = Catalog.from_ddl(CORPUS / "schema.sql", CORPUS / "schema_extras.sql")
    policy = load_policy(ROOT / "tests" / "corpus" / "policy.yaml")
    me = Identity("svc-training", "service", frozenset({"training-jobs"}))
    analyze("SELECT 1", catalog)  # builds the allow-list's sqlglot mapping once

    rows = []
    for sql in statements:
        def parse(sql=sql):
            try:
                sqlglot.parse(sql, dialect="postgres")
            except sqlglot.errors.SqlglotError:
                pass
        base = _median_ms(parse, args.repeat)
        ana = _median_ms(lambda sql=sql: analyze(sql, catalog), args.repeat)
        full = _median_ms(lambda sql=sql: plan(sql, catalog=catalog, policy=policy, identity=me,
                                               purpose="ai_training"), args.repeat)
        rows.append((base, ana, full))
    base, ana, full = (statistics.median(col) for col in zip(*rows))
    worst = max(rows, key=lambda r: r[1])
    print(f"{len(statements)} statements, median of {args.repeat} runs each (ms per statement)")
    print(f"  sqlglot.parse (baseline)  median {base:.3f}")
    print(f"  analyze                   median {ana:.3f}   ratio {ana / base:.1f}x   worst {worst[1]:.3f}")
    print(f"  plan (analyze + policy)   median {full:.3f}   ratio {full / base:.1f}x")
    if args.live:
        _live(args.live, statements, catalog, policy, me, args.repeat)


def _live(url: str, statements: list[str], catalog, policy, me, repeat: int) -> None:
    """The EXPLAIN binding check per allowed statement, and the statement itself, on the same connection."""
    import psycopg

    from lineage_guard.sql.explain import binding_disagreements, planned

    rows = []
    with psycopg.connect(url, autocommit=True) as conn:
        for sql in statements:
            decision = plan(sql, catalog=catalog, policy=policy, identity=me, purpose="ai_training")
            if decision.action != "allow" or not decision.analysis.executed_sql:
                continue
            executed = decision.analysis.executed_sql
            known, outputs = planned(decision.analysis)

            def check(executed=executed, known=known, outputs=outputs, sensitive=decision.sensitive):
                with conn.transaction(force_rollback=True):
                    conn.execute("SET TRANSACTION READ ONLY")
                    explained = conn.execute(f"EXPLAIN (VERBOSE, FORMAT JSON) {executed}").fetchone()[0]
                    assert not binding_disagreements(explained, known=known, outputs=outputs, sensitive=sensitive)

            def run(executed=executed):
                with conn.transaction(force_rollback=True):
                    conn.execute("SET TRANSACTION READ ONLY")
                    conn.execute(executed).fetchall()
            try:
                rows.append((_median_ms(check, repeat), _median_ms(run, repeat)))
            except psycopg.Error:
                continue  # a statement the server refuses (e.g. needs an extension): nothing to time
    explain, run = (statistics.median(col) for col in zip(*rows))
    print(f"live, {len(rows)} allowed statements (ms per statement, wall time, loopback)")
    print(f"  EXPLAIN check             median {explain:.3f}")
    print(f"  the statement itself      median {run:.3f}   check / statement {explain / run:.2f}x")


if __name__ == "__main__":
    main()
