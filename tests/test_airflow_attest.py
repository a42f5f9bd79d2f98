"""GovernedAttestOperator under real Airflow (dag.test), real PostgreSQL and ledger: two governed extracts -> a
numpy training step -> attest + verify; a forged input (no provenance, or edited) fails the task naming the cause."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from airflow_conftest import *
from conftest import TEST_MASTER_KEY
from lineage_check import assert_valid_events

pytestmark = pytest.mark.airflow


def test_a_training_step_on_governed_extracts_is_attested_and_verifies(airflow_env, patients, tmp_path, capfd):
    from lineage_guard.attest.attestation import verify
    from lineage_guard.lineage.facets import ATTESTATION_KEY

    out = tmp_path / "out"
    out.mkdir()
    result = airflow_env.run("lg_attest", conf={"out_dir": str(out)})
    assert result.tasks == {"extract_patients": "success", "extract_cities": "success", "train": "success",
                            "attest_model": "success"}, result
    summary = result.xcoms["attest_model"]
    assert summary["datasets"] == 2 and set(summary["receipts"]) == {
        result.xcoms["extract_patients"]["receipt_id"], result.xcoms["extract_cities"]["receipt_id"]}
    # the attestation verifies on its own, outside Airflow, with the model's files checked
    check = verify(out / "model.att.json", model=out / "model")
    assert check.ok, check.failures
    predicate = check.statement["predicate"]
    assert {Path(d["name"]).name for d in predicate["datasets"]} == {"patients.parquet", "cities.parquet"}
    assert {d["identity"]["principal"] for d in predicate["datasets"]} == {
        "airflow:lg_attest.extract_patients", "airflow:lg_attest.extract_cities"}
    patients_record = next(d for d in predicate["datasets"] if d["name"].endswith("patients.parquet"))
    assert {c["name"]: c["treatment"] for c in patients_record["columns"]} == {
        "id": "clear", "email": "masked", "diagnosis": "masked"}

    # lineage: the attest task is the training run; its id is the predicate's training run, its inputs the very
    # files the extracts output, its output the model; every event of the DAG passes the schemas
    [start, complete] = result.task_events("attest_model", "lg_attest")
    assert (start["eventType"], complete["eventType"]) == ("START", "COMPLETE")
    assert complete["run"]["runId"] == predicate["training"]["runId"] == summary["training_run_id"]
    extract_outputs = {(o["namespace"], o["name"]) for t in ("extract_patients", "extract_cities")
                       for o in result.task_events(t, "lg_attest")[-1]["outputs"]}
    assert {(i["namespace"], i["name"]) for i in complete["inputs"]} == extract_outputs
    [model] = complete["outputs"]
    assert (model["name"], model["facets"]["datasetType"]["datasetType"]) == (str((out / "model").resolve()), "MODEL")
    facet = complete["run"]["facets"][ATTESTATION_KEY]
    assert facet["model"] == predicate["model"] and facet["ledgerHead"] == predicate["ledger"]["head"]
    raw = [str(p[c]) for p in patients for c in ("email", "diagnosis", "mrn", "full_name")]
    assert assert_valid_events(result.events, forbid=[*raw, TEST_MASTER_KEY]).endswith("0 problems")
    payload = base64.b64decode(json.loads((out / "model.att.json").read_text())["payload"]).decode()
    logs = capfd.readouterr()
    for needle in [*raw, TEST_MASTER_KEY]:
        assert needle not in payload and needle not in logs.out + logs.err


@pytest.mark.parametrize(("forge", "cause"), [
    ("plain", "plain.parquet: no lineage_guard provenance in its Parquet metadata"),
    ("edited", "patients.parquet: its sha256"),
])
def test_a_forged_training_input_fails_the_task_naming_the_cause(airflow_env, patients, tmp_path, forge, cause):
    out = tmp_path / "out"
    out.mkdir()
    result = airflow_env.run("lg_attest_forged", conf={"out_dir": str(out), "forge": forge})
    # the extract succeeded (the ledger is there and holds its receipt): the failure is the forged file's
    assert result.tasks == {"extract_patients": "success", "forge": "success", "attest_model": "failed"}, result
    [start, failed] = result.task_events("attest_model", "lg_attest_forged")
    assert (start["eventType"], failed["eventType"]) == ("START", "FAIL") and not failed.get("inputs") and not failed.get("outputs")
    message = failed["run"]["facets"]["errorMessage"]["message"]   # the task's exception, as Airflow reported it
    assert message.startswith("not attested:") and cause in message, message
    if forge == "edited":
        assert "the file was changed after it was written" in message
    else:
        assert "patients.parquet" not in message   # the governed extract beside it checked out
    assert not (out / "model.att.json").exists()
    assert not list((tmp_path / "lg_home").glob("attestations/*"))   # no copy kept either
    assert_valid_events(result.events)
