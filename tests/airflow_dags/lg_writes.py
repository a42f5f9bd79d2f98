"""Guarded writes: one needs an approval (deferred), one is denied, one batch is refused whole
(tests/test_airflow_writes.py)."""

from datetime import datetime

from airflow.sdk import DAG
from lineage_guard.operators import GovernedPostgresOperator

with DAG("lg_writes", schedule=None, start_date=datetime(2024, 1, 1), catchup=False,
         default_args={"conn_id": "lg_test_pg", "policy": "policy.yaml", "purpose": "maintenance"}) as dag:
    GovernedPostgresOperator(
        task_id="fix_city",
        sql="UPDATE patients SET city = 'Bergen' WHERE id = 1",
        approval_poll_interval=0.5,
    )
    GovernedPostgresOperator(
        task_id="wipe",
        sql="DELETE FROM patients",
    )
    GovernedPostgresOperator(
        task_id="two_steps",
        sql=["UPDATE patients SET city = 'Tromsø' WHERE id = 3", "DELETE FROM patients"],
    )
