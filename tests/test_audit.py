"""The who-saw-what ledger: entries, chain, receipts, tampering, secrets (SQLite backend)."""

from __future__ import annotations

import random
import secrets
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from lineage_guard.audit import Ledger, LedgerError, Signer, verify_chain
from lineage_guard.audit.canonical import canonical
from lineage_guard.audit.chain import StoredRow
from lineage_guard.audit.entry import GENESIS, check_entry, seal
from lineage_guard.audit.statement import redact_literals
from lineage_guard.decision import ColumnDecision, Decision
from lineage_guard.errors import ConfigError
from lineage_guard.identity import Identity
from lineage_guard.mask.spec import MaskSpec
from lineage_guard.run import ParentRun, RunRecord, SinkInfo, SourceInfo, new_run_id
from lineage_guard.sql.model import ColumnRef

SOURCE = SourceInfo("postgres", "db.internal", 5432, "clinic", "production")


def make_run(principal="svc-training", purpose="ai_training", outcome="success", sql=None, kind="service",
             groups=("ml",), rows=10, masked=True, **extra) -> RunRecord:
    """A finished run reading public.patients: name clear, ssn masked (or clear), dob generalized."""
    ssn = ColumnRef("public", "patients", "ssn")
    columns = (
        ColumnDecision(0, "name", (ColumnRef("public", "patients", "name"),), direct=True),
        ColumnDecision(1, "ssn", (ssn,), MaskSpec("partial", {"keep_last": 4}, "purpose:" + purpose) if masked else None,
                       direct=True, labels=("ssn",)),
        ColumnDecision(2, "birth_year", (ColumnRef("public", "patients", "dob"),), MaskSpec("generalize", {"to": "year"})),
    )
    statement = sql or "SELECT name, ssn, dob FROM public.patients"
    action = {"denied": "deny", "needs_approval": "needs_approval"}.get(outcome, "allow")
    decision = Decision(action, ("ssn is masked for ai_training",), statement, columns)
    run = RunRecord(new_run_id(), "lineage_guard", "extract_patients", Identity(principal, kind, frozenset(groups)),
                    purpose, SOURCE, decision, statement, outcome=outcome, rows=rows if outcome == "success" else 0,
                    ended_at=datetime.now(UTC), key_ids={1: "k1-abcdef01"} if masked else {},
                    input_schemas={"public.patients": [("name", "text"), ("ssn", "text"), ("dob", "date")]})
    for key, value in extra.items():
        setattr(run, key, value)
    return run


@pytest.fixture
def ledger(tmp_path) -> Ledger:
    return Ledger.open(str(tmp_path / "ledger.sqlite"))


def filled(ledger: Ledger, n: int) -> list:
    return [ledger.record(make_run(principal=f"p{i % 3}", outcome=("success", "denied", "failed")[i % 3])) for i in range(n)]


# -- recording ---------------------------------------------------------------------------------


def test_record_returns_verifiable_receipt_with_full_content(ledger):
    run = make_run(sink=SinkInfo("parquet", "s3://AKIAKEY:hunter2@bucket/out.parquet?X-Amz-Signature=abc", "s3://bucket", "out.parquet"),
                   approval_id="apr-1", parent=ParentRun("af-run", "airflow", "dag.task"))
    receipt = ledger.record(run)
    assert ledger.verify_receipt(receipt).ok and ledger.verify().ok
    entry = ledger.get(receipt.id)
    body = entry["body"]
    assert (entry["hash"], entry["seq"], entry["prev"], entry["key_id"]) == (receipt.hash, 1, GENESIS, ledger.signer.key_id)
    assert body["who"] == {"principal": "svc-training", "kind": "service", "groups": ["ml"], "auth": {"method": "asserted"}}
    assert body["statement"] == {"text": "SELECT name, ssn, dob FROM public.patients", "sha256": run.statement_hash}
    assert body["source"] == {"namespace": "postgres://db.internal:5432", "database": "clinic", "environment": "production",
                              "tables": ["public.patients"], "datasets": ["clinic.public.patients"]}
    assert [(c["name"], c["masked"], c["method"], c["key_id"]) for c in body["columns"]] == [
        ("name", False, None, None), ("ssn", True, "partial(keep_last=4)", "k1-abcdef01"), ("birth_year", True, "generalize(to=year)", None)]
    assert body["sink"] == {"kind": "parquet", "uri": "s3://bucket/out.parquet", "namespace": "s3://bucket", "name": "out.parquet"}
    assert (body["rows"], body["outcome"], body["approval_id"], body["parent"]["run_id"]) == (10, "success", "apr-1", "af-run")
    assert body["decision"] == {"action": "allow", "reasons": ["ssn is masked for ai_training"]}
    assert "hunter2" not in canonical(entry).decode() and "AKIAKEY" not in canonical(entry).decode()


