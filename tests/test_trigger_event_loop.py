"""ApprovalTrigger never blocks the triggerer's event loop: imports, store opening and reads run in threads.

Airflow runs every deferred task's trigger on one event loop and warns "badly-written trigger"
when one holds it. The check here is not a timing: a fresh process records every import of a
non-standard-library module made on the loop's thread while `run()` works, and there must be none.
"""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import require

PROBE = r"""
import asyncio, importlib.abc, json, sys, threading

on_loop = []
watching = False

class Spy(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        top = name.split(".")[0]
        if watching and threading.current_thread() is threading.main_thread() and top not in sys.stdlib_module_names:
            on_loop.append(name)
        return None

sys.meta_path.insert(0, Spy())
from lineage_guard.operators.triggers import ApprovalTrigger  # DAG/trigger module import: not the loop's work

async def first_event():
    global watching
    watching = True
    try:
        return await ApprovalTrigger(request_id=sys.argv[1], store_url=sys.argv[2], poll_interval=0.05).run().__anext__()
    finally:
        watching = False

event = asyncio.run(first_event())
print(json.dumps({"on_loop": on_loop, "event": event.payload}))
"""


def test_trigger_run_does_its_blocking_work_off_the_event_loop(tmp_path):
    require("airflow", "airflow")
    from lineage_guard.approvals import ApprovalStore, fingerprint
    from lineage_guard.identity import Identity
    from lineage_guard.run import SourceInfo

    store_url = f"sqlite:///{tmp_path}/approvals.sqlite"
    store = ApprovalStore.open(store_url)
    who, sql = Identity("airflow:d.t", "service"), "UPDATE patients SET city = 'x' WHERE id = 1"
    source = SourceInfo("postgres", "db", 5432, "clinic")
    request = store.request(fingerprint=fingerprint(who, sql, "maintenance", source), identity=who,
                            purpose="maintenance", statement=sql, source=source, reasons=["writes need approval"],
                            context={"dag_id": "d"})
    store.approve(request.id, "dana")

    done = subprocess.run([sys.executable, "-c", PROBE, request.id, store_url], check=False,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["event"]["status"] == "approved" and report["event"]["approver"] == "dana"
    assert report["on_loop"] == []
