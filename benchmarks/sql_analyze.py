"""SQL analysis benchmark: what `analyze` and `plan` cost per statement, against bare parsing.

For every statement of the adversarial corpus (plus its class variants) and of the shuffled-twin
oracle's generator (`--oracle N` of its statements, default 2000), it times, in the same run, the
baseline `sqlglot.parse(sql, dialect="postgres")` (what any SQL-aware tool pays), then
`lineage_guard.sql.analyze` (parse + token checks + catalog resolution + lineage + uses), then
the whole `plan` (analysis + the opaque-values rule + policy), then `plan` under the same policy
with a row filter on each corpus table (the rewrite of every reference, sql/rowfilter.py; a tree
without row filters skips that row). Offline catalog (DDL), so no I/O.
Times are CPU time of this process (`time.process_time_ns`): on a shared machine, wall time
mostly measures the other jobs.

`--compare LABEL=PYTHON:TREE` (repeatable) runs the same measurement, in a child process of this
run, for another checkout TREE with another interpreter PYTHON (one without an editable install of
this tree, which would shadow TREE), and prints all rows together: before/after in one run.
With `--live URL` (a database loaded with tests/corpus/schema*.sql) it also times, separately, the
live binding check a governed read adds before reading: `EXPLAIN (VERBOSE, FORMAT JSON)` of the
executed statement in the read's own transaction plus comparing the server's binding with the plan
(`lineage_guard.sql.explain`), beside running the statement itself. Run:

    .venv/bin/python benchmarks/sql_analyze.py [--repeat 20] [--oracle 2000] [--live postgresql://postgres@127.0.0.1:5432/corpus]
        [--compare main=/tmp/venv_base/bin/python:/tmp/main-tree]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _median_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.process_time_ns()
        fn()
        times.append((time.process_time_ns() - t0) / 1e6)
    return statistics.median(times)


def _wall_median_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--oracle", type=int, default=2000, help="how many of the oracle generator's statements")
    parser.add_argument("--live", help="a PostgreSQL URL holding the corpus schema: also time the EXPLAIN check")
    parser.add_argument("--compare", action="append", default=[], metavar="LABEL=PYTHON:TREE",
                        help="also measure checkout TREE with interpreter PYTHON, in this run")
    parser.add_argument("--tree", type=Path, default=ROOT, help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    results = {}
    for spec in args.compare:
        label, _, rest = spec.partition("=")
        python, _, tree = rest.partition(":")
        out = subprocess.run([python, __file__, "--tree", tree, "--json", "--repeat", str(args.repeat),
                              "--oracle", str(args.oracle)], capture_output=True, text=True, check=True)
        results[label] = json.loads(out.stdout.strip().splitlines()[-1])
    results["this tree"], context = _measure(args.tree, args.repeat, args.oracle)
    if args.json:
        print(json.dumps(results["this tree"]))
        return
    for label, r in results.items():
        print(f"{label}: {r['parser']}")
        for corpus, (n, base, ana, full, worst, *filtered) in r["sets"].items():
            print(f"  {corpus}: {n} statements, median of {args.repeat} runs each (CPU ms per statement)")
            print(f"    sqlglot.parse (baseline)  median {base:.3f}")
            print(f"    analyze                   median {ana:.3f}   ratio {ana / base:.1f}x   worst {worst:.3f}")
            print(f"    plan (analyze + policy)   median {full:.3f}   ratio {full / base:.1f}x")
            if filtered and filtered[0] is not None:
                rf, applied = filtered
                print(f"    plan with row filters     median {rf:.3f}   vs plan {rf / full:.2f}x   "
                      f"({applied} allowed with a filter applied)")
    if args.live:
        _live(args.live, *context, args.repeat)


def _measure(tree: Path, repeat: int, oracle: int):
    sys.path.insert(0, str(tree))
    sys.path.insert(0, str(tree / "tests"))
    import sqlglot
    import sqlglot.parser
    from oracle_gen import Generator
    from test_corpus_classes import CASES

    from lineage_guard.identity import Identity
    from lineage_guard.planner import plan
    from lineage_guard.policy import load_policy
    from lineage_guard.sql import analyze
    from lineage_guard.sql.catalog import Catalog

    corpus = tree / "tests" / "corpus"
    statements = [json.loads(line)["sql"] for line in (corpus / "sql-attacks.jsonl").read_text().splitlines()]
    statements += [line.split(" ", 2)[2] for line in CASES.strip().splitlines() if line.strip()]
    # The oracle's own mix (tests/test_oracle_shuffled.py), both pairings, first `oracle` statements.
    generated = Generator(20261201).statements(oracle // 2) + Generator(20261202, equijoins=True).statements(
        oracle - oracle // 2)
    catalog = Catalog.from_ddl(corpus / "schema.sql", corpus / "schema_extras.sql")
    policy = load_policy(corpus / "policy.yaml")
    me = Identity("svc-training", "service", frozenset({"training-jobs"}))
    filtered = _with_row_filters(corpus)
    analyze("SELECT 1", catalog)  # builds the allow-list's sqlglot mapping once

    def parse(sql):
        try:
            sqlglot.parse(sql, dialect="postgres")
        except sqlglot.errors.SqlglotError:
            pass

    sets = {}
    for name, sqls in (("corpus", statements), ("oracle", generated)):
        rows = []
        for sql in sqls:
            base = _median_ms(lambda sql=sql: parse(sql), repeat)
            ana = _median_ms(lambda sql=sql: analyze(sql, catalog), repeat)
            full = _median_ms(lambda sql=sql: plan(sql, catalog=catalog, policy=policy, identity=me,
                                                   purpose="ai_training"), repeat)
            rf = None if filtered is None else _median_ms(
                lambda sql=sql: plan(sql, catalog=catalog, policy=filtered, identity=me, purpose="ai_training"),
                repeat)
            rows.append((base, ana, full, rf))
        base, ana, full = (statistics.median(col) for col in list(zip(*rows))[:3])
        rf = applied = None
        if filtered is not None:
            rf = statistics.median(r[3] for r in rows)
            applied = sum(1 for sql in sqls if plan(sql, catalog=catalog, policy=filtered, identity=me,
                                                    purpose="ai_training").to_json().get("row_filters"))
        sets[name] = (len(sqls), base, ana, full, max(r[1] for r in rows), rf, applied)
    compiled = sqlglot.parser.__file__.endswith(".so")
    parser = f"sqlglot {sqlglot.__version__} ({'compiled: sqlglotc' if compiled else 'pure Python'}), {tree}"
    return {"parser": parser, "sets": sets}, (statements, catalog, policy, me, plan)


def _with_row_filters(corpus: Path):
    """The corpus policy plus a row filter on each corpus table (one binds an identity attribute); None
    for a tree that has no row filters."""
    from lineage_guard.policy import parse_policy

    text = (corpus / "policy.yaml").read_text().replace(
        "svc-training: {kind: service, groups: [training-jobs]}",
        "svc-training: {kind: service, groups: [training-jobs], attributes: {plan: enterprise}}")
    try:
        return parse_policy(text + """
