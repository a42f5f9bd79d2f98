"""Red-team round on the service's front door (helper svcred): credentials, from the client side.

A real `lineage-guard serve` subprocess over TLS, a real JWKS issuer on 127.0.0.1, raw pyarrow Flight
clients. Outputs are counts and booleans; no token, key or raw value is printed.

Found and fixed:
1. A credential whose check raised anything but an `AuthError` (here a token the trusted issuer signed
   with an `exp` past year 9999, which PyJWT accepts and `datetime` cannot hold) left the handler as
   is: Flight answered with the server's Python traceback (file paths, code lines) and the refusal left
   no ledger entry. Now every such failure is a plain refusal, recorded, details withheld.
2. Refusals need no credential, and each one was a signed ledger entry whose size the caller chose
   (a made-up `iss` went in whole): 300 junk calls from one client made 300 entries, and a 4,000-char
   `iss` made a 5.5 KB one (7,500 chars: 9 KB). Now unverified callers' refusals are recorded one by
   one up to a rate per client host (the rest are counted into the next recorded one), and
   unverified text is bounded.
3. GetSchema's errors (a wrong credential, a denied statement) reached the caller with the traceback of
   every server frame they passed (`.../lineage_guard/service/server.py`, line numbers, source lines):
   pyarrow maps FlightError to a status for the other handlers but not for get_schema. Now the error
   is raised fresh from a frame compiled as `<lineage-guard>`: no server path or line. (Its status is
   still UNKNOWN: pyarrow's to fix.) ListFlights answered anyone, unauthenticated, with pyarrow's
   NotImplementedError traceback; now it checks the credential (recorded refusal) and lists nothing.

Held on main and kept as guards: key sources named by the token (`jku`, `x5u`, an embedded `jwk`) are
never fetched or used; unknown key ids do not make the server refetch the issuer's JWKS per call;
`iat` in the future, no `exp`, no `sub` are refused.
"""

from __future__ import annotations

import http.server
import json
import re
import threading
import time
import uuid

import pytest
from conftest import require
from pyarrow import flight
from service_helpers import AUDIENCE, people_service

from lineage_guard.audit import Ledger
from lineage_guard.service.refusals import BURST

TRAINER = "system:serviceaccount:ml:trainer"


class _Counter:
    """An HTTP server on 127.0.0.1 that only counts the requests it gets (an attacker's key URL)."""

    def __init__(self):
        hits = self.hits = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                hits.append(self.path)
                self.send_error(404)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


def _world(new_database, root):
    world = people_service(new_database(), root)
    svc = world.__enter__()
    hits: list[str] = []
    base = svc.issuer.httpd.RequestHandlerClass

    class Counting(base):   # count the server's fetches of the issuer's JWKS
        def do_GET(self):
            hits.append(self.path)
            super().do_GET()

    svc.issuer.httpd.RequestHandlerClass = Counting
    svc.jwks_hits = hits
    return world, svc


@pytest.fixture(scope="module")
def svc(new_database, tmp_path_factory):
    require("jwt", "service")
    world, svc = _world(new_database, tmp_path_factory.mktemp("svc-auth"))
    yield svc
    world.__exit__(None, None, None)


@pytest.fixture
def flooded(new_database, tmp_path):
    """A server of its own: the refusal rate is per server and per client host."""
    require("jwt", "service")
    world, svc = _world(new_database, tmp_path)
    yield svc
    world.__exit__(None, None, None)


def _call(svc, token: str | None, purpose: bytes = b"ai_training", action: str = "lineage_guard.whoami"):
    """DoAction `action` with `token`: ('ok', its first result) or (error class name, message)."""
    raw = flight.FlightClient(svc.url, tls_root_certs=svc.tls.pem)
    headers = [(b"x-lineage-guard-purpose", purpose)]
    if token is not None:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    try:
        body = b'{"sql": "SELECT 1 AS one"}' if action == "lineage_guard.plan" else b""
        out = list(raw.do_action(flight.Action(action, body), flight.FlightCallOptions(headers=headers, timeout=30)))
        answer = json.loads(out[0].body.to_pybytes())
        return "ok", answer.get("principal", answer.get("action"))
    except Exception as exc:  # noqa: BLE001 - the class and text are what is judged
        return type(exc).__name__, str(exc)
    finally:
        raw.close()


