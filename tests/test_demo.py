"""The demo as `make demo` runs it (on the test server instead of the embedded one, and smaller)."""

import io

import pyarrow.parquet as pq
from rich.console import Console

from lineage_guard.demo.run import run_demo


def test_demo_shows_two_identities_side_by_side(new_database, tmp_path):
    pg_url = new_database()  # the demo seeds customers/orders/patients: keep them off the corpus tables
    console = Console(file=io.StringIO(), record=True, width=200)  # the clinician's clear values stay off stdout
    summaries = run_demo(source=pg_url, out_dir=tmp_path / "out", rows=2_000, console=console)
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
