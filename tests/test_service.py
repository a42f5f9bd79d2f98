"""`lineage-guard serve` end to end: a real server subprocess with TLS, a real issuer, real clients.

The issuer is an HTTP server on 127.0.0.1 serving a JWKS of keys this test generates; tokens are
signed with them. Our thin client and the official ADBC Flight SQL driver both read masked data;
every refused credential gets a clear status and a ledger entry.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import threading
import time

import pyarrow as pa
import pytest
from conftest import require
from pyarrow import flight
from service_helpers import AUDIENCE, RAW_SENSITIVE, Issuer, people_service, server_key

from lineage_guard.audit import Ledger
from lineage_guard.client import NotAuthenticated, ServiceError, connect
from lineage_guard.errors import AccessDenied, ApprovalRequired

TRAINER = "system:serviceaccount:ml:trainer"


def _create_token(home, identity: str) -> str:
    done = subprocess.run([sys.executable, "-m", "lineage_guard.cli", "tokens", "create", "--identity", identity,
                           "--store", str(home / "api_tokens.json")], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture(scope="module")
def svc(new_database, tmp_path_factory):
    require("jwt", "service")
    with people_service(new_database(), tmp_path_factory.mktemp("service"),
                        principals=("writer", "limited", "hasty")) as world:
        world.tokens["svc-training"] = _create_token(world.home, "svc-training")   # through the CLI, printed once
        yield world


def ledger(svc) -> Ledger:
    return Ledger.open(f"sqlite:///{svc.home / 'ledger.sqlite'}", create=False)


def entries(svc) -> list[dict]:
    with ledger(svc) as led:
        return [e["body"] for e in led.entries()]


def client(svc, token: str, purpose: str = "ai_training", **kw):
    return connect(svc.url, purpose=purpose, token=token, tls_root_certs=svc.tls.pem, **kw)


def trainer_token(svc, **kw) -> str:
    return svc.issuer.token(TRAINER, **kw)


# -- reads ------------------------------------------------------------------------------------


def test_our_client_reads_masked_data_over_tls_with_a_receipt(svc, tmp_path):
    with client(svc, trainer_token(svc)) as s:
        assert s.health()["status"] == "serving"
        plan = s.plan("SELECT id, email, ssn FROM people")
        assert plan.action == "allow" and [c.method for c in plan.columns] == [None, "tokenize", "partial"]
        table = s.read_arrow("SELECT id, email, ssn, full_name FROM people ORDER BY id")
        assert table.num_rows == 3
        cells = {str(v) for col in table.columns for v in col.to_pylist()}
        assert not cells & set(RAW_SENSITIVE)
        assert all(v.startswith("tok_") for v in table.column("email").to_pylist())
        assert table.column("ssn").to_pylist()[0].endswith("3456")
        bound = s.read_arrow("SELECT id, email FROM people WHERE id = $1", [2])
        assert bound.column("id").to_pylist() == [2]
        assert bound.column("email").to_pylist() == [table.column("email").to_pylist()[1]]  # same key scope
        result = s.extract("SELECT * FROM people", to=tmp_path / "people.parquet")
        assert s.read_polars("SELECT id FROM people").height == 3
    import pyarrow.parquet as pq

    written = pq.read_table(tmp_path / "people.parquet")
    assert written.num_rows == result.rows == 3 and "email" in result.masked_columns
    assert pq.read_metadata(tmp_path / "people.parquet").metadata[b"lineage_guard.receipt_id"] == result.receipt_id.encode()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".lg-tmp")]
    with ledger(svc) as led:
        check = led.verify_receipt(result.receipt_id, server_key(led))
        assert check.ok, check
        body = check.entry["body"]
    assert body["who"]["principal"] == "svc-training" and body["outcome"] == "success" and body["rows"] == 3
    assert body["purpose"] == "ai_training"


def test_clinician_token_maps_to_dr_grey_and_sees_clear_values(svc):
    token = svc.issuer.token("user:grey@clinic.example", email_verified=True)
    with client(svc, token, purpose="treatment") as s:
        table = s.read_arrow("SELECT full_name, email FROM people ORDER BY id")
    assert table.column("email").to_pylist()[0] == "ada.quill@example.org"


@pytest.mark.filterwarnings("ignore:Cannot disable autocommit")   # Flight SQL has no transactions here
def test_the_official_adbc_flight_sql_driver_reads_masked_data_unmodified(svc):
    fsql = require("adbc_driver_flightsql", "dev")
    from adbc_driver_flightsql import DatabaseOptions
    from adbc_driver_flightsql.dbapi import connect as adbc_connect

    options = {DatabaseOptions.AUTHORIZATION_HEADER.value: f"Bearer {trainer_token(svc)}",
               DatabaseOptions.TLS_ROOT_CERTS.value: svc.tls.pem.decode(),
               f"{DatabaseOptions.RPC_CALL_HEADER_PREFIX.value}x-lineage-guard-purpose": "ai_training"}
    assert fsql
    with adbc_connect(svc.url, db_kwargs=options) as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT id, email, ssn FROM people ORDER BY id")
            table = cur.fetch_arrow_table()
            cur.execute("SELECT email FROM people WHERE id = $1", (3,))
            bound = cur.fetchall()
        info = conn.adbc_get_info()
        schema = conn.adbc_get_table_schema("people")
        objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
    assert table.num_rows == 3
    assert not {str(v) for col in table.columns for v in col.to_pylist()} & set(RAW_SENSITIVE)
    assert bound == [(table.column("email").to_pylist()[2],)]
    assert info["vendor_name"] == "lineage_guard"
    assert schema.field("email").metadata[b"lineage_guard.masked"] == b"true"
    assert schema.field("email").metadata[b"lineage_guard.method"] == b"tokenize"
    assert schema.field("plan").metadata[b"lineage_guard.masked"] == b"false"
    tables = {t["table_name"] for c in objects for s in c["catalog_db_schemas"] for t in s["db_schema_tables"]}
    assert tables == {"people", "audit_notes"}


def test_an_api_token_is_printed_once_and_stored_only_as_a_hash(svc):
    token = svc.tokens["svc-training"]
    assert token.startswith("lgt_")
    stored = (svc.home / "api_tokens.json").read_text()
    assert token not in stored and hashlib.sha256(token.encode()).hexdigest() in stored
    with client(svc, token) as s:
        assert s.read_arrow("SELECT id, email FROM people").num_rows == 3


def test_a_denied_read_is_answered_with_its_receipt(svc):
    with client(svc, trainer_token(svc)) as s, pytest.raises(AccessDenied) as denied:
        s.read_arrow("SELECT rolpassword FROM pg_authid")
    assert denied.value.receipt_id
    with ledger(svc) as led:
        assert led.get(denied.value.receipt_id)["body"]["outcome"] == "denied"


# -- refusals: nothing anonymous, nothing forged -------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hand_made(header: dict, payload: dict, secret: bytes | None) -> str:
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    signature = b"" if secret is None else hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def _claims(svc, **extra) -> dict:
    now = int(time.time())
    return {"iss": svc.issuer.url, "sub": TRAINER, "aud": AUDIENCE, "iat": now, "exp": now + 300, **extra}


REFUSALS = {
    "no credential": lambda svc: None,
    "not a token": lambda svc: "hello",
    "unknown api token": lambda svc: "lgt_000000000000_" + "x" * 43,
    "forged (another key, same kid)": lambda svc: trainer_token(svc, key=Issuer.__new__(Issuer) and _other_key()),
    "expired": lambda svc: trainer_token(svc, expires_in=-120),
    "not yet valid": lambda svc: trainer_token(svc, not_before=3600),
    "wrong audience": lambda svc: trainer_token(svc, audience="some-other-service"),
    "replayed: minted for several audiences": lambda svc: trainer_token(svc, audience=[AUDIENCE, "other-service"]),
    "unsigned (alg none)": lambda svc: _hand_made({"alg": "none", "typ": "JWT"}, _claims(svc), None),
    "HMAC signed with the issuer's public key": lambda svc: _hand_made(
        {"alg": "HS256", "typ": "JWT", "kid": svc.issuer.kid}, _claims(svc), svc.issuer.public_pem()),
    "untrusted issuer": lambda svc: trainer_token(svc, issuer="https://evil.example"),
    "unmapped subject": lambda svc: svc.issuer.token("system:serviceaccount:ml:someone-else"),
    "claim mismatch": lambda svc: svc.issuer.token("user:grey@clinic.example", email_verified=False),
}


def _other_key():
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_bad_credentials_are_refused_with_a_clear_status_and_a_ledger_entry(svc, case):
    token = REFUSALS[case](svc)
    before = len(entries(svc))
    raw = flight.FlightClient(svc.url, tls_root_certs=svc.tls.pem)
    headers = [(b"x-lineage-guard-purpose", b"ai_training")]
    if token is not None:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    options = flight.FlightCallOptions(headers=headers)
    with pytest.raises((flight.FlightUnauthenticatedError, flight.FlightUnauthorizedError)) as refused:
        list(raw.do_action(flight.Action("health", b""), options))
    raw.close()
    assert "details withheld" not in str(refused.value)
    after = entries(svc)
    assert len(after) == before + 1
    entry = after[-1]
    assert entry["outcome"] == "denied" and entry["job"]["name"] == "lineage_guard.service.auth"
    assert entry["decision"]["reasons"][0].startswith("call refused")
    assert token is None or token not in json.dumps(entry)
    # our client says the same, as an error of its own
    with pytest.raises(ServiceError), connect(svc.url, purpose="ai_training", token=token or "hello",
                                              tls_root_certs=svc.tls.pem) as s:
        s.health()


def test_unauthenticated_callers_get_unauthenticated_not_permission_denied(svc):
    with pytest.raises(NotAuthenticated, match="expired"), client(svc, trainer_token(svc, expires_in=-120)) as s:
        s.read_arrow("SELECT id FROM people")


def test_plaintext_to_the_tls_port_gets_nothing(svc):
    plain = flight.FlightClient(svc.url.replace("grpc+tls", "grpc+tcp"))
    with pytest.raises(flight.FlightError):
        list(plain.do_action(flight.Action("health", b""), flight.FlightCallOptions(timeout=5)))
    plain.close()


# -- a caller cannot choose who it is, what groups it has, or someone else's ticket -------------------


def test_naming_another_identity_or_groups_gets_nothing_more(svc):
    token = trainer_token(svc)
    for extra in ([(b"x-lineage-guard-identity", b"dr-grey")], [(b"x-lineage-guard-groups", b"clinicians")]):
        raw = flight.FlightClient(svc.url, tls_root_certs=svc.tls.pem)
        options = flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {token}".encode()),
                                                    (b"x-lineage-guard-purpose", b"ai_training"), *extra])
        with pytest.raises(flight.FlightUnauthorizedError, match="credential|policy"):
            list(raw.do_action(flight.Action("health", b""), options))
        raw.close()
    spoof = entries(svc)[-1]
    assert spoof["who"]["principal"] == "svc-training" and spoof["outcome"] == "denied"
    with client(svc, token, purpose="treatment") as s, pytest.raises(ServiceError, match="may not request purpose"):
        s.read_arrow("SELECT email FROM people")   # the clinician's purpose does not unmask anything


def test_a_ticket_is_useless_to_another_caller(svc):
    from lineage_guard.service import flightsql as fs

    trainer = flight.FlightClient(svc.url, tls_root_certs=svc.tls.pem)
    mine = flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {trainer_token(svc)}".encode()),
                                             (b"x-lineage-guard-purpose", b"ai_training")])
    command = fs.pack(fs.MESSAGES.CommandStatementQuery(query="SELECT email FROM people"))
    info = trainer.get_flight_info(flight.FlightDescriptor.for_command(command), mine)
    ticket = info.endpoints[0].ticket
    other = svc.issuer.token("user:grey@clinic.example", email_verified=True)
    theirs = flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {other}".encode()),
                                               (b"x-lineage-guard-purpose", b"treatment")])
    with pytest.raises(flight.FlightServerError, match="unknown or expired ticket"):
        trainer.do_get(ticket, theirs).read_all()
    assert trainer.do_get(ticket, mine).read_all().num_rows == 3   # still the owner's, once
    trainer.close()


# -- guarded writes ------------------------------------------------------------------------------


def test_guarded_writes_through_the_service(svc):
    writer = svc.tokens["writer"]
    with client(svc, writer, purpose="maintenance") as s:
        assert s.execute("INSERT INTO audit_notes VALUES (1, 'checked')").rows_affected == 1
        assert s.execute("UPDATE audit_notes SET note = $1 WHERE id = $2", ["rechecked", 1]).rows_affected == 1
        with pytest.raises(AccessDenied, match="WHERE"):
            s.execute("DELETE FROM audit_notes")
        with pytest.raises(ApprovalRequired) as waiting:
            s.execute("UPDATE people SET plan = 'free' WHERE id = 1")
    assert "lineage-guard approvals approve" in waiting.value.approve_command
    with client(svc, trainer_token(svc)) as s, pytest.raises(AccessDenied):
        s.execute("INSERT INTO audit_notes VALUES (2, 'not mine to write')")


# -- limits ------------------------------------------------------------------------------------


def test_per_identity_limits_rows_and_concurrent_streams(svc):
    token = svc.tokens["limited"]
    with client(svc, token) as s:
        assert s.read_arrow("SELECT id FROM people LIMIT 2").num_rows == 2
        with pytest.raises(ServiceError, match="max_rows"):
            s.read_arrow("SELECT id FROM people")
        # The open stream holds the identity's one slot.
        with s.stream("SELECT id FROM people LIMIT 1"), pytest.raises(ServiceError, match="concurrent_streams"):
            s.read_arrow("SELECT id FROM people LIMIT 1")
        # Leaving the block cancelled the unread stream; the server frees the slot as it ends it.
        deadline = time.monotonic() + 10
        while True:
            try:
                assert s.read_arrow("SELECT id FROM people LIMIT 1").num_rows == 1
                break
            except ServiceError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
    failed = [e for e in entries(svc) if e["who"]["principal"] == "limited" and e["outcome"] == "failed"]
    assert any("max_rows" in (e["error"] or {}).get("message", "") for e in failed)


# -- one chain under load ------------------------------------------------------------------------


def test_sixteen_concurrent_clients_keep_one_verifying_chain(svc):
    before = len(entries(svc))
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            token = trainer_token(svc) if i % 2 else svc.tokens["svc-training"]
            with client(svc, token) as s:
                for _ in range(3):
                    assert s.read_arrow("SELECT id, email FROM people").num_rows == 3
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:3]
    with ledger(svc) as led:
        report = led.verify(server_key(led))
        assert report.ok, report
    done = [e for e in entries(svc)[before:] if e["outcome"] == "success"]
    assert len({e["run_id"] for e in done}) == len(done) == 16 * 3


def test_metadata_lists_only_the_policy_schema_with_masked_columns_marked(svc):
    from lineage_guard.service import flightsql as fs

    raw = flight.FlightClient(svc.url, tls_root_certs=svc.tls.pem)
    options = flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {trainer_token(svc)}".encode()),
                                                (b"x-lineage-guard-purpose", b"ai_training")])

    def fetch(message) -> pa.Table:
        info = raw.get_flight_info(flight.FlightDescriptor.for_command(fs.pack(message)), options)
        return raw.do_get(info.endpoints[0].ticket, options).read_all()

    tables = fetch(fs.MESSAGES.CommandGetTables(include_schema=True))
    assert sorted(tables.column("table_name").to_pylist()) == ["audit_notes", "people"]
    people = tables.filter(pa.compute.equal(tables.column("table_name"), "people"))
    schema = pa.ipc.read_schema(pa.py_buffer(people.column("table_schema")[0].as_py()))
    assert schema.field("email").metadata[b"lineage_guard.masked"] == b"true"
    assert schema.field("email").metadata[b"lineage_guard.classification"] == b"email"
    assert fetch(fs.MESSAGES.CommandGetDbSchemas()).column("db_schema_name").to_pylist() == ["public"]
    assert fetch(fs.MESSAGES.CommandGetDbSchemas(db_schema_filter_pattern="secret%")).num_rows == 0
    assert fetch(fs.MESSAGES.CommandGetSqlInfo(info=[0])).column("info_name").to_pylist() == [0]
    raw.close()


# -- large reads in parallel -------------------------------------------------------------------


def test_calls_leave_no_database_backend_behind(svc):
    """Each call's session keeps its read (and metadata) connection only while it lives: the service makes a
    session per call, never closed, so the connections must go when it is dropped (sources/read_conn.py)."""
    psycopg = require("psycopg", "postgres")

    def backends() -> int:
        with psycopg.connect(svc.db, autocommit=True) as conn:
            return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                                " AND backend_type = 'client backend' AND pid <> pg_backend_pid()").fetchone()[0]

    with client(svc, trainer_token(svc)) as s:
        for _ in range(4):
            assert s.read_arrow("SELECT id, email FROM people").num_rows == 3
            deadline = time.monotonic() + 5
            while (left := backends()) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert left == 0, f"{left} backends left after a call"


def test_a_read_split_into_key_ranges_is_fetched_concurrently_with_the_same_tokens(svc):
    before = len(entries(svc))
    with client(svc, trainer_token(svc)) as s:
        whole = s.read_arrow("SELECT id, email, ssn FROM people ORDER BY id")
        parts = s.read_arrow("SELECT id, email, ssn FROM people", partitions=3)
        receipts = s.last_receipts
        with s.stream("SELECT id, email FROM people", partitions=2) as batches:
            streamed = pa.Table.from_batches(list(batches))
        assert batches.plan.masked_columns and batches.plan.masked_columns[0].name == "email"
    assert parts.sort_by("id").to_pylist() == whole.to_pylist()     # one plan, the same keys: the same tokens
    assert sorted(streamed.column("id").to_pylist()) == [1, 2, 3]
    assert len(receipts) == 3 and len({r.receipt_id for r in receipts}) == 3
    new = entries(svc)[before:]
    split_runs = [e for e in new if e["statement"]["text"].startswith("SELECT * FROM (SELECT id, email, ssn")
                  and e["outcome"] == "success"]
    assert len(split_runs) == 3 and len({e["run_id"] for e in split_runs}) == 3
    assert len({e["parent"]["run_id"] for e in split_runs}) == 1       # one parent lineage run
    assert sum(e["rows"] for e in split_runs) == 3
    with client(svc, trainer_token(svc)) as s, pytest.raises(ServiceError, match="cannot split on 'email'"):
        s.read_arrow("SELECT id, email FROM people", partitions=2, split_key="email")   # masked: no range on it


# -- how each identity was established ------------------------------------------------------------


def test_a_service_read_is_recorded_as_verified_and_the_audit_commands_show_it(svc):
    import datetime as dt

    token = trainer_token(svc, expires_in=600)
    import jwt as pyjwt

    claims = pyjwt.decode(token, options={"verify_signature": False})
    with client(svc, token) as s:
        with s.stream("SELECT id, email FROM people WHERE id = 1") as batches:
            list(batches)
        receipt = batches.receipt.receipt_id
    with ledger(svc) as led:
        check = led.verify_receipt(receipt, server_key(led))
        assert check.ok, check
        auth = check.entry["body"]["who"]["auth"]
    assert auth["method"] == "jwt"
    assert auth["issuer"] == svc.issuer.url and auth["subject"] == TRAINER
    assert auth["token_id_digest"] == "sha256:" + hashlib.sha256(claims["jti"].encode()).hexdigest()
    assert dt.datetime.fromisoformat(auth["expires_at"]) == dt.datetime.fromtimestamp(claims["exp"], dt.UTC)
    assert auth["client_address"].startswith(("ipv4:127.0.0.1:", "127.0.0.1"))
    assert token not in json.dumps(auth)
    # The API-token identities are verified too (a hashed token the server issued), not asserted.
    with client(svc, svc.tokens["writer"], purpose="maintenance") as s:
        s.read_arrow("SELECT id FROM audit_notes")

    path = str(svc.home / "ledger.sqlite")
    key = server_key(ledger(svc))[0]
    base = [sys.executable, "-m", "lineage_guard.cli", "audit"]
    log = subprocess.run([*base, "log", "--ledger", path, "--public-key", key, "--json", "--column", "public.people.email"],
                         capture_output=True, text=True, timeout=120, check=False)
    assert log.returncode == 0, log.stderr
    rows = {r["receipt"]: r for r in map(json.loads, log.stdout.splitlines())}
    assert rows[receipt]["auth"] == "jwt" and rows[receipt]["authentication"] == auth
    writer = subprocess.run([*base, "log", "--ledger", path, "--public-key", key, "--json", "--identity", "writer"],
                            capture_output=True, text=True, timeout=120, check=False)
    assert {json.loads(r)["auth"] for r in writer.stdout.splitlines()} == {"api_token"}
    seen = subprocess.run([*base, "who-saw", "public.people.email", "--ledger", path, "--public-key", key, "--json"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert seen.returncode == 0, seen.stderr
    trainer = [s for s in json.loads(seen.stdout)["masked"] if s["principal"] == "svc-training"]
    assert trainer and "jwt" in trainer[0]["auth"] and "asserted" not in trainer[0]["auth"]
    table = subprocess.run([*base, "who-saw", "public.people.email", "--ledger", path, "--public-key", key],
                           capture_output=True, text=True, timeout=120, check=False, env={**os.environ, "COLUMNS": "200"})
    assert "svc-training" in table.stdout and "jwt" in table.stdout


# -- per-identity statement timeout ----------------------------------------------------------------

# pg_sleep is refused by the planner (a side-effect function), so the slow query is one the planner allows:
# a count over a cross join of two generated series, far longer than the identity's 1 s timeout.
SLOW = "SELECT count(*) AS n FROM generate_series(1, 200000) AS a CROSS JOIN generate_series(1, 200000) AS b"


def test_the_identity_statement_timeout_cancels_a_slow_query_with_a_clear_status_and_an_entry(svc):
    token = svc.tokens["hasty"]
    with client(svc, token) as s:
        with pytest.raises(AccessDenied, match="pg_sleep"):
            s.read_arrow("SELECT pg_sleep(5)")           # the obvious slow query never reaches the database
        started = time.monotonic()
        with pytest.raises(ServiceError) as stopped:
            s.read_arrow(SLOW)
        took = time.monotonic() - started
        assert s.read_arrow("SELECT id FROM people WHERE id = 1").num_rows == 1   # the identity is not stuck
    message = str(stopped.value)
    assert "57014" in message and "statement timeout (1000 ms)" in message, message
    assert took < 60   # cancelled, not run to the end (a 4e10-row count takes hours)
    failed = [e for e in entries(svc) if e["who"]["principal"] == "hasty" and e["outcome"] == "failed"]
    assert failed, "the cancelled statement has no ledger entry"
    error = failed[-1]["error"]
    assert "57014" in error["message"] and "CROSS JOIN GENERATE_SERIES" in failed[-1]["statement"]["text"]
    assert failed[-1]["who"]["auth"]["method"] == "api_token"
