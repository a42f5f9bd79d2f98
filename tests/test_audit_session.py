"""The ledger as the governed path uses it: real extractions on PostgreSQL, then verify and who-saw."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from lineage_guard.audit import Ledger, effective, who_saw
from lineage_guard.cli.audit import app
from lineage_guard.errors import AccessDenied, LineageGuardError
from lineage_guard.identity import Identity
from lineage_guard.policy import parse_policy
from lineage_guard.session import GovernedSession

POLICY = """
version: 1
identities:
  svc-training: {kind: service, groups: [training-jobs]}
  dr-grey: {kind: human, groups: [clinicians]}
groups: [training-jobs, clinicians]
purposes: [ai_training, treatment]
classifications:
  public.audit_people.email: email
  public.audit_people.ssn: national_id
rules:
  - {groups: [clinicians], purposes: [treatment], action: clear}
  - {classifications: [email], groups: [training-jobs], action: mask, mask: {method: tokenize}}
  - {classifications: [national_id], groups: [training-jobs], action: mask, mask: {method: partial, params: {keep_last: 4}}}
"""
RAW = [(1, "ann.oak@example.org", "901-23-4567"), (2, "ben.elm@example.org", "901-76-5432")]


@pytest.fixture(scope="module")
def people_url(pg_url):
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS audit_people")
        conn.execute("CREATE TABLE audit_people (id int primary key, email text, ssn text)")
        conn.cursor().executemany("INSERT INTO audit_people VALUES (%s, %s, %s)", RAW)
    return pg_url


def test_extractions_land_in_one_verifiable_ledger(people_url, tmp_path, lg_home, master_key):
    ledger_url = str(tmp_path / "ledger.sqlite")
    ledger = Ledger.open(ledger_url)
    run = lambda who, purpose: GovernedSession(people_url, parse_policy(POLICY), Identity(who), purpose, ledger=ledger)
    sql = "SELECT id, email, ssn FROM audit_people WHERE id > 0"
    with run("svc-training", "ai_training") as s:
        masked = s.extract(sql, to=str(tmp_path / "m.parquet"))
        with pytest.raises(AccessDenied) as denied:
            # an inference oracle, denied and recorded: the literal is a raw value and must not be kept
            s.extract("SELECT id FROM audit_people WHERE ssn = '901-76-5432'", to=str(tmp_path / "d.parquet"))
        with pytest.raises(LineageGuardError):
            s.extract("SELECT id, 1 / (id - id) AS boom FROM audit_people", to=str(tmp_path / "f.parquet"))
    with run("dr-grey", "treatment") as s:
        clear = s.extract(sql, to=str(tmp_path / "c.parquet"))
    report = ledger.verify()
    assert report.ok and report.entries >= 4
    entries = list(ledger.entries())
    by_id = {e["id"]: e["body"] for e in entries}
    assert by_id[masked.receipt_id]["outcome"] == "success" and by_id[masked.receipt_id]["rows"] == 2
    assert by_id[denied.value.receipt_id]["decision"]["action"] == "deny"
    assert [e["body"]["outcome"] for e in effective(entries)].count("failed") == 1
    email = next(c for c in by_id[masked.receipt_id]["columns"] if c["name"] == "email")
    assert email["masked"] and email["method"].startswith("tokenize") and email["key_id"]
    assert by_id[denied.value.receipt_id]["statement"]["text"].endswith("WHERE ssn = %s")
    seen = who_saw(entries, "public.audit_people.ssn")
    assert [(s.principal, s.rows) for s in seen["clear"]] == [("dr-grey", 2)]
    assert [(s.principal, s.how, s.rows) for s in seen["masked"]] == [("svc-training", "partial(keep_last=4)", 2)]
    assert clear.receipt_id in by_id
    cli = json.loads(CliRunner().invoke(app, ["who-saw", "public.audit_people.ssn", "--ledger", ledger_url, "--json"]).stdout)
    assert [s["principal"] for s in cli["clear"]] == ["dr-grey"]
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("ledger.sqlite*"))
    assert master_key.encode() not in stored
    assert not any(v.encode() in stored for row in RAW for v in row[1:]), "a raw value reached the ledger"


def test_a_sink_that_fails_at_commit_supersedes_the_success_entry(people_url, tmp_path):
    ledger = Ledger.open(str(tmp_path / "ledger.sqlite"))
    target = tmp_path / "occupied"
    target.mkdir()
    (target / "keep").write_text("x")  # a non-empty directory: the final rename cannot replace it
    governed = GovernedSession(people_url, parse_policy(POLICY), Identity("svc-training"), "ai_training", ledger=ledger)
    with governed as s, pytest.raises(LineageGuardError):
        s.extract("SELECT id, ssn FROM audit_people", to=str(target))
    entries = list(ledger.entries())
    assert ledger.verify().ok
    # a Parquet extract records its intent first (its file is stamped with that entry), then success, then failed
    assert [(e["body"]["outcome"], e["body"]["supersedes"]) for e in entries] == [
        ("open", None), ("success", entries[0]["id"]), ("failed", entries[1]["id"])]
    (last,) = effective(entries)
    assert last["body"]["error"]["class"] == "SinkError"
    assert who_saw(entries, "public.audit_people.ssn") == {"clear": [], "masked": [], "filtered": []}
