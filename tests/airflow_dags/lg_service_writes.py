"""Service mode: a write needing an approval defers until a human decides on the service's side
(tests/test_airflow_service.py)."""

from datetime import datetime

from airflow.sdk import DAG
from lineage_guard.operators import GovernedPostgresOperator

with DAG("lg_service_writes", schedule=None, start_date=datetime(2024, 1, 1), catchup=False) as dag:
    GovernedPostgresOperator(
        task_id="fix_city",
        service_conn_id="lg_service_writer",     # the task's own JWT, from a token file
        sql="UPDATE patients SET city = 'Bergen' WHERE id = {{ dag_run.conf['patient'] }}",
        purpose="maintenance",
        approval_poll_interval=0.5,
        retries=0,
    )
