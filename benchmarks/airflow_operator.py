"""Governed vs plain: SQLExecuteQueryOperator.execute vs GovernedPostgresOperator.execute (rows, and Parquet output).

Usage: .venv/bin/python benchmarks/airflow_operator.py postgresql://postgres@127.0.0.1:5432/postgres [rows]
Prints medians of 5 runs and ratios against the plain operator measured in the same run.
"""
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

server = sys.argv[1]; n = int(sys.argv[2]) if len(sys.argv) > 2 else 10_000
home = Path(tempfile.mkdtemp(prefix="lgbench_"))
os.environ.update({"AIRFLOW_HOME": str(home / "af"), "LINEAGE_GUARD_HOME": str(home / "lg"),
                   "LINEAGE_GUARD_MASTER_KEY": secrets.token_hex(32), "OPENLINEAGE_DISABLED": "true"})
import psycopg

db = f"lg_bench_{uuid.uuid4().hex[:8]}"
with psycopg.connect(server, autocommit=True) as c:
    c.execute(f'CREATE DATABASE "{db}"')
url = urlunsplit(urlsplit(server)._replace(path="/" + db))
try:
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("CREATE TABLE patients (id int primary key, full_name text, email text, city text)")
        c.execute("INSERT INTO patients SELECT i, 'Name ' || i, 'user' || i || '@example.com', 'City ' || (i %% 50) "
                  "FROM generate_series(1, %s) i", (n,))
    p = urlsplit(url)
    os.environ["AIRFLOW_CONN_BENCH"] = json.dumps({"conn_type": "postgres", "host": p.hostname, "port": p.port or 5432,
                                                  "login": p.username, "schema": db})
    (home / "policy.yaml").write_text("version: 1\nclassifications:\n  public.patients.full_name: person_name\n"
                                      "  public.patients.email: email\nrules:\n  - {purposes: [bench], action: mask, "
                                      "mask: {method: tokenize}}\n")
    from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator
    from lineage_guard.operators import GovernedPostgresOperator
    sql = "SELECT id, full_name, email, city FROM patients"
    plain = SQLExecuteQueryOperator(task_id="plain", conn_id="bench", sql=sql)
    governed = GovernedPostgresOperator(task_id="governed", conn_id="bench", sql=sql, purpose="bench",
                                        policy=str(home / "policy.yaml"), max_rows=n)
    to_parquet = GovernedPostgresOperator(task_id="parquet", conn_id="bench", sql=sql, purpose="bench",
                                          policy=str(home / "policy.yaml"), output=str(home / "out.parquet"))

    def median(op, runs=5):
        times = []
        for _ in range(runs):
            t = time.perf_counter(); out = op.execute({}); times.append(time.perf_counter() - t)
        return statistics.median(times), out
    base, rows = median(plain)
    for name, op in [("plain SQLExecuteQueryOperator (rows)", plain), ("governed (masked rows)", governed),
                     ("governed (masked Parquet output)", to_parquet)]:
        m, out = median(op)
        print(f"{name:40s} median {m*1000:8.1f} ms  ratio {m/base:5.2f}  ({n} rows)")
finally:
    with psycopg.connect(server, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
