"""Dagster integration against the real PostgreSQL: governed assets, masked Parquet, ledger, lineage, failures."""


import hashlib
import json
import shlex
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import namespace_of, require
from lineage_check import assert_valid_events

dg = require("dagster", "dagster")
pl = require("polars", "dagster")
pd = require("pandas", "dagster")
psycopg = require("psycopg", "postgres")

from lineage_guard.assets import GovernedIOManager, GovernedPostgresResource, governed_postgres_asset

from lineage_guard.attest import read_provenance
from lineage_guard.audit import Ledger
from lineage_guard.demo import data as demo_data
from lineage_guard.errors import ConfigError
from lineage_guard.lineage import Outbox

pytestmark = pytest.mark.dagster
DEMO_POLICY = Path(demo_data.__file__).with_name("policy.yaml")
QUERY = "SELECT id, mrn, full_name, birth_date, diagnosis FROM patients ORDER BY id"


@pytest.fixture(scope="module")
def clinic(new_database):
    pg_url = new_database()  # the demo tables would clobber the corpus's in the shared test database
    demo_data.seed(pg_url, patients=40, customers=10)
    with psycopg.connect(pg_url) as conn:
        raw = conn.execute("SELECT mrn, full_name FROM lineage_guard_demo.patients").fetchall()
    return pg_url, [v for row in raw for v in row]


@pytest.fixture(autouse=True)
def dagster_home(tmp_path, monkeypatch):
    home = tmp_path / "dagster_home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


def resources(url, lake, policy=DEMO_POLICY, **kw):
    governed = GovernedPostgresResource(url=url, policy=str(policy), purpose=kw.pop("purpose", "ai_training"),
                                        identity=kw.pop("identity", "svc-training"), **kw)
    return {"governed_postgres": governed, "io_manager": GovernedIOManager(governed=governed, base_path=str(lake))}


def materializations(result):
    return {"/".join(e.asset_key.path): e.materialization.metadata for e in result.get_asset_materialization_events()}


def events():
    outbox = Outbox()
    try:
        return outbox.events()
    finally:
        outbox.close()


