"""Training-data attestation end to end on the real database: two governed extracts, a real (numpy) training
step, attest, verify; then each tamper case fails verification naming its cause."""

from __future__ import annotations

import base64
import json
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
from conftest import TEST_MASTER_KEY
from typer.testing import CliRunner

import lineage_guard
from lineage_guard.attest import dsse
from lineage_guard.attest.attestation import AttestationError, predicate_schema, verify
from lineage_guard.audit import Ledger
from lineage_guard.audit.signing import Signer, write_key_file
from lineage_guard.cli import app as root_app
from lineage_guard.identity import Identity
from lineage_guard.policy import parse_policy
from lineage_guard.session import GovernedSession

POLICY = """
version: 1
identities:
  svc-training: {kind: service, groups: [training-jobs]}
groups: [training-jobs]
purposes: [ai_training]
classifications:
  public.att_patients.email: email
  public.att_patients.age: age
rules:
  - {classifications: [email], groups: [training-jobs], action: mask, mask: {method: tokenize}}
  - {classifications: [age], groups: [training-jobs], action: clear}
"""
PATIENTS = [(i, f"p{i}@example.org", 20 + 3 * i) for i in range(1, 21)]
VISITS = [(i, 1 + i % 4, 100 + 7 * i + 5 * (1 + i % 4)) for i in range(1, 21)]


@dataclass
class Trained:
    root: Path
    ledger_url: str
    public_key: str
    datasets: list[Path]
    model: Path
    attestation: Path
    envelope: dict


@pytest.fixture(scope="module")
def trained(pg_url, tmp_path_factory) -> Trained:
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS att_patients; DROP TABLE IF EXISTS att_visits")
        conn.execute("CREATE TABLE att_patients (id int primary key, email text, age int)")
        conn.execute("CREATE TABLE att_visits (patient_id int, visits int, cost int)")
        conn.cursor().executemany("INSERT INTO att_patients VALUES (%s, %s, %s)", PATIENTS)
        conn.cursor().executemany("INSERT INTO att_visits VALUES (%s, %s, %s)", VISITS)
    root = tmp_path_factory.mktemp("attest")
    key_file = root / "ledger-signing.key"
    signer = write_key_file(key_file)
    ledger_url = str(root / "ledger.sqlite")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LINEAGE_GUARD_HOME", str(root / "home"))
        mp.setenv("LINEAGE_GUARD_MASTER_KEY", TEST_MASTER_KEY)
        mp.setenv("LINEAGE_GUARD_LEDGER_SIGNING_KEY_FILE", str(key_file))
        ledger = Ledger.open(ledger_url)
        data = root / "data"
        with GovernedSession(pg_url, parse_policy(POLICY), Identity("svc-training"), "ai_training",
                             ledger=ledger) as s:
            s.extract("SELECT id, email, age FROM att_patients", to=data / "patients.parquet")
            s.extract("SELECT patient_id, visits, cost FROM att_visits", to=data / "visits.parquet")
        datasets = [data / "patients.parquet", data / "visits.parquet"]

        # A small real training step on the masked files: least squares cost ~ age + visits.
        frame = pl.read_parquet(datasets[0]).join(pl.read_parquet(datasets[1]), left_on="id", right_on="patient_id")
        x = np.column_stack([frame["age"].to_numpy(), frame["visits"].to_numpy(), np.ones(frame.height)])
        weights, *_ = np.linalg.lstsq(x, frame["cost"].to_numpy().astype(float), rcond=None)
        model = root / "model"
        model.mkdir()
        np.save(model / "weights.npy", weights)
        (model / "config.json").write_text(json.dumps({"features": ["age", "visits"], "target": "cost"}))

        attestation = root / "model.att.json"
        envelope = lineage_guard.attest(model, datasets, out=attestation, ledger=ledger)
        ledger.close()
    return Trained(root, ledger_url, signer.public_key, datasets, model, attestation, envelope)


def _statement(envelope: dict) -> dict:
    return json.loads(base64.b64decode(envelope["payload"]))


def _checks(result) -> set[str]:
    return {f.check for f in result.failures}


def _copy_ledger(trained: Trained, name: str) -> Path:
    copy = trained.root / f"{name}.sqlite"
    with sqlite3.connect(trained.ledger_url) as src, sqlite3.connect(copy) as dst:
        src.backup(dst)
    return copy


