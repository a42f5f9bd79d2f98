"""SQL analysis benchmark: what `analyze` and `plan` cost per statement, against bare parsing.

For every statement of the adversarial corpus (plus its class variants) it times, in the same
run, the baseline `sqlglot.parse(sql, dialect="postgres")` (what any SQL-aware tool pays), then
`lineage_guard.sql.analyze` (parse + token checks + catalog resolution + lineage + uses), then
the whole `plan` (analysis + inference + policy). Offline catalog (DDL), so no I/O. Run:

    .venv/bin/python benchmarks/sql_analyze.py [--repeat 20]
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


if __name__ == "__main__":
    main()
