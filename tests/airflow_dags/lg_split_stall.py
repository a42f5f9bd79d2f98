"""lg_split with a short service_timeout_s on the mapped reads: a black-holed endpoint stream fails within it
and Airflow retries that task instance (tests/test_airflow_split.py)."""

from datetime import datetime, timedelta

from airflow.sdk import DAG
from lineage_guard.operators import GovernedPostgresOperator, GovernedSplitReadOperator

with DAG("lg_split_stall", schedule=None, start_date=datetime(2024, 1, 1), catchup=False) as dag:
    plan = GovernedSplitReadOperator(
        task_id="plan",
        service_conn_id="lg_split",
        sql="SELECT id, email, ssn, plan FROM people",
        purpose="ai_training",
        partitions=4,
        service_timeout_s=60,
    )
    GovernedPostgresOperator.partial(
        task_id="read",
        service_conn_id="lg_split",
        purpose="ai_training",
        output="{{ dag_run.conf['out_dir'] }}/part-{{ ti.map_index }}.parquet",
        retries=1,
        retry_delay=timedelta(seconds=1),
        service_timeout_s=5,
    ).expand(endpoint=plan.output)
