"""governed_attestation_check under real Dagster materialize(), real PostgreSQL and ledger: two governed assets ->
a numpy model asset -> the check attests and verifies; a forged input (no provenance, or edited) fails the check
naming the cause, after a governed asset has created the ledger."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from conftest import require
from lineage_check import assert_valid_events

dg = require("dagster", "dagster")
require("psycopg", "postgres")

from lineage_guard.assets import (
    GovernedIOManager,
    GovernedPostgresResource,
    governed_attestation_check,
    governed_postgres_asset,
)

from lineage_guard.demo import data as demo_data
from lineage_guard.lineage import Outbox

pytestmark = pytest.mark.dagster
DEMO_POLICY = Path(demo_data.__file__).with_name("policy.yaml")


@pytest.fixture(scope="module")
def clinic(new_database):
    import psycopg

    pg_url = new_database()
    demo_data.seed(pg_url, patients=30, customers=10)
    with psycopg.connect(pg_url) as conn:
        raw = conn.execute("SELECT mrn, diagnosis FROM lineage_guard_demo.patients").fetchall()
    return pg_url, [v for row in raw for v in row]


@pytest.fixture(autouse=True)
def dagster_home(tmp_path, monkeypatch):
    home = tmp_path / "dagster_home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))


def _resources(url: str, lake: Path) -> dict:
    governed = GovernedPostgresResource(url=url, policy=str(DEMO_POLICY), purpose="ai_training",
                                        identity="svc-training")
    return {"governed_postgres": governed, "io_manager": GovernedIOManager(governed=governed, base_path=str(lake))}


def _model_asset(lake: Path, deps: list, out: Path):
    @dg.asset(key_prefix=["ml"], deps=deps)
    def model() -> dg.MaterializeResult:
        """A real (tiny) model on the masked files: diagnosis-token frequencies, as a numpy table."""
        import numpy as np
        import polars as pl

        frame = pl.read_parquet(lake / "ml" / "patients.parquet")
        tokens = sorted(set(frame["diagnosis"]))
        counts = np.bincount([tokens.index(t) for t in frame["diagnosis"]], minlength=len(tokens))
        out.mkdir(exist_ok=True)
        np.save(out / "weights.npy", counts / counts.sum())
        (out / "config.json").write_text(json.dumps({"classes": len(tokens)}))
        return dg.MaterializeResult(metadata={"dagster/uri": dg.MetadataValue.text(out.resolve().as_uri())})

    return model


def _evaluation(result):
    [evaluation] = result.get_asset_check_evaluations()
    return evaluation


def test_a_model_trained_on_governed_assets_is_attested_and_verifies(clinic, tmp_path, master_key):
    from lineage_guard.attest.attestation import verify
    from lineage_guard.lineage.facets import ATTESTATION_KEY

    url, raw = clinic
    lake, model_dir = tmp_path / "lake", tmp_path / "model"
    patients = governed_postgres_asset("patients", "SELECT id, mrn, diagnosis FROM patients", key_prefix=["ml"])
    customers = governed_postgres_asset("customers", "SELECT id, plan FROM customers", key_prefix=["ml"])
    model = _model_asset(lake, [patients, customers], model_dir)
    check = governed_attestation_check(asset=model, datasets=[["ml", "patients"], ["ml", "customers"]],
                                       attestation=tmp_path / "model.att.json")
    result = dg.materialize([patients, customers, model, check], resources=_resources(url, lake))
    assert result.success
    evaluation = _evaluation(result)
    assert evaluation.passed, evaluation.description
    receipts = evaluation.metadata["lineage_guard/receipts"].value
    materialized = {"/".join(e.asset_key.path): e.materialization.metadata
                    for e in result.get_asset_materialization_events()}
    assert set(receipts) == {materialized[f"ml/{k}"]["lineage_guard/receipt_id"].value for k in ("patients", "customers")}

    check_result = verify(tmp_path / "model.att.json", model=model_dir)   # on its own, outside Dagster
    assert check_result.ok, check_result.failures
    predicate = check_result.statement["predicate"]
    assert {Path(d["name"]).name for d in predicate["datasets"]} == {"patients.parquet", "customers.parquet"}
    assert evaluation.metadata["lineage_guard/model_digest"].value == predicate["model"]["digest"]
    patients_record = next(d for d in predicate["datasets"] if d["name"].endswith("patients.parquet"))
    assert {c["name"]: c["treatment"] for c in patients_record["columns"]} == {
        "id": "clear", "mrn": "masked", "diagnosis": "masked"}

    # lineage: the training run (parent: the Dagster run) reads the very files the assets wrote, writes the model
    outbox = Outbox()
    try:
        events = outbox.events()
    finally:
        outbox.close()
    start, end = [e for e in events if e["run"]["runId"] == predicate["training"]["runId"]]
    assert (start["eventType"], end["eventType"]) == ("START", "COMPLETE")
    assert end["run"]["facets"]["parent"]["run"]["runId"] == result.run_id
    written = {(o["namespace"], o["name"]) for e in events if e["eventType"] == "COMPLETE"
               and e["run"]["runId"] != end["run"]["runId"] for o in e.get("outputs", [])}
    assert {(i["namespace"], i["name"]) for i in end["inputs"]} <= written
    assert end["outputs"][0]["facets"]["datasetType"]["datasetType"] == "MODEL"
    assert end["run"]["facets"][ATTESTATION_KEY]["model"] == predicate["model"]
    assert assert_valid_events(events, forbid=[*raw, master_key]).endswith("0 problems")
    payload = base64.b64decode(json.loads((tmp_path / "model.att.json").read_text())["payload"]).decode()
    assert not [v for v in raw if v in payload]


@pytest.mark.parametrize(("forge", "cause"), [
    ("plain", "plain.parquet: no lineage_guard provenance in its Parquet metadata"),
    ("edited", "patients.parquet: its sha256"),
])
def test_a_forged_training_input_fails_the_check_naming_the_cause(clinic, tmp_path, forge, cause):
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    url, _ = clinic
    lake, model_dir = tmp_path / "lake", tmp_path / "model"
    patients = governed_postgres_asset("patients", "SELECT id, mrn, diagnosis FROM patients", key_prefix=["ml"])
    plain = tmp_path / "plain.parquet"

    @dg.asset(key_prefix=["ml"], deps=[patients])
    def forged() -> None:
        if forge == "plain":      # a Parquet file no governed read wrote
            pq.write_table(pa.table({"id": [1, 2], "diagnosis": ["I10", "E11.9"]}), plain)
            return
        path = lake / "ml" / "patients.parquet"   # edited after it was written, its provenance footer copied over
        footer = {k: v for k, v in pq.read_metadata(path).metadata.items() if k.startswith(b"lineage_guard.")}
        table = pq.read_table(path)
        pq.write_table(table.set_column(0, "id", pc.add(table["id"], 1)).replace_schema_metadata(footer), path)

    model = _model_asset(lake, [forged], model_dir)
    datasets = [["ml", "patients"], str(plain)] if forge == "plain" else [["ml", "patients"]]
    check = governed_attestation_check(asset=model, datasets=datasets, attestation=tmp_path / "model.att.json")
    result = dg.materialize([patients, forged, model, check], resources=_resources(url, lake), raise_on_error=False)
    materialized = {"/".join(e.asset_key.path) for e in result.get_asset_materialization_events()}
    assert {"ml/patients", "ml/forged", "ml/model"} <= materialized   # the governed read succeeded: a ledger exists
    evaluation = _evaluation(result)
    assert not evaluation.passed
    problems = evaluation.metadata["lineage_guard/problems"].value
    assert len(problems) == 1 and cause in problems[0], problems
    if forge == "edited":
        assert "the file was changed after it was written" in problems[0]
    assert cause in evaluation.description
    assert not (tmp_path / "model.att.json").exists()
    assert not list((tmp_path / "lg_home").glob("attestations/*"))   # no copy kept either
