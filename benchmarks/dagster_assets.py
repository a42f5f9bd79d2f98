"""Governed vs plain Dagster assets: a Postgres read to Parquet, and an in-memory Polars asset stored as Parquet.

Usage: .venv/bin/python benchmarks/dagster_assets.py postgresql://postgres@127.0.0.1:5432/postgres [rows]
Prints medians of 5 materializations and ratios against the plain assets measured in the same run
(plain: ADBC -> Arrow -> pq.write_table through a minimal IO manager; no policy, masks, ledger or lineage).
Also the bare `GovernedSession.extract` outside Dagster, to show what Dagster itself adds.
"""
import os
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

server = sys.argv[1]; n = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
home = Path(tempfile.mkdtemp(prefix="lgbench_dagster_"))
os.environ.update({"DAGSTER_HOME": str(home), "LINEAGE_GUARD_HOME": str(home / "lg"),
                   "LINEAGE_GUARD_MASTER_KEY": secrets.token_hex(32), "OPENLINEAGE_DISABLED": "true"})
import psycopg

db = f"lg_bench_{uuid.uuid4().hex[:8]}"
with psycopg.connect(server, autocommit=True) as c:
    c.execute(f'CREATE DATABASE "{db}"')
url = urlunsplit(urlsplit(server)._replace(path="/" + db))
try:
    import adbc_driver_postgresql.dbapi as adbc
    import dagster as dg
    import polars as pl
    import pyarrow as pa
    import pyarrow.parquet as pq
    from lineage_guard.assets import GovernedIOManager, GovernedPostgresResource, governed_postgres_asset

    from lineage_guard.demo import data as demo
    from lineage_guard.session import GovernedSession

    demo.seed(url, patients=n, customers=1000)
    policy = str(Path(demo.__file__).with_name("policy.yaml"))
    sql = "SELECT id, mrn, full_name, email, birth_date, zip, diagnosis, admitted_at FROM patients"

    class PlainParquet(dg.ConfigurableIOManager):
        base: str
        def handle_output(self, context, obj):
            table = obj if isinstance(obj, pa.Table) else obj.to_arrow()
            pq.write_table(table, f"{self.base}/{'_'.join(context.asset_key.path)}.parquet", compression="zstd")
        def load_input(self, context):
            return pl.read_parquet(f"{self.base}/{'_'.join(context.asset_key.path)}.parquet")

    @dg.asset(name="patients")
    def plain_patients() -> pa.Table:
        with adbc.connect(url) as conn, conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetch_arrow_table()

    def derived(patients: pl.DataFrame) -> pl.DataFrame:
        return patients.filter(pl.col("id") % 2 == 0).select("id", "mrn", "diagnosis", "admitted_at")

    plain_derived = dg.asset(name="derived")(derived)
    gov_patients = governed_postgres_asset("patients", sql)
    gov_derived = dg.asset(name="derived")(derived)
    governed = GovernedPostgresResource(url=url, policy=policy, purpose="ai_training", identity="svc-training")
    (home / "plain").mkdir(); (home / "gov").mkdir()
    plain_res = {"io_manager": PlainParquet(base=str(home / "plain"))}
    gov_res = {"governed_postgres": governed, "io_manager": GovernedIOManager(governed=governed, base_path=str(home / "gov"))}

    def median(fn, runs=5):
        times = []
        for _ in range(runs):
            t = time.perf_counter(); fn(); times.append(time.perf_counter() - t)
        return statistics.median(times)

    def mat(assets, res, selection):
        assert dg.materialize(assets, resources=res, selection=selection).success

    dg.materialize([plain_patients, plain_derived], resources=plain_res)   # warm-up, and inputs for the derived runs
    dg.materialize([gov_patients, gov_derived], resources=gov_res)
    base_read = median(lambda: mat([plain_patients, plain_derived], plain_res, ["patients"]))
    base_mem = median(lambda: mat([plain_patients, plain_derived], plain_res, ["derived"]))

    def bare():
        with GovernedSession(url, policy, "svc-training", "ai_training") as s:
            s.extract(sql, home / "bare.parquet")
    rows = [
        ("plain asset: ADBC read -> Parquet", base_read, base_read),
        ("governed_postgres_asset (extract)", median(lambda: mat([gov_patients, gov_derived], gov_res, ["patients"])), base_read),
        ("bare GovernedSession.extract (no Dagster)", median(bare), base_read),
        ("plain IO manager: Polars asset -> Parquet", base_mem, base_mem),
        ("GovernedIOManager: Polars asset -> Parquet", median(lambda: mat([gov_patients, gov_derived], gov_res, ["derived"])), base_mem),
    ]
    for name, m, base in rows:
        print(f"{name:44s} median {m*1000:8.1f} ms  ratio {m/base:5.2f}  ({n} rows read, {n // 2} derived)")
finally:
    with psycopg.connect(server, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
