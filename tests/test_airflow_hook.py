"""GovernedPostgresHook (connections, master key), ApprovalTrigger (real approval store), provider registration."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from airflow_conftest import *
from conftest import TEST_MASTER_KEY, require

pytestmark = pytest.mark.airflow


@pytest.fixture
def conn(monkeypatch):
    """Define Airflow connection `conn_id` from keyword fields, the way a secrets backend would."""
    require("airflow", "airflow")

    def define(conn_id: str, **fields) -> str:
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields))
        return conn_id

    return define


def test_source_url_and_settings_come_from_the_connection(conn):
    from lineage_guard.operators import GovernedPostgresHook

    conn("clinic", conn_type="lineage_guard_postgres", host="db.internal", port=6543, login="svc etl",
         password="p@ss/word", schema="clinic",
         extra={"sslmode": "require", "environment": "production", "statement_timeout_ms": "5000",
                "search_path": "app"})
    hook = GovernedPostgresHook("clinic")
    assert hook.source_url == "postgresql://svc%20etl:p%40ss%2Fword@db.internal:6543/clinic?sslmode=require"
    assert (hook.environment, hook.statement_timeout_ms, hook.search_path) == ("production", 5000, "app")
    source = hook.get_conn()
    assert (source.info.namespace, source.info.database, source.info.environment) == (
        "postgres://db.internal:6543", "clinic", "production")
    assert (source.statement_timeout_ms, source.schema) == (5000, "app")
    assert "p@ss" not in source.redacted_url

    overridden = GovernedPostgresHook("clinic", database="clinic_replica", statement_timeout_ms=900)
    assert overridden.source_url.split("?")[0].endswith("/clinic_replica")
    assert (overridden.statement_timeout_ms, overridden.environment) == (900, "production")
    with pytest.raises(TypeError):  # the environment is the connection's, never DAG code's
        GovernedPostgresHook("clinic", environment="staging")


@pytest.mark.parametrize("fields, message", [
    ({"conn_type": "mysql", "host": "h", "schema": "d"}, "has type 'mysql'"),
    ({"conn_type": "postgres", "host": "h", "schema": "d", "extra": {"iam": True}}, "does not support"),
    ({"conn_type": "postgres", "host": "h", "schema": "d", "extra": {"options": "-c search_path=evil"}},
     "does not support"),
    ({"conn_type": "postgres", "host": "h", "schema": "d", "extra": {"colour": "red"}}, "unknown extra(s) ['colour']"),
    ({"conn_type": "postgres", "host": "h"}, "names no database"),
    ({"conn_type": "postgres", "host": "h", "schema": "d", "extra": {"statement_timeout_ms": "soon"}},
     "statement_timeout_ms must be an integer"),
])
def test_bad_connections_are_refused_with_what_to_fix(conn, fields, message):
    from lineage_guard.operators import GovernedPostgresHook

    from lineage_guard.errors import ConfigError

    conn("bad", **fields, password="hunter2-secret")
    hook = GovernedPostgresHook("bad")
    with pytest.raises(ConfigError) as caught:
        _ = hook.source_url, hook.statement_timeout_ms
    assert message in str(caught.value) and "hunter2-secret" not in str(caught.value)


def test_master_key_from_connection_else_environment_never_echoed(conn, monkeypatch):
    from lineage_guard.operators import GovernedPostgresHook

    from lineage_guard.errors import ConfigError
    from lineage_guard.mask import Keyring

    expected = Keyring(TEST_MASTER_KEY).key_id("purpose:ai_training")
    monkeypatch.delenv("LINEAGE_GUARD_MASTER_KEY")
    with pytest.raises(ConfigError, match="create the Airflow connection 'lineage_guard_master_key'"):
        GovernedPostgresHook("any").get_keyring()

    conn("lineage_guard_master_key", conn_type="generic", password=TEST_MASTER_KEY)
    assert GovernedPostgresHook("any").get_keyring().key_id("purpose:ai_training") == expected

    conn("weak_key", conn_type="generic", password="not-a-real-key-0123")
    with pytest.raises(ConfigError) as caught:
        GovernedPostgresHook("any", master_key_conn_id="weak_key").get_keyring()
    assert "is not a valid master key" in str(caught.value) and "not-a-real-key" not in str(caught.value)

    monkeypatch.setenv("LINEAGE_GUARD_MASTER_KEY", TEST_MASTER_KEY)
    assert GovernedPostgresHook("any", master_key_conn_id="absent").get_keyring().key_id(
        "purpose:ai_training") == expected


def test_test_connection_reads_through_the_governed_source(conn, pg_url):
    from lineage_guard.operators import GovernedPostgresHook

    from lineage_guard.sources.pg_url import url_parts

    parts = url_parts(pg_url)
    conn("live", conn_type="postgres", host=parts["host"], port=parts["port"], login=parts["user"],
         schema=parts["database"])
    conn("dead", conn_type="postgres", host="127.0.0.1", port=1, login="nobody", schema="x")
    assert GovernedPostgresHook("live").test_connection() == (True, "connection works (read-only transaction)")
    ok, message = GovernedPostgresHook("dead").test_connection()
    assert not ok and message


@pytest.mark.parametrize("decide, status", [("approve", "approved"), ("deny", "denied"), (None, "expired")])
def test_trigger_fires_when_the_request_is_decided_or_expires(decide, status):
    require("airflow", "airflow")
    from lineage_guard.operators import ApprovalTrigger

    from lineage_guard.approvals import ApprovalsConfig, ApprovalStore, fingerprint
    from lineage_guard.identity import Identity
    from lineage_guard.run import SourceInfo

    store = ApprovalStore.open(config=ApprovalsConfig(ttl_seconds=1 if decide is None else 3600))
    who, sql, source = Identity("airflow:d.t", "service"), "UPDATE patients SET city = 'x' WHERE id = 1", \
        SourceInfo("postgres", "db", 5432, "clinic")
    request = store.request(fingerprint=fingerprint(who, sql, "maintenance", source), identity=who,
                            purpose="maintenance", statement=sql, source=source, reasons=["writes need approval"],
                            context={"dag_id": "d"})
    trigger = ApprovalTrigger(request_id=request.id, store_url=request.store_arg, poll_interval=0.05,
                              statement_index=2)
    classpath, kwargs = trigger.serialize()
    assert classpath == "lineage_guard.operators.triggers.ApprovalTrigger"
    revived = ApprovalTrigger(**kwargs)

    async def first_event():
        timer = threading.Timer(0.3, getattr(store, decide or "get"), args=(request.id, "dana")[:2 if decide else 1])
        timer.start()
        try:
            return await asyncio.wait_for(revived.run().__anext__(), timeout=30)
        finally:
            timer.cancel()

    event = asyncio.run(first_event())
    assert event.payload == {"status": status, "request_id": request.id, "approver": "dana" if decide else None,
                             "statement_index": 2}


@pytest.mark.parametrize("event, message", [
    ({"status": "denied", "request_id": "r1", "approver": "dana"}, "request r1 was denied by dana"),
    ({"status": "expired", "request_id": "r1"}, "request r1 expired before anyone decided it"),
    ({"status": "used", "request_id": "r1"}, "request r1 was already used by another run"),
    ({"status": "error", "request_id": "r1", "error": "OperationalError"}, "could not be read from the approval store"),
])
def test_resuming_without_an_approval_fails_and_runs_nothing(event, message):
    require("airflow", "airflow")
    from airflow.sdk.exceptions import AirflowFailException
    from lineage_guard.operators import GovernedPostgresOperator

    operator = GovernedPostgresOperator(task_id="t", conn_id="nowhere", sql="DELETE FROM t WHERE id = 1",
                                        purpose="maintenance", policy="missing.yaml")
    with pytest.raises(AirflowFailException) as caught:  # would fail differently if it tried to connect
        operator.execute_complete({}, event)
    assert message in str(caught.value) and "the statement was not run" in str(caught.value)


def test_provider_registers_the_connection_type(airflow_env):
    airflow = str(Path(sys.executable).parent / "airflow")
    listed = subprocess.run([airflow, "providers", "hooks", "-o", "json"], capture_output=True, text=True, timeout=120,
                            check=False)
    assert listed.returncode == 0, listed.stderr[-2000:]
    hooks = [h for h in json.loads(listed.stdout) if h["package_name"] == "lineage-guard"]
    assert sorted(hooks, key=lambda h: h["connection_type"]) == [
        {"connection_type": "lineage_guard_postgres", "class": "lineage_guard.operators.hooks.GovernedPostgresHook",
         "conn_id_attribute_name": "conn_id", "package_name": "lineage-guard", "hook_name": "lineage_guard PostgreSQL"},
        {"connection_type": "lineage_guard_service", "class": "lineage_guard.operators.service.GovernedServiceHook",
         "conn_id_attribute_name": "conn_id", "package_name": "lineage-guard", "hook_name": "lineage_guard service"}]


@pytest.mark.parametrize("sql, parameters, expected", [
    ("SELECT a FROM t WHERE a = %s AND b = %s", (1, "x"), ("SELECT a FROM t WHERE a = $1 AND b = $2", [1, "x"])),
    ("SELECT a FROM t WHERE a = %(k)s OR b = %(k)s", {"k": 3}, ("SELECT a FROM t WHERE a = $1 OR b = $1", [3])),
    ("SELECT a FROM t WHERE a = $1", [5], ("SELECT a FROM t WHERE a = $1", [5])),
    ("SELECT '%s' FROM t", None, ("SELECT '%s' FROM t", None)),
    ("SELECT a FROM t WHERE b LIKE 'x%%' AND a = %s", [1], ("SELECT a FROM t WHERE b LIKE 'x%' AND a = $1", [1])),
    ("SELECT a FROM t WHERE b LIKE 'x%%'", None, ("SELECT a FROM t WHERE b LIKE 'x%%'", None)),
])
def test_psycopg_parameters_become_numbered(sql, parameters, expected):
    from lineage_guard.operators.params import numbered

    assert numbered(sql, parameters) == expected


@pytest.mark.parametrize("sql, parameters, message", [
    ("SELECT a FROM t WHERE a = %s", (1, 2), "1 %s placeholder(s) but 2"),
    ("SELECT a FROM t WHERE a = %(k)s", {"j": 1}, "no key 'k'"),
    ("SELECT a FROM t WHERE a = %s", {"k": 1}, "use %(name)s placeholders"),
])
def test_parameter_mismatches_say_what_to_fix(sql, parameters, message):
    from lineage_guard.operators.params import numbered

    from lineage_guard.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        numbered(sql, parameters)
    assert message in str(caught.value)


def test_example_dag_parses_and_its_policy_loads(airflow_env):
    from airflow.dag_processing.dagbag import DagBag
    from lineage_guard.operators import GovernedPostgresOperator

    from lineage_guard.policy import load_policy

    example = Path(__file__).resolve().parents[1] / "examples" / "airflow" / "dags"
    bag = DagBag(dag_folder=str(example))
    assert bag.import_errors == {}
    dag = bag.dags["patients_for_finetuning"]
    assert [type(t) for t in dag.tasks] == [GovernedPostgresOperator] * 2
    assert dag.get_task("extract_patients").output_uri.startswith("s3://clinic-training/")
    policy = load_policy(example / "policy.yaml")
    assert "airflow:patients_for_finetuning.extract_patients" in policy.identities


@pytest.mark.parametrize("kwargs, message", [
    ({"identity": "dr-ho"}, "identity 'dr-ho' is a person"),
    ({"identity": "human:dana"}, "identity 'dana' is a person"),
    ({"hook_params": {"environment": "staging"}}, "hook_params ['environment'] are not accepted"),
    ({"output": "/tmp/x.parquet", "sql": ["SELECT 1", "SELECT 2"]}, "output= writes the result of one statement"),
])
def test_operator_refuses_what_would_weaken_governance(conn, kwargs, message):
    from airflow.sdk.exceptions import AirflowFailException
    from lineage_guard.operators import GovernedPostgresOperator

    from lineage_guard.policy import Policy

    conn("clinic", conn_type="postgres", host="127.0.0.1", port=1, schema="clinic")
    policy = Policy.model_validate({"identities": {"dr-ho": {"kind": "human", "groups": ["clinicians"]}},
                                    "groups": ["clinicians"]})
    args = {"task_id": "t", "conn_id": "clinic", "sql": "SELECT 1", "purpose": "reporting", "policy": policy, **kwargs}
    operator = GovernedPostgresOperator(**args)
    with pytest.raises(AirflowFailException) as caught:
        operator.execute({})
    assert message in str(caught.value)


def test_who_why_and_which_policy_are_not_templated():
    require("airflow", "airflow")
    from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator
    from lineage_guard.operators import GovernedPostgresOperator

    fields = set(GovernedPostgresOperator.template_fields)
    assert not fields & {"identity", "purpose", "policy"}
    assert set(SQLExecuteQueryOperator.template_fields) <= fields and "output_uri" in fields
    assert GovernedPostgresOperator.template_ext == SQLExecuteQueryOperator.template_ext


@pytest.mark.parametrize("module", ["provider", "cursor", "params", "recording", "triggers"])
def test_docstring_examples_run(module):
    require("airflow", "airflow")
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(f"lineage_guard.operators.{module}"))
    assert result.attempted > 0 and result.failed == 0


def test_no_masking_key_fails_the_task_before_any_read(conn, monkeypatch):
    from airflow.sdk.exceptions import AirflowFailException
    from lineage_guard.operators import GovernedPostgresOperator

    from lineage_guard.policy import Policy

    conn("clinic", conn_type="postgres", host="127.0.0.1", port=1, schema="clinic")
    monkeypatch.delenv("LINEAGE_GUARD_MASTER_KEY")
    operator = GovernedPostgresOperator(task_id="t", conn_id="clinic", sql="SELECT 1", purpose="reporting",
                                        policy=Policy())
    with pytest.raises(AirflowFailException, match="no masking key: create the Airflow connection"):
        operator.execute({})
