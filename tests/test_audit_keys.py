"""The ledger's own signing key, pinned: attacks by whoever holds the master key or writes the store,
a writer with another key refused (SQLite, PostgreSQL, the real CLI), rotation, anchors, old ledgers."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import require
from test_audit import _rewrite, make_run
from typer.testing import CliRunner

from lineage_guard.audit import Ledger, LedgerError, Signer, SigningKeyMismatch
from lineage_guard.audit.canonical import canonical
from lineage_guard.audit.chain import StoredRow
from lineage_guard.audit.entry import GENESIS, seal
from lineage_guard.audit.rotation import rotation_body
from lineage_guard.audit.signing import write_key_file
from lineage_guard.cli.audit import app

runner = CliRunner()
EXE = str(Path(sys.executable).parent / "lineage-guard")


def audit(*args: str):
    return runner.invoke(app, list(args))


def resign(rows: list[StoredRow], signer: Signer, edit=lambda body: body) -> list[StoredRow]:
    """What an attacker with write access does: edit bodies, rebuild the chain, sign it with `signer`."""
    prev, out = GENESIS, []
    for r in rows:
        doc = json.loads(r.entry)
        doc = seal(edit(doc["body"]), seq=r.seq, prev=prev, entry_id=r.id, recorded_at=doc["recorded_at"], signer=signer)
        out.append(StoredRow(r.seq, r.id, r.run_id, doc["hash"], canonical(doc)))
        prev = doc["hash"]
    return out


def hide_rows(body):
    return {**body, "rows": 0, "who": {**body["who"], "principal": "nobody"}}


@pytest.fixture
def ledger(tmp_path) -> Ledger:
    return Ledger.open(str(tmp_path / "ledger.sqlite"))


# -- whoever holds the master key (or any key of their own) cannot re-sign history ----------------


def test_a_master_key_holder_re_signing_an_edited_chain_fails_with_only_the_public_key(ledger, tmp_path, lg_home):
    for _ in range(4):
        ledger.record(make_run(rows=100))
    public = ledger.signer.public_key
    rows = list(ledger.store.rows())
    # Before this change the ledger's key WAS this one (derived from the master key), so this forgery verified.
    by_master = Signer.from_master_key()
    for forger in (by_master, Signer.generate()):
        forged = resign(rows, forger, hide_rows)
        path = tmp_path / f"forged-{forger.key_id[8:16]}.sqlite"
        Ledger.open(str(path))
        _rewrite(path, forged, (len(forged), forged[-1].hash))
        (lg_home / "ledger-signing.key").rename(tmp_path / "away.key")  # the auditor has only the public key
        report = Ledger.open(str(path)).verify([public])
        (tmp_path / "away.key").rename(lg_home / "ledger-signing.key")
        assert not report.ok and report.problem.position == 1 and "not a trusted key" in report.problem.reason
        result = audit("verify", "--ledger", str(path), "--public-key", public)
        assert result.exit_code == 1 and "BAD" in result.output
    assert ledger.verify([public]).ok


def test_a_forged_rotation_to_the_forgers_key_fails(ledger, tmp_path):
    receipts = [ledger.record(make_run()) for _ in range(3)]
    rows = list(ledger.store.rows())
    forger, real_new = Signer.generate(), Signer.generate()
    # The forger appends a "rotation" it signs itself (it lacks the ledger's key) to a key it holds.
    prev = rows[-1].hash
    body = rotation_body(forger, real_new, run_id="r", seq=4, prev=prev, by="mallory", reason=None)
    doc = seal(body, seq=4, prev=prev, entry_id="rot", recorded_at="t", signer=forger)
    path = tmp_path / "t.sqlite"
    Ledger.open(str(path))
    _rewrite(path, [*rows, StoredRow(4, "rot", "r", doc["hash"], canonical(doc))], (4, doc["hash"]))
    report = Ledger.open(str(path)).verify([ledger.signer.public_key])
    assert report.problem.position == 4 and "no rotation entry hands over" in report.problem.reason
    # Even naming a key the verifier trusts as the new one does not help: the endorsement is missing.
    trusted_new = Signer.generate()
    body = rotation_body(forger, real_new, run_id="r", seq=4, prev=prev, by="mallory", reason=None)
    body["rotation"] |= {"new_key_id": trusted_new.key_id, "new_public_key": trusted_new.public_key}
    doc = seal(body, seq=4, prev=prev, entry_id="rot", recorded_at="t", signer=forger)
    _rewrite(path, [*rows, StoredRow(4, "rot", "r", doc["hash"], canonical(doc))], (4, doc["hash"]))
    report = Ledger.open(str(path)).verify([ledger.signer.public_key, trusted_new.public_key])
    assert report.problem.position == 4, str(report.problem)
    assert ledger.verify_receipt(receipts[0]).ok


# -- a writer with another key is refused, nothing written ---------------------------------------


def test_a_writer_with_another_key_is_refused_and_told_how_to_rotate(ledger, tmp_path, monkeypatch):
    ledger.record(make_run())
    pinned = ledger.signer.key_id
    other = write_key_file(tmp_path / "other.key")
    monkeypatch.setenv("LINEAGE_GUARD_LEDGER_SIGNING_KEY_FILE", str(other.source))
    with pytest.raises(SigningKeyMismatch):
        Ledger.open(str(ledger.store.path)).check_signer()  # what a session asks before it reads
    with pytest.raises(SigningKeyMismatch) as refused:
        Ledger.open(str(ledger.store.path)).record(make_run())
    message = str(refused.value)
    assert pinned in message and other.key_id in message and "rotate-key" in message and "nothing was recorded" in message
    assert "PRIVATE" not in message and other.public_key not in message
    monkeypatch.delenv("LINEAGE_GUARD_LEDGER_SIGNING_KEY_FILE")
    assert ledger.verify().entries == 1 and [k.key_id for k in ledger.pinned_keys()] == [pinned]


def test_first_writers_racing_share_one_generated_key_and_one_pin(tmp_path, lg_home):
    url = str(tmp_path / "ledger.sqlite")
    Ledger.open(url)
    barrier = threading.Barrier(6)

    def task(_: int):
        opened = Ledger.open(url)
        barrier.wait()
        return opened.record(make_run())

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(task, range(6)))
    ledger = Ledger.open(url)
    assert ledger.verify().entries == 6 and len(ledger.pinned_keys()) == 1
    assert [p.name for p in lg_home.iterdir() if "key" in p.name] == ["ledger-signing.key"]


def test_postgres_ledger_pins_refuses_and_rotates(pg_url, tmp_path, monkeypatch):
    require("psycopg", "postgres")
    schema = f"ledger_{uuid.uuid4().hex[:10]}"
    ledger = Ledger.open(pg_url, schema=schema)
    first = ledger.record(make_run())
    other = write_key_file(tmp_path / "other.key")
    with pytest.raises(SigningKeyMismatch, match="rotate-key"):
        Ledger.open(pg_url, schema=schema, signer=other).record(make_run())
    ledger.rotate_key(other, by="dana", reason="yearly")
    Ledger.open(pg_url, schema=schema, signer=other).record(make_run())
    with pytest.raises(SigningKeyMismatch):
        Ledger.open(pg_url, schema=schema).record(make_run())  # the retired key
    report = Ledger.open(pg_url, schema=schema).verify([other.public_key])
    assert report.ok and report.entries == 3 and [k.key_id for k in report.keys] == [ledger.signer.key_id, other.key_id]
    assert Ledger.open(pg_url, schema=schema).verify_receipt(first, [other.public_key]).ok
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn, pytest.raises(psycopg.errors.RaiseException):
        conn.execute(f'DELETE FROM "{schema}".ledger_keys')


CHILD = """
import sys
sys.path.insert(0, sys.argv[2])
from lineage_guard.audit import Ledger
from test_audit import make_run
Ledger.open(sys.argv[1]).record(make_run(principal="other-machine"))
"""


def test_another_process_with_another_key_exits_non_zero_and_the_chain_stays_good(ledger, tmp_path):
    ledger.record(make_run())
    env = {**os.environ, "LINEAGE_GUARD_LEDGER_SIGNING_KEY_FILE": str(write_key_file(tmp_path / "b.key").source)}
    done = subprocess.run([sys.executable, "-c", CHILD, str(ledger.store.path), str(Path(__file__).parent)],
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode != 0 and "SigningKeyMismatch" in done.stderr and "rotate-key" in done.stderr
    result = subprocess.run([EXE, "audit", "verify", "--ledger", str(ledger.store.path)], capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0 and "1 entries verify" in result.stdout, result.stderr


# -- rotation ---------------------------------------------------------------------------------


def test_rotation_through_the_cli_hands_over_and_retires_the_old_key(ledger, tmp_path, monkeypatch, lg_home):
    old = [ledger.record(make_run()) for _ in range(2)]
    old_public = ledger.signer.public_key
    new_file = tmp_path / "keys" / "new.key"
    url = str(ledger.store.path)
    result = audit("rotate-key", "--new-key-file", str(new_file), "--ledger", url, "--as", "dana", "--reason", "yearly")
    assert result.exit_code == 0 and "rotated" in result.output and oct(new_file.stat().st_mode & 0o777) == "0o600"
    new = Signer.from_file(new_file)
    with pytest.raises(SigningKeyMismatch):
        Ledger.open(url).record(make_run())  # the old key may no longer write
    monkeypatch.setenv("LINEAGE_GUARD_LEDGER_SIGNING_KEY_FILE", str(new_file))
    after = Ledger.open(url).record(make_run())
    monkeypatch.delenv("LINEAGE_GUARD_LEDGER_SIGNING_KEY_FILE")
    (lg_home / "ledger-signing.key").rename(tmp_path / "old.key")
    for pinned in (new.public_key, old_public):  # either key authenticates the whole chain
        report = Ledger.open(url).verify([pinned])
        assert report.ok and report.entries == 4 and report.current_key.key_id == new.key_id
    assert all(Ledger.open(url).verify_receipt(r, [new.public_key]).ok for r in [*old, after])
    rotation = Ledger.open(url).entries().__iter__()
    kinds = [e["body"].get("kind") for e in rotation]
    assert kinds == [None, None, "key_rotation", None]
    log = audit("log", "--ledger", url, "--public-key", new.public_key)
    assert log.exit_code == 0 and "key_rotation" in log.output
    shown = json.loads(audit("public-key", "--ledger", url, "--all", "--json").stdout)
    assert [k["public_key"] for k in shown["pinned"]] == [old_public, new.public_key]
    # Whoever stole the retired key appends with it: verification names that entry.
    rows = list(Ledger.open(url).store.rows())
    stolen = Signer.from_file(tmp_path / "old.key")
    doc = seal(json.loads(rows[0].entry)["body"], seq=5, prev=rows[-1].hash, entry_id="late", recorded_at="t", signer=stolen)
    path = tmp_path / "stolen.sqlite"
    Ledger.open(str(path))
    _rewrite(path, [*rows, StoredRow(5, "late", rows[0].run_id, doc["hash"], canonical(doc))], (5, doc["hash"]))
    report = Ledger.open(str(path)).verify([new.public_key])
    assert report.problem.position == 5 and "no rotation entry hands over" in report.problem.reason


def test_a_rotation_refuses_a_chain_that_does_not_verify(ledger, tmp_path):
    rows = [ledger.record(make_run()) for _ in range(2)]
    with sqlite3.connect(ledger.store.path) as conn:
        conn.execute("DROP TRIGGER ledger_entries_no_update")
        conn.execute("UPDATE ledger_entries SET entry = CAST(replace(CAST(entry AS TEXT), '\"rows\":10', '\"rows\":1')"
                     " AS BLOB) WHERE seq = 1")
    with pytest.raises(LedgerError, match="not rotating"):
        ledger.rotate_key(Signer.generate(), by="dana")
    assert len(list(ledger.store.rows())) == len(rows)


def test_an_old_ledger_signed_by_the_master_derived_key_moves_to_its_own_key(tmp_path, monkeypatch, lg_home):
    url = str(tmp_path / "old.sqlite")
    legacy = Signer.from_master_key()
    old = Ledger.open(url, signer=legacy)
    receipts = [old.record(make_run()) for _ in range(2)]
    with sqlite3.connect(url) as conn:  # what an older version left: entries, no pinned key
        conn.execute("DROP TRIGGER ledger_keys_no_delete")
        conn.execute("DELETE FROM ledger_keys")
    with pytest.raises(SigningKeyMismatch, match="from-master-key"):
        Ledger.open(url).record(make_run())
    new_file = tmp_path / "own.key"
    result = audit("rotate-key", "--from-master-key", "--new-key-file", str(new_file), "--ledger", url,
                   "--public-key", legacy.public_key)
    assert result.exit_code == 0, result.output
    monkeypatch.setenv("LINEAGE_GUARD_LEDGER_SIGNING_KEY_FILE", str(new_file))
    Ledger.open(url).record(make_run())
    own = Signer.from_file(new_file)
    monkeypatch.delenv("LINEAGE_GUARD_MASTER_KEY")
    report = Ledger.open(url).verify([own.public_key])
    assert report.ok and report.entries == 4 and Ledger.open(url).verify_receipt(receipts[0], [own.public_key]).ok


# -- anchors: truncation after a published head ----------------------------------------------------


def test_an_anchor_detects_a_truncation_that_rolled_the_head_back(ledger, tmp_path):
    for _ in range(5):
        ledger.record(make_run())
    export = tmp_path / "published.jsonl"
    printed = audit("export", str(export), "--ledger", str(ledger.store.path))
    published = json.loads(export.read_bytes().splitlines()[0])["head"]
    assert published in printed.output and "--anchor" in printed.output
    for _ in range(3):
        ledger.record(make_run())
    rows = list(ledger.store.rows())
    path = tmp_path / "cut.sqlite"
    Ledger.open(str(path))
    _rewrite(path, rows[:4], (4, rows[3].hash))  # cut back to before the published head, head moved too
    assert Ledger.open(str(path)).verify().ok  # without the anchor it looks whole
    report = Ledger.open(str(path)).verify(anchors=[published])
    assert not report.ok and "published head" in report.problem.reason and "truncated" in report.problem.reason
    cli = audit("verify", "--ledger", str(path), "--anchor", published)
    assert cli.exit_code == 1 and "published head" in cli.output
    assert audit("verify", "--ledger", str(ledger.store.path), "--anchor", published).exit_code == 0
    assert audit("verify", "--ledger", str(ledger.store.path), "--anchor", "xyz").exit_code == 1
    assert audit("verify", "--export", str(export), "--anchor", published).exit_code == 0
    assert audit("verify", "--export", str(export), "--anchor", rows[-1].hash).exit_code == 1


# -- issue 18: the suggested audit commands work where the ledger was written ----------------------


def test_who_saw_needs_no_key_flag_where_the_ledger_is_written(ledger, tmp_path):
    ledger.record(make_run(rows=7))
    done = subprocess.run([EXE, "audit", "who-saw", "public.patients.ssn", "--ledger", str(ledger.store.path),
                           "--json"], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert [s["rows"] for s in json.loads(done.stdout)["masked"]] == [7]


POLICY = """
version: 1
identities: {svc-training: {kind: service, groups: [training-jobs]}}
groups: [training-jobs]
purposes: [ai_training]
classifications: {public.keyed_people.email: email}
rules:
  - {classifications: [email], groups: [training-jobs], action: mask, mask: {method: tokenize}}