def test_the_statement_is_in_toto_v1_with_our_predicate_valid_against_its_schema(trained):
    import jsonschema

    assert trained.envelope["payloadType"] == "application/vnd.in-toto+json"
    statement = _statement(trained.envelope)
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == "https://lineage-guard.dev/attestation/training-data/v1"
    jsonschema.Draft202012Validator(predicate_schema()).validate(statement["predicate"])
    assert sorted(s["name"] for s in statement["subject"]) == ["config.json", "weights.npy"]
    predicate = statement["predicate"]
    datasets = {Path(d["name"]).name: d for d in predicate["datasets"]}
    patients = datasets["patients.parquet"]
    assert patients["identity"]["principal"] == "svc-training" and patients["purpose"] == "ai_training"
    assert {c["name"]: c["treatment"] for c in patients["columns"]} == {"id": "clear", "email": "masked", "age": "clear"}
    assert {c["name"]: c["classifications"] for c in patients["columns"]} == {"id": [], "email": ["email"],
                                                                               "age": ["age"]}
    assert "reidentification" not in patients   # the purpose sets no floor here (tests/test_reid_floor.py does)
    assert patients["source"]["tables"] == ["public.att_patients"] and patients["policyDigest"].startswith("sha256:")
    # the schema is not a rubber stamp: a predicate missing its datasets is refused
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**predicate, "datasets": []}, predicate_schema())
    # never a raw value in the signed statement
    text = base64.b64decode(trained.envelope["payload"]).decode()
    assert not any(email in text for _, email, _ in PATIENTS) and TEST_MASTER_KEY not in text


def test_the_training_step_is_an_openlineage_run_from_the_files_to_the_model(trained):
    from lineage_check import assert_valid_events

    from lineage_guard.lineage import Outbox
    from lineage_guard.lineage.facets import ATTESTATION_KEY

    outbox = Outbox(trained.root / "home" / "outbox.sqlite")
    run_id = _statement(trained.envelope)["predicate"]["training"]["runId"]
    start, end = outbox.events(run_id=run_id)
    everything = outbox.events()
    # every event (the two extracts' and the training run's) passes the spec, Marquez's rules and our facet schemas
    assert assert_valid_events(everything, forbid=[e for _, e, _ in PATIENTS] + [TEST_MASTER_KEY]).endswith(
        "0 problems")
    assert (start["eventType"], end["eventType"]) == ("START", "COMPLETE")
    assert end["job"]["facets"]["jobType"]["jobType"] == "TRAINING"
    # the training inputs are the very datasets the extracts wrote: Marquez joins the two runs at the file
    extract_outputs = {(o["namespace"], o["name"]) for e in everything if e["run"]["runId"] != run_id
                       and e["eventType"] == "COMPLETE" for o in e.get("outputs", [])}
    inputs = {(i["namespace"], i["name"]) for i in end["inputs"]}
    assert inputs == extract_outputs == {("file", str(p.resolve())) for p in trained.datasets}
    assert [(o["namespace"], o["name"]) for o in end["outputs"]] == [("file", str(trained.model.resolve()))]
    assert end["outputs"][0]["facets"]["datasetType"]["datasetType"] == "MODEL"
    # PII tags on the training inputs mirror the extracts' outputs: only classified columns that left clear
    extract_tags = {(o["name"], t["field"], t["key"], t["value"]) for e in everything if e["run"]["runId"] != run_id
                    and e["eventType"] == "COMPLETE" for o in e.get("outputs", [])
                    for t in o.get("facets", {}).get("tags", {}).get("tags", [])}
    input_tags = {(i["name"], t["field"], t["key"], t["value"]) for i in end["inputs"]
                  for t in i.get("facets", {}).get("tags", {}).get("tags", [])}
    patients_file = str(trained.datasets[0].resolve())
    assert input_tags == extract_tags == {(patients_file, "age", "pii", "true"),
                                          (patients_file, "age", "classification", "age")}
    facet = end["run"]["facets"][ATTESTATION_KEY]
    assert ATTESTATION_KEY not in start["run"]["facets"]
    predicate = _statement(trained.envelope)["predicate"]
    assert facet["model"] == predicate["model"] and facet["ledgerHead"] == predicate["ledger"]["head"]
    assert {d["receiptId"] for d in facet["datasets"]} == {d["receiptId"] for d in predicate["datasets"]}
    import hashlib

    assert facet["statementSha256"] == hashlib.sha256(base64.b64decode(trained.envelope["payload"])).hexdigest()
    # the facet's schema is not a rubber stamp
    from lineage_check import check_events

    bad = json.loads(json.dumps(end))
    bad["run"]["facets"][ATTESTATION_KEY]["datasets"][0]["rawValue"] = "x"
    code, out = check_events([start, bad])
    assert code == 1 and ATTESTATION_KEY in out


