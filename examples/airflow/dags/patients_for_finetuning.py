"""Extract patient records for fine-tuning a triage model, masked for the training service.

Every night the DAG writes yesterday's admissions to the training bucket as Parquet. Names,
record numbers and contacts arrive as keyed tokens, birth dates as years, free-text notes
redacted; the diagnosis code (the label) stays clear because the policy says so for the
`ai_training` purpose. Who read what is in the lineage_guard ledger, and the lineage
(Postgres table -> task -> Parquet, with column-level masking) goes to Marquez through
Airflow's OpenLineage provider. Then the DAG flags the exported rows; that write touches a
sensitive table in production, so the task waits (deferred, no worker held) until a data
steward approves it with `lineage-guard approvals approve <id> --as <name>`.

Connections (see examples/airflow/README.md):
    clinic_db                  type lineage_guard_postgres (or postgres), extras {"environment": "production"}
    lineage_guard_master_key   any type, the masking master key as its password
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG
from lineage_guard.operators import GovernedPostgresOperator

TRAINING_BUCKET = "s3://clinic-training/triage/patients"

with DAG(
    dag_id="patients_for_finetuning",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    default_args={"conn_id": "clinic_db", "policy": "policy.yaml", "retries": 1,
                  "retry_delay": timedelta(minutes=5)},
    tags=["lineage_guard", "ai_training"],
) as dag:
    extract = GovernedPostgresOperator(
        task_id="extract_patients",
        purpose="ai_training",
        sql="""
            SELECT id, mrn, full_name, email, phone, birth_date, diagnosis, notes, admitted_on
            FROM patients
            WHERE admitted_on >= %(start)s AND admitted_on < %(end)s
        """,
        parameters={"start": "{{ data_interval_start | ds }}", "end": "{{ data_interval_end | ds }}"},
        output=TRAINING_BUCKET + "/{{ ds }}.parquet",
    )

    mark_exported = GovernedPostgresOperator(
        task_id="mark_exported",
        purpose="maintenance",
        sql="UPDATE patients SET exported_for_training = true "
            "WHERE admitted_on >= %(start)s AND admitted_on < %(end)s",
        parameters={"start": "{{ data_interval_start | ds }}", "end": "{{ data_interval_end | ds }}"},
        approval_timeout=timedelta(hours=12),
    )

    extract >> mark_exported
