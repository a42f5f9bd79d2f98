"""build_event / operator_lineage_parts: names, facets and the run protocol, checked by check_lineage.py."""

from __future__ import annotations

import copy
import json
from dataclasses import replace

import pytest
from conftest import TEST_MASTER_KEY, require
from lineage_check import assert_valid_events, check_events, sample_run

from lineage_guard.decision import ColumnDecision, Decision
from lineage_guard.errors import ConfigError
from lineage_guard.lineage import (
    ACCESS_KEY,
    MASKING_KEY,
    build_event,
    dataset_for_uri,
    operator_lineage_parts,
    schema_dir,
)
from lineage_guard.lineage.sql_text import shareable_sql
from lineage_guard.mask.spec import MaskSpec
from lineage_guard.run import ParentRun, SinkInfo
from lineage_guard.sql.model import ColumnRef, ColumnUse

RAW_SSN = "123-45-6789"   # a literal in the sample SQL: must never reach an event
FORBID = [RAW_SSN, TEST_MASTER_KEY]


def run_events(run, terminal="COMPLETE"):
    return [build_event(run, "START"), build_event(run, terminal)]


def fields_of(dataset):
    return [f["name"] for f in dataset["facets"]["schema"]["fields"]]


def test_complete_run_is_valid_for_spec_and_marquez():
    start, end = run_events(sample_run())
    assert assert_valid_events([start, end], forbid=FORBID) == "2 events, 1 runs, 0 problems"
    assert (start["eventType"], end["eventType"]) == ("START", "COMPLETE")
    assert start["run"]["runId"] == end["run"]["runId"]
    assert end["schemaURL"].endswith("#/$defs/RunEvent") and end["eventTime"].endswith("+00:00")
    # the terminal event repeats the full inputs and outputs
    assert [(d["namespace"], d["name"]) for d in start["inputs"]] == [(d["namespace"], d["name"]) for d in end["inputs"]]
    assert [(d["namespace"], d["name"]) for d in start["outputs"]] == [(d["namespace"], d["name"]) for d in end["outputs"]]


def test_dataset_names():
    start = build_event(sample_run(), "START")
    assert [(d["namespace"], d["name"]) for d in start["inputs"]] == [
        ("postgres://db.internal:5432", "clinic.public.patients"),
        ("postgres://db.internal:5432", "clinic.public.visits")]
    assert [(d["namespace"], d["name"]) for d in start["outputs"]] == [("file", "/data/out/patients.parquet")]
    assert start["outputs"][0]["facets"]["dataSource"]["uri"] == "file:///data/out/patients.parquet"
    assert dataset_for_uri("/tmp/x/../y.parquet") == ("file", "/tmp/y.parquet")
    assert dataset_for_uri("file:///tmp/y.parquet") == ("file", "/tmp/y.parquet")
    assert dataset_for_uri("file://nas01/share/y.parquet") == ("file://nas01", "/share/y.parquet")
    assert dataset_for_uri("s3://lake/exports/y.parquet") == ("s3://lake", "exports/y.parquet")
    assert dataset_for_uri("gs://lake/y.parquet") == ("gs://lake", "y.parquet")
    assert dataset_for_uri("abfs://user:pw@acct:443/c/y.parquet") == ("abfs://acct:443", "c/y.parquet")
    with pytest.raises(ConfigError, match="cannot name the dataset"):
        dataset_for_uri("memory://")


def test_postgres_names_match_airflow_provider():
    require("airflow", "airflow")
    from airflow.models import Connection
    from airflow.providers.common.sql.hooks.sql import DbApiHook
    from airflow.providers.openlineage.sqlparser import DatabaseInfo, SQLParser

    run = sample_run()
    conn = Connection(conn_id="clinic", conn_type="postgres", host="db.internal", schema="clinic", login="u")
    info = DatabaseInfo(scheme="postgres", authority=DbApiHook.get_openlineage_authority_part(conn, default_port=5432),
                        database=conn.schema)
    meta = SQLParser(dialect="postgres", default_schema="public").parse(run.sql)
    airflow_inputs, _ = SQLParser.get_metadata_from_parser(meta.in_tables, meta.out_tables, info,
                                                           namespace=SQLParser.create_namespace(info))
    ours = build_event(run, "START")["inputs"]
    assert sorted((d.namespace, d.name) for d in airflow_inputs) == sorted((d["namespace"], d["name"]) for d in ours)


