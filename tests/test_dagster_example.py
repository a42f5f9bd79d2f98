"""The Dagster example project (examples/dagster/definitions.py) materializes end to end on the real PostgreSQL."""

import runpy
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import require
from lineage_check import assert_valid_events

dg = require("dagster", "dagster")

from lineage_guard.audit import Ledger
from lineage_guard.lineage import Outbox

pytestmark = pytest.mark.dagster
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "dagster" / "definitions.py"


def test_example_definitions_materialize(new_database, tmp_path, monkeypatch, master_key):
    pg_url = new_database()  # the example seeds the demo tables: keep them off the corpus's
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setenv("LINEAGE_GUARD_DEMO_URL", pg_url)
    monkeypatch.setenv("LINEAGE_GUARD_DEMO_LAKE", str(tmp_path / "lake"))
    monkeypatch.setenv("LINEAGE_GUARD_DEMO_ROWS", "60")
    defs = runpy.run_path(str(EXAMPLE))["defs"]
    result = dg.materialize(list(defs.assets), resources=defs.resources)
    assert result.success

    lake = tmp_path / "lake"
    training = pq.read_table(lake / "training" / "patients.parquet")
    clinician = pq.read_table(lake / "clinic" / "patients.parquet")
    # Same patients, two readers: the training service sees tokens, the clinician the record.
    assert training.num_rows == 60 and clinician.num_rows == 60
    assert all(v.startswith("tok_") for v in training["mrn"].to_pylist())
    assert all(v.startswith("MRN-") for v in clinician["mrn"].to_pylist())
    mix = pq.read_table(lake / "training" / "diagnosis_mix.parquet")
    assert sum(mix["patients"].to_pylist()) == 60
    assert set(mix["diagnosis"].to_pylist()) <= set(training["diagnosis"].to_pylist())

    with Ledger.open() as ledger:
        bodies = [e["body"] for e in ledger.entries()]
    # Every Parquet write records its `open` intent first (the file's provenance names it), then its success.
    done = [b for b in bodies if b["outcome"] != "open"]
    assert sorted(b["job"]["name"] for b in done) == [  # diagnosis_mix: the load of patients, then the write
        "clinic.patients", "training.customer_spend", "training.diagnosis_mix", "training.diagnosis_mix",
        "training.patients"]
    assert {b["outcome"] for b in done} == {"success"}
    assert sorted((b["job"]["name"], b["sink"]["kind"]) for b in bodies if b["outcome"] == "open") == sorted(
        (b["job"]["name"], b["sink"]["kind"]) for b in done if b["sink"]["kind"] == "parquet")
    assert {b["who"]["principal"] for b in bodies} == {"svc-training", "dr-grey"}
    outbox = Outbox()
    try:
        events = outbox.events()
    finally:
        outbox.close()
    raw_mrns = clinician["mrn"].to_pylist()
    assert_valid_events(events, forbid=[*raw_mrns, master_key])
    assert len(events) == 10
