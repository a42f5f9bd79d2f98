"""Real parts for the service tests: a TLS pair, an OIDC-style issuer over HTTP, a server subprocess.

Everything listens on 127.0.0.1 on an ephemeral port. Keys are generated per test session and
never written outside the test's temporary folder.
"""

from __future__ import annotations

import datetime as dt
import http.server
import ipaddress
import json
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

HERE = Path(__file__).resolve().parent
AUDIENCE = "lineage-guard-test"


@dataclass(frozen=True)
class TlsPair:
    cert: Path
    key: Path
    pem: bytes


def _self_signed(folder: Path, name: str, extensions: list[tuple[x509.ExtensionType, bool]]):
    """A self-signed EC certificate valid for a day (from 5 minutes ago), written as folder/name.pem."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"lineage-guard-test-{name}")])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical)
    cert = builder.sign(key, hashes.SHA256())
    folder.mkdir(parents=True, exist_ok=True)
    pem = cert.public_bytes(serialization.Encoding.PEM)
    (folder / f"{name}.pem").write_bytes(pem)
    return key, cert, pem


def make_tls(folder: Path, name: str = "server") -> TlsPair:
    """A self-signed certificate for 127.0.0.1 / localhost (its own root), with its key."""
    key, _cert, pem = _self_signed(folder, name, [
        (x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
         False),
        (x509.BasicConstraints(ca=True, path_length=None), True),
    ])
    (folder / f"{name}.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                          serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
    return TlsPair(folder / f"{name}.pem", folder / f"{name}.key", pem)


@dataclass(frozen=True)
class CertAuthority:
    """A client-certificate CA made by the test: its key, certificate and PEM file."""

    key: object
    cert: x509.Certificate
    path: Path
    pem: bytes


@dataclass(frozen=True)
class ClientCert:
    cert_pem: bytes
    key_pem: bytes
    der: bytes


def make_ca(folder: Path, name: str) -> CertAuthority:
    key, cert, pem = _self_signed(folder, name, [
        (x509.BasicConstraints(ca=True, path_length=0), True),
        (x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                       data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                       encipher_only=False, decipher_only=False), True),
    ])
    return CertAuthority(key, cert, folder / f"{name}.pem", pem)


def client_cert(ca: CertAuthority, *, uri: str | None = None, common_name: str = "client",
                valid_from: dt.timedelta = dt.timedelta(minutes=-5), valid_for: dt.timedelta = dt.timedelta(days=1),
                ) -> ClientCert:
    """A client certificate signed by `ca`: a SPIFFE-style URI SAN if given, else the common name only.
    `valid_from`/`valid_for` are offsets from now (an expired one: valid_from=-2 days, valid_for=1 day)."""
    key = ec.generate_private_key(ec.SECP256R1())
    start = dt.datetime.now(dt.UTC) + valid_from
    builder = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca.cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(start + valid_for)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), False)
    )
    if uri:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), False)
    cert = builder.sign(ca.key, hashes.SHA256())
    return ClientCert(cert.public_bytes(serialization.Encoding.PEM),
                      key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()),
                      cert.public_bytes(serialization.Encoding.DER))


class Issuer:
    """An OIDC-style token issuer: its JWKS served over HTTP on 127.0.0.1, tokens signed by its RSA key."""

    def __init__(self):
        import jwt

        self._jwt = jwt
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = uuid.uuid4().hex[:8]
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        self.jwks = {"keys": [{**public, "kid": self.kid, "use": "sig", "alg": "RS256"}]}
        body = json.dumps(self.jwks).encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path != "/jwks.json":
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.jwks_url = f"{self.url}/jwks.json"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def public_pem(self) -> bytes:
        return self.key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo)

    def token(self, subject: str, *, audience=AUDIENCE, issuer: str | None = None, expires_in: int = 300,
              not_before: int | None = None, key=None, algorithm: str = "RS256", kid: str | None = None,
              **claims) -> str:
        now = int(time.time())
        payload = {"iss": issuer or self.url, "sub": subject, "aud": audience, "iat": now, "exp": now + expires_in,
                   "jti": uuid.uuid4().hex, **claims}
        if not_before is not None:
            payload["nbf"] = now + not_before
        return self._jwt.encode(payload, key if key is not None else self.key, algorithm=algorithm,
                                headers={"kid": kid or self.kid})

    def close(self) -> None:
        self.httpd.shutdown()


def service_policy(issuer_url: str, jwks_url: str, extra: str = "") -> str:
    return f"""