def test_column_lineage_both_forms():
    end = build_event(sample_run(), "COMPLETE")
    out = end["outputs"][0]
    cl = out["facets"]["columnLineage"]["fields"]
    assert set(cl) == set(fields_of(out)) == {"id", "full_name", "ssn_token", "birth_month", "visits"}
    assert cl["id"]["transformationType"] == "IDENTITY"
    assert cl["id"]["inputFields"] == [{"namespace": "postgres://db.internal:5432", "name": "clinic.public.patients",
                                        "field": "id", "transformations": [
                                            {"type": "DIRECT", "subtype": "IDENTITY", "description": "",
                                             "masking": False}]}]
    ssn = cl["ssn_token"]
    assert (ssn["transformationType"], ssn["transformationDescription"]) == ("MASKED", "tokenize")
    assert ssn["inputFields"][0]["field"] == "ssn"
    assert ssn["inputFields"][0]["transformations"] == [
        {"type": "DIRECT", "subtype": "TRANSFORMATION", "description": "tokenize", "masking": True}]
    assert cl["birth_month"]["transformationDescription"] == "generalize(to=month)"
    assert cl["visits"]["inputFields"][0]["transformations"][0]["subtype"] == "TRANSFORMATION"
    # every column-lineage input field is in that input's schema facet (else Marquez drops the row)
    in_fields = {d["name"]: set(fields_of(d)) for d in end["inputs"]}
    assert all(i["field"] in in_fields[i["name"]] for f in cl.values() for i in f["inputFields"])


def test_indirect_lineage_for_filters_joins_and_sorts():
    run = sample_run()
    a = run.decision.analysis
    uses = (ColumnUse(ColumnRef("public", "patients", "ssn"), "where", against_constant=True),
            ColumnUse(ColumnRef("public", "visits", "patient_id"), "join"),
            ColumnUse(ColumnRef("public", "patients", "id"), "join"),
            ColumnUse(ColumnRef("public", "patients", "id"), "order"),
            ColumnUse(ColumnRef("public", "patients", "region"), "limit"))
    run.decision = replace(run.decision, analysis=replace(a, uses=uses))
    start, end = run_events(run)
    assert_valid_events([start, end], forbid=FORBID)
    indirect = end["outputs"][0]["facets"]["columnLineage"]["dataset"]
    assert [(i["name"], i["field"], [t["subtype"] for t in i["transformations"]]) for i in indirect] == [
        ("clinic.public.patients", "ssn", ["FILTER"]), ("clinic.public.visits", "patient_id", ["JOIN"]),
        ("clinic.public.patients", "id", ["JOIN", "SORT"])]
    assert all(t["type"] == "INDIRECT" and t["masking"] is False for i in indirect for t in i["transformations"])
    assert "region" in fields_of(end["inputs"][0])     # a used column is a column read


def test_job_and_run_facets():
    end = build_event(sample_run(rows=7, bytes=321), "COMPLETE")
    job = end["job"]["facets"]
    assert {k: job["jobType"][k] for k in ("processingType", "integration", "jobType")} == {
        "processingType": "BATCH", "integration": "LINEAGE_GUARD", "jobType": "QUERY"}
    assert RAW_SSN not in job["sql"]["query"] and "p.ssn <> %s" in job["sql"]["query"]
    assert end["outputs"][0]["outputFacets"]["outputStatistics"]["rowCount"] == 7
    assert end["outputs"][0]["outputFacets"]["outputStatistics"]["size"] == 321
    assert "outputStatistics" not in build_event(sample_run(), "START")["outputs"][0]["outputFacets"]
    access = end["run"]["facets"][ACCESS_KEY]
    assert access["_schemaURL"] == ("https://lineage-guard.dev/spec/facets/1-0-0/AccessRunFacet.json"
                                    "#/$defs/AccessRunFacet")
    assert access["identity"] == {"principal": "svc-training", "kind": "service", "groups": ["ml", "readers"]}
    assert (access["purpose"], access["decision"]["action"], access["approvalId"]) == ("ai_training", "allow", "apr-42")
    assert access["receipt"] == {"id": "led-7", "hash": "a" * 64}
    assert [(c["name"], c["access"], c.get("method"), c.get("keyId")) for c in access["columns"]] == [
        ("id", "clear", None, None), ("full_name", "clear", None, None),
        ("ssn_token", "masked", "tokenize", "k-ai_training-2026-01"),
        ("birth_month", "masked", "generalize", None), ("visits", "clear", None, None)]
    masking = end["outputs"][0]["outputFacets"][MASKING_KEY]
    assert (masking["maskedColumns"], masking["clearColumns"]) == (2, 3)
    assert masking["fields"]["ssn_token"] == {"method": "tokenize", "description": "tokenize",
                                              "scope": "purpose:ai_training", "keyId": "k-ai_training-2026-01"}
    assert "parent" not in end["run"]["facets"]
    assert end["run"]["facets"]["processing_engine"]["name"] == "lineage_guard"