def _entries(svc) -> list[dict]:
    with Ledger.open(f"sqlite:///{svc.home / 'ledger.sqlite'}", create=False) as led:
        return [e["body"] for e in led.entries()]


def _signed(key, claims: dict, **headers) -> str:
    import jwt

    return jwt.encode(claims, key, algorithm="RS256", headers=headers)


def _claims(svc, **changes) -> dict:
    now = int(time.time())
    claims = {"iss": svc.issuer.url, "sub": TRAINER, "aud": AUDIENCE, "iat": now, "exp": now + 300,
              "jti": uuid.uuid4().hex, **changes}
    return {k: v for k, v in claims.items() if v is not None}


def _attacker_key():
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


# -- 1. a check that raises is a refusal like any other ----------------------------------------------


def test_a_credential_check_that_raises_is_refused_recorded_and_answered_without_a_traceback(svc):
    assert _call(svc, svc.issuer.token(TRAINER)) == ("ok", "svc-training")
    for far in (10**12, 10**18):   # year 33715; past what the platform's time functions take
        before = len(_entries(svc))
        kind, message = _call(svc, svc.issuer.token(TRAINER, expires_in=far))
        leaked = "Traceback" in message or ".py" in message
        after = _entries(svc)[before:]
        assert (kind, leaked, len(after)) == ("FlightUnauthenticatedError", False, 1), (kind, leaked, len(after))
        assert after[0]["outcome"] == "denied" and after[0]["who"]["principal"] == "unauthenticated"


# -- 2. refusals of unverified callers: bounded in number and in size ----------------------------------


def _skipped(entry: dict) -> int:
    found = re.search(r"\[(\d+) earlier refusal", entry["decision"]["reasons"][0])
    return int(found.group(1)) if found else 0


def test_unverified_callers_cannot_write_the_ledger_without_bound(flooded):
    svc = flooded
    attempts = 300
    before = len(_entries(svc))
    started = time.monotonic()
    outcomes = {_call(svc, "hello")[0] for _ in range(attempts)}
    elapsed = time.monotonic() - started
    assert outcomes == {"FlightUnauthenticatedError"}            # every one refused, recorded or not
    burst = _entries(svc)[before:]
    assert len(burst) <= BURST + int(elapsed) + 2, (len(burst), elapsed)   # 300 of 300 on main
    time.sleep(1.5)                                              # the bucket refills; the next one is recorded
    _call(svc, "hello")
    after = _entries(svc)[before:]
    assert len(after) == len(burst) + 1
    # Nothing is lost from the count: recorded one by one + counted into a later entry = attempts.
    assert len(after) + sum(_skipped(e) for e in after) == attempts + 1
    # A verified caller's refusals (here a purpose it may not ask for) are each recorded, also now.
    verified = len(_entries(svc))
    for _ in range(3):
        assert _call(svc, svc.issuer.token(TRAINER), purpose=b"treatment", action="lineage_guard.plan")[0] == "FlightUnauthorizedError"
    assert len(_entries(svc)) - verified == 3


def test_a_made_up_issuer_does_not_size_the_ledger_entry(svc):
    before = len(_entries(svc))
    kind, message = _call(svc, _signed(_attacker_key(), _claims(svc, iss="https://x.invalid/" + "A" * 4000)))
    entry = _entries(svc)[before:]
    assert (kind, len(message) < 1000) == ("FlightUnauthenticatedError", True), (kind, len(message))
    assert len(entry) == 1 and len(json.dumps(entry[0])) < 2500, len(json.dumps(entry[0]))   # 5,512 bytes on main


# -- 3. GetSchema and ListFlights --------------------------------------------------------------


def _frames(message: str) -> set[str]:
    return set(re.findall(r'File "([^"]+)"', message))