row_filters:
  - {name: customers-plan, table: public.customers, predicate: "plan = :identity.plan"}
  - {name: even-orders, table: public.orders, predicate: "id % 2 = 0"}
  - {name: patients-cohort, table: public.patients, predicate: "id % 3 <> 0"}
""")
    except Exception:  # noqa: BLE001 - an older tree (--compare) without row filters
        return None


def _live(url: str, statements: list[str], catalog, policy, me, plan, repeat: int) -> None:
    """The EXPLAIN binding check per allowed statement, and the statement itself, on the same connection (wall time)."""
    import psycopg

    from lineage_guard.sql.explain import binding_disagreements, planned, scan_names

    rows = []
    with psycopg.connect(url, autocommit=True) as conn:
        for sql in statements:
            decision = plan(sql, catalog=catalog, policy=policy, identity=me, purpose="ai_training")
            if decision.action != "allow" or not decision.analysis.executed_sql:
                continue
            executed = decision.analysis.executed_sql
            known, outputs = planned(decision.analysis)
            names = scan_names(decision.analysis)

            def check(executed=executed, known=known, outputs=outputs, sensitive=decision.sensitive, names=names):
                with conn.transaction(force_rollback=True):
                    conn.execute("SET TRANSACTION READ ONLY")
                    explained = conn.execute(f"EXPLAIN (VERBOSE, FORMAT JSON) {executed}").fetchone()[0]
                    assert not binding_disagreements(explained, known=known, outputs=outputs, sensitive=sensitive,
                                                     names=names)

            def run(executed=executed):
                with conn.transaction(force_rollback=True):
                    conn.execute("SET TRANSACTION READ ONLY")
                    conn.execute(executed).fetchall()
            try:
                rows.append((_wall_median_ms(check, repeat), _wall_median_ms(run, repeat)))
            except psycopg.Error:
                continue  # a statement the server refuses (e.g. needs an extension): nothing to time
    explain, run = (statistics.median(col) for col in zip(*rows))
    print(f"live, {len(rows)} allowed statements (ms per statement, wall time, loopback)")
    print(f"  EXPLAIN check             median {explain:.3f}")
    print(f"  the statement itself      median {run:.3f}   check / statement {explain / run:.2f}x")


if __name__ == "__main__":
    main()
