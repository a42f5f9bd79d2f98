"""Masked rows through XCom, under a row cap (tests/test_airflow_operator.py)."""

from datetime import datetime

from airflow.providers.common.sql.hooks.handlers import fetch_one_handler
from airflow.sdk import DAG
from lineage_guard.operators import GovernedPostgresOperator

with DAG("lg_rows", schedule=None, start_date=datetime(2024, 1, 1), catchup=False,
         default_args={"conn_id": "lg_test_pg", "policy": "policy.yaml"}) as dag:
    GovernedPostgresOperator(
        task_id="read_patients",
        sql="SELECT id, full_name, city FROM patients WHERE id <= %(last)s ORDER BY id",
        parameters={"last": 3},
        purpose="ai_training",
    )
    GovernedPostgresOperator(
        task_id="first_only",
        sql="SELECT id, email FROM patients ORDER BY id",
        handler=fetch_one_handler,
        purpose="ai_training",
    )
    GovernedPostgresOperator(
        task_id="too_many",
        sql="SELECT id, city FROM patients",
        purpose="reporting",
        max_rows=5,
    )