def test_get_schema_errors_carry_no_server_frames(svc):
    from lineage_guard.service import flightsql as fs

    raw = flight.FlightClient(svc.url, tls_root_certs=svc.tls.pem)
    good = [(b"x-lineage-guard-purpose", b"ai_training"), (b"authorization", f"Bearer {svc.token}".encode())]
    cases = {"no credential": ([(b"x-lineage-guard-purpose", b"ai_training")], "SELECT 1 AS one"),
             "denied statement": (good, "SELECT id FROM people WHERE ssn LIKE '9%'"),
             "hidden table": (good, "SELECT * FROM no_such_table")}
    try:
        before = len(_entries(svc))
        for name, (headers, sql) in cases.items():
            descriptor = flight.FlightDescriptor.for_command(fs.pack(fs.MESSAGES.CommandStatementQuery(query=sql)))
            with pytest.raises(Exception) as refused:   # pyarrow answers these as UNKNOWN
                raw.get_schema(descriptor, flight.FlightCallOptions(headers=headers, timeout=30))
            frames = _frames(str(refused.value))
            assert frames <= {"pyarrow/_flight.pyx", "<lineage-guard>"}, (name, len(frames))   # server.py x3 on main
            assert ".py\"" not in str(refused.value).replace("_flight.pyx", "")
        assert len(_entries(svc)) > before          # the refusals are recorded as for GetFlightInfo
        schema = raw.get_schema(flight.FlightDescriptor.for_command(
            fs.pack(fs.MESSAGES.CommandStatementQuery(query="SELECT id, email FROM people"))),
            flight.FlightCallOptions(headers=good, timeout=30)).schema
        assert schema.names == ["id", "email"]
    finally:
        raw.close()


def test_list_flights_checks_the_credential_and_lists_nothing(svc):
    raw = flight.FlightClient(svc.url, tls_root_certs=svc.tls.pem)
    try:
        before = len(_entries(svc))
        with pytest.raises(flight.FlightUnauthenticatedError):   # ArrowNotImplementedError + traceback on main
            list(raw.list_flights(options=flight.FlightCallOptions(headers=[(b"authorization", b"Bearer hello")])))
        assert len(_entries(svc)) == before + 1
        mine = flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {svc.token}".encode())])
        assert list(raw.list_flights(options=mine)) == []
    finally:
        raw.close()


# -- held on main: guards ------------------------------------------------------------------------


def test_key_sources_named_by_the_token_are_never_used_or_fetched(svc):
    import jwt

    evil = _attacker_key()
    counter = _Counter()
    try:
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(evil.public_key()))
        tokens = {
            "jku": _signed(evil, _claims(svc), kid="evil", jku=f"{counter.url}/jwks.json"),
            "x5u": _signed(evil, _claims(svc), kid="evil", x5u=f"{counter.url}/cert.pem"),
            "embedded jwk, issuer's kid": _signed(evil, _claims(svc), kid=svc.issuer.kid,
                                                  jwk={**public, "kid": svc.issuer.kid}),
        }
        kinds = {name: _call(svc, token)[0] for name, token in tokens.items()}
        assert set(kinds.values()) == {"FlightUnauthenticatedError"}, kinds
        assert len(counter.hits) == 0
    finally:
        counter.httpd.shutdown()


def test_unknown_key_ids_do_not_make_the_server_refetch_the_jwks_per_call(svc):
    assert _call(svc, svc.issuer.token(TRAINER))[0] == "ok"      # the JWKS is cached now
    fetched = len(svc.jwks_hits)
    kinds = {_call(svc, _signed(_attacker_key(), _claims(svc), kid=uuid.uuid4().hex))[0] for _ in range(30)}
    assert kinds == {"FlightUnauthenticatedError"}
    assert len(svc.jwks_hits) - fetched <= 1                     # PyJWKClient's refresh cooldown: 30 s


@pytest.mark.parametrize("case", ["iat a year ahead", "no exp", "no sub", "iat not a number"])
def test_token_times_and_subjects_are_required(svc, case):
    now = int(time.time())
    changes = {"iat a year ahead": {"iat": now + 365 * 86400}, "no exp": {"exp": None}, "no sub": {"sub": None},
               "iat not a number": {"iat": "soon"}}[case]
    token = _signed(svc.issuer.key, _claims(svc, **changes), kid=svc.issuer.kid)
    before = len(_entries(svc))
    assert _call(svc, token)[0] == "FlightUnauthenticatedError"
    assert len(_entries(svc)) == before + 1