def test_parent_run_and_orchestrator_job_type():
    parent = ParentRun("0f6d2ad4-50c8-4a2a-8d0e-9f3b1f5e9c11", "airflow_prod", "etl.extract_patients")
    run = sample_run(parent=parent, extra={"openlineage_integration": "DAGSTER", "openlineage_job_type": "ASSET"})
    start, end = run_events(run)
    assert_valid_events([start, end], forbid=FORBID)
    assert end["run"]["facets"]["parent"]["run"] == {"runId": parent.run_id}
    assert end["run"]["facets"]["parent"]["job"] == {"namespace": "airflow_prod", "name": "etl.extract_patients"}
    assert (end["job"]["facets"]["jobType"]["integration"], end["job"]["facets"]["jobType"]["jobType"]) == (
        "DAGSTER", "ASSET")
    assert build_event(sample_run(parent=parent), "START")["job"]["facets"]["jobType"]["jobType"] == "TASK"


def test_fail_event_carries_sanitized_error_only():
    run = sample_run(outcome="failed", error_class="SourceError",
                     error_message="statement timeout after 30s; raise statement_timeout or narrow the query")
    start, end = run_events(run, "FAIL")
    assert_valid_events([start, end], forbid=FORBID)
    assert end["run"]["facets"]["errorMessage"]["message"].startswith("SourceError: statement timeout")
    assert end["run"]["facets"]["errorMessage"]["programmingLanguage"] == "python"
    assert "stackTrace" not in end["run"]["facets"]["errorMessage"]
    assert "outputStatistics" not in end["outputs"][0]["outputFacets"]


def test_denied_and_in_memory_runs_draw_no_output():
    base = sample_run()
    denied = sample_run(decision=Decision("deny", ("ssn compared against a constant",), base.sql, base.decision.columns,
                                          base.decision.analysis), outcome="denied", error_class="AccessDenied",
                        error_message="access denied")
    memory = sample_run(sink=SinkInfo("memory", "memory://", "memory", "arrow"))
    for run, terminal in ((denied, "FAIL"), (memory, "COMPLETE")):
        start, end = run_events(run, terminal)
        assert_valid_events([start, end], forbid=FORBID)
        assert start["outputs"] == end["outputs"] == [] and len(end["inputs"]) == 2


def test_dropped_column_is_not_written_but_recorded():
    run = sample_run()
    cols = run.decision.columns + (ColumnDecision(5, "ssn", (ColumnRef("public", "patients", "ssn"),),
                                                  mask=MaskSpec("drop")),)
    run.decision = Decision("allow", (), run.sql, cols, run.decision.analysis)
    end = build_event(run, "COMPLETE")
    assert_valid_events([build_event(run, "START"), end], forbid=FORBID)
    assert "ssn" not in fields_of(end["outputs"][0]) and "ssn" not in end["outputs"][0]["facets"]["columnLineage"]["fields"]
    assert end["outputs"][0]["outputFacets"][MASKING_KEY]["fields"]["ssn"]["method"] == "drop"