def test_governed_asset_and_downstream(clinic, tmp_path, master_key):
    url, raw_values = clinic
    lake = tmp_path / "lake"
    patients = governed_postgres_asset("patients", QUERY, key_prefix=["ml"])

    @dg.asset(key_prefix=["ml"], metadata={"lineage_guard/column_sources": {"decade": ["lineage_guard_demo.patients.birth_date"],
                                                                             "n": []}})
    def features(patients: pl.DataFrame) -> pl.DataFrame:
        return patients.select("id", "mrn", "diagnosis",
                               decade=pl.col("birth_date").cast(pl.Utf8).str.slice(0, 3),
                               n=pl.lit(1),
                               shout=pl.col("diagnosis").str.to_uppercase(),  # no declared provenance
                               full_name=pl.lit("Not An Upstream Value"))     # same name, other content

    @dg.asset(key_prefix=["ml"])
    def as_pandas(features: pd.DataFrame) -> pd.DataFrame:
        return features[["id", "mrn"]]

    result = dg.materialize([patients, features, as_pandas], resources=resources(url, lake))
    assert result.success

    # On disk: masked before anything was written; no raw MRN or name anywhere in the files.
    on_disk = pq.read_table(lake / "ml" / "patients.parquet")
    assert on_disk.num_rows == 40 and on_disk.column_names == ["id", "mrn", "full_name", "birth_date", "diagnosis"]
    assert all(v.startswith("tok_") for v in on_disk["mrn"].to_pylist())
    blobs = b"".join(p.read_bytes() for p in lake.rglob("*.parquet"))
    assert not [v for v in raw_values if v.encode() in blobs]

    downstream = pq.read_table(lake / "ml" / "features.parquet")
    assert downstream["mrn"].to_pylist() == on_disk["mrn"].to_pylist()      # tokens are not tokenized twice
    assert set(downstream["shout"].to_pylist()) == {"[REDACTED]"}            # unknown provenance: default mask
    assert set(downstream["full_name"].to_pylist()) == {"[REDACTED]"}        # a name alone is not provenance
    assert downstream["n"].to_pylist() == [1] * 40                           # declared: derived from nothing
    assert pq.read_table(lake / "ml" / "as_pandas.parquet")["mrn"].to_pylist() == on_disk["mrn"].to_pylist()

    # Dagster metadata: schema with masked columns named, column lineage, row count, uri, receipt.
    meta = materializations(result)
    m = meta["ml/patients"]
    assert m["dagster/row_count"].value == 40
    assert m["dagster/uri"].value == (lake / "ml" / "patients.parquet").resolve().as_uri()
    schema = {c.name: c for c in m["dagster/column_schema"].schema.columns}
    assert schema["mrn"].description == "masked: tokenize" and schema["mrn"].tags["lineage_guard/access"] == "masked"
    assert schema["id"].tags["lineage_guard/access"] == "clear"
    assert m["lineage_guard/masked_columns"].value == ["mrn", "full_name", "birth_date", "diagnosis"]
    deps = m["dagster/column_lineage"].column_lineage.deps_by_column
    assert deps["mrn"] == [dg.TableColumnDep(dg.AssetKey(["postgres", "lineage_guard_demo", "patients"]), "mrn")]
    f = meta["ml/features"]
    f_deps = f["dagster/column_lineage"].column_lineage.deps_by_column
    assert f_deps["mrn"] == [dg.TableColumnDep(dg.AssetKey(["ml", "patients"]), "mrn")]
    assert f_deps["decade"] == [dg.TableColumnDep(dg.AssetKey(["postgres", "lineage_guard_demo", "patients"]), "birth_date")]
    assert "shout" not in f_deps and "n" not in f_deps
    assert f["lineage_guard/opaque_columns"].value == ["shout", "full_name"]
    assert {c.name: c.tags["lineage_guard/access"] for c in f["dagster/column_schema"].schema.columns} == {
        "id": "clear", "mrn": "masked", "diagnosis": "masked", "decade": "masked", "n": "clear", "shout": "masked",
        "full_name": "masked"}

    # Ledger: a verified entry per governed write, and per load (the downstream asset's identity reading a file).
    with Ledger.open() as ledger:
        assert ledger.verify().ok
        bodies = [e["body"] for e in ledger.entries()]
        for key in ("patients", "features", "as_pandas"):
            body = ledger.get(meta[f"ml/{key}"]["lineage_guard/receipt_id"].value)["body"]
            assert body["outcome"] == "success" and body["who"]["principal"] == "svc-training"
            assert body["sink"]["name"] == str((lake / "ml" / f"{key}.parquet").resolve())
            assert body["parent"]["run_id"] == result.run_id
            prov = read_provenance(lake / "ml" / f"{key}.parquet")  # every governed output carries its provenance
            assert prov["receipt_id"] == meta[f"ml/{key}"]["lineage_guard/receipt_id"].value
            assert body["output_sha256"] == hashlib.sha256((lake / "ml" / f"{key}.parquet").read_bytes()).hexdigest()
    # a Parquet write records its `open` intent first (the file's provenance names it), then success
    assert [(b["job"]["name"], b["sink"]["kind"], b["outcome"]) for b in bodies] == [
        ("ml.patients", "parquet", "open"), ("ml.patients", "parquet", "success"),
        ("ml.features", "memory", "success"), ("ml.features", "parquet", "open"),
        ("ml.features", "parquet", "success"), ("ml.as_pandas", "memory", "success"),
        ("ml.as_pandas", "parquet", "open"), ("ml.as_pandas", "parquet", "success")]
    assert (bodies[4]["columns"][5]["name"], bodies[4]["columns"][5]["method"]) == ("shout", "redact")

    # OpenLineage: valid, value-free, physical names, own run ids (not the Dagster run's), Dagster parent.
    evs = events()
    assert_valid_events(evs, forbid=[*raw_values, master_key])
    runs = {}
    for e in evs:
        runs.setdefault(e["run"]["runId"], []).append(e)
    assert len(runs) == 5 and result.run_id not in runs
    assert all([e["eventType"] for e in r] == ["START", "COMPLETE"] for r in runs.values())
    assert {r[-1]["run"]["facets"]["parent"]["run"]["runId"] for r in runs.values()} == {result.run_id}
    by_output = {r[-1]["outputs"][0]["name"]: r[-1] for r in runs.values() if r[-1].get("outputs")}
    first = by_output[str((lake / "ml" / "patients.parquet").resolve())]
    assert [(d["namespace"], d["name"].split(".", 1)[1]) for d in first["inputs"]] == [
        (namespace_of(url), "lineage_guard_demo.patients")]
    assert first["run"]["facets"]["parent"]["job"]["name"] == result.dagster_run.job_name == "__ephemeral_asset_job__"
    assert first["job"]["name"] == "ml.patients"
    assert first["job"]["facets"]["jobType"]["integration"] == "DAGSTER"
    second = by_output[str((lake / "ml" / "features.parquet").resolve())]
    assert "sql" in first["job"]["facets"] and "sql" not in second["job"]["facets"]   # no SQL ran for it
    patients_file = ("file", str((lake / "ml" / "patients.parquet").resolve()))
    assert patients_file in {(d["namespace"], d["name"]) for d in second["inputs"]}
    (load,) = [r[-1] for r in runs.values() if not r[-1].get("outputs") and r[-1]["job"]["name"] == "ml.features"]
    assert patients_file in {(d["namespace"], d["name"]) for d in load["inputs"]}
    assert not any("dagster" in d["namespace"] for e in evs for d in e.get("inputs", []) + e.get("outputs", []))


