"""mTLS client certificates against a real `lineage-guard serve` subprocess (TLS, client CA required).

Certificates are made here with `cryptography`: a client CA the server trusts, another CA it does
not, a SPIFFE-style URI SAN mapped to `svc-training` through `service.principals`
(`issuer: client-certificate`), and an expired one. A verified certificate is a credential of its
own: the ledger says `method: mtls` with the certificate's SHA-256. A certificate from another
CA, no certificate and an expired one never get past the handshake; a forged in-band certificate
or proof, an unmapped certificate and a certificate contradicting the bearer token are refused
with a ledger entry.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json

import pytest
from conftest import require
from pyarrow import flight
from service_helpers import RAW_SENSITIVE, client_cert, make_ca, people_service, server_key

from lineage_guard.audit import Ledger
from lineage_guard.client import NotAuthenticated, ServiceError, connect

TRAINER_ID = "spiffe://example.org/ns/ml/sa/trainer"
GREY_ID = "spiffe://example.org/ns/clinic/sa/grey"


@pytest.fixture(scope="module")
def mtls(new_database, tmp_path_factory):
    require("jwt", "service")
    root = tmp_path_factory.mktemp("service-mtls")
    ca = make_ca(root / "ca", "client-ca")

    def by_certificate(text: str) -> str:
        return text.replace("  principals:\n", (
            "  principals:\n"
            f'    - {{identity: svc-training, issuer: client-certificate, subject: "{TRAINER_ID}"}}\n'
            f'    - {{identity: dr-grey, issuer: client-certificate, subject: "{GREY_ID}"}}\n'), 1)

    with people_service(new_database(), root, edit_policy=by_certificate, extra_args=("--client-ca", str(ca.path)),
                        principals=()) as world:
        world.ca = ca
        yield world


def _entries(m) -> list[dict]:
    with Ledger.open(f"sqlite:///{m.home / 'ledger.sqlite'}", create=False) as led:
        return [e["body"] for e in led.entries()]


def _connect(m, cert, **kw):
    return connect(m.url, purpose=kw.pop("purpose", "ai_training"), tls_root_certs=m.tls.pem,
                   client_cert=cert.cert_pem, client_key=cert.key_pem, timeout_s=15, **kw)


def test_a_verified_client_certificate_is_the_credential_and_the_ledger_names_it(mtls):
    cert = client_cert(mtls.ca, uri=TRAINER_ID)
    with _connect(mtls, cert) as s:
        table = s.read_arrow("SELECT id, email, ssn FROM people ORDER BY id")
        with s.stream("SELECT id, email FROM people WHERE id = 1") as batches:
            list(batches)
    cells = {str(v) for col in table.columns for v in col.to_pylist()}
    assert table.num_rows == 3 and not cells & set(RAW_SENSITIVE)
    assert all(v.startswith("tok_") for v in table.column("email").to_pylist())
    with Ledger.open(f"sqlite:///{mtls.home / 'ledger.sqlite'}", create=False) as led:
        check = led.verify_receipt(batches.receipt.receipt_id, server_key(led))
        assert check.ok, check
        auth = check.entry["body"]["who"]["auth"]
    assert check.entry["body"]["who"]["principal"] == "svc-training"
    digest = "sha256:" + hashlib.sha256(cert.der).hexdigest()
    assert auth["method"] == "mtls" and auth["subject"] == TRAINER_ID
    assert auth["token_id_digest"] == digest and auth["tls_peer"] == f"{TRAINER_ID} {digest}"
    assert auth["issuer"].startswith("client CA ") and "client-ca" in auth["issuer"]
    assert dt.datetime.fromisoformat(auth["expires_at"]) > dt.datetime.now(dt.UTC)


def test_the_certificate_picks_the_identity_the_policy_maps_it_to(mtls):
    with _connect(mtls, client_cert(mtls.ca, uri=GREY_ID), purpose="treatment") as s:
        emails = s.read_arrow("SELECT email FROM people ORDER BY id").column("email").to_pylist()
    assert emails[0] == "ada.quill@example.org"   # dr-grey reads in the clear for treatment


@pytest.mark.parametrize("case", ["another CA", "no certificate", "expired"])
def test_the_handshake_refuses_certificates_the_client_ca_did_not_sign_or_that_expired(mtls, tmp_path, case):
    before = len(_entries(mtls))
    token = mtls.issuer.token("system:serviceaccount:ml:trainer")   # a valid token is not enough
    options = {"tls_root_certs": mtls.tls.pem, "timeout_s": 10, "token": token}
    if case == "another CA":
        cert = client_cert(make_ca(tmp_path, "rogue-ca"), uri=TRAINER_ID)   # same SAN, untrusted signer
    elif case == "expired":
        cert = client_cert(mtls.ca, uri=TRAINER_ID, valid_from=dt.timedelta(days=-3), valid_for=dt.timedelta(days=1))
    else:
        cert = None
    if cert is not None:
        options.update(client_cert=cert.cert_pem, client_key=cert.key_pem)
    with pytest.raises(ServiceError), connect(mtls.url, purpose="ai_training", **options) as s:
        s.read_arrow("SELECT email FROM people")
    # gRPC ends the handshake: no call reached the server, so there is nothing it could record.
    assert len(_entries(mtls)) == before


def _raw(m, cert, headers):
    raw = flight.FlightClient(m.url, tls_root_certs=m.tls.pem, cert_chain=cert.cert_pem, private_key=cert.key_pem)
    try:
        return list(raw.do_action(flight.Action("health", b""), flight.FlightCallOptions(headers=headers, timeout=10)))
    finally:
        raw.close()


def test_a_forged_in_band_certificate_or_proof_is_refused_with_a_ledger_entry(mtls):
    from lineage_guard.service.mtls import proof_headers

    mine = client_cert(mtls.ca, uri=TRAINER_ID)
    theirs = client_cert(mtls.ca, uri=GREY_ID)
    purpose = [(b"x-lineage-guard-purpose", b"ai_training")]
    # Connected with my certificate, naming someone else's in-band (with their proof, as if stolen).
    with pytest.raises(flight.FlightUnauthenticatedError, match="names another peer"):
        _raw(mtls, mine, [*proof_headers(theirs.cert_pem, theirs.key_pem), *purpose])
    # My certificate in-band, but a proof made with another key: the caller does not hold it.
    forged = proof_headers(mine.cert_pem, theirs.key_pem)
    with pytest.raises(flight.FlightUnauthenticatedError, match="does not verify"):
        _raw(mtls, mine, [*forged, *purpose])
    # A proof from an hour ago is not replayed.
    import time

    stale = proof_headers(mine.cert_pem, mine.key_pem, now=time.time() - 3600)
    with pytest.raises(flight.FlightUnauthenticatedError, match="older than"):
        _raw(mtls, mine, [*stale, *purpose])
    # Garbage in the certificate header.
    with pytest.raises(flight.FlightUnauthenticatedError, match="base64 DER"):
        _raw(mtls, mine, [(b"x-lineage-guard-client-cert", base64.b64encode(b"not a cert")), *purpose])
    refused = [e for e in _entries(mtls)[-4:]]
    assert [e["outcome"] for e in refused] == ["denied"] * 4
    assert all(e["who"]["auth"]["method"] == "mtls" for e in refused)
    assert all(e["job"]["name"] == "lineage_guard.service.auth" for e in refused)
    assert not any(mine.key_pem.decode()[30:80] in json.dumps(e) for e in refused)


def test_an_unmapped_certificate_without_a_token_gets_nothing(mtls):
    stranger = client_cert(mtls.ca, uri="spiffe://example.org/ns/other/sa/nobody")
    with pytest.raises(ServiceError, match="no identity is mapped to client certificate"), _connect(mtls, stranger) as s:
        s.read_arrow("SELECT id FROM people")
    entry = _entries(mtls)[-1]
    assert entry["outcome"] == "denied" and entry["who"]["auth"]["method"] == "mtls"
    assert entry["who"]["auth"]["subject"] == "spiffe://example.org/ns/other/sa/nobody"
    # A certificate with only a common name is named by it (gRPC's rule), and maps to nothing here.
    with pytest.raises(ServiceError, match="'just-a-cn'"), _connect(mtls, client_cert(mtls.ca, common_name="just-a-cn")) as s:
        s.health()


def test_a_token_and_a_certificate_must_name_the_same_identity(mtls):
    grey_token = mtls.issuer.token("user:grey@clinic.example", email_verified=True)
    trainer_cert = client_cert(mtls.ca, uri=TRAINER_ID)
    with pytest.raises(ServiceError, match="one caller, one identity"), \
            _connect(mtls, trainer_cert, token=grey_token, purpose="treatment") as s:
        s.read_arrow("SELECT email FROM people")
    # The certificate of a stranger is only the transport's gate; the token names the identity.
    stranger = client_cert(mtls.ca, uri="spiffe://example.org/ns/other/sa/nobody")
    with _connect(mtls, stranger, token=mtls.issuer.token("system:serviceaccount:ml:trainer")) as s:
        assert s.read_arrow("SELECT id FROM people").num_rows == 3
    last = [e for e in _entries(mtls) if e["outcome"] == "success"][-1]
    assert last["who"]["auth"]["method"] == "jwt" and last["who"]["auth"]["tls_peer"].startswith(
        "spiffe://example.org/ns/other/sa/nobody sha256:")


def test_adbc_with_a_client_certificate_is_identified_by_the_handshake(mtls):
    require("adbc_driver_flightsql", "dev")
    from adbc_driver_flightsql import DatabaseOptions
    from adbc_driver_flightsql.dbapi import connect as adbc_connect

    cert = client_cert(mtls.ca, uri=TRAINER_ID)
    options = {DatabaseOptions.TLS_ROOT_CERTS.value: mtls.tls.pem.decode(),
               DatabaseOptions.MTLS_CERT_CHAIN.value: cert.cert_pem.decode(),
               DatabaseOptions.MTLS_PRIVATE_KEY.value: cert.key_pem.decode(),
               f"{DatabaseOptions.RPC_CALL_HEADER_PREFIX.value}x-lineage-guard-purpose": "ai_training"}
    with adbc_connect(mtls.url, db_kwargs=options) as conn, conn.cursor() as cur:
        cur.execute("SELECT id, email FROM people ORDER BY id")
        table = cur.fetch_arrow_table()
    assert all(v.startswith("tok_") for v in table.column("email").to_pylist())
    last = [e for e in _entries(mtls) if e["outcome"] == "success"][-1]
    auth = last["who"]["auth"]
    assert auth["method"] == "mtls" and auth["subject"] == TRAINER_ID and "token_id_digest" not in auth
    assert "digest unknown" in auth["tls_peer"]


def test_the_client_needs_no_token_with_a_certificate_but_a_certificate_needs_its_key(mtls):
    cert = client_cert(mtls.ca, uri=TRAINER_ID)
    with pytest.raises(Exception, match="client_key"):
        connect(mtls.url, purpose="ai_training", tls_root_certs=mtls.tls.pem, client_cert=cert.cert_pem)
    with pytest.raises(NotAuthenticated):   # a bad bearer token is not rescued by a good certificate
        with connect(mtls.url, purpose="ai_training", tls_root_certs=mtls.tls.pem, token="hello",
                     client_cert=cert.cert_pem, client_key=cert.key_pem) as s:
            s.health()