def test_checker_and_facet_schemas_catch_bad_events():
    start, end = run_events(sample_run())
    leaky = copy.deepcopy(end)
    leaky["run"]["facets"][ACCESS_KEY]["rawValue"] = "x"          # a field our schema does not allow
    code, out = check_events([start, leaky])
    assert code == 1 and "lineageGuard_access" in out and "rawValue" in out
    old_marquez = copy.deepcopy(end)
    del old_marquez["outputs"][0]["facets"]["columnLineage"]["fields"]["id"]["transformationType"]
    code, out = check_events([start, old_marquez])
    assert code == 1 and "transformationType IDENTITY|MASKED missing" in out
    code, out = check_events([start, end], forbid=["clinic.public.patients"])
    assert code == 1 and "forbidden value appears" in out
    code, out = check_events([start, end, build_event(sample_run(run_id=start["run"]["runId"]), "COMPLETE")])
    assert code == 1 and "2 terminal events" in out
    assert {p.name for p in schema_dir().glob("*.json")} == {"AccessRunFacet.json", "MaskingOutputDatasetFacet.json",
                                                           "RowFilterInputDatasetFacet.json",
                                                           "AttestationRunFacet.json"}
    for p in schema_dir().glob("*.json"):
        doc = json.loads(p.read_text())
        assert doc["$id"].startswith("https://lineage-guard.dev/spec/facets/1-0-0/") and doc["$id"].endswith(p.name)


def test_sql_facet_never_shows_literals_or_comments():
    assert shareable_sql("SELECT a FROM t WHERE ssn = '123-45-6789' AND n = 42 /* ssn 987-65-4321 */ "
                         "ORDER BY 1 LIMIT 10") == "SELECT a FROM t WHERE ssn = %s AND n = %s ORDER BY 1 LIMIT 10"
    assert shareable_sql("SELECT a FROM t WHERE h = x'ff' AND e = E'secret' AND d = $$dollar$$") == (
        "SELECT a FROM t WHERE h = %s AND e = %s AND d = %s")
    assert shareable_sql("SELECT a FROM t WHERE id = $1") == "SELECT a FROM t WHERE id = $1"
    assert shareable_sql("SELEC 'secret' FRM (((").startswith("-- statement not shown")


def test_bad_names_are_refused_with_what_to_fix():
    with pytest.raises(ConfigError, match="job namespace 'my jobs'"):
        build_event(sample_run(job_namespace="my jobs"), "START")
    with pytest.raises(ConfigError, match="event type"):
        build_event(sample_run(), "DONE")


def test_operator_lineage_parts_survive_airflow_redaction():
    require("airflow", "airflow")
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.providers.openlineage.plugins.adapter import OpenLineageAdapter
    from openlineage.client.serde import Serde

    run = sample_run(parent=ParentRun("0f6d2ad4-50c8-4a2a-8d0e-9f3b1f5e9c11", "airflow", "dag.task"))
    cols = run.decision.columns + (ColumnDecision(5, "password", (ColumnRef("public", "patients", "password"),),
                                                  mask=MaskSpec("redact")),)
    run.decision = Decision("allow", (), run.sql, cols, run.decision.analysis)
    run.output_schema = [*run.output_schema, ("password", "string")]
    inputs, outputs, run_facets, job_facets = operator_lineage_parts(run)
    # Airflow adds jobType, parent and processing_engine itself
    assert set(run_facets) == {ACCESS_KEY} and set(job_facets) == {"sql"}
    run.error_class, run.error_message = "SourceError", "statement timeout"
    assert set(operator_lineage_parts(run, "FAIL")[2]) == {ACCESS_KEY, "errorMessage"}
    lineage = OperatorLineage(inputs=inputs, outputs=outputs, run_facets=run_facets, job_facets=job_facets)
    redactor = OpenLineageAdapter()._redacter
    assert redactor.redact({"password": "x"}, max_depth=5) == {"password": "***"}   # the masker is live
    before = [Serde.to_dict(f) for f in (run_facets[ACCESS_KEY], outputs[0].outputFacets[MASKING_KEY])]
    after = [Serde.to_dict(redactor.redact(f, max_depth=20))
             for f in (lineage.run_facets[ACCESS_KEY], lineage.outputs[0].outputFacets[MASKING_KEY])]
    assert after == before and after[1]["fields"]["password"]["method"] == "redact"


def _tags(dataset) -> dict[str, list[tuple[str, str]]]:
    out: dict[str, list[tuple[str, str]]] = {}
    for tag in (dataset["facets"].get("tags") or {}).get("tags", []):
        out.setdefault(tag["field"], []).append((tag["key"], tag["value"]))
    return out


