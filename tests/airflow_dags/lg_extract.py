"""Extract patients for fine-tuning, masked, to Parquet (tests/test_airflow_operator.py)."""

from datetime import datetime

from airflow.sdk import DAG
from lineage_guard.operators import GovernedPostgresOperator

with DAG("lg_extract", schedule=None, start_date=datetime(2024, 1, 1), catchup=False) as dag:
    GovernedPostgresOperator(
        task_id="extract_patients",
        conn_id="lg_test_pg",
        sql="SELECT id, mrn, full_name, email, diagnosis, city FROM patients ORDER BY id",
        purpose="ai_training",
        policy="policy.yaml",
        output="{{ dag_run.conf['out_dir'] }}/patients_{{ ds }}.parquet",
    )
