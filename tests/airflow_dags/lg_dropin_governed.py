"""The drop-in claim, governed side: the same DAG, only the import changed (tests/test_airflow_dropin.py)."""

from datetime import datetime

from airflow.sdk import DAG
from lineage_guard.operators import GovernedPostgresOperator as QueryOperator

with DAG("lg_dropin_governed", schedule=None, start_date=datetime(2024, 1, 1), catchup=False,
         default_args={"policy": "policy.yaml", "purpose": "reporting"}) as dag:
    QueryOperator(
        task_id="cities",
        conn_id="lg_test_pg_plain",
        sql="sql/cities.sql",
        parameters={"last": 10},
    )
    QueryOperator(
        task_id="split",
        conn_id="lg_test_pg_plain",
        sql="SELECT count(*) FROM patients; SELECT max(id) FROM patients;",
        split_statements=True,
        return_last=False,
    )
