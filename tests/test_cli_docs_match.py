"""What the docs promise is what the code records: bind parameters in the ledger, the tables a write
touched, lineage outputs only for files written, and no import-time noise from GX or platformdirs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import psycopg
from typer.testing import CliRunner

from lineage_guard import GovernedSession, Identity
from lineage_guard.audit import Ledger, effective
from lineage_guard.cli import app
from lineage_guard.errors import AccessDenied
from lineage_guard.policy import parse_policy

runner = CliRunner()
POLICY = parse_policy("""\
version: 1
identities:
  etl: {kind: service, groups: [data-eng]}
groups: [data-eng]
purposes: [maintenance]
classifications:
  public.accounts.email: email
rules:
  - {groups: [data-eng], action: mask, mask: {method: tokenize}}
writes:
  allowed_groups: [data-eng]
""")


def test_the_ledger_keeps_bind_parameters_and_the_tables_a_write_or_ddl_touched(new_database):
    url = new_database()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE accounts (id int PRIMARY KEY, email text, city text)")
        conn.execute("INSERT INTO accounts VALUES (1, 'a@example.org', 'Oslo'), (2, 'b@example.org', 'Bergen')")
    with GovernedSession(url, POLICY, Identity("etl", "service"), "maintenance") as session:
        session.read_arrow("SELECT id, email FROM accounts WHERE id = $1", [1])
        session.execute("UPDATE accounts SET city = 'Oslo' WHERE id = $1", [2])
        try:
            session.execute("DROP TABLE accounts")
        except AccessDenied:
            pass
    entries = effective(Ledger.open().entries())   # one per run: the write's success supersedes its intent
    read, write, ddl = (e["body"] for e in entries[-3:])
    assert read["statement"]["text"] == "SELECT id, email FROM accounts WHERE id = $1"      # not `$%s`
    assert write["statement"]["text"] == "UPDATE accounts SET city = %s WHERE id = $1"
    assert write["source"]["tables"] == ["public.accounts"] and write["outcome"] == "success"  # not []
    assert ddl["source"]["tables"] == ["public.accounts"] and ddl["outcome"] == "denied"
    shown = runner.invoke(app, ["audit", "receipt", entries[-3]["id"]])
    assert shown.exit_code == 0 and "$%s" not in shown.stdout and "WHERE id = $1" in shown.stdout


def test_airflow_lineage_names_the_declared_output_only_before_the_run():
    from lineage_guard.operators.lineage import operator_lineage

    start = operator_lineage([], "/data/out/{{ ds }}.parquet", "START")
    assert [d.name for d in start.outputs] == ["/data/out/{{ ds }}.parquet"]
    # A denied read or a task whose template failed wrote nothing: its FAIL names no output.
    assert operator_lineage([], "/data/out/{{ ds }}.parquet", "FAIL").outputs == []
    assert operator_lineage([], "/data/out/2024-01-01.parquet", "COMPLETE").outputs == []


def test_great_expectations_import_logs_nothing_below_warning_under_a_debug_root_logger():
    code = (
        "import logging, sys\n"
        "logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)\n"
        "from lineage_guard.integrations.great_expectations import _gx\n"
        "_gx()\n"
        "logging.getLogger('great_expectations.probe').warning('a real GX warning still shows')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    gx_lines = [line for line in done.stderr.splitlines() if "great_expectations" in line]
    assert gx_lines == ["WARNING:great_expectations.probe:a real GX warning still shows"]


def test_the_embedded_server_starts_without_a_runtime_dir_warning(traversable_dir):
    code = (
        "import sys, warnings\n"
        "warnings.simplefilter('always')\n"
        "from lineage_guard.sources.embedded import embedded_url, stop_embedded\n"
        "with warnings.catch_warnings(record=True) as seen:\n"
        "    warnings.simplefilter('always')\n"
        "    embedded_url(sys.argv[1])\n"
        "stop_embedded(sys.argv[1])\n"
        "print([str(w.message) for w in seen])\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    done = subprocess.run([sys.executable, "-W", "always", "-c", code, str(traversable_dir / "pg")], check=False,
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "XDG_RUNTIME_DIR" not in done.stderr + done.stdout
    assert json.loads(done.stdout.strip().splitlines()[-1].replace("'", '"')) == []
