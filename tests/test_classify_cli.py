"""`lineage-guard scan`: real database, real policy, value-free output."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import require
from typer.testing import CliRunner

from lineage_guard.cli import app

require("psycopg", "postgres")
POLICY = Path(__file__).resolve().parents[1] / "examples" / "policy.yaml"  # written for the public schema the corpus uses
RAW = ("931-38-3286", "fakey.mcfake45@fake-01.invalid", "Fakey McFake 01", "+1-555-0186", "0000-7965-4585-3881",
       "MRN-FAKE-841666")


def run(*args: str):
    result = CliRunner().invoke(app, ["scan", *args])
    assert not any(v in result.output for v in RAW), "a sampled value was printed"
    return result


def test_scan_json_with_policy_actions(corpus_url):
    r = run(corpus_url, "--table", "customers", "--table", "public.orders", "--policy", str(POLICY),
            "--identity", "svc-training", "--purpose", "ai_training", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    cols = {c["column"]: c for c in doc["columns"]}
    assert doc["source"].startswith("postgres://") and "@" not in doc["source"]
    expected = {"label": "national_id", "source": "policy", "detected": "national_id", "sensitive": True,
                "action": "mask: tokenize [training-tokenizes-identifiers]"}
    assert {k: cols["public.customers.ssn"][k] for k in expected} == expected
    assert cols["public.customers.plan"]["sensitive"] is False and cols["public.customers.plan"]["action"] == "clear"
    assert cols["public.orders.card_number"]["evidence"]["checksum_share"] < 0.5
    assert all(c["confidence"] <= 1 for c in doc["columns"])


def test_scan_table_without_policy_and_thresholds(corpus_url):
    r = run(corpus_url, "--table", "patients")
    assert r.exit_code == 0, r.output
    for text in ("public.patients.mrn", "medical_record_number", "clinical_note", "name 'mrn'", "of 6 columns sensitive"):
        assert text in r.output
    strict = json.loads(run(corpus_url, "--table", "patients", "--threshold", "0.99", "--json").output)
    loose = json.loads(run(corpus_url, "--table", "patients", "--threshold", "0.5", "--json").output)
    assert sum(c["sensitive"] for c in strict["columns"]) < sum(c["sensitive"] for c in loose["columns"])


def test_scan_errors_are_clear(corpus_url, tmp_path):
    r = run(corpus_url, "--table", "no_such_table")
    assert r.exit_code == 1 and "not found in the source: public.no_such_table" in r.output
    bad = tmp_path / "p.yaml"
    bad.write_text("version: 1\nrules: [{action: mask}]\n")
    r = run(corpus_url, "--policy", str(bad))
    assert r.exit_code != 0 and "p.yaml" in r.output
