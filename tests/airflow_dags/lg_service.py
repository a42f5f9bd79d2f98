"""Service mode: the tasks read through `lineage-guard serve` with only a token (tests/test_airflow_service.py)."""

import os
import sys
from datetime import datetime

from airflow.sdk import DAG, task
from lineage_guard.operators import GovernedPostgresOperator

# Key material and masking kernels, the database drivers and source, the session core, GX. (Mask *declarations*,
# lineage_guard.mask.spec/params, are plain dataclasses a plan's description uses; they hold no key.)
SECRET_MODULES = ("lineage_guard.mask.keys", "lineage_guard.mask.apply", "lineage_guard.mask.tokenize",
                  "lineage_guard.mask.pseudonymize", "lineage_guard.mask.format_preserving", "lineage_guard.mask.digest",
                  "lineage_guard.mask.shift_date", "lineage_guard.mask._arrow", "lineage_guard.sources",
                  "lineage_guard.audit.signing", "lineage_guard.session", "lineage_guard.planner",
                  "adbc_driver_postgresql", "psycopg", "great_expectations")

with DAG("lg_service", schedule=None, start_date=datetime(2024, 1, 1), catchup=False) as dag:
    extract = GovernedPostgresOperator(
        task_id="extract",
        service_conn_id="lg_service_jwt",         # a projected service-account token, read from a file
        sql="SELECT id, mrn, full_name, email, diagnosis, city FROM patients ORDER BY id",
        purpose="ai_training",
        output="{{ dag_run.conf['out_dir'] }}/patients_{{ ds }}.parquet",
    )
    rows = GovernedPostgresOperator(
        task_id="rows",
        service_conn_id="lg_service_api",         # a lineage-guard API token in the connection's password
        sql="SELECT id, full_name, city FROM patients WHERE id <= %(last)s ORDER BY id",
        parameters={"last": 3},
        purpose="ai_training",
    )
    forged = GovernedPostgresOperator(
        task_id="forged",
        service_conn_id="lg_service_forged",      # a JWT naming the extract task's subject, signed by another key
        sql="SELECT id, email FROM patients",
        purpose="ai_training",
        retries=0,
    )

    @task(trigger_rule="all_done")
    def environment() -> dict:
        """What the task process holds after the governed reads: no key, no database credential, no engine."""
        return {"env": sorted(k for k in os.environ if k.startswith(("LINEAGE_GUARD_", "PG", "AIRFLOW_CONN_"))),
                "loaded": sorted(m for m in sys.modules if m.startswith(SECRET_MODULES))}

    [extract, rows, forged] >> environment()