def test_load_masks_for_the_consuming_identity(clinic, tmp_path):
    url, raw_values = clinic
    # Written clear for the clinician; loaded by an asset that runs as the training service.
    chart = governed_postgres_asset("chart", "SELECT id, mrn FROM patients", identity="dr-grey", purpose="treatment")
    seen = {}

    @dg.asset
    def training_rows(chart: pa.Table) -> pa.Table:
        seen["mrn"] = chart["mrn"].to_pylist()
        return chart

    result = dg.materialize([chart, training_rows], resources=resources(url, tmp_path / "lake"))
    assert result.success
    assert pq.read_table(tmp_path / "lake" / "chart.parquet")["mrn"].to_pylist()[0].startswith("MRN-")
    assert all(v.startswith("tok_") for v in seen["mrn"]) and not set(seen["mrn"]) & set(raw_values)
    with Ledger.open() as ledger:
        load = next(e["body"] for e in ledger.entries() if e["body"]["sink"]["kind"] == "memory")
    assert (load["who"]["principal"], load["purpose"], load["sink"]["kind"]) == ("svc-training", "ai_training",
                                                                                 "memory")
    assert [c["method"] for c in load["columns"]] == [None, "tokenize"]


def test_resource_read_inside_an_asset(clinic, tmp_path):
    url, raw_values = clinic
    lake = tmp_path / "lake"

    @dg.asset
    def cohort(context: dg.AssetExecutionContext, governed_postgres: GovernedPostgresResource) -> pd.DataFrame:
        frame = governed_postgres.read_polars("SELECT id, mrn, zip FROM patients WHERE id < 10", context=context)
        return frame.to_pandas()

    result = dg.materialize([cohort], resources=resources(url, lake))
    assert result.success
    table = pq.read_table(lake / "cohort.parquet")
    assert not [v for v in raw_values if v.encode() in (lake / "cohort.parquet").read_bytes()]
    # The read masked the columns; the IO manager knew it and did not mask them a second time.
    assert all(v.startswith("tok_") and not v.startswith("tok_tok") for v in table["mrn"].to_pylist())
    assert all(z[3:] == "**" for z in table["zip"].to_pylist())
    meta = materializations(result)["cohort"]
    assert meta["dagster/column_lineage"].column_lineage.deps_by_column["zip"] == [
        dg.TableColumnDep(dg.AssetKey(["postgres", "lineage_guard_demo", "patients"]), "zip")]
    with Ledger.open() as ledger:
        bodies = [e["body"] for e in ledger.entries()]
    # the read, then the write (its `open` intent, then its success)
    assert [b["sink"]["kind"] for b in bodies] == ["memory", "parquet", "parquet"]
    assert {b["parent"]["run_id"] for b in bodies} == {result.run_id}


def test_denied_query_fails_the_run(clinic, tmp_path):
    url, _ = clinic
    lake = tmp_path / "lake"
    # No identity configured: the asset reads as dagster:secrets, which the demo policy does not declare.
    governed = GovernedPostgresResource(url=url, policy=str(DEMO_POLICY), purpose="ai_training")
    asset = governed_postgres_asset("secrets", "SELECT ssn FROM customers")
    result = dg.materialize([asset], raise_on_error=False, resources={
        "governed_postgres": governed, "io_manager": GovernedIOManager(governed=governed, base_path=str(lake))})
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data
    assert "lineage_guard denied the read" in failure.error.message
    assert "identity 'dagster:secrets' is not declared" in failure.error.message
    assert failure.user_failure_data.metadata["lineage_guard/decision"].value == "deny"
    assert not lake.exists() or not list(lake.rglob("*.parquet"))
    with Ledger.open() as ledger:
        (entry,) = list(ledger.entries())
    assert entry["body"]["outcome"] == "denied" and entry["body"]["who"]["principal"] == "dagster:secrets"
    assert entry["id"] == failure.user_failure_data.metadata["lineage_guard/receipt_id"].value
    evs = events()
    assert_valid_events(evs)
    assert [e["eventType"] for e in evs] == ["START", "FAIL"] and not evs[1].get("outputs")
    assert evs[1]["run"]["facets"]["lineageGuard_access"]["outcome"] == "denied"
    assert evs[1]["run"]["facets"]["parent"]["run"]["runId"] == result.run_id


