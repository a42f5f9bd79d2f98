"""`lineage-guard lineage status | flush | export` on a real outbox and a real HTTP endpoint."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from lineage_check import assert_valid_events, sample_run
from test_lineage_outbox import fast_http, marquez  # noqa: F401 - fixtures
from typer.testing import CliRunner

from lineage_guard.cli.lineage import app
from lineage_guard.lineage import LineageEmitter

cli = CliRunner()


def two_runs():
    old = sample_run(started_at=datetime(2026, 1, 1, 8, tzinfo=UTC),
                     ended_at=datetime(2026, 1, 1, 8, 5, tzinfo=UTC))
    new = sample_run(started_at=datetime(2026, 3, 1, 8, tzinfo=UTC),
                     ended_at=datetime(2026, 3, 1, 8, 5, tzinfo=UTC))
    emitter = LineageEmitter(ship="manual")
    for run in (old, new):
        emitter.start(run)
        emitter.complete(run)
    return old, new


def test_status_and_flush_without_transport():
    two_runs()
    result = cli.invoke(app, ["status", "--json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout) | {"oldest_queued": None} == {
        "queued": 4, "shipped": 0, "rejected": 0, "attempts": 0, "last_error": None, "oldest_queued": None,
        "transport_configured": False}
    result = cli.invoke(app, ["flush"])
    assert result.exit_code == 1 and "OPENLINEAGE_URL" in result.stderr and "(4 queued)" in result.stderr


def test_flush_ships_in_order_then_reports_outage(fast_http):  # noqa: F811
    old, new = two_runs()
    fast_http.fail_status = 503
    result = cli.invoke(app, ["flush"])
    assert result.exit_code == 1 and "4 still queued" in result.stdout and "RetryError" in result.stderr
    assert fast_http.url not in result.stdout + result.stderr
    status = cli.invoke(app, ["status"])
    assert "queued 4, shipped 0" in status.stdout and "2026-01-01T08:00:00+00:00" in status.stdout
    fast_http.fail_status = None
    result = cli.invoke(app, ["flush"])
    assert result.exit_code == 0 and "shipped 4, 0 still queued" in result.stdout
    assert fast_http.seen() == [(old.run_id, "START"), (old.run_id, "COMPLETE"),
                                (new.run_id, "START"), (new.run_id, "COMPLETE")]


def test_export_by_run_and_window(tmp_path):
    old, _ = two_runs()
    out = tmp_path / "exports" / "old.jsonl"
    assert cli.invoke(app, ["export", str(out), "--run-id", old.run_id]).exit_code == 0
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(e["run"]["runId"], e["eventType"]) for e in events] == [(old.run_id, "START"), (old.run_id, "COMPLETE")]
    assert_valid_events([out], forbid=["123-45-6789"])
    window = tmp_path / "march.jsonl"
    result = cli.invoke(app, ["export", str(window), "--since", "2026-02-01", "--until", "2026-03-01T08:04:00+00:00"])
    assert result.exit_code == 0
    assert [json.loads(line)["eventType"] for line in window.read_text().splitlines()] == ["START"]
    result = cli.invoke(app, ["export", "-", "--since", "2026-01-01T07:00:00"])
    assert result.exit_code == 0 and len(result.stdout.splitlines()) == 4
    assert not list(tmp_path.glob("**/.*.tmp"))          # no temporary file left behind


def test_export_refuses_bad_input_and_leaves_no_file(tmp_path):
    two_runs()
    target = tmp_path / "none.jsonl"
    result = cli.invoke(app, ["export", str(target), "--run-id", "no-such-run"])
    assert result.exit_code == 1 and "no stored event matches" in result.stderr and not target.exists()
    result = cli.invoke(app, ["export", str(target), "--since", "last tuesday"])
    assert result.exit_code == 2 and "ISO 8601" in result.stderr and not target.exists()


def test_registered_in_the_main_cli(tmp_path):
    LineageEmitter(ship="manual").start(sample_run())
    exe = Path(sys.executable).with_name("lineage-guard")
    proc = subprocess.run([str(exe), "lineage", "status", "--json"], capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["queued"] == 1
    assert (datetime.now(UTC) - datetime.fromisoformat(json.loads(proc.stdout)["oldest_queued"])
            < timedelta(days=1))


def test_prune_command(fast_http):  # noqa: F811
    two_runs()
    assert cli.invoke(app, ["flush"]).exit_code == 0
    result = cli.invoke(app, ["prune", "--older-than-days", "0"])
    assert result.exit_code == 0 and "deleted 4 shipped event(s)" in result.stdout
    assert cli.invoke(app, ["prune", "--older-than-days", "-1"]).exit_code == 2
