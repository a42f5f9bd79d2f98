"""`lineage-guard audit ...` through typer's CliRunner and the installed console script."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
from datetime import UTC, datetime

import pytest
from test_audit import make_run
from typer.testing import CliRunner

from lineage_guard.audit import Ledger
from lineage_guard.audit.signing import write_key_file
from lineage_guard.cli.audit import app

runner = CliRunner()


@pytest.fixture
def url(tmp_path) -> str:
    return f"sqlite://{tmp_path}/ledger.sqlite"


@pytest.fixture
def receipts(url):
    ledger = Ledger.open(url)
    return [
        ledger.record(make_run("dr-ho", "care", kind="human", groups=("clinicians",), masked=False, rows=3)),
        ledger.record(make_run("svc-training", rows=100)),
        ledger.record(make_run("svc-training", outcome="denied")),
    ]


def audit(*args: str):
    return runner.invoke(app, list(args))


def without_signing_key(home):
    """This machine no longer holds the ledger's signing key: verifiers must pin the public key."""
    (home / "ledger-signing.key").rename(home.parent / "moved-away.key")


def test_verify_ok_then_names_the_first_bad_entry(url, receipts, tmp_path):
    result = audit("verify", "--ledger", url)
    assert result.exit_code == 0 and "3 entries verify" in result.output
    with sqlite3.connect(tmp_path / "ledger.sqlite") as conn:
        conn.execute("DROP TRIGGER ledger_entries_no_update")
        conn.execute("UPDATE ledger_entries SET entry = CAST(replace(CAST(entry AS TEXT), '\"rows\":100', '\"rows\":1') AS BLOB)"
                     " WHERE seq = 2")
    result = audit("verify", "--ledger", url)
    assert result.exit_code == 1 and f"entry #2 (id {receipts[1].id})" in result.output and "edited" in result.output
    report = json.loads(audit("verify", "--ledger", url, "--json").stdout)
    assert (report["ok"], report["first_bad"]["position"], report["entries"]) == (False, 2, 1)
    for command in (["log"], ["who-saw", "public.patients.ssn"]):  # no audit answer from a bad chain...
        refused = audit(*command, "--ledger", url)
        assert refused.exit_code == 1 and "does not verify" in refused.output and "entry #2" in refused.output
        assert audit(*command, "--ledger", url, "--no-verify").exit_code == 0  # ...unless asked to look anyway


def test_ledger_text_is_printed_as_text_not_markup(url):
    Ledger.open(url).record(make_run("[/red][bold]mallory", "[link=x]p"))
    result = audit("log", "--ledger", url)
    assert result.exit_code == 0 and "[/red][bold]mallory" in result.output


def test_log_filters_and_json(url, receipts):
    rows = [json.loads(line) for line in audit("log", "--ledger", url, "--json").stdout.splitlines()]
    assert [r["receipt"] for r in rows] == [r.id for r in receipts]
    only = lambda *a: [json.loads(line)["seq"] for line in audit("log", "--ledger", url, "--json", *a).stdout.splitlines()]
    assert only("--identity", "clinicians") == [1] and only("--purpose", "ai_training") == [2, 3]
    assert only("--outcome", "denied") == [3] and only("--column", "public.patients.ssn") == [1, 2, 3]
    assert only("--table", "public.nothing") == [] and only("--until", "2000-01-01") == [] and only("--until", str(datetime.now(UTC).date())) == [1, 2, 3] and only("--since", "2000-01-01") == [1, 2, 3]
    table = audit("log", "--ledger", url)
    assert table.exit_code == 0 and "dr-ho" in table.output and receipts[0].id[:8] in table.output and "3 entries" in table.output
    bad = audit("log", "--ledger", url, "--since", "last tuesday")
    assert bad.exit_code == 1 and "ISO 8601" in bad.output


def test_who_saw(url, receipts):
    seen = json.loads(audit("who-saw", "public.patients.ssn", "--ledger", url, "--json").stdout)
    assert [(s["principal"], s["runs"], s["rows"]) for s in seen["clear"]] == [("dr-ho", 1, 3)]
    assert [(s["principal"], s["how"], s["rows"]) for s in seen["masked"]] == [("svc-training", "partial(keep_last=4)", 100)]
    text = audit("who-saw", "public.patients.ssn", "--ledger", url)
    assert text.exit_code == 0 and "saw it clear" in text.output and "svc-training" in text.output
    assert audit("who-saw", "ssn", "--ledger", url).exit_code == 1


def test_receipt_prints_and_verifies(url, receipts, monkeypatch, tmp_path):
    result = audit("receipt", receipts[1].id, "--ledger", url)
    assert result.exit_code == 0 and json.loads(result.stdout)["hash"] == receipts[1].hash
    assert audit("receipt", "nope", "--ledger", url).exit_code == 1
    short = audit("receipt", receipts[2].id[:8], "--ledger", url)  # the short id `audit log` shows
    assert short.exit_code == 0 and json.loads(short.stdout)["id"] == receipts[2].id
    monkeypatch.setenv("LINEAGE_GUARD_LEDGER_SIGNING_KEY_FILE", str(write_key_file(tmp_path / "other.key").source))
    result = audit("receipt", receipts[1].id, "--ledger", url)  # another machine's key is not the ledger's
    assert result.exit_code == 1 and "not a trusted key" in result.output


