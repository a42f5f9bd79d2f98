"""Lineage from the real governed path: a masked extract from the real PostgreSQL, its events checked."""

from __future__ import annotations

import psycopg
import pytest
from conftest import TEST_MASTER_KEY, namespace_of
from lineage_check import assert_valid_events
from test_lineage_outbox import fast_http, marquez  # noqa: F401 - fixtures

from lineage_guard.errors import LineageGuardError
from lineage_guard.identity import Identity
from lineage_guard.lineage import ACCESS_KEY, MASKING_KEY, LineageEmitter, Outbox
from lineage_guard.policy import parse_policy
from lineage_guard.session import GovernedSession

POLICY = """
version: 1
identities:
  svc-training: {kind: service, groups: [training-jobs]}
groups: [training-jobs]
purposes: [ai_training]
classifications:
  public.lg_patients.email: email
  public.lg_patients.ssn: national_id
rules:
  - {classifications: [email], groups: [training-jobs], action: mask, mask: {method: tokenize}}
  - {classifications: [national_id], groups: [training-jobs], action: mask, mask: {method: partial, params: {keep_last: 4}}}
"""
RAW = [(1, "ann.lee@example.org", "900-12-3456", "gold"), (2, "bo.ray@example.org", "900-65-4321", "free")]
FORBID = [v for row in RAW for v in row[1:3]] + ["900-12", "gold", TEST_MASTER_KEY]


@pytest.fixture(scope="module")
def patients_url(pg_url):
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS lg_patients")
        conn.execute("CREATE TABLE lg_patients (id int primary key, email text, ssn text, plan text)")
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO lg_patients VALUES (%s, %s, %s, %s)", RAW)
    return pg_url


def test_extract_emits_a_valid_masked_lineage_graph(patients_url, fast_http, tmp_path):  # noqa: F811
    out = tmp_path / "patients.parquet"
    with GovernedSession(patients_url, parse_policy(POLICY), Identity("svc-training"), "ai_training",
                         lineage=LineageEmitter(ship="inline")) as s:
        result = s.extract("SELECT id, email, ssn, plan FROM lg_patients WHERE plan = 'gold'", to=str(out))
    events = Outbox().events(run_id=result.run_id)
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"]
    assert fast_http.seen() == [(result.run_id, "START"), (result.run_id, "COMPLETE")]
    assert_valid_events(events, forbid=FORBID)
    end = events[-1]
    database = psycopg.conninfo.conninfo_to_dict(patients_url)["dbname"]
    assert [(d["namespace"], d["name"]) for d in end["inputs"]] == [(namespace_of(patients_url),
                                                                     f"{database}.public.lg_patients")]
    assert [(d["namespace"], d["name"]) for d in end["outputs"]] == [("file", str(out.resolve()))]
    cl = end["outputs"][0]["facets"]["columnLineage"]["fields"]
    assert {k: v["transformationType"] for k, v in cl.items()} == {
        "id": "IDENTITY", "email": "MASKED", "ssn": "MASKED", "plan": "IDENTITY"}
    # PII tags: on the input's classified fields; none on the output, whose classified columns are all masked
    in_tags = {(t["field"], t["key"], t["value"]) for t in end["inputs"][0]["facets"]["tags"]["tags"]}
    assert in_tags == {("email", "pii", "true"), ("email", "classification", "email"),
                       ("ssn", "pii", "true"), ("ssn", "classification", "national_id")}
    assert "tags" not in end["outputs"][0]["facets"]
    assert end["outputs"][0]["outputFacets"]["outputStatistics"]["rowCount"] == 1
    assert set(end["outputs"][0]["outputFacets"][MASKING_KEY]["fields"]) == {"email", "ssn"}
    access = end["run"]["facets"][ACCESS_KEY]
    assert access["receipt"]["id"] == result.receipt_id and access["outcome"] == "success"
    assert next(c for c in access["columns"] if c["name"] == "email").get("keyId")


def test_failed_read_emits_start_and_fail(patients_url, tmp_path):
    with GovernedSession(patients_url, parse_policy(POLICY), Identity("svc-training"), "ai_training",
                         lineage=LineageEmitter(ship="manual")) as s, pytest.raises(LineageGuardError):
        s.extract("SELECT id, email FROM lg_patients WHERE id / 0 = 1", to=str(tmp_path / "x.parquet"))
    events = Outbox().events()
    assert [e["eventType"] for e in events] == ["START", "FAIL"]
    assert_valid_events(events, forbid=FORBID)
    assert "errorMessage" in events[-1]["run"]["facets"]
