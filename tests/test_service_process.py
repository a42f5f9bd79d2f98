"""Service mode across processes: a thin client with no secret, and a server stopped or killed mid-stream.

- A client process whose environment holds no master key and no database URL or password reads
  masked data, and imports none of the masking engine, the SQL planner, the database drivers or GX.
- SIGTERM mid-stream: the server stops accepting calls, fails the open stream cleanly (a failed
  ledger entry, a FAIL lineage event), the client's extract leaves nothing at its target, the
  server exits 0.
- SIGKILL mid-stream: the client's extract leaves nothing; the server's ledger has no success for
  the run and its lineage run stays open (START, no COMPLETE) in the durable outbox.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from conftest import TEST_MASTER_KEY, require
from service_helpers import (
    RAW_SENSITIVE,
    Issuer,
    make_tls,
    seed_people,
    server_key,
    service_policy,
    start_server,
)

from lineage_guard.audit import Ledger
from lineage_guard.client import ServiceError, connect
from lineage_guard.lineage.outbox import Outbox

TRAINER = "system:serviceaccount:ml:trainer"
BIG = 400_000   # rows: several batches, so a stream is really in flight when the server is stopped


@pytest.fixture(scope="module")
def world(new_database, tmp_path_factory):
    require("jwt", "service")
    root = tmp_path_factory.mktemp("service-process")
    url = new_database()
    seed_people(url, extra_rows=BIG)
    tls = make_tls(root / "tls")
    issuer = Issuer()
    policy = root / "policy.yaml"
    policy.write_text(service_policy(issuer.url, issuer.jwks_url))
    yield url, tls, issuer, policy, root
    issuer.close()


def _server(world, name: str, grace: float = 5):
    url, tls, _, policy, root = world
    home = root / name
    home.mkdir()
    return start_server(policy, url, tls, home, TEST_MASTER_KEY, grace=grace)


THIN = """
import json, os, sys
from lineage_guard.client import connect
with connect(os.environ["LG_URL"], purpose="ai_training", token_file=os.environ["LG_TOKEN_FILE"],
             tls_root_certs=os.environ["LG_CA"]) as s:
    table = s.read_arrow("SELECT id, email, ssn FROM people WHERE id <= 3 ORDER BY id")
    result = s.extract("SELECT id, email FROM people WHERE id <= 3", to=os.environ["LG_OUT"])
heavy = ("lineage_guard.mask", "lineage_guard.sql", "lineage_guard.planner", "lineage_guard.audit",
         "lineage_guard.sources", "sqlglot", "adbc_driver_postgresql", "psycopg", "great_expectations")
print(json.dumps({"cells": [str(v) for c in table.columns for v in c.to_pylist()], "receipt": result.receipt_id,
                  "loaded": sorted(m for m in sys.modules if m.startswith(heavy))}))
"""


def _clean_env(**extra) -> dict:
    """The environment of a pipeline process in service mode: its own credential, nothing else of ours."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update(extra)
    assert not any(k.startswith(("LINEAGE_GUARD_", "PG", "DATABASE")) for k in env)
    return env


def test_a_client_with_no_key_and_no_database_credential_reads_masked_data(world, tmp_path):
    server = _server(world, "thin")
    try:
        token_file = tmp_path / "token"   # like a projected service-account token
        token_file.write_text(world[2].token(TRAINER))
        env = _clean_env(LG_URL=server.url, LG_TOKEN_FILE=str(token_file), LG_CA=str(world[1].cert),
                         LG_OUT=str(tmp_path / "out.parquet"))
        done = subprocess.run([sys.executable, "-c", THIN], env=env, capture_output=True, text=True, timeout=120,
                              check=False)
        assert done.returncode == 0, done.stderr[-3000:]
        report = json.loads(done.stdout.strip().splitlines()[-1])
        assert report["loaded"] == []
        assert report["cells"] and not set(report["cells"]) & set(RAW_SENSITIVE)
        assert any(c.startswith("tok_") for c in report["cells"])
        with Ledger.open(f"sqlite:///{server.home / 'ledger.sqlite'}", create=False) as led:
            assert led.verify_receipt(report["receipt"], server_key(led)).ok
    finally:
        assert server.stop() == 0


CONNECT = """
import json, os, sys
from lineage_guard import GovernedSession
with GovernedSession.connect(os.environ["LG_URL"], purpose="ai_training", tls_root_certs=os.environ["LG_CA"]) as s:
    rows = s.read_arrow("SELECT email FROM people WHERE id <= 3").column("email").to_pylist()
print(json.dumps({"rows": rows, "drivers": sorted(m for m in sys.modules
                  if m.startswith(("adbc_driver_postgresql", "psycopg", "great_expectations")))}))
"""


def test_governed_session_connect_takes_the_token_from_the_environment(world, tmp_path):
    server = _server(world, "connect")
    try:
        env = _clean_env(LG_URL=server.url, LG_CA=str(world[1].cert))
        env["LINEAGE_GUARD_TOKEN"] = world[2].token(TRAINER)
        done = subprocess.run([sys.executable, "-c", CONNECT], env=env, capture_output=True, text=True, timeout=120,
                              check=False)
        assert done.returncode == 0, done.stderr[-3000:]
        report = json.loads(done.stdout.strip().splitlines()[-1])
        assert report["drivers"] == [] and all(v.startswith("tok_") for v in report["rows"])
    finally:
        server.stop()