def test_a_saved_receipt_verifies_offline(url, receipts, tmp_path, lg_home):
    saved = tmp_path / "receipt.json"
    saved.write_text(audit("receipt", receipts[0].id, "--ledger", url).stdout)
    public_key = json.loads(saved.read_text())["public_key"]
    without_signing_key(lg_home)
    (tmp_path / "ledger.sqlite").unlink()
    ok = audit("receipt", receipts[0].id, "--entry", str(saved), "--public-key", public_key)
    assert ok.exit_code == 0 and "verifies offline" in ok.output
    assert audit("receipt", receipts[0].id, "--entry", str(saved)).exit_code == 1  # no pinned key
    assert audit("receipt", receipts[1].id, "--entry", str(saved), "--public-key", public_key).exit_code == 1
    saved.write_text(saved.read_text().replace('"rows": 3', '"rows": 2'))
    bad = audit("receipt", receipts[0].id, "--entry", str(saved), "--public-key", public_key)
    assert bad.exit_code == 1 and "edited" in bad.output


def test_export_then_verify_offline_with_only_the_public_key(url, receipts, tmp_path, lg_home):
    out = tmp_path / "out" / "ledger.jsonl"
    assert audit("export", str(out), "--ledger", url).exit_code == 0
    header, *lines = out.read_bytes().splitlines()
    header = json.loads(header)
    assert header["entries"] == len(lines) == 3 and [p.name for p in out.parent.iterdir()] == ["ledger.jsonl"]
    (public_key,) = header["public_keys"].values()
    (tmp_path / "ledger.sqlite").unlink()  # offline: no database, no signing key
    without_signing_key(lg_home)
    assert audit("verify", "--export", str(out)).exit_code == 1  # no pinned key: refuse, do not trust the file's own
    result = audit("verify", "--export", str(out), "--public-key", public_key)
    assert result.exit_code == 0 and "3 entries verify" in result.output
    forged = lines[2].replace(b'"outcome":"denied"', b'"outcome":"success"')
    assert forged != lines[2]
    for tampered in (lines[:1] + lines[2:], lines[::-1], lines[:2] + [forged], lines[:2]):
        path = tmp_path / "t.jsonl"
        path.write_bytes(b"\n".join([json.dumps(header).encode(), *tampered]) + b"\n")
        assert audit("verify", "--export", str(path), "--public-key", public_key).exit_code == 1


def test_console_script_runs_audit(url, receipts, tmp_path):
    exe = shutil.which("lineage-guard", path=str(__import__("pathlib").Path(__import__("sys").executable).parent))
    assert exe, "the lineage-guard console script is installed in the venv"
    done = subprocess.run([exe, "audit", "verify", "--ledger", url, "--json"], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0 and json.loads(done.stdout)["entries"] == 3, done.stderr[-500:]


def test_readers_never_create_a_ledger(tmp_path):
    missing = tmp_path / "typo" / "ledger.sqlite"
    for args in (["verify"], ["log"], ["who-saw", "a.b.c"], ["receipt", "x"], ["export", str(tmp_path / "x.jsonl")]):
        result = audit(*args, "--ledger", str(missing))
        assert result.exit_code == 1 and "no ledger at" in result.output, args
    assert not missing.parent.exists()
    (tmp_path / "other.sqlite").write_bytes(b"")
    assert "not a lineage_guard ledger" in audit("verify", "--ledger", str(tmp_path / "other.sqlite")).output


def test_public_key_prints_the_pinned_key_and_warns_about_another(url, receipts, tmp_path, monkeypatch, lg_home):
    pinned = Ledger.open(url).get(receipts[0].id)
    shown = json.loads(audit("public-key", "--ledger", url, "--json").stdout)
    assert shown["pinned"] == [{"key_id": pinned["key_id"], "public_key": pinned["public_key"], "since": 1}]
    assert shown["local"]["key_id"] == pinned["key_id"]
    text = audit("public-key", "--ledger", url)
    assert text.exit_code == 0 and pinned["public_key"] in text.output and "PRIVATE" not in text.output
    other = write_key_file(tmp_path / "other.key")
    monkeypatch.setenv("LINEAGE_GUARD_LEDGER_SIGNING_KEY_FILE", str(other.source))
    warned = audit("public-key", "--ledger", url)
    assert other.key_id in warned.output and "refused until it uses the ledger's key" in warned.output
    monkeypatch.delenv("LINEAGE_GUARD_LEDGER_SIGNING_KEY_FILE")
    without_signing_key(lg_home)
    assert audit("public-key", "--ledger", str(tmp_path / "none.sqlite")).exit_code == 1
