"""A Dagster project reading the FAKE demo clinic through lineage_guard.

The same data and policy as `lineage-guard demo` (lineage_guard/demo/): a training service
and a clinician read the same patients; each gets what the policy lets it see, as Parquet
files, with ledger receipts and OpenLineage events (Postgres tables -> asset -> file).

Run (see README.md here):  dagster dev -f examples/dagster/definitions.py
                      or:  dagster dev -m examples.dagster.definitions   (from the repository root)
"""

import os
from pathlib import Path

import dagster as dg
import polars as pl
from lineage_guard.assets import GovernedIOManager, GovernedPostgresResource, governed_postgres_asset

from lineage_guard.demo import data as demo_data

POLICY = Path(demo_data.__file__).with_name("policy.yaml")
LAKE = os.environ.get("LINEAGE_GUARD_DEMO_LAKE", str(Path.cwd() / "lake"))
ROWS = int(os.environ.get("LINEAGE_GUARD_DEMO_ROWS", "2000"))
SOURCE_TABLES = ["patients", "customers", "orders"]


@dg.multi_asset(
    specs=[dg.AssetSpec(["postgres", "lineage_guard_demo", t], group_name="clinic_db", kinds={"postgres"},
                        description=f"FAKE demo table lineage_guard_demo.{t}") for t in SOURCE_TABLES],
)
def fake_clinic_tables(governed_postgres: GovernedPostgresResource):
    """(Re)create the demo tables with fake rows: setup only, not a governed read."""
    counts = demo_data.seed(governed_postgres.source_url(), patients=ROWS, customers=ROWS)
    for table in SOURCE_TABLES:
        yield dg.MaterializeResult(asset_key=["postgres", "lineage_guard_demo", table],
                                   metadata={"dagster/row_count": counts[table]})


# -- the training service (svc-training, purpose ai_training): the resource's defaults --------------
training_patients = governed_postgres_asset(
    "patients",
    "SELECT id, mrn, full_name, email, birth_date, zip, diagnosis, admitted_at FROM patients",
    key_prefix=["training"], group_name="training", deps=[["postgres", "lineage_guard_demo", "patients"]],
)
training_customers = governed_postgres_asset(
    "customer_spend",
    "SELECT c.id, c.email, c.plan, c.zip, sum(o.amount) AS spend, count(o.id) AS orders "
    "FROM customers c JOIN orders o ON o.customer_id = c.id GROUP BY c.id",  # c.id is the key: the other columns follow it
    key_prefix=["training"], group_name="training",
    deps=[["postgres", "lineage_guard_demo", "customers"], ["postgres", "lineage_guard_demo", "orders"]],
)


@dg.asset(key_prefix=["training"], group_name="training",
          metadata={"lineage_guard/column_sources": {"patients": []}})
def diagnosis_mix(patients: pl.DataFrame) -> pl.DataFrame:
    """Patients per ICD-10 category and admission month: computed in Polars from the masked extract.

    `diagnosis` and `admitted_at` are inherited from training/patients (already generalized, not
    masked again); `patients` is a count, declared as derived from no source column.
    """
    return (patients.group_by("diagnosis", "admitted_at").agg(pl.len().alias("patients"))
            .sort("diagnosis", "admitted_at"))


# -- the clinician (dr-grey, purpose treatment): a per-asset identity and purpose ------------------
clinician_patients = governed_postgres_asset(
    "patients",
    "SELECT id, mrn, full_name, birth_date, diagnosis, notes FROM patients ORDER BY id LIMIT 100",
    identity="dr-grey", purpose="treatment",
    key_prefix=["clinic"], group_name="treatment", deps=[["postgres", "lineage_guard_demo", "patients"]],
)

governed = GovernedPostgresResource(
    url=dg.EnvVar("LINEAGE_GUARD_DEMO_URL"),   # e.g. postgresql://postgres@127.0.0.1:5432/lg_demo
    policy=str(POLICY),
    identity="svc-training",
    purpose="ai_training",
)

defs = dg.Definitions(
    assets=[fake_clinic_tables, training_patients, training_customers, diagnosis_mix, clinician_patients],
    resources={"governed_postgres": governed, "io_manager": GovernedIOManager(governed=governed, base_path=LAKE)},
)
