"""What `GovernedPostgresOperator` needs beyond "change one import" is refused when Airflow parses
the DAG file (a DAG import error naming the file), not at 3 a.m. in the first run."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from airflow_conftest import *

pytestmark = pytest.mark.airflow

POLICY = """\
version: 1
identities:
  "airflow:parse_check.read": {kind: service, groups: [analysts]}
require_declared_identities: {strict}
groups: [analysts]
purposes: [reporting]
classifications:
  public.patients.email: email
rules:
  - {groups: [analysts], purposes: [reporting], classifications: [email], action: mask, mask: {method: tokenize}}
"""


def dag_file(folder: Path, operator_args: str) -> Path:
    path = folder / "parse_check.py"
    path.write_text(textwrap.dedent(f"""\
        from datetime import datetime
        from airflow.sdk import DAG
        from lineage_guard.operators import GovernedPostgresOperator

        with DAG("parse_check", schedule=None, start_date=datetime(2024, 1, 1), catchup=False):
            GovernedPostgresOperator(task_id="read", conn_id="c", sql="SELECT email FROM patients", {operator_args})
        """))
    return path


def import_errors(folder: Path) -> str:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(folder))
    return "\n".join(str(e) for e in bag.import_errors.values())


@pytest.mark.parametrize("args, strict, message", [
    ('policy="policy.yaml"', "false", "GovernedPostgresOperator 'read': purpose= is required"),
    ('purpose="reporting"', "false", "GovernedPostgresOperator 'read': no policy: pass policy='policy.yaml'"),
    ('purpose="ai_training", policy="policy.yaml"', "false",
     "purpose 'ai_training' is not one of the policy's purposes (reporting); every read would be denied"),
    ('purpose="reporting", policy="policy.yaml", identity="svc-nobody"', "true",
     "identity 'svc-nobody' is not declared in the policy, which requires declared identities"),
])
def test_missing_or_wrong_governance_arguments_are_dag_import_errors(airflow_env, tmp_path, monkeypatch,
                                                                        args, strict, message):
    monkeypatch.delenv("LINEAGE_GUARD_POLICY", raising=False)
    (tmp_path / "policy.yaml").write_text(POLICY.replace("{strict}", strict))
    dag_file(tmp_path, args)
    assert message in import_errors(tmp_path)


def test_an_invalid_policy_is_a_dag_import_error_with_file_and_line(airflow_env, tmp_path):
    (tmp_path / "policy.yaml").write_text(POLICY.replace("{strict}", "false").replace("groups: [analysts], purposes",
                                                                                  "groups: [analyst], purposes"))
    dag_file(tmp_path, 'purpose="reporting", policy="policy.yaml"')
    assert f"{tmp_path / 'policy.yaml'}:10: rules.0.groups: unknown group 'analyst'" in import_errors(tmp_path)


def test_a_complete_dag_parses(airflow_env, tmp_path):
    (tmp_path / "policy.yaml").write_text(POLICY.replace("{strict}", "true"))
    dag_file(tmp_path, 'purpose="reporting", policy="policy.yaml"')
    assert import_errors(tmp_path) == ""
