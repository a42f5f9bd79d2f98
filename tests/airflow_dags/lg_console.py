"""A write that needs an approval, decided in the web console (tests/test_console_browser.py)."""

from datetime import datetime

from airflow.sdk import DAG
from lineage_guard.operators import GovernedPostgresOperator

with DAG("lg_console", schedule=None, start_date=datetime(2024, 1, 1), catchup=False,
         default_args={"conn_id": "lg_test_pg", "policy": "policy.yaml", "purpose": "maintenance"}) as dag:
    GovernedPostgresOperator(
        task_id="fix_city",
        sql="UPDATE patients SET city = 'Bergen' WHERE id = 5",
        approval_poll_interval=0.5,
    )