version: 1
identities:
  svc-training: {{kind: service, groups: [training-jobs]}}
  dr-grey: {{kind: human, groups: [clinicians]}}
  writer: {{kind: service, groups: [data-eng]}}
  limited: {{kind: service, groups: [training-jobs]}}
  hasty: {{kind: service, groups: [training-jobs]}}
require_declared_identities: true
groups: [training-jobs, clinicians, data-eng]
purposes: [ai_training, treatment, maintenance]
classifications:
  public.people.email: email
  public.people.ssn: national_id
  public.people.full_name: person_name
rules:
  - {{groups: [clinicians], purposes: [treatment], action: clear}}
  - {{classifications: [email], groups: [training-jobs], action: mask, mask: {{method: tokenize}}}}
  - {{classifications: [national_id], groups: [training-jobs], action: mask, mask: {{method: partial, params: {{keep_last: 4}}}}}}
writes: {{allowed_groups: [data-eng], approvals: [{{environments: [default], tables: [public.people]}}]}}
detection: {{enabled: false}}
service:
  audience: {AUDIENCE}
  issuers:
    - {{issuer: "{issuer_url}", jwks_url: "{jwks_url}", algorithms: [RS256]}}
  principals:
    - {{identity: svc-training, issuer: "{issuer_url}", subject: "system:serviceaccount:ml:trainer"}}
    - {{identity: dr-grey, issuer: "{issuer_url}", subject_pattern: "user:grey@*", claims: {{email_verified: "true"}}}}
  purposes: {{svc-training: [ai_training], dr-grey: [treatment], writer: [maintenance], limited: [ai_training], hasty: [ai_training]}}
  limits: {{concurrent_streams: 32}}
  identity_limits: {{limited: {{concurrent_streams: 1, max_rows: 2}}, hasty: {{statement_timeout_s: 1}}}}
{extra}
"""


RAW = [
    (1, "Ada Quill", "ada.quill@example.org", "900-12-3456", "gold"),
    (2, "Bo Fenwick", "bo.fenwick@example.org", "900-65-4321", "free"),
    (3, "Cy Marrow", "cy.marrow@example.org", "900-11-2222", "gold"),
]
RAW_SENSITIVE = [v for row in RAW for v in row[1:4]]


def seed_people(url: str, extra_rows: int = 0) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS people")
        conn.execute("CREATE TABLE people (id int primary key, full_name text, email text, ssn text, plan text)")
        conn.execute("DROP TABLE IF EXISTS audit_notes")
        conn.execute("CREATE TABLE audit_notes (id int, note text)")
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO people VALUES (%s, %s, %s, %s, %s)", RAW)
            if extra_rows:
                cur.execute("INSERT INTO people SELECT g, 'Name ' || g, 'user' || g || '@example.org', "
                            "'900-00-' || lpad(mod(g, 10000)::text, 4, '0'), 'free' "
                            "FROM generate_series(4, %s) g", (extra_rows + 3,))


@dataclass
class ServerProcess:
    proc: subprocess.Popen
    url: str
    home: Path
    stderr_lines: list[str] = field(default_factory=list)

    def stop(self, sig=None, timeout: float = 30) -> int:
        import signal as _signal

        if self.proc.poll() is None:
            self.proc.send_signal(sig or _signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)


def start_server(policy_path: Path, source_url: str, tls: TlsPair, home: Path, master_key: str,
                 extra_args: tuple[str, ...] = (), grace: float = 5, env: dict[str, str] | None = None,
                 ) -> ServerProcess:
    """`lineage-guard serve` as a subprocess; returns once it printed its URL and 'ready'.
    `env` adds to its environment (e.g. OPENLINEAGE_URL of a receiver on 127.0.0.1)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("LINEAGE_GUARD_", "OPENLINEAGE_"))}
    base.update(LINEAGE_GUARD_HOME=str(home), LINEAGE_GUARD_MASTER_KEY=master_key, **(env or {}))
    env = base
    cmd = [sys.executable, "-m", "lineage_guard.cli", "serve", "--policy", str(policy_path), "--source", source_url,
           "--tls-cert", str(tls.cert), "--tls-key", str(tls.key), "--port", "0", "--grace", str(grace), *extra_args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines: queue.Queue = queue.Queue()
    server = ServerProcess(proc, "", home)

    def pump(stream, tag):
        for line in stream:
            if tag == "err":
                server.stderr_lines.append(line)
            lines.put((tag, line))

    threading.Thread(target=pump, args=(proc.stdout, "out"), daemon=True).start()
    threading.Thread(target=pump, args=(proc.stderr, "err"), daemon=True).start()
    deadline = time.monotonic() + 60
    ready = False
    while time.monotonic() < deadline and not (server.url and ready):
        try:
            _tag, line = lines.get(timeout=1)
        except queue.Empty:
            if proc.poll() is not None:
                break
            continue
        if "listening on" in line:
            server.url = line.strip().rsplit(" ", 1)[1]
        if line.strip().endswith(": ready"):
            ready = True
    if not (server.url and ready):
        proc.kill()
        raise RuntimeError("the server did not start: " + "".join(server.stderr_lines)[-3000:])
    return server


def server_key(ledger) -> list[str]:
    """The public key the server signed its first entry with, pinned for verifying the rest: the test
    process holds none of the server's keys (a separate state folder, and in service mode, no secret)."""
    return [next(ledger.entries())["public_key"]]


@contextmanager
def people_service(source_url: str, root: Path, *, rows: int = 3, extra_policy: str = "",
                   edit_policy: Callable[[str], str] | None = None, extra_args: tuple[str, ...] = (),
                   env: dict[str, str] | None = None, principals: tuple[str, ...] = ("svc-training", "limited"),
                   ) -> Iterator[SimpleNamespace]:
    """`people` seeded with `rows` rows, served by `lineage-guard serve` (TLS, `service_policy`) from `root`.

    The service tests' common world: a real server subprocess over TLS on the real PostgreSQL, with a
    JWKS issuer over HTTP on 127.0.0.1. `extra_policy` is appended to `service_policy`, `edit_policy`
    rewrites the whole text (e.g. to add principals), `extra_args` go to `lineage-guard serve`.
    Yields url, tls, home, db, root, policy (its path), server, issuer, `tokens` (an API token per
    principal) and `token` (the first principal's, None with no principals). Stops the server and the
    issuer on exit, also when the server does not start.

        with people_service(new_database(), tmp_path, principals=("writer",)) as svc:
            connect(svc.url, purpose="maintenance", token=svc.token, tls_root_certs=svc.tls.pem)
    """
    from conftest import TEST_MASTER_KEY

    from lineage_guard.service.tokens import TokenStore

    seed_people(source_url, extra_rows=rows - 3)
    tls = make_tls(root / "tls")
    issuer = Issuer()
    text = service_policy(issuer.url, issuer.jwks_url, extra_policy)
    policy = root / "policy.yaml"
    policy.write_text(edit_policy(text) if edit_policy else text)
    home = root / "home"
    home.mkdir()
    try:
        server = start_server(policy, source_url, tls, home, TEST_MASTER_KEY, extra_args=extra_args, env=env)
    except BaseException:
        issuer.close()
        raise
    try:
        store = TokenStore(home / "api_tokens.json")
        tokens = {who: store.create(who) for who in principals}
        yield SimpleNamespace(url=server.url, tls=tls, home=home, db=source_url, root=root, policy=policy,
                              server=server, issuer=issuer, tokens=tokens,
                              token=tokens[principals[0]] if principals else None)
    finally:
        server.stop()
        issuer.close()


def ledger_entries(home: Path) -> list[dict]:
    """Every entry of the server's ledger in `home` (id, body, ...), in order."""
    from lineage_guard.audit import Ledger

    with Ledger.open(f"sqlite:///{home / 'ledger.sqlite'}", create=False) as led:
        return list(led.entries())