def test_denials_and_failures_are_recorded_and_failure_supersedes_success(ledger):
    denied = ledger.record(make_run(outcome="denied"))
    assert ledger.get(denied.id)["body"]["decision"]["action"] == "deny"
    run = make_run()
    first = ledger.record(run)
    run.outcome, run.error_class, run.error_message = "failed", "SinkError", "writing out.parquet failed: disk full"
    second = ledger.record(run)
    body = ledger.get(second.id)["body"]
    assert (body["outcome"], body["supersedes"], body["error"]["class"]) == ("failed", first.id, "SinkError")
    from lineage_guard.audit import effective, who_saw
    assert [e["id"] for e in effective(ledger.entries())] == [denied.id, second.id]
    assert who_saw(ledger.entries(), "public.patients.ssn") == {"clear": [], "masked": [], "filtered": []}


def test_running_outcome_is_refused(ledger):
    with pytest.raises(LedgerError, match="outcome"):
        ledger.record(make_run(outcome="running"))
    assert ledger.verify().entries == 0


def test_uris_lose_their_credentials():
    from lineage_guard.audit.entry import safe_uri

    assert safe_uri("postgresql://u:pw@db:5432/app?password=pw#x") == "postgresql://db:5432/app"
    assert safe_uri("/data/out.parquet?sig=abc") == "/data/out.parquet"
    assert safe_uri("s3://key:secret@bucket:notaport/x") == "s3:<unparseable>"
    assert safe_uri("http://[::1/x") == "http:<unparseable>"


def test_statement_literals_never_reach_the_ledger():
    assert redact_literals("SELECT a FROM t WHERE ssn = '078-05-1120' AND n > 42") == "SELECT a FROM t WHERE ssn = %s AND n > %s"
    assert redact_literals("SELECT E'x\\'y', $$dollar$$, B'101', X'ff', U&'d' FROM t") == "SELECT %s, %s, %s, %s, %s FROM t"
    assert redact_literals("SELECT 1; SELECT 'two'") == "SELECT %s; SELECT %s"
    assert redact_literals("SELECT FROM ((('") is None


def test_the_signing_key_is_the_ledgers_own_not_the_master_keys(ledger, monkeypatch, master_key, lg_home, caplog):
    with caplog.at_level("WARNING", logger="lineage_guard.audit"):
        receipt = ledger.record(make_run())
    key_file = lg_home / "ledger-signing.key"
    assert "generated the ledger signing key" in caplog.text and str(key_file) in caplog.text
    assert oct(key_file.stat().st_mode & 0o777) == "0o600" and b"PRIVATE KEY" in key_file.read_bytes()
    assert ledger.signer.key_id != Signer.from_master_key().key_id  # not derived from the master key
    monkeypatch.delenv("LINEAGE_GUARD_MASTER_KEY")  # the ledger needs no master key at all
    assert Ledger.open(str(ledger.store.path)).record(make_run()) and Ledger.open(str(ledger.store.path)).verify().ok
    public = ledger.signer.public_key
    key_file.rename(lg_home / "elsewhere.key")  # a verifier without the signing key pins the public key
    fresh = Ledger.open(str(ledger.store.path))
    with pytest.raises(ConfigError, match="--public-key"):
        fresh.verify()
    assert fresh.verify([public]).ok and fresh.verify_receipt(receipt.id, [public]).ok
    monkeypatch.setenv("LINEAGE_GUARD_LEDGER_PUBLIC_KEY", public)
    assert fresh.verify().ok
    with pytest.raises(ConfigError, match="64 hex"):
        fresh.verify(["not-hex"])


def test_signing_reads_the_keyrings_variables():
    from lineage_guard.audit import signing
    from lineage_guard.mask import keys

    assert (signing.MASTER_KEY_ENV, signing.MASTER_KEY_FILE_ENV) == (keys.ENV_KEY, keys.ENV_KEY_FILE)


