"""A split read mapped over its endpoints: plan once, one mapped task per key range (tests/test_airflow_split.py)."""

from datetime import datetime, timedelta

from airflow.sdk import DAG
from lineage_guard.operators import GovernedPostgresOperator, GovernedSplitReadOperator

with DAG("lg_split", schedule=None, start_date=datetime(2024, 1, 1), catchup=False) as dag:
    plan = GovernedSplitReadOperator(
        task_id="plan",
        service_conn_id="lg_split",
        sql="SELECT id, email, ssn, plan FROM people",
        purpose="ai_training",
        partitions=4,
    )
    GovernedPostgresOperator.partial(
        task_id="read",
        service_conn_id="lg_split",
        purpose="ai_training",
        output="{{ dag_run.conf['out_dir'] }}/part-{{ ti.map_index }}.parquet",
        retries=1,
        retry_delay=timedelta(seconds=1),
    ).expand(endpoint=plan.output)
