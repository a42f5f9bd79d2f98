"""Provenance travels with the data: a governed Parquet file names its receipt, and the ledger matches its digest."""

from __future__ import annotations

import hashlib
import json

import pyarrow.parquet as pq
import pytest

from lineage_guard.attest import read_provenance
from lineage_guard.attest.provenance import KEY, policy_digest
from lineage_guard.audit import Ledger
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
  public.prov_people.email: email
  public.prov_people.ssn: national_id
rules:
  - {classifications: [email], groups: [training-jobs], action: mask, mask: {method: tokenize}}
  - {classifications: [national_id], groups: [training-jobs], action: mask, mask: {method: partial, params: {keep_last: 4}}}
"""
RAW = [(1, "ann.oak@example.org", "901-23-4567", 41), (2, "ben.elm@example.org", "901-76-5432", 37)]


@pytest.fixture(scope="module")
def people_url(pg_url):
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS prov_people")
        conn.execute("CREATE TABLE prov_people (id int primary key, email text, ssn text, age int)")
        conn.cursor().executemany("INSERT INTO prov_people VALUES (%s, %s, %s, %s)", RAW)
    return pg_url


def test_a_governed_file_names_its_receipt_and_the_ledger_matches_its_digest(people_url, tmp_path, master_key):
    policy = parse_policy(POLICY)
    ledger = Ledger.open(str(tmp_path / "ledger.sqlite"))
    out = tmp_path / "people.parquet"
    with GovernedSession(people_url, policy, Identity("svc-training"), "ai_training", ledger=ledger) as s:
        result = s.extract("SELECT id, email, ssn, age FROM prov_people WHERE age > 29 OR id = 1234567", to=out)

    prov = read_provenance(out)
    assert (prov["receipt_id"], prov["run_id"]) == (result.receipt_id, result.run_id)
    assert prov["policy_digest"] == policy_digest(policy) and prov["purpose"] == "ai_training"
    assert prov["identity"] == {"principal": "svc-training", "kind": "service", "groups": ["training-jobs"],
                                "auth": {"method": "asserted"}}
    assert "age > %s" in prov["statement"]["text"] and "1234567" not in prov["statement"]["text"]
    treatment = {c["name"]: (c["treatment"], c["method"], c["key_id"]) for c in prov["columns"]}
    assert treatment["id"] == ("clear", None, None) and treatment["age"] == ("clear", None, None)
    assert treatment["email"][:2] == ("masked", "tokenize") and treatment["email"][2].startswith("k")
    assert treatment["ssn"] == ("masked", "partial(keep_last=4)", None)

    # The intent entry the file names is in the chain with that hash; the final entry supersedes it
    # and records the digest of exactly these bytes.
    assert ledger.verify().ok
    intent, final = ledger.get(prov["ledger_entry"]["id"]), ledger.get(prov["receipt_id"])
    assert intent["hash"] == prov["ledger_entry"]["hash"] and intent["body"]["outcome"] == "open"
    assert final["body"]["supersedes"] == intent["id"] and final["body"]["outcome"] == "success"
    assert final["body"]["output_sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert final["body"]["policy_digest"] == prov["policy_digest"]

    # Never a key or a raw value in the footer.
    raw_footer = pq.read_metadata(out).metadata[KEY.encode()]
    assert json.loads(raw_footer) == prov
    assert master_key.encode() not in raw_footer
    assert not any(str(v).encode() in raw_footer for row in RAW for v in row[1:3])


def test_a_plain_parquet_file_has_no_provenance(tmp_path):
    import pyarrow as pa

    pq.write_table(pa.table({"x": [1]}), tmp_path / "plain.parquet")
    assert read_provenance(tmp_path / "plain.parquet") is None