def test_signing_key_file_is_honoured_and_bad_files_are_refused(ledger, monkeypatch, tmp_path):
    from lineage_guard.audit.signing import write_key_file

    own = write_key_file(tmp_path / "ledger.key")
    monkeypatch.setenv("LINEAGE_GUARD_LEDGER_SIGNING_KEY_FILE", str(tmp_path / "ledger.key"))
    receipt = Ledger.open(str(ledger.store.path)).record(make_run())
    assert ledger.get(receipt.id)["key_id"] == own.key_id
    with pytest.raises(ConfigError, match="never overwritten"):
        write_key_file(tmp_path / "ledger.key")
    (tmp_path / "junk.key").write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n")
    for path, match in ((tmp_path / "missing.key", "does not exist"), (tmp_path / "junk.key", "not an unencrypted PEM")):
        monkeypatch.setenv("LINEAGE_GUARD_LEDGER_SIGNING_KEY_FILE", str(path))
        with pytest.raises(ConfigError, match=match) as raised:
            Ledger.open(str(ledger.store.path)).record(make_run())
        assert "not a key" not in str(raised.value)
    monkeypatch.delenv("LINEAGE_GUARD_LEDGER_SIGNING_KEY_FILE")
    assert ledger.verify([own.public_key]).entries == 1


def test_rotating_the_master_key_leaves_the_ledger_alone(ledger, monkeypatch, master_key):
    old = ledger.record(make_run())
    monkeypatch.setenv("LINEAGE_GUARD_MASTER_KEY", f"2:{secrets.token_hex(32)},1:{master_key}")
    rotated = Ledger.open(str(ledger.store.path))
    new = rotated.record(make_run())
    assert rotated.get(new.id)["key_id"] == rotated.get(old.id)["key_id"]
    assert rotated.verify().ok and rotated.verify_receipt(old).ok


def test_open_picks_backend(tmp_path, monkeypatch, lg_home):
    assert Ledger.open().store.path == lg_home / "ledger.sqlite"
    assert Ledger.open(f"sqlite://{tmp_path}/a.sqlite").store.path == tmp_path / "a.sqlite"
    monkeypatch.setenv("LINEAGE_GUARD_LEDGER_URL", str(tmp_path / "b.sqlite"))
    assert Ledger.open().store.path == tmp_path / "b.sqlite"
    with pytest.raises(ConfigError, match="not supported"):
        Ledger.open("mysql://x/y")


