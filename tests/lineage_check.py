"""Validate OpenLineage events the way the spec and Marquez read them, for any test that produces events.

    from lineage_check import assert_valid_events
    assert_valid_events(events, forbid=["123-45-6789", master_key])

Runs tests/tools/check_lineage.py (schemas + Marquez rules) in a subprocess
with lineage_guard's facet schemas. `events_or_paths` is a list of event dicts, or
paths to .json/.jsonl files or folders (e.g. an exported outbox). `forbid` lists
strings that must appear in no event (raw values, keys, secrets). Also `sample_run()`:
a realistic RunRecord built from the contract dataclasses, for tests that need one.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

from lineage_guard.decision import ColumnDecision, Decision
from lineage_guard.identity import Identity
from lineage_guard.lineage.facets import schema_dir
from lineage_guard.mask.spec import MaskSpec
from lineage_guard.run import ParentRun, Receipt, RunRecord, SinkInfo, SourceInfo, new_run_id
from lineage_guard.sql.model import Analysis, ColumnRef, TableRef

CHECKER = Path(__file__).resolve().parent / "tools" / "check_lineage.py"


def check_events(events_or_paths: Iterable[dict | str | Path], forbid: Iterable[str] = ()) -> tuple[int, str]:
    """Run the checker; return (exit code, its output). 0 = valid."""
    items = list(events_or_paths)
    with tempfile.TemporaryDirectory(prefix="lg_lineage_check_") as tmp:
        args = [str(p) for p in items if not isinstance(p, dict)]
        dicts = [e for e in items if isinstance(e, dict)]
        if dicts:
            path = Path(tmp) / "events.jsonl"
            path.write_text("".join(json.dumps(e) + "\n" for e in dicts))
            args.append(str(path))
        if not args:
            raise AssertionError("no events to check")
        cmd = [sys.executable, str(CHECKER), *args, "--facet-schemas", str(schema_dir())]
        needles = [s for s in forbid if s]
        if needles:
            (Path(tmp) / "forbid.txt").write_text("\n".join(needles) + "\n")
            cmd += ["--forbid", str(Path(tmp) / "forbid.txt")]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def assert_valid_events(events_or_paths: Iterable[dict | str | Path], forbid: Iterable[str] = ()) -> str:
    """Fail the test with the checker's report unless every event is valid; return the summary line."""
    code, out = check_events(events_or_paths, forbid)
    assert code == 0, f"check_lineage.py found problems:\n{out}"
    return out.strip().splitlines()[-1]


def sample_run(*, sink: SinkInfo | None = None, parent: ParentRun | None = None, **changes) -> RunRecord:
    """A governed read of clinic.public.patients: id and name (person_name) clear, ssn tokenized, dob generalized."""
    ssn, name, dob, pid = (ColumnRef("public", "patients", c) for c in ("ssn", "full_name", "dob", "id"))
    columns = (
        ColumnDecision(0, "id", (pid,), direct=True),
        ColumnDecision(1, "full_name", (name,), direct=True, labels=("person_name",)),
        ColumnDecision(2, "ssn_token", (ssn,), mask=MaskSpec("tokenize", scope="purpose:ai_training"),
                       direct=True, labels=("national_id",)),
        ColumnDecision(3, "birth_month", (dob,), mask=MaskSpec("generalize", {"to": "month"}, scope="global"),
                       labels=("date_of_birth",)),
        ColumnDecision(4, "visits", (ColumnRef("public", "visits", "id"),)),
    )
    sql = ("SELECT p.id, p.full_name, p.ssn AS ssn_token, p.dob AS birth_month, count(v.id) AS visits "
           "FROM public.patients AS p JOIN public.visits AS v ON v.patient_id = p.id "
           "WHERE p.ssn <> '123-45-6789' GROUP BY 1, 2, 3, 4")
    analysis = Analysis(statement=sql, kind="select", is_read=True,
                        tables_read=(TableRef("public", "patients"), TableRef("public", "visits")))
    run = RunRecord(
        run_id=new_run_id(), job_namespace="lineage_guard", job_name="training.patients_extract",
        identity=Identity("svc-training", "service", frozenset({"ml", "readers"})),
        purpose="ai_training",
        source=SourceInfo("postgres", "db.internal", 5432, "clinic"),
        decision=Decision("allow", ("ssn is tokenized for purpose ai_training",), sql, columns, analysis,
                          labels={name: "person_name", ssn: "national_id", dob: "date_of_birth"}),
        sql=sql,
        sink=sink if sink is not None else SinkInfo("parquet", "/data/out/patients.parquet", "file",
                                                    "/data/out/patients.parquet"),
        rows=1200, bytes=48_000, key_ids={2: "k-ai_training-2026-01"}, approval_id="apr-42",
        receipt=Receipt("led-7", "a" * 64), parent=parent,
        input_schemas={"public.patients": [("id", "int4"), ("full_name", "text"), ("ssn", "text"),
                                           ("dob", "date")],
                       "public.visits": [("id", "int4"), ("patient_id", "int4")]},
        output_schema=[("id", "int32"), ("full_name", "string"), ("ssn_token", "string"),
                       ("birth_month", "string"), ("visits", "int64")],
    )
    for key, value in changes.items():
        setattr(run, key, value)
    return run
