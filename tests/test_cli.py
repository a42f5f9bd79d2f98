"""The CLI as a user runs it: plan (text, --json contract, --jsonl batch), extract, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lineage_guard.cli import app

HERE = Path(__file__).parent
CORPUS_POLICY = HERE / "corpus" / "policy.yaml"
CORPUS = HERE / "corpus"
OFFLINE = ["--schema-file", str(CORPUS / "schema.sql"), "--schema-file", str(CORPUS / "schema_extras.sql")]
WHO = ["--policy", str(CORPUS_POLICY), "--identity", "svc-training", "--purpose", "ai_training"]
runner = CliRunner()


def plan(*args: str):
    return runner.invoke(app, ["plan", *WHO, *OFFLINE, *args])


def test_plan_json_is_the_documented_contract():
    result = plan("--sql", "SELECT id, email, plan FROM customers", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert set(doc) == {"action", "reasons", "statement", "columns", "row_filters"} and doc["action"] == "allow"
    assert doc["row_filters"] == []  # additive: only a policy row filter fills it
    assert all(isinstance(r, str) for r in doc["reasons"]) and isinstance(doc["statement"], str)
    assert doc["columns"] == [
        {"position": 0, "name": "id", "masked": False, "method": None, "sources": ["public.customers.id"]},
        {"position": 1, "name": "email", "masked": True, "method": "tokenize", "sources": ["public.customers.email"]},
        {"position": 2, "name": "plan", "masked": False, "method": None, "sources": ["public.customers.plan"]},
    ]


@pytest.mark.parametrize("sql, code", [
    ("SELECT count(*) FROM customers", 0),
    ("SELECT email FROM customers; DROP TABLE customers", 2),
    ("DELETE FROM orders", 2),
    ("SELECT * FROM pg_authid", 2),
])
def test_plan_exit_codes(sql, code):
    result = plan("--sql", sql, "--json")
    assert result.exit_code == code, result.output
    assert json.loads(result.stdout)["action"] == {0: "allow", 2: "deny"}[code]


def test_plan_text_output_and_file_input(tmp_path):
    query = tmp_path / "q.sql"
    query.write_text("SELECT full_name FROM patients")
    result = plan("--file", str(query))
    assert result.exit_code == 0 and "allow" in result.stdout and "tokenize" in result.stdout


def test_plan_jsonl_one_decision_per_line_same_id(tmp_path):
    lines = tmp_path / "dags.jsonl"
    lines.write_text("\n".join(json.dumps(x) for x in [
        {"id": "a", "sql": "SELECT id FROM orders"},
        {"id": "b", "sql": "SELECT ssn FROM customers"},
        {"id": "c", "sql": "DROP TABLE orders"},
    ]) + "\n")
    result = plan("--jsonl", str(lines), "--json")
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(o["id"], o["action"]) for o in out] == [("a", "allow"), ("b", "allow"), ("c", "deny")]
    assert out[1]["columns"][0]["masked"] is True
    assert result.exit_code == 2  # any denial fails the batch, so CI can gate on it


def test_plan_errors_are_clear_and_exit_1(tmp_path):
    assert "exactly one of --sql" in plan().output and plan().exit_code == 1
    bad = tmp_path / "bad.yaml"
    bad.write_text("purposes: [a]\nrules:\n  - action: mask\n")
    result = runner.invoke(app, ["plan", "--policy", str(bad), "--identity", "x", "--purpose", "a", *OFFLINE, "--sql", "SELECT 1"])
    assert result.exit_code == 1 and f"{bad}:3: rules.0" in result.output
    no_id = runner.invoke(app, ["plan", "--policy", str(CORPUS_POLICY), "--purpose", "ai_training", *OFFLINE, "--sql", "SELECT 1"])
    assert no_id.exit_code == 1 and "LINEAGE_GUARD_IDENTITY" in no_id.output


def test_extract_end_to_end_through_the_console_script(corpus_url, tmp_path):
    target = tmp_path / "out" / "customers.parquet"
    cmd = [sys.executable, "-m", "lineage_guard.cli", "extract", *WHO, "--source", corpus_url,
           "--sql", "SELECT id, email, plan FROM customers", "--to", str(target), "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["rows"] == 50 and summary["masked_columns"] == ["email"] and summary["receipt_id"]
    import pyarrow.parquet as pq

    assert pq.read_table(target).num_rows == 50
    denied = subprocess.run([*cmd[:-5], "--sql", "SELECT * FROM pg_authid", "--to", str(tmp_path / "x.parquet")],
                            capture_output=True, text=True, timeout=120)
    assert denied.returncode == 2 and "denied" in denied.stderr and not (tmp_path / "x.parquet").exists()


def test_check_policy(tmp_path):
    ok = runner.invoke(app, ["check-policy", str(CORPUS_POLICY)])
    assert ok.exit_code == 0 and "1 identities" in ok.stdout and "12 classified columns" in ok.stdout
    bad = tmp_path / "p.yaml"
    bad.write_text("rules:\n  - action: clear\n    mask: {method: redact}\n")
    result = runner.invoke(app, ["check-policy", str(bad)])
    assert result.exit_code == 1 and f"{bad}:2: rules.0: a rule with action 'clear' must not have a 'mask'" in result.output