def test_approval_needed_fails_with_the_command(clinic, tmp_path):
    url, _ = clinic
    policy = tmp_path / "policy.yaml"
    policy.write_text(json.dumps({
        "version": 1, "identities": {"analyst": {"kind": "human"}}, "purposes": ["audit"],
        "classifications": {"lineage_guard_demo.patients.mrn": "medical_record_number"},
        "search_path": ["lineage_guard_demo"],
        "rules": [{"classifications": ["medical_record_number"], "action": "clear", "approval": True}]}))
    asset = governed_postgres_asset("mrns", "SELECT mrn FROM patients")
    result = dg.materialize([asset], raise_on_error=False, resources=resources(
        url, tmp_path / "lake", policy=policy, purpose="audit", identity="analyst"))
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data
    assert "needs an approval first" in failure.error.message
    command = failure.user_failure_data.metadata["lineage_guard/approve_command"].value
    assert "lineage-guard approvals approve" in command and command in failure.error.message
    with Ledger.open() as ledger:
        assert [e["body"]["outcome"] for e in ledger.entries()] == ["needs_approval"]

    # An approver runs the command from the failure; the next materialization reads once, in the clear.
    argv = shlex.split(command.replace("<approver>", "dr-lead"))
    cli = Path(sys.executable).with_name(argv[0])
    done = subprocess.run([str(cli), *argv[1:]], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    again = dg.materialize([asset], resources=resources(url, tmp_path / "lake", policy=policy, purpose="audit",
                                                        identity="analyst"))
    assert again.success
    assert pq.read_table(tmp_path / "lake" / "mrns.parquet")["mrn"].to_pylist()[0].startswith("MRN-")
    with Ledger.open() as ledger:
        last = list(ledger.entries())[-1]["body"]
    assert last["outcome"] == "success" and last["approval_id"] == failure.user_failure_data.metadata[
        "lineage_guard/approval_request"].value


def test_unsupported_output_and_missing_input_are_clear(clinic, tmp_path):
    url, _ = clinic

    @dg.asset
    def not_a_table() -> dict:
        return {"x": 1}

    result = dg.materialize([not_a_table], raise_on_error=False, resources=resources(url, tmp_path / "lake"))
    assert not result.success
    message = result.get_step_failure_events()[0].step_failure_data.error.message
    assert "return a pyarrow.Table" in message and "not dict" in message


def test_partitions_fsspec_and_lazy_frames(clinic, tmp_path):
    url, _ = clinic
    parts = dg.StaticPartitionsDefinition(["1", "2"])
    wards = governed_postgres_asset("ward", "SELECT id, mrn FROM patients WHERE id % 2 = $1::int - 1",
                                    partitions_def=parts)

    @dg.asset(partitions_def=parts)
    def ward_ids(ward: pl.LazyFrame) -> pl.LazyFrame:
        return ward.select("mrn")

    res = resources(url, "memory://lg-lake")
    for key in ("1", "2"):
        assert dg.materialize([wards, ward_ids], partition_key=key, resources=res).success
    import fsspec

    fs = fsspec.filesystem("memory")
    one, two = (pq.read_table(fs.open(f"/lg-lake/ward/{k}.parquet", "rb")) for k in ("1", "2"))
    assert one.num_rows + two.num_rows == 40 and not set(one["id"].to_pylist()) & set(two["id"].to_pylist())
    assert pq.read_table(fs.open("/lg-lake/ward_ids/2.parquet", "rb"))["mrn"].to_pylist() == two["mrn"].to_pylist()
    evs = events()
    assert {d["namespace"] for e in evs for d in e.get("outputs", [])} == {"memory"}
    assert_valid_events(evs)


def test_in_memory_output_denied_writes_nothing(clinic, tmp_path):
    url, _ = clinic

    @dg.asset
    def table_from_elsewhere() -> pd.DataFrame:
        return pd.DataFrame({"email": ["x@example.invalid"]})

    lake = tmp_path / "lake"
    result = dg.materialize([table_from_elsewhere], raise_on_error=False,
                            resources=resources(url, lake, identity="svc-unknown"))
    assert not result.success
    message = result.get_step_failure_events()[0].step_failure_data.error.message
    assert "identity 'svc-unknown' is not declared" in message and "x@example.invalid" not in message
    assert not lake.exists() or not list(lake.rglob("*"))
    with Ledger.open() as ledger:
        assert [e["body"]["outcome"] for e in ledger.entries()] == ["denied"]


def test_session_mask_table(clinic, tmp_path):
    from lineage_guard.errors import AccessDenied, LineageGuardError
    from lineage_guard.mask import MaskSpec
    from lineage_guard.session import GovernedSession
    from lineage_guard.sql.model import ColumnRef, OutputColumn

    url, _ = clinic
    mrn, pid = ColumnRef("lineage_guard_demo", "patients", "mrn"), ColumnRef("lineage_guard_demo", "patients", "id")
    table = pa.table({"id": [1, 2], "mrn": ["MRN-1", "MRN-2"], "tok": ["tok_a", "tok_b"], "x": ["a", "b"]})
    cols = [OutputColumn(0, "id", (pid,), direct=True), OutputColumn(1, "mrn", (mrn,), direct=True),
            OutputColumn(2, "tok", (mrn,), direct=True), OutputColumn(3, "x", opaque=True)]
    tokenize = MaskSpec("tokenize", scope="purpose:ai_training", classification="medical_record_number")
    with GovernedSession(url, DEMO_POLICY, "svc-training", "ai_training") as s:
        result = s.mask_table(table, cols, tmp_path / "t.parquet", statement="test table",
                              premasked={2: tokenize})
        with pytest.raises(LineageGuardError, match="one OutputColumn per table column"):
            s.mask_table(table, cols[:2], tmp_path / "u.parquet", statement="test table")
    out = pq.read_table(tmp_path / "t.parquet").to_pydict()
    assert out["id"] == [1, 2] and out["tok"] == ["tok_a", "tok_b"] and out["x"] == ["[REDACTED]"] * 2
    assert all(v.startswith("tok_") and v not in ("MRN-1", "MRN-2") for v in out["mrn"])
    assert result.masked_columns == ("mrn", "tok", "x") and result.rows == 2

    with GovernedSession(url, DEMO_POLICY, "svc-training", "marketing") as s, pytest.raises(AccessDenied):
        s.mask_table(table, cols, tmp_path / "v.parquet", statement="test table")
    assert not (tmp_path / "v.parquet").exists()
    with Ledger.open() as ledger:
        assert [e["body"]["outcome"] for e in ledger.entries()] == ["open", "success", "denied"]


def test_resource_from_parts_with_env_secrets(clinic, tmp_path, monkeypatch):
    import secrets

    from lineage_guard.sources.pg_url import url_parts

    url, _ = clinic
    parts = url_parts(url)
    password, other_key = "pw-" + secrets.token_hex(8), secrets.token_hex(32)
    monkeypatch.setenv("CLINIC_PW", password)
    monkeypatch.setenv("OTHER_MASTER_KEY", other_key)
    governed = GovernedPostgresResource(
        host=parts["host"], port=parts["port"], database=parts["database"], user=parts["user"],
        password=dg.EnvVar("CLINIC_PW"), master_key=dg.EnvVar("OTHER_MASTER_KEY"),
        policy=str(DEMO_POLICY), purpose="ai_training", identity="svc-training")
    seen = {}

    @dg.asset
    def tokens(context: dg.AssetExecutionContext, governed_postgres: GovernedPostgresResource) -> pa.Table:
        decision = governed_postgres.plan("SELECT id, mrn FROM patients", context=context)
        seen["plan"] = decision.to_json()
        return governed_postgres.read_arrow("SELECT id, mrn FROM patients ORDER BY id", context=context)

    result = dg.materialize([tokens], resources={
        "governed_postgres": governed, "io_manager": GovernedIOManager(governed=governed, base_path=str(tmp_path))})
    assert result.success
    assert [c["masked"] for c in seen["plan"]["columns"]] == [False, True]
    with_other_key = pq.read_table(tmp_path / "tokens.parquet")["mrn"].to_pylist()
    with GovernedPostgresResource(url=url, policy=str(DEMO_POLICY), purpose="ai_training",
                                  identity="svc-training").session() as s:  # the environment's key
        with_env_key = s.read_arrow("SELECT mrn FROM patients ORDER BY id")["mrn"].to_pylist()
    assert len(with_other_key) == 40 and not set(with_other_key) & set(with_env_key)
    stored = b"".join(p.read_bytes() for p in (tmp_path / "lg_home").rglob("*") if p.is_file())
    assert password.encode() not in stored and other_key.encode() not in stored
    assert_valid_events(events(), forbid=[password, other_key])
    with pytest.raises(ConfigError, match="either url or host"):
        GovernedPostgresResource(url=url, host="x", policy=str(DEMO_POLICY), purpose="p").source_url()