def test_pii_tags_on_inputs_and_only_on_outputs_that_leave_clear():
    start, end = run_events(sample_run())
    assert assert_valid_events([start, end], forbid=FORBID) == "2 events, 1 runs, 0 problems"   # incl. TagsDatasetFacet
    patients = end["inputs"][0]
    tags = patients["facets"]["tags"]
    assert tags["_schemaURL"] == "https://openlineage.io/spec/facets/1-0-0/TagsDatasetFacet.json#/$defs/TagsDatasetFacet"
    assert {t["source"] for t in tags["tags"]} == {"LINEAGE_GUARD"}
    assert _tags(patients) == {"full_name": [("pii", "true"), ("classification", "person_name")],
                               "ssn": [("pii", "true"), ("classification", "national_id")],
                               "dob": [("pii", "true"), ("classification", "date_of_birth")]}
    assert "tags" not in end["inputs"][1]["facets"]                     # visits: nothing classified
    # full_name leaves clear: still PII downstream; ssn_token and birth_month are masked: the tags stop there
    assert _tags(end["outputs"][0]) == {"full_name": [("pii", "true"), ("classification", "person_name")]}
    everything_masked = sample_run()
    cols = tuple(replace(c, mask=MaskSpec("redact")) if c.name == "full_name" else c
                 for c in everything_masked.decision.columns)
    everything_masked.decision = replace(everything_masked.decision, columns=cols)
    out = build_event(everything_masked, "COMPLETE")["outputs"][0]
    assert "tags" not in out["facets"]
    assert _tags(build_event(everything_masked, "COMPLETE")["inputs"][0])["full_name"] == [
        ("pii", "true"), ("classification", "person_name")]


def test_checker_refuses_a_tag_on_a_field_the_schema_does_not_have():
    start, end = run_events(sample_run())
    bad = copy.deepcopy(end)
    bad["outputs"][0]["facets"]["tags"]["tags"][0]["field"] = "no_such_column"
    code, out = check_events([start, bad])
    assert code == 1 and "tags facet: field 'no_such_column' is not in the schema facet" in out


def test_an_approved_run_names_its_output_and_a_waiting_or_denied_one_does_not():
    # On main 199ac5e the approved run's events had no output (the decision stays needs_approval).
    needs = replace(sample_run().decision, action="needs_approval")
    approved = sample_run(decision=needs, approval_id="req-1", outcome="success")
    for kind in ("START", "COMPLETE"):
        assert [(d["namespace"], d["name"]) for d in build_event(approved, kind)["outputs"]] == [
            ("file", "/data/out/patients.parquet")]
    assert_valid_events([build_event(approved, "START"), build_event(approved, "COMPLETE")])
    for outcome in ("needs_approval", "denied"):
        assert build_event(sample_run(decision=needs, approval_id="req-1", outcome=outcome), "FAIL")["outputs"] == []
    assert build_event(sample_run(decision=needs, approval_id=None, outcome="success"), "COMPLETE")["outputs"] == []  # never approved


@pytest.mark.parametrize(("action", "approval_id", "outcome", "names_output"), [
    ("allow", None, "failed", True),                  # allowed, then a fault: FAIL repeats START's output
    ("needs_approval", "req-1", "failed", True),      # approved, then a fault
    ("deny", None, "denied", False),                  # denied: no file was ever meant to be written
    ("needs_approval", "req-1", "needs_approval", False),
])
def test_plain_operator_fail_repeats_the_declared_output_only_after_an_allowed_read(action, approval_id, outcome,
                                                                                     names_output):
    require("airflow", "airflow")
    from lineage_guard.operators.lineage import operator_lineage

    declared = "/data/out/patients.parquet"   # the sample run's sink
    run = sample_run(decision=replace(sample_run().decision, action=action), approval_id=approval_id,
                     outcome=outcome)
    run.sink = None   # it failed before its sink opened (a source error, a cut connection)
    assert [d.name for d in operator_lineage([], declared, "START").outputs] == [declared]
    assert [d.name for d in operator_lineage([run], declared, "FAIL").outputs] == ([declared] if names_output else [])
    assert operator_lineage([], declared, "FAIL").outputs == []   # the template never rendered, nothing ran
