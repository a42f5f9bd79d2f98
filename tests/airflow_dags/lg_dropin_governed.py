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
    QueryOperator(
        task_id="types",
        conn_id="lg_test_pg_plain",
        sql="SELECT 1.50::numeric(10,2) AS n, 2::bigint AS b, 2.5::float8 AS f, true AS t, DATE '2024-01-02' AS d, "
            "TIMESTAMP '2024-01-02 03:04:05' AS ts, TIMESTAMPTZ '2024-01-02 03:04:05+00' AS tz, "
            "'{\"a\": [1, 2]}'::jsonb AS j, ARRAY[1, 2] AS arr, '00000000-0000-0000-0000-000000000001'::uuid AS u, "
            "NULL::text AS nothing, interval '1 day 2 hours' AS i",
    )