"""


def test_the_cli_refuses_an_extraction_signed_by_another_key_and_writes_nothing(new_database, tmp_path, lg_home):
    psycopg = require("psycopg", "postgres")
    url = new_database()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE keyed_people (id int primary key, email text)")
        conn.execute("INSERT INTO keyed_people VALUES (1, 'ann@example.org'), (2, 'ben@example.org')")
    (tmp_path / "policy.yaml").write_text(POLICY)
    args = [EXE, "extract", "--policy", str(tmp_path / "policy.yaml"), "--identity", "svc-training",
            "--purpose", "ai_training", "--source", url, "--sql", "SELECT id, email FROM keyed_people"]
    first = subprocess.run([*args, "--to", str(tmp_path / "a.parquet")], capture_output=True, text=True,
                           timeout=300, check=False)
    assert first.returncode == 0, first.stderr[-800:]
    other = {**os.environ, "LINEAGE_GUARD_LEDGER_SIGNING_KEY_FILE": str(write_key_file(tmp_path / "b.key").source)}
    second = subprocess.run([*args, "--to", str(tmp_path / "b.parquet")], capture_output=True, text=True,
                            timeout=300, check=False, env=other)
    assert second.returncode == 1 and "pinned to signing key" in second.stderr and "rotate-key" in second.stderr
    assert "Traceback" not in second.stderr and not [p for p in tmp_path.iterdir() if "b.parquet" in p.name]
    verify = subprocess.run([EXE, "audit", "verify"], capture_output=True, text=True, timeout=120, check=False)
    # the first extract's two entries (its `open` intent, then success); nothing of the refused one
    assert verify.returncode == 0 and "2 entries verify" in verify.stdout, verify.stderr


def test_a_ledger_from_before_pinning_verifies_read_only(tmp_path):
    url = str(tmp_path / "old.sqlite")
    legacy = Signer.from_master_key()
    receipt = Ledger.open(url, signer=legacy).record(make_run())
    with sqlite3.connect(url) as conn:  # an older version's file: no ledger_keys table at all
        conn.execute("DROP TABLE ledger_keys")
    report = Ledger.open(url, create=False).verify([legacy.public_key])
    assert report.ok and report.entries == 1 and Ledger.open(url, create=False).pinned_keys() == []
    assert audit("verify", "--ledger", url, "--public-key", legacy.public_key).exit_code == 0
    assert Ledger.open(url, create=False).verify_receipt(receipt, [legacy.public_key]).ok
