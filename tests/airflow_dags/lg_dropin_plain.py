"""The drop-in claim, plain side: a reporting DAG on SQLExecuteQueryOperator (tests/test_airflow_dropin.py)."""

from datetime import datetime

from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator as QueryOperator
from airflow.sdk import DAG

with DAG("lg_dropin_plain", schedule=None, start_date=datetime(2024, 1, 1), catchup=False,
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
