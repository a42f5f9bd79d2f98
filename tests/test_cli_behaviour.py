"""The CLI behaves like the ones data engineers know (dbt, ruff, sqlfluff): exit codes, --json
on every outcome, -h/--version/completion, config discovery, a fast --help, clear one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lineage_guard import __version__
from lineage_guard.cli import app

HERE = Path(__file__).parent
CORPUS = HERE / "corpus"
CORPUS_POLICY = CORPUS / "policy.yaml"
OFFLINE = ["--schema-file", str(CORPUS / "schema.sql"), "--schema-file", str(CORPUS / "schema_extras.sql")]
WHO = ["--identity", "svc-training", "--purpose", "ai_training"]
runner = CliRunner()


def cli(*args: str):
    return runner.invoke(app, list(args))


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lineage_guard.cli", *args], check=False, capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})}, cwd=cwd)


# -- exit codes -----------------------------------------------------------------------------------

@pytest.mark.parametrize("args", [
    ["plan", "--no-such-option"],                         # unknown option
    ["no-such-command"],                                  # unknown command
    ["audit", "no-such-command"],                         # unknown sub-command of a lazy group
    ["lineage", "prune", "--older-than-days", "-1"],      # a bad value (BadParameter in the command body)
    ["extract", "--policy", str(CORPUS_POLICY), "--purpose", "ai_training"],  # missing --to
    ["scan", "--threshold", "2"],                         # out of range
])
def test_usage_errors_exit_64_not_2_which_means_denied(args):
    result = cli(*args)
    assert result.exit_code == 64, result.output


def test_denied_stays_2_and_usage_64_through_the_console_script():
    denied = run_cli("plan", "--policy", str(CORPUS_POLICY), *WHO, *OFFLINE, "--sql", "SELECT * FROM pg_authid", "--json")
    assert denied.returncode == 2 and json.loads(denied.stdout)["action"] == "deny"
    typo = run_cli("plan", "--polcy", str(CORPUS_POLICY))
    assert typo.returncode == 64 and "No such option" in typo.stderr


# -- --json on every outcome -------------------------------------------------------------------------

APPROVAL_POLICY = """\
version: 1
identities:
  dr-grey: {kind: human, groups: [clinicians]}
  svc-training: {kind: service, groups: [training-jobs]}
purposes: [treatment, ai_training]
classifications:
  public.patients.notes: clinical_note
  public.customers.email: email
rules:
  - {name: notes-with-approval, groups: [clinicians], purposes: [treatment], classifications: [clinical_note],
     action: clear, approval: true}
  - {groups: [training-jobs], action: mask, mask: {method: tokenize}}
