"""The demo as `make demo` runs it (on the test server instead of the embedded one, and smaller)."""

import io
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from rich.console import Console

from lineage_guard.demo.run import run_demo

CLI = Path(sys.executable).with_name("lineage-guard")


def test_demo_shows_two_identities_side_by_side(new_database, tmp_path, lg_home):
    pg_url = new_database()
    console = Console(file=io.StringIO(), record=True, width=200)  # the clinician's clear values stay off stdout
    ours = lambda: {k: v for k, v in os.environ.items() if k.startswith("LINEAGE_GUARD_")}
    before = ours()
    summaries = run_demo(source=pg_url, out_dir=tmp_path / "out", rows=2_000, console=console)
    assert ours() == before  # the demo's home and key were scoped to the run
    training = pq.read_table(tmp_path / "out" / "patients_svc-training.parquet").to_pydict()
    clinician = pq.read_table(tmp_path / "out" / "patients_dr-grey.parquet").to_pydict()
    assert summaries["AI training service"]["rows"] == summaries["Clinician"]["rows"] == 2_000
    assert set(summaries["AI training service"]["masked_columns"]) >= {"mrn", "full_name", "email", "birth_date"}
    assert summaries["Clinician"]["masked_columns"] == []
    assert training["id"] == clinician["id"]
    for column in ("mrn", "full_name", "email"):  # nothing the clinician saw clear reached the training file
        assert not set(training[column]) & set(clinician[column]), column
    assert {d.month for d in training["birth_date"]} == {1}
    text = console.export_text()
    assert "Denied probe" in text and "chain verified" in text and "OpenLineage events in the outbox" in text
    assert clinician["email"][0] not in text.split("The same first patient")[0]  # no raw value before the table
    # its own state folder, not the caller's LINEAGE_GUARD_HOME
    assert (tmp_path / "out" / "state" / "ledger.sqlite").exists() and not (lg_home / "ledger.sqlite").exists()


def _run(args, env, cwd):
    return subprocess.run(args, capture_output=True, text=True, env=env, cwd=cwd, timeout=600, check=False)


@pytest.fixture
def user_env(tmp_path):
    """A user's shell: their own HOME and ledger settings, none of the suite's LINEAGE_GUARD_HOME/keys."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LINEAGE_GUARD_")}
    env.update(HOME=str(tmp_path / "user_home"), COLUMNS="60",  # a narrow terminal must not break the command
               LINEAGE_GUARD_LEDGER_URL=str(tmp_path / "users_real_ledger.sqlite"))
    (tmp_path / "user_home").mkdir()
    return env


def test_the_suggested_who_saw_command_works_when_pasted(new_database, tmp_path, user_env):
    pg_url = new_database()
    demo = _run([str(CLI), "demo", "--source", pg_url, "--rows", "300", "--out", str(tmp_path / "out")],
                user_env, tmp_path)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    [command] = [line.strip() for line in demo.stdout.splitlines() if " audit who-saw " in line]
    assert "lineage_guard_demo.patients.email" in command and "env -u LINEAGE_GUARD_LEDGER_URL" in command
    # pasted into the user's shell, from another folder
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    pasted = _run(["bash", "-c", command], user_env, elsewhere)
    assert pasted.returncode == 0, pasted.stdout + pasted.stderr
    assert "svc-training" in pasted.stdout and "dr-grey" in pasted.stdout
    # nothing in the user's own state: no ~/.lineage_guard, no entry in their configured ledger
    assert not (tmp_path / "user_home" / ".lineage_guard").exists()
    assert not (tmp_path / "users_real_ledger.sqlite").exists()

    # a broken chain: the next demo run must not exit 0
    with sqlite3.connect(tmp_path / "out" / "state" / "ledger.sqlite") as conn:
        conn.execute("DROP TRIGGER ledger_entries_no_update")  # the tamperer has the file, not our API
        changed = conn.execute("UPDATE ledger_entries SET entry = CAST(replace(CAST(entry AS TEXT), "
                               "'\"rows\":300', '\"rows\":1') AS BLOB)").rowcount
    assert changed > 0
    again = _run([str(CLI), "demo", "--source", pg_url, "--rows", "300", "--out", str(tmp_path / "out")],
                 user_env, tmp_path)
    assert again.returncode == 1, again.stdout[-2000:] + again.stderr[-2000:]
    assert re.search(r"does not verify|broken|tamper", again.stderr), again.stderr[-2000:]
