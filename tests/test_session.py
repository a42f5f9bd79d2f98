"""The governed path end to end on the real PostgreSQL: plan, read, mask, sink, ledger, lineage."""

from __future__ import annotations

import logging
import os
import pathlib

import pyarrow.parquet as pq
import pytest
from conftest import require

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
  public.people.email: email
  public.people.ssn: national_id
  public.people.full_name: person_name
  public.people.birth_date: date_of_birth
rules:
  - {groups: [clinicians], purposes: [treatment], action: clear}
  - {classifications: [email], groups: [training-jobs], action: mask, mask: {method: tokenize}}
  - {classifications: [national_id], groups: [training-jobs], action: mask, mask: {method: partial, params: {keep_last: 4}}}
  - {classifications: [date_of_birth], groups: [training-jobs], action: mask, mask: {method: generalize, params: {to: year}}}
"""

RAW = [
    (1, "Ada Quill", "ada.quill@example.org", "900-12-3456", "1961-04-02", "gold"),
    (2, "Bo Fenwick", "bo.fenwick@example.org", "900-65-4321", "1975-11-30", "free"),
    (3, "Cy Marrow", "cy.marrow@example.org", "900-11-2222", "1990-01-15", "gold"),
]
RAW_SENSITIVE = [v for row in RAW for v in row[1:4]]


@pytest.fixture(scope="module")
def people_url(pg_url):
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS people")
        conn.execute("CREATE TABLE people (id int primary key, full_name text, email text, ssn text, birth_date date, plan text)")
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO people VALUES (%s, %s, %s, %s, %s, %s)", RAW)
    return pg_url


def session(url, who="svc-training", purpose="ai_training", **kw) -> GovernedSession:
    return GovernedSession(url, parse_policy(POLICY), Identity(who), purpose, **kw)


def test_training_service_gets_masked_values_and_a_receipt(people_url, tmp_path):
    with session(people_url) as s:
        result = s.extract("SELECT id, email, ssn, birth_date, plan FROM people ORDER BY id", to=str(tmp_path / "p.parquet"))
    table = pq.read_table(tmp_path / "p.parquet")
    assert result.rows == 3 and table.num_rows == 3
    assert set(result.masked_columns) == {"email", "ssn", "birth_date"}
    assert table.column("id").to_pylist() == [1, 2, 3] and table.column("plan").to_pylist() == ["gold", "free", "gold"]
    assert not set(table.column("email").to_pylist()) & {r[2] for r in RAW}
    assert [s[-4:] for s in table.column("ssn").to_pylist()] == ["3456", "4321", "2222"]
    assert all(s[:-4].strip("*X#") == "" or "900-" not in s for s in table.column("ssn").to_pylist())
    assert str(table.schema.field("birth_date").type).startswith("date")
    assert {d.month for d in table.column("birth_date").to_pylist()} == {1}
    assert result.receipt_id and result.output_uri.endswith("p.parquet")


def test_same_value_same_token_across_calls_and_unlinkable_across_purposes(people_url):
    with session(people_url) as s:
        a = s.read_arrow("SELECT email FROM people ORDER BY id").column(0).to_pylist()
        b = s.read_arrow("SELECT email FROM people ORDER BY id").column(0).to_pylist()
    assert a == b and len(set(a)) == 3


def test_clinician_sees_clear_values(people_url):
    with session(people_url, "dr-grey", "treatment") as s:
        table = s.read_arrow("SELECT full_name, email FROM people ORDER BY id")
    assert table.column("email").to_pylist() == [r[2] for r in RAW]


def test_stream_yields_masked_batches(people_url):
    with session(people_url) as s, s.stream("SELECT id, email FROM people ORDER BY id") as batches:
        rows = [r for b in batches for r in b.to_pylist()]
    assert [r["id"] for r in rows] == [1, 2, 3] and not {r["email"] for r in rows} & {r[2] for r in RAW}


def test_read_polars(people_url):
    with session(people_url) as s:
        df = s.read_polars("SELECT id, plan FROM people ORDER BY id")
    assert df.shape == (3, 2) and df["plan"].to_list() == ["gold", "free", "gold"]


def test_denied_query_raises_records_and_writes_nothing(people_url, tmp_path):
    target = tmp_path / "denied.parquet"
    with session(people_url) as s:
        with pytest.raises(AccessDenied) as exc:
            s.extract("SELECT email FROM people; DROP TABLE people", to=str(target))
        assert exc.value.receipt_id
        with pytest.raises(AccessDenied):
            s.read_arrow("SELECT pg_read_file('/etc/passwd')")
    assert not target.exists()


def test_whole_row_reference_is_planned_masked_and_never_released(people_url):
    # The plan masks a whole-row column; the ADBC driver cannot decode composite rows at all,
    # so the read fails closed with a sanitized error rather than releasing anything.
    with session(people_url) as s:
        assert [c.masked for c in s.plan("SELECT p FROM people p").columns] == [True]
        with pytest.raises(LineageGuardError) as exc:
            s.read_arrow("SELECT p FROM people p")
    assert not any(v in str(exc.value) for v in RAW_SENSITIVE)


def test_unknown_purpose_is_denied(people_url):
    with session(people_url, purpose="marketing") as s, pytest.raises(AccessDenied, match="not declared"):
        s.read_arrow("SELECT id FROM people")


def test_failure_mid_read_leaves_no_file_and_a_sanitized_error(people_url, tmp_path):
    target = tmp_path / "bad.parquet"
    with session(people_url) as s, pytest.raises(LineageGuardError) as exc:
        s.extract("SELECT id, ssn::int AS n FROM people", to=str(target))
    assert not target.exists()
    assert not any(v in str(exc.value) for v in RAW_SENSITIVE + ["900"])


def test_no_key_or_raw_value_in_logs_errors_or_state(people_url, tmp_path, caplog, capsys, master_key, lg_home):
    caplog.set_level(logging.DEBUG)
    with session(people_url) as s:
        s.extract("SELECT id, full_name, email, ssn FROM people", to=str(tmp_path / "o.parquet"))
        for bad in ("SELECT pg_read_file('/etc/passwd')", "SELECT id, email::int FROM people"):
            with pytest.raises(LineageGuardError) as exc:
                s.read_arrow(bad)
            assert master_key not in str(exc.value)
    captured = capsys.readouterr()
    text = caplog.text + captured.out + captured.err
    assert master_key not in text and not any(v in text for v in RAW_SENSITIVE)
    for root, _dirs, files in os.walk(lg_home):
        for name in files:
            blob = pathlib.Path(root, name).read_bytes()
            assert master_key.encode() not in blob, name
            assert not any(v.encode() in blob for v in RAW_SENSITIVE), name


def test_stream_stopped_early_is_recorded_with_rows_handed_over(people_url):
    from lineage_guard.audit import Ledger

    with session(people_url, ledger=Ledger.open()) as s:
        with s.stream("SELECT id FROM people ORDER BY id") as batches:
            next(iter(batches))
        last = list(s.ledger.entries())[-1]
    body = last["body"]
    assert body["outcome"] == "success" and body["rows"] >= 1


def test_undeclared_sensitive_column_is_detected_and_masked(pg_url):
    import psycopg

    emails = [f"lead{i}.person{i * 7}@example.org" for i in range(40)]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS leads")
        conn.execute("CREATE TABLE leads (id int, col_7 text)")  # a name that says nothing
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO leads VALUES (%s, %s)", list(enumerate(emails)))
    with session(pg_url) as s:
        decision = s.plan("SELECT id, col_7 FROM leads")
        table = s.read_arrow("SELECT id, col_7 FROM leads")
    assert [c.masked for c in decision.columns] == [False, True]
    assert any("detected as sensitive" in r and "public.leads.col_7 (email)" in r for r in decision.reasons)
    assert not set(table.column("col_7").to_pylist()) & set(emails)

    off = parse_policy(POLICY + "detection: {enabled: false}\n")
    with GovernedSession(pg_url, off, Identity("svc-training"), "ai_training") as s:
        assert [c.masked for c in s.plan("SELECT id, col_7 FROM leads").columns] == [False, False]


def test_guarded_write_is_recorded_and_drawn_as_lineage(people_url, master_key):
    from lineage_check import assert_valid_events

    from lineage_guard.lineage import Outbox

    writer = parse_policy(POLICY.replace("groups: [training-jobs, clinicians]", "groups: [training-jobs, clinicians, etl]")
                          .replace("identities:\n", "identities:\n  etl-bot: {kind: service, groups: [etl]}\n")
                          + "writes: {allowed_groups: [etl]}\n")
    with GovernedSession(people_url, writer, Identity("etl-bot", "service", frozenset({"etl"})), "ai_training") as s:
        result = s.execute("UPDATE people SET plan = plan WHERE id = 2")
        with pytest.raises(AccessDenied, match="without WHERE"):
            s.execute("DELETE FROM people")
        s.lineage.flush()
    assert result.rows_affected == 1 and result.receipt_id
    events = Outbox().events(run_id=result.run_id)
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"]
    assert events[-1]["outputs"][0]["name"].endswith(".public.people")
    assert_valid_events(events, forbid=[master_key, *RAW_SENSITIVE])


def test_policy_validation_proves_masking_into_ledger_and_lineage(people_url, tmp_path, master_key):
    require("great_expectations", "gx")
    from lineage_check import assert_valid_events

    from lineage_guard.lineage import Outbox

    checked = parse_policy(POLICY + "validation: {enabled: true, sample_rows: 2}\n")
    with GovernedSession(people_url, checked, Identity("svc-training"), "ai_training") as s:
        result = s.extract("SELECT id, email, ssn FROM people ORDER BY id", to=str(tmp_path / "v.parquet"))
        entry = s.ledger.get(result.receipt_id)
    assert entry["body"]["validation"]["success"] is True and entry["body"]["validation"]["checks"] >= 3
    events = Outbox().events(run_id=result.run_id)
    quality = events[-1]["outputs"][0]["facets"]["dataQualityAssertions"]["assertions"]
    assert quality and all(a["success"] for a in quality) and {a.get("column") for a in quality} >= {"email", "ssn"}
    assert_valid_events(events, forbid=[master_key, *RAW_SENSITIVE])


def test_a_failed_masking_proof_fails_the_run_before_commit(people_url, tmp_path):
    # Data handed over as "already masked" that is not: the proof must catch it, and nothing is written.
    import pyarrow as pa

    from lineage_guard.sql.model import ColumnRef, OutputColumn

    require("great_expectations", "gx")
    checked = parse_policy(POLICY + "validation: {enabled: true}\n")
    target = tmp_path / "claimed.parquet"
    emails = [r[2] for r in RAW]
    with GovernedSession(people_url, checked, Identity("svc-training"), "ai_training") as s:
        spec = s.plan("SELECT email FROM people").columns[0].mask
        cols = [OutputColumn(0, "email", (ColumnRef("public", "people", "email"),), direct=True)]
        with pytest.raises(LineageGuardError, match="failed its checks") as exc:
            s.mask_table(pa.table({"email": emails}), cols, str(target), statement="handover", premasked={0: spec})
    assert not target.exists() and not any(v in str(exc.value) for v in RAW_SENSITIVE)
