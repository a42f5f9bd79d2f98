"""GovernedPostgresOperator under real Airflow (dag.test), real PostgreSQL, real Parquet, real ledger and lineage."""

from __future__ import annotations

import pytest
from airflow_conftest import *
from conftest import TEST_MASTER_KEY, namespace_of
from lineage_check import assert_valid_events

from lineage_guard.sources.pg_url import url_parts

pytestmark = pytest.mark.airflow

SENSITIVE = ("mrn", "full_name", "email", "diagnosis")


def raw_values(patients, columns=SENSITIVE) -> list[str]:
    return [str(p[c]) for p in patients for c in columns]


def test_extract_writes_masked_parquet_and_returns_a_summary(airflow_env, patients, key_from_connection, lg_home,
                                                             tmp_path, monkeypatch, capfd):
    import pyarrow.parquet as pq

    out_dir = tmp_path / "out"
    out_dir.mkdir()
    result = airflow_env.run("lg_extract", conf={"out_dir": str(out_dir)})
    assert result.tasks == {"extract_patients": "success"}, result

    # masked Parquet, written atomically (one file, no temp left)
    files = list(out_dir.iterdir())
    assert len(files) == 1 and files[0].name.startswith("patients_") and files[0].suffix == ".parquet"
    table = pq.read_table(files[0])
    assert table.column_names == ["id", "mrn", "full_name", "email", "diagnosis", "city"]
    assert table.column("id").to_pylist() == [p["id"] for p in patients]
    assert table.column("city").to_pylist() == [p["city"] for p in patients]  # not classified: clear
    for column in SENSITIVE:
        masked = table.column(column).to_pylist()
        assert not set(masked) & {p[column] for p in patients}, column
        assert len(set(masked)) == len({p[column] for p in patients}), column  # deterministic tokens keep joins

    # XCom: the value-free summary
    summary = result.xcoms["extract_patients"]
    assert summary["rows"] == len(patients)
    assert summary["output_uri"].endswith(files[0].name)
    assert sorted(summary["masked_columns"]) == sorted(SENSITIVE)
    assert set(summary) == {"output_uri", "rows", "bytes", "masked_columns", "receipt_id", "run_id"}

    # ledger: one verified success entry for the task's identity, with the key read from the Airflow connection
    from lineage_guard.audit import Ledger

    monkeypatch.setenv("LINEAGE_GUARD_MASTER_KEY", TEST_MASTER_KEY)
    ledger = Ledger.open()
    assert ledger.verify().ok
    entry = ledger.get(summary["receipt_id"])
    assert entry is not None
    text = str(entry)
    assert "airflow:lg_extract.extract_patients" in text and "ai_training" in text
    # the file carries its provenance, which the ledger's final entry matches by the file's digest
    import hashlib

    from lineage_guard.attest import read_provenance

    prov = read_provenance(files[0])
    assert prov["receipt_id"] == summary["receipt_id"] and prov["run_id"] == summary["run_id"]
    assert entry["body"]["output_sha256"] == hashlib.sha256(files[0].read_bytes()).hexdigest()
    assert ledger.get(prov["ledger_entry"]["id"])["hash"] == prov["ledger_entry"]["hash"]

    # lineage: Airflow's provider emitted START + COMPLETE for the task, with our facets, valid, value-free
    events = result.task_events("extract_patients", "lg_extract")
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"]
    complete = events[-1]
    assert {"lineageGuard_access"} <= set(complete["run"]["facets"])
    assert "parent" in complete["run"]["facets"]  # Airflow's own DAG-run parent facet
    assert complete["job"]["namespace"] == OL_NAMESPACE
    # namespace_of/url_parts, not string splits: an embedded server's URL is a socket one (…@/db?host=/dir)
    database = url_parts(airflow_env.pg_url)["database"]
    assert [(i["namespace"], i["name"]) for i in complete["inputs"]] == [
        (namespace_of(airflow_env.pg_url), f"{database}.public.patients")]
    [output] = complete["outputs"]
    assert (output["namespace"], output["name"]) == ("file", str(files[0]))
    lineage = output["facets"]["columnLineage"]["fields"]
    assert lineage["email"]["inputFields"][0]["transformations"][0]["masking"] is True
    assert lineage["city"]["inputFields"][0]["transformations"][0]["masking"] is False
    masking = output["outputFacets"]["lineageGuard_masking"]
    assert sorted(masking["fields"]) == sorted(SENSITIVE) and masking["clearColumns"] == 2
    assert {f["method"] for f in masking["fields"].values()} == {"tokenize"}
    access = complete["run"]["facets"]["lineageGuard_access"]
    assert access["identity"]["principal"] == "airflow:lg_extract.extract_patients"  # not redacted by Airflow
    assert access["receipt"]["id"] == summary["receipt_id"]
    assert_valid_events(events, forbid=[*raw_values(patients), TEST_MASTER_KEY])
    assert complete["run"]["runId"] in text  # the ledger entry names the Airflow task's run as its parent
    from lineage_guard.lineage.outbox import FILE_NAME as OUTBOX

    assert (lg_home / "ledger.sqlite").exists() and not (lg_home / OUTBOX).exists()  # the session emitted nothing

    # nothing raw in the task logs either
    logs = capfd.readouterr()
    for needle in [*raw_values(patients), TEST_MASTER_KEY]:
        assert needle not in logs.out + logs.err


def test_rows_are_masked_capped_and_shaped_like_sql_execute_query(airflow_env, patients, capfd):
    result = airflow_env.run("lg_rows")
    assert result.tasks == {"read_patients": "success", "first_only": "success", "too_many": "failed"}

    rows = result.xcoms["read_patients"]
    assert [type(r) for r in rows] == [tuple, tuple, tuple]
    assert [(r[0], r[2]) for r in rows] == [(p["id"], p["city"]) for p in patients[:3]]
    assert not {r[1] for r in rows} & {p["full_name"] for p in patients}

    first = result.xcoms["first_only"]  # fetch_one_handler: one tuple
    assert isinstance(first, tuple) and first[0] == 1 and first[1] != patients[0]["email"]

    assert "too_many" not in result.xcoms
    failed = result.task_events("too_many", "lg_rows")
    assert [e["eventType"] for e in failed] == ["START", "FAIL"]
    assert failed[-1]["run"]["facets"]["lineageGuard_access"]["outcome"] == "failed"
    assert_valid_events(result.events, forbid=raw_values(patients))
    logs = capfd.readouterr()
    assert "more than max_rows=5 rows" in logs.out + logs.err
    for needle in raw_values(patients):
        assert needle not in logs.out + logs.err
