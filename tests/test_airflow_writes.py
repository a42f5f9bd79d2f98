"""Guarded writes from a DAG: a denied statement fails its task; one needing approval defers until a human decides."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from airflow_conftest import *
from conftest import TEST_MASTER_KEY
from lineage_check import assert_valid_events

pytestmark = pytest.mark.airflow

CLI = str(Path(sys.executable).parent / "lineage-guard")


def decide_when_asked(verb: str, found: dict) -> threading.Thread:
    """An approver in another thread: waits for the pending request, then runs the real CLI."""
    from lineage_guard.approvals import ApprovalStore

    def approver() -> None:
        store = ApprovalStore.open()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            pending = store.list(status="pending")
            if pending:
                found["request"] = pending[0]
                found["cli"] = subprocess.run([CLI, "approvals", verb, pending[0].id, "--as", "dana",
                                               "--note", "ticket DATA-7"], capture_output=True, text=True, check=False,
                                              timeout=60)
                return
            time.sleep(0.2)

    thread = threading.Thread(target=approver, daemon=True)
    thread.start()
    return thread


def city_of(pg_url: str, patient_id: int) -> str:
    import psycopg

    with psycopg.connect(pg_url) as conn:
        return conn.execute("SELECT city FROM patients WHERE id = %s", (patient_id,)).fetchone()[0]


@pytest.fixture
def restore_cities(airflow_env, patients):
    """Put the session's patients back as they were after a test that writes."""
    yield
    import psycopg

    with psycopg.connect(airflow_env.pg_url, autocommit=True) as conn, conn.cursor() as cur:
        cur.executemany("UPDATE patients SET city = %(city)s WHERE id = %(id)s", patients)


@pytest.mark.parametrize("verb", ["deny", "approve"])
def test_write_needing_approval_defers_until_decided_and_a_denied_write_fails(airflow_env, patients, verb, capfd,
                                                                              restore_cities):
    from lineage_guard.approvals import ApprovalStore
    from lineage_guard.audit import Ledger, effective

    found: dict = {}
    approver = decide_when_asked(verb, found)
    result = airflow_env.run("lg_writes")
    approver.join(timeout=5)
    assert found["cli"].returncode == 0, found["cli"].stdout + found["cli"].stderr

    # the request says which DAG run and task asked
    request = found["request"]
    assert request.requester == "airflow:lg_writes.fix_city"
    context = dict(request.context)
    assert {k: context[k] for k in ("dag_id", "task_id")} == {"dag_id": "lg_writes", "task_id": "fix_city"}
    assert context["run_id"].startswith("manual__") and context["try_number"] == "1"

    expected = "success" if verb == "approve" else "failed"
    assert result.tasks == {"fix_city": expected, "wipe": "failed", "two_steps": "failed"}
    assert (city_of(airflow_env.pg_url, 1) == "Bergen") is (verb == "approve")
    assert city_of(airflow_env.pg_url, 3) == patients[2]["city"]  # planned with the denied DELETE: nothing ran
    assert ApprovalStore.open().get(request.id).status == ("used" if verb == "approve" else "denied")
    logs = capfd.readouterr()
    assert "DELETE without WHERE on public.patients is denied" in logs.out + logs.err
    if verb == "deny":
        assert f"approval request {request.id} was denied by dana" in logs.out + logs.err
    assert "'Bergen'" not in logs.out + logs.err and "Tromsø" not in logs.out + logs.err  # literals stay out of logs

    # ledger: the wait and (if approved) the write are recorded for fix_city, the denial for wipe; the
    # write's intent (`open`) is on record before it runs and its success supersedes it
    ledger = Ledger.open()
    assert ledger.verify().ok
    every = list(ledger.entries())

    def of(task: str, chain=None) -> list[dict]:
        return [e for e in (effective(every) if chain is None else chain) if f"airflow:lg_writes.{task}" in str(e)]

    fix = [e["body"]["outcome"] for e in of("fix_city")]
    assert fix == (["needs_approval", "success"] if verb == "approve" else ["needs_approval"])
    assert [e["body"]["outcome"] for e in of("fix_city", every)] == (
        ["needs_approval", "open", "success"] if verb == "approve" else ["needs_approval"])
    wipe = [str(e) for e in of("wipe")]
    assert len(wipe) == 1 and "denied" in wipe[0]
    two = [str(e) for e in of("two_steps")]
    assert len(two) == 1 and "denied" in two[0] and "DELETE" in two[0]
    assert int(city_of(airflow_env.pg_url, 2) is not None)  # DELETE never ran

    wipe_events = result.task_events("wipe", "lg_writes")
    two_events = result.task_events("two_steps", "lg_writes")
    assert [e["eventType"] for e in wipe_events] == [e["eventType"] for e in two_events] == ["START", "FAIL"]
    assert wipe_events[-1]["run"]["facets"]["lineageGuard_access"]["outcome"] == "denied"
    assert_valid_events(wipe_events + two_events, forbid=[TEST_MASTER_KEY, "Bergen", "Tromsø"])

    # Airflow's OpenLineage provider sends START again when a deferred task resumes (same run id); it is
    # the provider's behaviour for every deferrable operator (apache/airflow#58933), not a second stream.
    fix_events = result.task_events("fix_city", "lg_writes")
    terminal = "COMPLETE" if verb == "approve" else "FAIL"
    assert [e["eventType"] for e in fix_events] == ["START", "START", terminal]
    assert len({e["run"]["runId"] for e in fix_events}) == 1
    access = fix_events[-1]["run"]["facets"].get("lineageGuard_access")
    assert (access or {}).get("outcome") == ("success" if verb == "approve" else "needs_approval")
    assert_valid_events([fix_events[0], fix_events[-1]], forbid=[TEST_MASTER_KEY, "Bergen", "Tromsø"])
