"""What a row filter's fence costs, and what pushing leakproof caller quals into it wins back.

One table of 1,000,000 rows (`accounts`, primary key `id`, half of them the reader's tenant) with the
row filter `tenant = :identity.tenant`. Each query is rewritten three ways and timed with the server's
own `EXPLAIN (ANALYZE, FORMAT JSON)` "Execution Time", the forms interleaved within each repeat:

- `flattened`: `(SELECT * FROM t WHERE filter) AS t`, the form before 86a72f2 (unsafe: the planner
  flattens it and may run the caller's quals on hidden rows; the reference for speed only);
- `fenced`: the fence alone (`OFFSET 0`), what main generated before this change (the rewrite with a
  catalog that knows nothing leakproof: the same text);
- `pushdown`: the fence with the caller's leakproof conjuncts also inside it (sql/pushdown.py).

Run from the repository root (creates and drops its own database on the server):

    .venv/bin/python benchmarks/row_filter_pushdown.py [--url postgresql://postgres@127.0.0.1:5432/postgres]
        [--rows 1000000] [--repeats 7]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import uuid

import psycopg

from lineage_guard.sources.pg_params import inline_parameters
from lineage_guard.sql import analyze
from lineage_guard.sql.catalog import Catalog
from lineage_guard.sql.model import TableRef
from lineage_guard.sql.rowfilter import FilterRule, apply_row_filters

QUERIES = {
    "point lookup": "SELECT id, plan, balance FROM accounts WHERE id = 424242",
    # The timing the pushdown leaves (docs/security.md): a key whose row is hidden (another tenant's)
    # against a key with no row; their difference is the cost of fetching the hidden row and dropping it.
    "lookup, hidden key": "SELECT id, plan, balance FROM accounts WHERE id = 424243",
    "lookup, absent key": "SELECT id, plan, balance FROM accounts WHERE id = 2000000001",
    "filtered count": "SELECT count(*) FROM accounts",
    "range count": "SELECT count(*) FROM accounts WHERE id BETWEEN 100000 AND 150000",
}
RULE = FilterRule("own-tenant", TableRef("public", "accounts"), "tenant = :identity.tenant")
ATTRIBUTES = {"tenant": "acme"}


def _with_database(url: str, name: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


def _forms(url: str, sql: str) -> dict[str, str]:
    live = Catalog.from_postgres(url)
    fence_only = dataclasses.replace(live, leakproof_operators=None)
    out = {}
    for name, catalog in (("fenced", fence_only), ("pushdown", live)):
        analysis = apply_row_filters(analyze(sql, live), catalog, [RULE], ATTRIBUTES)
        out[name] = inline_parameters(analysis.executed_sql, list(analysis.row_filter_values))
    flat = sql.replace("FROM accounts", "FROM (SELECT * FROM accounts WHERE tenant = 'acme') AS accounts")
    return {"flattened": flat, **out}


def _execution_ms(conn: psycopg.Connection, sql: str) -> tuple[float, str]:
    [(doc,)] = conn.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}").fetchall()
    plan = (json.loads(doc) if isinstance(doc, str) else doc)[0]
    node = plan["Plan"]
    while node.get("Plans") and node["Node Type"] in ("Subquery Scan", "Aggregate", "Gather", "Finalize Aggregate",
                                                      "Partial Aggregate", "Result"):
        node = node["Plans"][0]
    return plan["Execution Time"], node["Node Type"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", default=os.environ.get("LINEAGE_GUARD_TEST_POSTGRES_URL",
                                                    "postgresql://postgres@127.0.0.1:5432/postgres"))
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    name = f"lg_bench_pushdown_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = _with_database(args.url, name)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE accounts (id int PRIMARY KEY, tenant text NOT NULL, plan text, balance int)")
            conn.execute("INSERT INTO accounts SELECT g, CASE WHEN g %% 2 = 0 THEN 'acme' ELSE 'other' END, "
                         "(ARRAY['free', 'pro', 'basic'])[g %% 3 + 1], g %% 1000 FROM generate_series(1, %s) g",
                         (args.rows,))
            conn.execute("VACUUM ANALYZE accounts")
            conn.execute("SET search_path = pg_catalog, public, pg_temp")
            forms = {q: _forms(url, sql) for q, sql in QUERIES.items()}
            for q, by_form in forms.items():   # warm the cache and check the three forms agree
                results = {f: conn.execute(s).fetchall() for f, s in by_form.items()}
                assert len({repr(r) for r in results.values()}) == 1, (q, results)
            times: dict[tuple[str, str], list[float]] = {}
            scans: dict[tuple[str, str], str] = {}
            for _ in range(args.repeats):
                for q, by_form in forms.items():
                    for form, sql in by_form.items():
                        ms, scan = _execution_ms(conn, sql)
                        times.setdefault((q, form), []).append(ms)
                        scans[(q, form)] = scan
        print(f"{args.rows:,} rows, median of {args.repeats} EXPLAIN ANALYZE runs (Execution Time), "
              f"load average {os.getloadavg()[0]:.2f}")
        print("| query | form | median ms | fenced / this | scan |\n|---|---|---:|---:|---|")
        for q in QUERIES:
            fenced = statistics.median(times[(q, "fenced")])
            for form in ("flattened", "fenced", "pushdown"):
                med = statistics.median(times[(q, form)])
                same = " (the fenced statement: nothing to push)" if form == "pushdown" and \
                    forms[q]["pushdown"] == forms[q]["fenced"] else ""
                print(f"| {q} | {form}{same} | {med:.3f} | {fenced / med:,.1f}x | {scans[(q, form)]} |")
    finally:
        with psycopg.connect(args.url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