def test_dsse_pae_is_the_spec_encoding():
    # The spec's own example (protocol.md): "DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    assert dsse.pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world")
    assert dsse.pae("t", "é".encode()) == b"DSSEv1 1 t 2 \xc3\xa9"   # lengths are bytes, not characters


def test_verify_passes_then_the_cli_and_audit_model_agree(trained):
    result = verify(trained.attestation, model=trained.model, ledger=trained.ledger_url,
                    public_keys=[trained.public_key])
    assert result.ok, result.failures
    runner = CliRunner()
    done = runner.invoke(root_app, ["attest", "verify", str(trained.attestation), "--model", str(trained.model),
                                    "--ledger", trained.ledger_url, "--public-key", trained.public_key])
    assert done.exit_code == 0 and done.stdout.startswith("OK: sha256:"), done.output
    shown = runner.invoke(root_app, ["audit", "model", str(trained.model), "--attestation", str(trained.attestation),
                                     "--ledger", trained.ledger_url, "--public-key", trained.public_key, "--json"])
    assert shown.exit_code == 0, shown.output
    doc = json.loads(shown.stdout)
    assert doc["verified"] is True and len(doc["datasets"]) == 2
    assert {d["principal"] for d in doc["datasets"]} == {"svc-training"}
    assert {t for d in doc["datasets"] for t in d["tables"]} == {"public.att_patients", "public.att_visits"}
    screen = runner.invoke(root_app, ["audit", "model", str(trained.model), "--attestation", str(trained.attestation),
                                      "--ledger", trained.ledger_url, "--public-key", trained.public_key])
    assert screen.exit_code == 0 and "email" in screen.stdout and "tokenize" in screen.stdout, screen.output
    patients = next(d for d in doc["datasets"] if d["name"].endswith("patients.parquet"))
    assert {c["name"]: c["classifications"] for c in patients["columns"]}["age"] == ["age"]
    assert patients["reidentification"] is None and "re-identification" not in screen.stdout


def test_an_edited_dataset_file_fails_naming_the_dataset(trained):
    path = trained.datasets[1]
    original = path.read_bytes()
    try:
        import pyarrow.compute as pc

        table = pq.read_table(path)  # every cost one higher, the provenance footer kept as it was
        forged = table.set_column(2, "cost", pc.add(table["cost"], 1))
        pq.write_table(forged, path)
        assert pq.read_metadata(path).num_rows == table.num_rows
        result = verify(trained.attestation, model=trained.model, ledger=trained.ledger_url,
                        public_keys=[trained.public_key])
        assert _checks(result) == {"dataset"}
        assert "visits.parquet" in str(result.failures[0]) and "changed" in str(result.failures[0])
        done = CliRunner().invoke(root_app, ["attest", "verify", str(trained.attestation), "--ledger",
                                             trained.ledger_url, "--public-key", trained.public_key])
        assert done.exit_code == 1 and "FAIL dataset:" in done.stderr
    finally:
        path.write_bytes(original)


def test_an_edited_model_file_fails_naming_the_file(trained):
    copy = trained.root / "model-edited"
    shutil.copytree(trained.model, copy, dirs_exist_ok=True)
    weights = np.load(copy / "weights.npy")
    np.save(copy / "weights.npy", weights + 0.5)
    result = verify(trained.attestation, model=copy, ledger=trained.ledger_url, public_keys=[trained.public_key])
    assert _checks(result) == {"model"} and "weights.npy" in str(result.failures[0])


def test_a_receipt_removed_from_the_ledger_fails_naming_the_receipt(trained):
    copy = _copy_ledger(trained, "receipt-removed")
    receipt = _statement(trained.envelope)["predicate"]["datasets"][0]["receiptId"]
    with sqlite3.connect(copy) as conn:  # an attacker with write access to the file: triggers do not stop them
        conn.execute("DROP TRIGGER ledger_entries_no_delete")
        conn.execute("DELETE FROM ledger_entries WHERE id = ?", (receipt,))
    result = verify(trained.attestation, ledger=str(copy), public_keys=[trained.public_key])
    assert {"receipt", "ledger"} <= _checks(result)
    assert any(f.check == "receipt" and receipt in f.message and "no entry" in f.message for f in result.failures)