def _extract_until(world, server, target, on_first_batch, sql="SELECT * FROM people"):
    """Run a big extract; when its first batch arrives, call `on_first_batch` (which stops the server)."""
    outcome: dict = {}
    fired = threading.Event()

    def progress(rows: int) -> None:
        if not fired.is_set():
            fired.set()
            on_first_batch()
        time.sleep(0.5)   # a slow consumer (seconds over all batches, far past the grace): still sending when stopped

    with connect(server.url, purpose="ai_training", token=world[2].token(TRAINER), tls_root_certs=world[1].pem) as s:
        try:
            outcome["result"] = s.extract(sql, to=target, progress=progress)
        except ServiceError as exc:
            outcome["error"] = exc
    return outcome


def test_sigterm_mid_stream_ends_the_stream_cleanly_and_exits(world, tmp_path):
    """SIGTERM: the server drains and exits 0; a stream ends one clean way or the other, never half.

    A stream the server has already handed whole to the transport when the signal lands completes
    (success entry, COMPLETE, a whole file); one still being produced after the grace fails (failed
    entry, FAIL, no file). Which one happens depends on gRPC buffering and machine load, so both are
    checked for consistency; anything in between fails the test.
    """
    server = _server(world, "term", grace=0.2)
    target = tmp_path / "people.parquet"
    outcome = _extract_until(world, server, target, lambda: server.proc.send_signal(signal.SIGTERM))
    assert server.proc.wait(60) == 0
    assert not list(tmp_path.glob("*.lg-tmp"))
    with Ledger.open(f"sqlite:///{server.home / 'ledger.sqlite'}", create=False) as led:
        assert led.verify(server_key(led)).ok
        bodies = [e["body"] for e in led.entries()]
    failed = [b for b in bodies if b["outcome"] == "failed"]
    succeeded = [b for b in bodies if b["outcome"] == "success"]
    if "error" in outcome:
        assert not target.exists()
        assert failed and "shut down" in failed[-1]["error"]["message"]
        assert not succeeded
        run_id, last = failed[-1]["run_id"], "FAIL"
    else:
        assert outcome["result"].rows == BIG + 3 and target.exists()  # the seeded rows plus the three named people
        assert succeeded and not failed
        run_id, last = succeeded[-1]["run_id"], "COMPLETE"
    events = Outbox(server.home / "outbox.sqlite").events(run_id)
    assert [e["eventType"] for e in events] == ["START", last]
    assert any("draining" in line for line in server.stderr_lines)


def test_sigkill_mid_stream_leaves_no_partial_sink_and_an_open_run(world, tmp_path):
    server = _server(world, "kill")
    target = tmp_path / "people.parquet"

    def kill():
        server.proc.kill()
        server.proc.wait(30)

    # 20 times the table (~600 MB of batches): far more than the transport and the read-ahead buffer, so the
    # kill at the first batch lands mid-stream however loaded the machine is (the table alone, a few ADBC
    # batches, was sometimes all in flight before the first batch reached the client).
    outcome = _extract_until(world, server, target, kill, sql="SELECT p.* FROM people p CROSS JOIN generate_series(1, 20)")
    assert "error" in outcome, outcome
    assert not target.exists() and not list(tmp_path.glob("*.lg-tmp"))
    with Ledger.open(f"sqlite:///{server.home / 'ledger.sqlite'}", create=False) as led:
        recorded = list(led.entries())   # nothing, or the stream's `open` intent where the ledger records one
        assert not [e for e in recorded if e["body"]["outcome"] == "success"]
        assert not recorded or led.verify(server_key(led)).ok
    started = [e for e in Outbox(server.home / "outbox.sqlite").events() if e["eventType"] == "START"]
    assert len(started) == 1
    run_id = started[0]["run"]["runId"]
    assert [e["eventType"] for e in Outbox(server.home / "outbox.sqlite").events(run_id)] == ["START"]


def test_with_a_client_ca_only_clients_holding_a_certificate_get_through(world, tmp_path):
    url, tls, issuer, policy, root = world
    client_pair = make_tls(tmp_path / "client", name="client")
    home = root / "mtls"
    home.mkdir()
    server = start_server(policy, url, tls, home, TEST_MASTER_KEY, extra_args=("--client-ca", str(client_pair.cert)))
    try:
        token = issuer.token(TRAINER)
        with pytest.raises(ServiceError), connect(server.url, purpose="ai_training", token=token,
                                                  tls_root_certs=tls.pem, timeout_s=10) as s:
            s.health()   # a valid token is not enough without the certificate
        with connect(server.url, purpose="ai_training", token=token, tls_root_certs=tls.pem,
                     client_cert=client_pair.pem, client_key=client_pair.key.read_bytes()) as s:
            table = s.read_arrow("SELECT email FROM people WHERE id <= 3")
        assert all(v.startswith("tok_") for v in table.column("email").to_pylist())
    finally:
        server.stop()
