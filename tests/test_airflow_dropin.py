"""The drop-in claim: the same DAG on SQLExecuteQueryOperator and on GovernedPostgresOperator (import changed only)."""

from __future__ import annotations

import difflib
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from airflow_conftest import *
from airflow_conftest import DAGS

pytestmark = pytest.mark.airflow


def test_the_two_dag_files_differ_only_in_the_import():
    plain = (DAGS / "lg_dropin_plain.py").read_text().splitlines()
    governed = (DAGS / "lg_dropin_governed.py").read_text().splitlines()
    changed = [line for line in difflib.unified_diff(plain, governed, lineterm="", n=0)
               if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    assert sorted(changed) == sorted([
        '-"""The drop-in claim, plain side: a reporting DAG on SQLExecuteQueryOperator (tests/test_airflow_dropin.py)."""',
        '-from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator as QueryOperator',
        '-with DAG("lg_dropin_plain", schedule=None, start_date=datetime(2024, 1, 1), catchup=False,',
        '+"""The drop-in claim, governed side: the same DAG, only the import changed (tests/test_airflow_dropin.py)."""',
        '+from lineage_guard.operators import GovernedPostgresOperator as QueryOperator',
        '+with DAG("lg_dropin_governed", schedule=None, start_date=datetime(2024, 1, 1), catchup=False,',
    ])


def test_same_results_on_a_non_sensitive_query(airflow_env, patients):
    from lineage_guard.audit import Ledger, effective

    plain = airflow_env.run("lg_dropin_plain")
    governed = airflow_env.run("lg_dropin_governed")
    assert plain.tasks == governed.tasks == {"cities": "success", "split": "success", "types": "success"}
    assert governed.xcoms == plain.xcoms
    assert [type(r) for r in governed.xcoms["cities"]] == [tuple] * len(plain.xcoms["cities"])
    assert sum(r[1] for r in governed.xcoms["cities"]) == 10
    assert governed.xcoms["split"] == [[(len(patients),)], [(len(patients),)]]
    [typed] = governed.xcoms["types"]  # PostgreSQL types come back as psycopg returns them
    assert (typed[0], typed[7], typed[9], typed[11]) == (
        Decimal("1.50"), {"a": [1, 2]}, uuid.UUID(int=1), timedelta(days=1, hours=2))

    # only the governed run left receipts: one per statement (streamed: its `open` intent superseded by
    # the final entry), as the default service identity
    entries = [str(e) for e in effective(Ledger.open().entries())]
    assert len(entries) == 4 and all("airflow:lg_dropin_governed." in e for e in entries)


def test_a_governed_task_emits_only_its_own_lineage_after_plain_sql_ran_in_the_process(airflow_env, patients):
    """The plain DAG's PostgresHook fills Airflow's process-wide hook lineage collector (dag.test() runs every
    task in one process and never clears it). A governed task's START has no datasets yet, and the provider
    then falls back to that collector: it re-sent the plain queries as `<task>.query.N` jobs of the governed
    task, named by the Postgres provider (`postgres://%2Froot%2F...:5432` for the embedded server's socket,
    refused by Marquez). A governed task's events are its own: its job, its datasets, our namespace."""
    from conftest import namespace_of
    from lineage_check import assert_valid_events

    airflow_env.run("lg_dropin_plain")
    governed = airflow_env.run("lg_dropin_governed")
    assert governed.tasks == {"cities": "success", "split": "success", "types": "success"}
    jobs = {e["job"]["name"] for e in governed.events}
    assert jobs == {"lg_dropin_governed.cities", "lg_dropin_governed.split", "lg_dropin_governed.types"}
    namespaces = {d["namespace"] for e in governed.events for d in e.get("inputs") or []}
    assert namespaces == {namespace_of(airflow_env.pg_url)}
    assert_valid_events(governed.events)