"""


def test_extract_json_prints_the_outcome_when_done_denied_waiting_or_failed(corpus_url, tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text(APPROVAL_POLICY)
    base = ["extract", "--policy", str(policy), "--source", corpus_url, "--json"]

    done = cli(*base, *WHO, "--sql", "SELECT id, email FROM customers", "--to", str(tmp_path / "ok.parquet"))
    assert done.exit_code == 0, done.output
    doc = json.loads(done.stdout)
    assert doc["outcome"] == "done" and doc["rows"] == 50 and doc["masked_columns"] == ["email"]

    denied = cli(*base, *WHO, "--sql", "SELECT * FROM pg_authid", "--to", str(tmp_path / "no.parquet"))
    assert denied.exit_code == 2
    doc = json.loads(denied.stdout)
    assert doc["outcome"] == "denied" and doc["reasons"] and doc["receipt_id"]

    waiting = cli(*base, "--identity", "dr-grey", "--purpose", "treatment", "--sql", "SELECT notes FROM patients",
                  "--to", str(tmp_path / "wait.parquet"))
    assert waiting.exit_code == 3, waiting.output
    doc = json.loads(waiting.stdout)
    assert doc["outcome"] == "needs_approval" and doc["request_id"] in doc["approve_command"]

    failed = cli(*base, *WHO, "--sql", "SELECT id / 0 AS x FROM customers", "--to", str(tmp_path / "err.parquet"))
    assert failed.exit_code == 1
    assert json.loads(failed.stdout)["outcome"] == "error"
    assert not any((tmp_path / n).exists() for n in ("no.parquet", "wait.parquet", "err.parquet"))


def test_plan_json_on_an_error_is_json_too(tmp_path):
    result = cli("plan", "--policy", str(tmp_path / "missing.yaml"), *WHO, *OFFLINE, "--sql", "SELECT 1", "--json")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["outcome"] == "error" and "missing.yaml" in doc["error"]


# -- -h, --version, completion ----------------------------------------------------------------------

def test_short_help_version_and_completion():
    assert cli("-h").exit_code == 0 and "plan" in cli("-h").stdout
    assert cli("plan", "-h").exit_code == 0 and "--purpose" in cli("plan", "-h").stdout
    assert cli("audit", "-h").exit_code == 0 and "who-saw" in cli("audit", "-h").stdout
    assert cli("--version").stdout.strip() == f"lineage-guard {__version__}"
    assert cli("-V").exit_code == 0
    # Typer's --show-completion guesses the shell from the parent processes: run it under a real bash.
    shown = subprocess.run(["bash", "-c", f"{sys.executable} -m lineage_guard.cli --show-completion; exit $?"],
                           capture_output=True, text=True, timeout=120, check=False)
    assert shown.returncode == 0 and "_LINEAGE_GUARD_COMPLETE" in shown.stdout, shown.stderr
    # With no shell to find (cron, CI, make), naming it works; an unknown one is a usage error.
    for shell in ("bash", "zsh", "fish"):
        named = cli("completion", shell)
        assert named.exit_code == 0 and "_LINEAGE_GUARD_COMPLETE" in named.stdout, named.output
    assert cli("completion", "tcsh").exit_code == 64
    # What the installed bash script asks at <TAB>: command names, then a lazy group's sub-commands.
    env = {"_LINEAGE_GUARD_COMPLETE": "complete_bash", "COMP_WORDS": "lineage-guard au", "COMP_CWORD": "1"}
    assert run_cli(env=env).stdout.split() == ["audit"]
    env = {"_LINEAGE_GUARD_COMPLETE": "complete_bash", "COMP_WORDS": "lineage-guard audit who", "COMP_CWORD": "2"}
    assert run_cli(env=env).stdout.split() == ["who-saw"]


# -- config discovery ---------------------------------------------------------------------------------

def test_policy_is_discovered_from_env_then_file_then_pyproject(tmp_path, monkeypatch):
    work = tmp_path / "project" / "dags"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    monkeypatch.delenv("LINEAGE_GUARD_POLICY", raising=False)
    args = ["plan", *WHO, *OFFLINE, "--sql", "SELECT id FROM orders", "--json"]

    none = cli(*args)
    assert none.exit_code == 1 and "no policy: give --policy FILE, set LINEAGE_GUARD_POLICY" in none.output

    (tmp_path / "project" / "pyproject.toml").write_text(
        '[project]\nname = "x"\n\n[tool.lineage_guard]\npolicy = "governance/policy.yaml"\n')
    (tmp_path / "project" / "governance").mkdir()
    (tmp_path / "project" / "governance" / "policy.yaml").write_text(CORPUS_POLICY.read_text())
    assert cli(*args).exit_code == 0
    shown = json.loads(cli("config", "--json").stdout)
    assert shown["policy"] == str(tmp_path / "project" / "governance" / "policy.yaml")
    assert "[tool.lineage_guard]" in shown["policy_found_via"]

    (work / "lineage_guard.yaml").write_text(CORPUS_POLICY.read_text())   # nearer wins
    assert json.loads(cli("config", "--json").stdout)["policy"] == str(work / "lineage_guard.yaml")

    monkeypatch.setenv("LINEAGE_GUARD_POLICY", str(tmp_path / "elsewhere.yaml"))  # env beats files
    text = cli("config").stdout
    assert f"policy: {tmp_path / 'elsewhere.yaml'} (from $LINEAGE_GUARD_POLICY)" in text
    assert cli(*args).exit_code == 1  # and it is the one used: it does not exist


def test_config_never_prints_a_password(monkeypatch):
    monkeypatch.setenv("LINEAGE_GUARD_SOURCE", "postgresql://svc:hunter2-secret@db.internal:5432/sales")
    result = cli("config")
    assert result.exit_code == 0 and "db.internal" in result.stdout and "hunter2" not in result.output


# -- start-up cost: --help and imports load nothing heavy -----------------------------------------------

HEAVY = ("polars", "openlineage", "sqlglot", "pyarrow", "great_expectations", "faker", "pandas", "numpy")


def _heavy_after(code: str) -> list[str]:
    probe = code + f"\nimport sys; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1].replace("'", '"'))


def test_help_imports_nothing_heavy():
    code = "from lineage_guard.cli import app\ntry:\n    app(['--help'])\nexcept SystemExit:\n    pass"
    assert _heavy_after(code) == []
    code = "from lineage_guard.cli import app\ntry:\n    app(['plan', '--help'])\nexcept SystemExit:\n    pass"
    assert _heavy_after(code) == []


def test_library_imports_load_kernels_lexicons_and_gx_on_first_use():
    assert _heavy_after("import lineage_guard, lineage_guard.operators") == []
    # Reading a policy needs no masking kernel (polars, Faker), no detection lexicon, no GX.
    assert _heavy_after("from lineage_guard.policy import load_policy") == ["sqlglot"]
    session = _heavy_after("from lineage_guard import GovernedSession")
    assert not {"polars", "faker", "great_expectations", "pandas"} & set(session)


def test_operator_import_at_dag_parse_time_loads_no_arrow_or_masking():
    pytest.importorskip("airflow")
    found = _heavy_after("from lineage_guard.operators import GovernedPostgresOperator")
    assert not {"polars", "faker", "pyarrow", "numpy", "great_expectations"} & set(found)


# -- one clear line instead of a traceback -------------------------------------------------------------

def test_unwritable_home_is_one_line_and_exit_1(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    done = run_cli("approvals", "list", env={"LINEAGE_GUARD_HOME": str(blocker / "home")})
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert f"LINEAGE_GUARD_HOME {blocker / 'home'} is not a writable folder" in lines[0]
    assert "set LINEAGE_GUARD_HOME to a folder you can write" in lines[0]


# -- piped output ---------------------------------------------------------------------------------

def test_piped_output_prints_whole_lines_at_any_width(tmp_path):
    """Off a terminal (CI, Airflow task logs, `| grep`) a path or command is never wrapped or cut."""
    deep = tmp_path / ("a-folder-name-far-wider-than-the-terminal-" * 2) / "and-one-more-level-of-it"
    deep.mkdir(parents=True)
    policy = deep / "policy.yaml"
    policy.write_text(CORPUS_POLICY.read_text())
    done = run_cli("check-policy", str(policy), env={"COLUMNS": "40"})
    assert done.returncode == 0, done.stderr
    [line] = [x for x in done.stdout.splitlines() if x.strip()]
    assert line.startswith(f"ok: {policy}: ") and "rules" in line, done.stdout
    # and an error naming the file stays one line too
    policy.write_text("version: 1\nidentities: [\n")
    done = run_cli("check-policy", str(policy), env={"COLUMNS": "40"})
    assert done.returncode == 1 and str(policy) in done.stderr.splitlines()[0], done.stderr