def test_sqlite_is_wal_and_append_only(ledger):
    ledger.record(make_run())
    with sqlite3.connect(ledger.store.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        for statement in ("UPDATE ledger_entries SET run_id = 'x'", "DELETE FROM ledger_entries"):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                conn.execute(statement)


def test_entry_is_checked_alone_and_hex_case_cannot_slip_through():
    signer = Signer.generate()
    doc = seal({"run_id": "r"}, seq=1, prev=GENESIS, entry_id="e", recorded_at="t", signer=signer)
    trusted = {signer.key_id: signer.public_key}
    assert check_entry(canonical(doc), trusted) is None
    assert "signature" in check_entry(canonical({**doc, "signature": doc["signature"].upper()}), trusted)
    assert "canonical" in check_entry(canonical(doc).replace(b'"v":1', b'"v": 1'), trusted)
    assert "not a trusted key" in check_entry(canonical(doc), {})


# -- tampering ---------------------------------------------------------------------------------


def _rows(ledger) -> list[StoredRow]:
    return list(ledger.store.rows())


def _tamper(rows: list[StoredRow], rng: random.Random, foreign: Signer) -> tuple[str, list[StoredRow], int]:
    """One random tamper; returns (kind, tampered rows, expected first bad position)."""
    n = len(rows)
    k = rng.randrange(n)  # 0-based
    kind = rng.choice(["byte", "column", "delete", "insert_copy", "insert_forged", "swap", "resign"])
    out = list(rows)
    if kind == "byte":
        data = bytearray(rows[k].entry)
        i = rng.randrange(len(data))
        data[i] = rng.choice([b for b in range(256) if b != data[i]])
        out[k] = StoredRow(rows[k].seq, rows[k].id, rows[k].run_id, rows[k].hash, bytes(data))
        return kind, out, k + 1
    if kind == "column":
        r = rows[k]
        field = rng.choice(["seq", "id", "run_id", "hash"])
        changed = {"seq": r.seq + 1000, "id": "other", "run_id": "other", "hash": "f" * 64}[field]
        out[k] = StoredRow(**{**r.__dict__, field: changed})
        return kind, out, k + 1
    if kind == "delete":
        del out[k]
        return kind, out, k + 1
    if kind == "insert_copy":
        # a copy of another entry (a copy of entry k itself, put before it, is entry k: the next one is the bad one)
        out.insert(k, rows[rng.choice([x for x in range(n) if x != k])])
        return kind, [StoredRow(i + 1, r.id, r.run_id, r.hash, r.entry) for i, r in enumerate(out)], k + 1
    if kind == "insert_forged":
        prev = rows[k - 1].hash if k else GENESIS
        doc = seal({"run_id": "forged"}, seq=k + 1, prev=prev, entry_id="forged", recorded_at="t", signer=foreign)
        out.insert(k, StoredRow(k + 1, "forged", "forged", doc["hash"], canonical(doc)))
        return kind, [StoredRow(i + 1, r.id, r.run_id, r.hash, r.entry) for i, r in enumerate(out)], k + 1
    if kind == "swap":
        j = rng.choice([x for x in range(n) if x != k])
        a, b = sorted((k, j))
        out[a] = StoredRow(rows[a].seq, rows[b].id, rows[b].run_id, rows[b].hash, rows[b].entry)
        out[b] = StoredRow(rows[b].seq, rows[a].id, rows[a].run_id, rows[a].hash, rows[a].entry)
        return kind, out, a + 1
    # resign: the whole chain rebuilt and signed by a key the verifier does not trust
    prev, out = GENESIS, []
    for r in rows:
        doc = seal(dict(__import__("json").loads(r.entry)["body"]), seq=r.seq, prev=prev, entry_id=r.id,
                   recorded_at="t", signer=foreign)
        out.append(StoredRow(r.seq, r.id, r.run_id, doc["hash"], canonical(doc)))
        prev = doc["hash"]
    return kind, out, 1


def test_randomized_tampering_is_always_detected_at_the_first_bad_entry(ledger):
    filled(ledger, 9)
    rows, head = _rows(ledger), ledger.store.head()
    trusted = {ledger.signer.key_id: ledger.signer.public_key}
    assert verify_chain(rows, trusted, head).ok
    foreign = Signer.generate()
    rng = random.Random(20260301)
    kinds = set()
    for trial in range(400):
        kind, tampered, expected = _tamper(rows, rng, foreign)
        report = verify_chain(tampered, trusted, head)
        assert not report.ok, (trial, kind)
        assert report.problem.position == expected, (trial, kind, str(report.problem))
        kinds.add(kind)
    assert len(kinds) == 7


def _rewrite(path: Path, rows: list[StoredRow], head: tuple[int, str] | None) -> None:
    """What an attacker with write access to the file does: drop the guards, rewrite the rows."""
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TRIGGER ledger_entries_no_update")
        conn.execute("DROP TRIGGER ledger_entries_no_delete")
        conn.execute("DELETE FROM ledger_entries")
        seen: set[str] = set()
        for r in rows:  # the id column is UNIQUE: a duplicated entry needs a fresh id in its row
            conn.execute("INSERT INTO ledger_entries (seq, id, run_id, hash, entry) VALUES (?, ?, ?, ?, ?)",
                         (r.seq, r.id + "-copy" if r.id in seen else r.id, r.run_id, r.hash, r.entry))
            seen.add(r.id)
        if head is not None:
            conn.execute("UPDATE ledger_head SET seq = ?, hash = ?", head)


def test_tampering_the_stored_file_fails_verification_naming_the_entry(tmp_path, ledger):
    receipts = filled(ledger, 6)
    rows = _rows(ledger)
    original = ledger.store.path.read_bytes()
    rng = random.Random(7)
    foreign = Signer.generate()
    for trial in range(20):
        path = tmp_path / f"t{trial}.sqlite"
        Ledger.open(str(path))  # creates the schema, then the attacker rewrites its rows
        kind, tampered, expected = _tamper(rows, rng, foreign)
        _rewrite(path, tampered, ledger.store.head())
        report = Ledger.open(str(path)).verify()
        assert (report.ok, report.problem.position) == (False, expected), (kind, str(report.problem))
    assert ledger.store.path.read_bytes() == original and ledger.verify().ok
    # Dropping the tail: the head catches it; if the head is rolled back too, the receipt holder does.
    path = tmp_path / "tail.sqlite"
    Ledger.open(str(path))
    _rewrite(path, rows[:-1], ledger.store.head())
    report = Ledger.open(str(path)).verify()
    assert (report.problem.position, "missing" in report.problem.reason) == (6, True)
    _rewrite(path, rows[:-1], (5, rows[-2].hash))
    assert Ledger.open(str(path)).verify().ok
    assert Ledger.open(str(path)).verify_receipt(receipts[-1]).reason == "no entry with this receipt id in the ledger"
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM ledger_head")
    assert "head row is missing" in Ledger.open(str(path)).verify().problem.reason
    with pytest.raises(LedgerError, match="head row is missing"):
        Ledger.open(str(path)).record(make_run())


def test_receipt_checks_hash_and_content(ledger):
    receipt = ledger.record(make_run())
    from lineage_guard.run import Receipt
    assert ledger.verify_receipt(Receipt(receipt.id, "0" * 64)).reason == "the entry's hash differs from the receipt's"
    assert not ledger.verify_receipt("no-such-id").ok


# -- no secret and no raw value in the ledger --------------------------------------------------


def test_ledger_file_never_holds_key_or_raw_values(tmp_path, master_key, lg_home):
    from faker import Faker

    fake = Faker()
    Faker.seed(11)
    values = [fake.ssn() for _ in range(5)] + [fake.email() for _ in range(5)] + [str(fake.random_number(9, True))]
    ledger = Ledger.open()  # the default file in the state folder
    for i, value in enumerate(values):
        quoted = {0: f"'{value}'", 1: f"E'{value}'", 2: f"$${value}$$"}.get(i % 4, value if value.isdigit() else f"'{value}'")
        sql = f"SELECT name, ssn, dob FROM public.patients WHERE ssn = {quoted} OR email LIKE {quoted}"
        ledger.record(make_run(sql=sql, masked=bool(i % 2)))
        ledger.record(make_run(sql=sql, outcome="denied"))
    assert ledger.verify().ok and len(list(ledger.entries())) == 2 * len(values)
    stored = b"".join(p.read_bytes() for p in lg_home.glob("ledger.sqlite*")).lower()
    assert stored and b"public.patients.ssn" in stored
    assert master_key.encode() not in stored and bytes.fromhex(master_key) not in stored
    private = ledger.signer._private.private_bytes_raw()
    assert private not in stored and private.hex().encode() not in stored
    for value in values:
        assert value.lower().encode() not in stored, value


def test_a_run_record_carrying_the_master_key_is_refused(ledger, master_key):
    with pytest.raises(LedgerError, match="master key"):
        ledger.record(make_run(error_class="ValueError", error_message=f"bad key {master_key}"))
    assert ledger.verify().entries == 0


def test_log_filters_and_who_saw(ledger):
    from lineage_guard.audit import Filters, who_saw

    ledger.record(make_run("dr-ho", "care", kind="human", groups=("clinicians",), masked=False, rows=3))
    ledger.record(make_run("dr-ho", "care", kind="human", groups=("clinicians",), masked=False, rows=4))
    ledger.record(make_run("svc-training", rows=100))
    ledger.record(make_run("svc-training", outcome="denied"))
    entries = list(ledger.entries())
    count = lambda **kw: sum(Filters(**kw).matches(e) for e in entries)
    assert (count(identity="dr-ho"), count(identity="clinicians"), count(purpose="ai_training")) == (2, 2, 2)
    assert (count(table="public.patients"), count(table="public.other"), count(column="public.patients.dob")) == (4, 0, 4)
    now = datetime.now(UTC)
    assert (count(since=now - timedelta(hours=1)), count(until=now - timedelta(hours=1))) == (4, 0)
    seen = who_saw(entries, "public.patients.ssn")
    assert [(s.principal, s.how, s.runs, s.rows) for s in seen["clear"]] == [("dr-ho", "clear", 2, 7)]
    assert [(s.principal, s.how, s.runs, s.rows) for s in seen["masked"]] == [("svc-training", "partial(keep_last=4)", 1, 100)]


SQLITE_CHILD = """
import sys
sys.path.insert(0, sys.argv[2])
from lineage_guard.audit import Ledger
from test_audit import make_run
ledger = Ledger.open(sys.argv[1])
for i in range(4):
    ledger.record(make_run(principal="proc"))
"""


def test_sqlite_concurrent_threads_and_processes_keep_one_chain(tmp_path):
    import subprocess
    import sys
    import threading
    from concurrent.futures import ThreadPoolExecutor

    url = str(tmp_path / "ledger.sqlite")
    Ledger.open(url)
    procs = [subprocess.Popen([sys.executable, "-c", SQLITE_CHILD, url, str(Path(__file__).parent)],
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    barrier = threading.Barrier(8)

    def task(_: int):
        ledger = Ledger.open(url)
        barrier.wait()
        return ledger.record(make_run(principal="thread"))

    with ThreadPoolExecutor(8) as pool:
        receipts = list(pool.map(task, range(8)))  # re-raises a task's exception here
    assert len({r.id for r in receipts}) == 8
    assert [p.wait(timeout=300) for p in procs] == [0, 0], [p.stderr.read()[-500:] for p in procs]
    report = Ledger.open(url).verify()
    assert (report.ok, report.entries) == (True, 16)


def test_export_verifies_offline_only_against_pinned_keys(ledger, tmp_path, monkeypatch):
    import json

    from lineage_guard.audit import export_ledger, verify_export

    filled(ledger, 4)
    public = ledger.signer.public_key
    path = tmp_path / "ledger.jsonl"
    assert export_ledger(ledger, path).entries == 4
    monkeypatch.delenv("LINEAGE_GUARD_MASTER_KEY")
    assert verify_export(path, [public]).ok
    header, *lines = path.read_bytes().splitlines()
    # A forger re-signs everything with a key of their own and puts it in the header.
    foreign, prev, forged = Signer.generate(), GENESIS, []
    for line in lines:
        doc = json.loads(line)
        doc = seal({**doc["body"], "rows": 0}, seq=doc["seq"], prev=prev, entry_id=doc["id"], recorded_at="t", signer=foreign)
        forged.append(canonical(doc))
        prev = doc["hash"]
    fake = json.loads(header) | {"public_keys": {foreign.key_id: foreign.public_key}, "head": prev}
    path.write_bytes(b"\n".join([json.dumps(fake).encode(), *forged]))
    assert verify_export(path, trust_header_keys=True).ok  # internally consistent...
    report = verify_export(path, [public])                  # ...but not signed by the ledger's key
    assert (report.problem.position, "not a trusted key" in report.problem.reason) == (1, True)
    path.write_bytes(b"\n".join([header, lines[0], b"\xff garbage", *lines[2:]]))
    assert verify_export(path, [public]).problem.position == 2
    path.write_bytes(b"not an export")
    with pytest.raises(ConfigError, match="not a lineage_guard ledger export"):
        verify_export(path, [public])


def test_any_text_in_a_run_records_and_verifies(tmp_path):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    ledger = Ledger.open(str(tmp_path / "h.sqlite"))
    chars = st.characters(exclude_categories=())  # every code point: NUL, lone surrogates, RTL marks, emoji
    text = st.text(chars, min_size=1, max_size=40)

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(principal=text, purpose=text, reason=text, message=text, name=text, uri=text, sql=st.text(chars, max_size=80))
    def check(principal, purpose, reason, message, name, uri, sql):
        run = make_run(principal=principal, purpose=purpose, sql=sql or "SELECT 1",
                       sink=SinkInfo("parquet", uri, "file", name), error_class="SinkError", error_message=message)
        run.decision = Decision("allow", (reason,), run.sql, run.decision.columns)
        receipt = ledger.record(run)
        check = ledger.verify_receipt(receipt)
        assert check.ok, check.reason
        body = check.entry["body"]
        clean = lambda s: s.encode("utf-8", "backslashreplace").decode()
        assert (body["who"]["principal"], body["purpose"], body["decision"]["reasons"]) == (
            clean(principal), clean(purpose), [clean(reason)[:500]])

    check()
    odd = ledger.record(make_run(principal="svc\udcff", sql="SELECT '\ud800'", sink=SinkInfo("parquet", "/tmp/\udce9.parquet", "file", "x")))
    assert ledger.get(odd.id)["body"]["who"]["principal"] == "svc\\udcff"
    assert ledger.verify().ok
