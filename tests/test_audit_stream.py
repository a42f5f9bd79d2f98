"""stream() records its intent before the first batch leaves; a stream killed mid-way (a real process,
SIGKILL) leaves an `open` entry that `audit verify` and `audit log` report; who-saw lists columns used
only to filter, runs that failed after returning data, and how each identity was established."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from lineage_guard.audit import Ledger, effective, open_runs, who_saw
from lineage_guard.cli.audit import app
from lineage_guard.identity import Authentication, Identity
from lineage_guard.policy import parse_policy
from lineage_guard.session import GovernedSession
from lineage_guard.sources import PostgresSource

POLICY_TEXT = """
version: 1
identities:
  svc-training: {kind: service, groups: [training-jobs]}
  dr-grey: {kind: human, groups: [clinicians]}
groups: [training-jobs, clinicians]
purposes: [ai_training, treatment]
classifications:
  public.stream_people.email: email
rules:
  - {groups: [clinicians], purposes: [treatment], action: clear}
  - {classifications: [email], groups: [training-jobs], action: mask, mask: {method: tokenize}}
"""
POLICY = parse_policy(POLICY_TEXT)
EXE = str(Path(sys.executable).parent / "lineage-guard")
SQL = "SELECT id, email FROM stream_people ORDER BY id"


@pytest.fixture(scope="module")
def people_url(pg_url):
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS stream_people")
        conn.execute("CREATE TABLE stream_people (id int primary key, email text, region text)")
        conn.execute("INSERT INTO stream_people SELECT g, 'p' || g || '@example.org', "
                     "CASE WHEN g % 2 = 0 THEN 'north' ELSE 'south' END FROM generate_series(1, 500) g")
    return pg_url


def governed(url, ledger, who="svc-training", purpose="ai_training", **kw):
    source = PostgresSource(url, batch_rows=50, schema="public")
    return GovernedSession(source, POLICY, who, purpose, ledger=ledger, **kw)


def test_the_intent_is_recorded_before_the_first_batch_and_completed_after(people_url, tmp_path):
    ledger = Ledger.open(str(tmp_path / "ledger.sqlite"))
    with governed(people_url, ledger) as s, s.stream(SQL) as batches:
        first = next(batches)
        (entry,) = list(ledger.entries())  # on record before the caller holds any data
        body = entry["body"]
        assert body["outcome"] == "open" and body["decision"]["action"] == "allow"
        assert [(c["name"], c["masked"]) for c in body["columns"]] == [("id", False), ("email", True)]
        assert first.num_rows == 50
        rest = sum(b.num_rows for b in batches)
    entries = list(ledger.entries())
    assert [e["body"]["outcome"] for e in entries] == ["open", "success"]
    assert entries[1]["body"]["supersedes"] == entries[0]["id"] and entries[1]["body"]["rows"] == 50 + rest == 500
    assert open_runs(entries) == [] and ledger.verify().ok


CHILD = """
import sys, time
from lineage_guard.audit import Ledger
from lineage_guard.policy import parse_policy
from lineage_guard.session import GovernedSession
from lineage_guard.sources import PostgresSource
url, ledger_path, policy = sys.argv[1:4]
source = PostgresSource(url, batch_rows=50, schema="public")
with GovernedSession(source, parse_policy(policy), "svc-training", "ai_training", ledger=Ledger.open(ledger_path)) as s:
    with s.stream("SELECT id, email FROM stream_people ORDER BY id") as batches:
        next(batches)
        print("FIRST", flush=True)
        time.sleep(600)
"""


def test_a_stream_killed_mid_way_leaves_an_open_entry_that_verify_and_log_report(people_url, tmp_path):
    ledger_path = str(tmp_path / "ledger.sqlite")
    child = subprocess.Popen([sys.executable, "-c", CHILD, people_url, ledger_path, POLICY_TEXT],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "FIRST", child.stderr.read()[-800:]
    finally:
        child.kill()  # SIGKILL: no cleanup, no final entry
        child.wait(timeout=60)
    entries = list(Ledger.open(ledger_path).entries())
    assert [e["body"]["outcome"] for e in entries] == ["open"]
    verify = subprocess.run([EXE, "audit", "verify", "--ledger", ledger_path], capture_output=True, text=True,
                            timeout=120, check=False)
    assert verify.returncode == 0 and "1 entries verify" in verify.stdout, verify.stderr
    assert f"open: receipt {entries[0]['id'][:8]}" in verify.stderr and "never completed" in verify.stderr
    as_json = json.loads(subprocess.run([EXE, "audit", "verify", "--ledger", ledger_path, "--json"],
                                        capture_output=True, text=True, timeout=120, check=False).stdout)
    assert [o["receipt"] for o in as_json["open"]] == [entries[0]["id"]]
    log = subprocess.run([EXE, "audit", "log", "--ledger", ledger_path, "--json"], capture_output=True, text=True,
                         timeout=120, check=False)
    assert [json.loads(line)["outcome"] for line in log.stdout.splitlines()] == ["open"]
    table = subprocess.run([EXE, "audit", "log", "--ledger", ledger_path], capture_output=True, text=True,
                           timeout=120, check=False)
    assert "open" in table.stdout and "never completed" in table.stderr
    seen = who_saw(entries, "public.stream_people.email")  # it may have seen data: counted, flagged
    assert [(s.principal, s.how.split("(")[0], s.incomplete) for s in seen["masked"]] == [("svc-training", "tokenize", 1)]


def test_who_saw_lists_filter_columns_failed_runs_with_data_and_authentication(people_url, tmp_path):
    ledger = Ledger.open(str(tmp_path / "ledger.sqlite"))
    jwt = Authentication("jwt", issuer="https://idp.example", subject="dr-grey", token_id_digest="ab" * 32,
                         expires_at=datetime(2030, 1, 1, tzinfo=UTC), client_address="127.0.0.1")
    with governed(people_url, ledger, Identity("dr-grey", auth=jwt), "treatment") as s:
        s.read_arrow("SELECT email FROM stream_people WHERE region = 'north'")
    with governed(people_url, ledger) as s, pytest.raises(RuntimeError), s.stream(SQL) as batches:
        next(batches)
        raise RuntimeError("the caller's own code failed after one batch")
    entries = list(ledger.entries())
    assert ledger.verify().ok
    filtered = who_saw(entries, "public.stream_people.region")["filtered"]
    assert [(f.principal, f.how, f.auth, f.rows) for f in filtered] == [("dr-grey", "used to filter (where)", {"jwt"}, 250)]
    masked = who_saw(entries, "public.stream_people.email")["masked"]
    assert [(m.principal, m.rows, m.incomplete, m.auth) for m in masked] == [("svc-training", 50, 1, {"asserted"})]
    failed = effective(entries)[-1]["body"]
    assert (failed["outcome"], failed["delivered_rows"]) == ("failed", 50)
    who = entries[0]["body"]["who"]
    assert who["auth"]["method"] == "jwt" and who["auth"]["issuer"] == "https://idp.example"
    runner = CliRunner()
    text = runner.invoke(app, ["who-saw", "public.stream_people.region", "--ledger", str(ledger.store.path)])
    assert text.exit_code == 0 and "used it to filter rows" in text.output and "jwt" in text.output
    log = [json.loads(line) for line in runner.invoke(
        app, ["log", "--ledger", str(ledger.store.path), "--json", "--column", "public.stream_people.region"]).stdout.splitlines()]
    assert [(r["principal"], r["auth"], r["used"]) for r in log] == [("dr-grey", "jwt", ["public.stream_people.region:where"])]