def test_a_ledger_truncated_after_the_attested_head_fails_naming_the_head(trained):
    copy = _copy_ledger(trained, "truncated")
    head = _statement(trained.envelope)["predicate"]["ledger"]["head"]
    with sqlite3.connect(copy) as conn:  # drop the attested head and what follows; rewrite the head row to match
        conn.execute("DROP TRIGGER ledger_entries_no_delete")
        conn.execute("DELETE FROM ledger_entries WHERE seq >= ?", (head["entries"],))
        seq, last = conn.execute("SELECT seq, hash FROM ledger_entries ORDER BY seq DESC LIMIT 1").fetchone()
        conn.execute("UPDATE ledger_head SET seq = ?, hash = ?", (seq, last))
    assert Ledger.open(str(copy), create=False).verify([trained.public_key]).ok  # the chain alone looks whole
    result = verify(trained.attestation, ledger=str(copy), public_keys=[trained.public_key])
    assert "ledger" in _checks(result)
    assert any(f.check == "ledger" and head["hash"] in f.message for f in result.failures)


def test_an_attestation_re_signed_with_another_key_fails_on_the_signature(trained):
    statement = _statement(trained.envelope)
    statement["predicate"]["datasets"][0]["purpose"] = "research"   # what a forger would change
    forged = dsse.sign(json.dumps(statement).encode(), Signer.generate())
    path = trained.root / "forged.att.json"
    path.write_text(json.dumps(forged))
    result = verify(path, ledger=trained.ledger_url, public_keys=[trained.public_key])
    assert _checks(result) == {"signature"} and "pinned" in result.failures[0].message
    done = CliRunner().invoke(root_app, ["attest", "verify", str(path), "--ledger", trained.ledger_url,
                                         "--public-key", trained.public_key])
    assert done.exit_code == 1 and "FAIL signature:" in done.stderr


def test_attest_refuses_a_file_no_governed_read_wrote(trained, tmp_path):
    import pyarrow as pa

    plain = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"x": [1, 2]}), plain)
    signer = Signer.from_file(trained.root / "ledger-signing.key")
    with Ledger.open(trained.ledger_url, create=False, signer=signer) as ledger, \
            pytest.raises(AttestationError, match="plain.parquet: no lineage_guard provenance"):
        lineage_guard.attest(trained.model, [plain, trained.datasets[0]], out=tmp_path / "x.json", ledger=ledger,
                             public_keys=[trained.public_key], keep=False)
    assert not (tmp_path / "x.json").exists()


def test_datasets_by_fsspec_uri_attest_and_verify_and_an_edit_fails(trained, tmp_path, pg_url):
    """memory:// (any fsspec protocol) and file:// URIs: attest reads, digests and checks them like paths."""
    import fsspec

    signer = Signer.from_file(trained.root / "ledger-signing.key")
    uri = f"memory://{tmp_path.name}/patients.parquet"
    with Ledger.open(trained.ledger_url, create=False, signer=signer) as ledger:
        with GovernedSession(pg_url, parse_policy(POLICY), Identity("svc-training"), "ai_training",
                             ledger=ledger) as s:
            s.extract("SELECT id, email, age FROM att_patients", to=uri)
        local = "file://" + str(trained.datasets[1].resolve())
        envelope = lineage_guard.attest(trained.model, [uri, local], ledger=ledger, public_keys=[trained.public_key],
                                        keep=False, lineage=False)
    names = [d["name"] for d in _statement(envelope)["predicate"]["datasets"]]
    assert names == [uri, str(trained.datasets[1].resolve())]   # a local URI is named by its path, as its sink did
    result = verify(envelope, model=trained.model, ledger=trained.ledger_url, public_keys=[trained.public_key])
    assert result.ok, result.failures
    with fsspec.open(uri, "rb") as fh:
        original = fh.read()
    try:
        with fsspec.open(uri, "wb") as fh:
            fh.write(original[:-9] + b"X" + original[-8:])   # one byte of the footer changed
        result = verify(envelope, model=trained.model, ledger=trained.ledger_url, public_keys=[trained.public_key])
        assert _checks(result) == {"dataset"} and uri in str(result.failures[0]) and "changed" in str(
            result.failures[0])
    finally:
        fsspec.filesystem("memory").rm(f"/{tmp_path.name}", recursive=True)
    result = verify(envelope, ledger=trained.ledger_url, public_keys=[trained.public_key])
    assert any(f.check == "dataset" and "no such file" in f.message for f in result.failures)
