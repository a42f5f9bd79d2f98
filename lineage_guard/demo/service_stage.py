"""The demo's service stage: the same two identities through `lineage-guard serve` on 127.0.0.1.

A server subprocess alone holds the database URL, the master key and the ledger signing key; this
process reads as each identity with nothing but a generated API token (and the server's self-signed
certificate to trust). Then two spoofing attempts: the training service's token asking to be the
clinician (a header naming another identity), and a forged token. Both are refused and leave a
`denied` ledger entry on the server.

Example:
    >>> from lineage_guard.demo.service_stage import run_service_stage              # doctest: +SKIP
    >>> run_service_stage(console, source_url, policy_path, query, home)          # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import queue
import secrets
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import yaml
from rich.console import Console

# Which identity reads for which purpose through the service (the same pair as the embedded stage).
READERS = [("AI training service", "svc-training", "ai_training"), ("Clinician", "dr-grey", "treatment")]


@dataclass
class ServedReads:
    """What the stage saw: the first rows each identity got, the refusals, the server's ledger entries."""

    previews: dict[str, list[dict]]
    refusals: list[str]
    ledger_entries: int
    auth_methods: dict[str, str]


def service_policy(policy_path: Path, target: Path) -> Path:
    """The demo policy plus a `service:` section: API tokens, each identity's purposes."""
    doc = yaml.safe_load(policy_path.read_text())
    doc["service"] = {"audience": "lineage-guard-demo", "api_tokens": True,
                      "purposes": {who: [purpose] for _, who, purpose in READERS}}
    target.write_text(yaml.safe_dump(doc, sort_keys=False))
    return target


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (its own root) and its key, made for this run only."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lineage-guard-demo")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(hours=2))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / "server.pem", folder / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    return cert_path, key_path


class _Server:
    """`lineage-guard serve` as a subprocess on 127.0.0.1, port chosen by the OS."""

    def __init__(self, policy: Path, source: str, cert: Path, key: Path, home: Path, tokens: Path):
        env = dict(os.environ, LINEAGE_GUARD_HOME=str(home))
        cmd = [sys.executable, "-m", "lineage_guard.cli", "serve", "--policy", str(policy), "--source", source,
               "--tls-cert", str(cert), "--tls-key", str(key), "--host", "127.0.0.1", "--port", "0",
               "--tokens", str(tokens), "--grace", "5"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.errors: list[str] = []
        lines: queue.Queue = queue.Queue()

        def pump(stream, keep: bool) -> None:
            for line in stream:
                if keep:
                    self.errors.append(line)
                lines.put(line)

        threading.Thread(target=pump, args=(self.proc.stdout, False), daemon=True).start()
        threading.Thread(target=pump, args=(self.proc.stderr, True), daemon=True).start()
        self.url = ""
        ready = False
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (self.url and ready):
            try:
                line = lines.get(timeout=1).strip()
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            if "listening on" in line:
                self.url = line.rsplit(" ", 1)[1]
            ready = ready or line.endswith(": ready")
        if not (self.url and ready):
            self.stop()
            from ..errors import LineageGuardError

            raise LineageGuardError("the demo's service did not start: " + "".join(self.errors)[-2000:])

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)


def run_service_stage(console: Console, source: str, policy_path: Path, query: str, home: Path) -> ServedReads:
    """Start the service, read as both identities with generated tokens, show two spoofing attempts refused."""
    from ..audit import Ledger
    from ..client import NotAuthenticated, ServiceError, connect
    from ..errors import AccessDenied
    from ..service.tokens import TokenStore

    home.mkdir(parents=True, exist_ok=True)
    policy = service_policy(policy_path, home / "policy.yaml")
    cert, key = self_signed(home / "tls")
    store_path = home / "api_tokens.json"
    store_path.unlink(missing_ok=True)   # a fresh run issues fresh tokens
    store = TokenStore(store_path)
    tokens = {who: store.create(who) for _, who, _ in READERS}   # shown to nobody: only their hashes are stored
    console.print("[bold]Service mode[/bold]: starting lineage-guard serve on 127.0.0.1 (TLS, generated API tokens; "
                  "the server alone holds the database URL and the keys) ...", highlight=False)
    server = _Server(policy, source, cert, key, home / "server-home", store_path)
    previews: dict[str, list[dict]] = {}
    refusals: list[str] = []
    try:
        console.print(f"service listening on {server.url}", highlight=False)
        ca = cert.read_bytes()
        for label, who, purpose in READERS:
            with connect(server.url, purpose=purpose, token=tokens[who], tls_root_certs=ca) as s:
                table = s.read_arrow(f"{query} LIMIT 3")
            previews[label] = table.to_pylist()
            email = str(table.column("email")[0].as_py())
            shown = repr(email) if email.startswith("tok_") else "clear (as the policy allows for treatment)"
            console.print(f"[bold]{label}[/bold] through the service ({who}, {purpose}): {table.num_rows} rows, "
                          f"first email {shown}", highlight=False)
        # Spoofing 1: the training service's own (valid) token, asking to be the clinician.
        with connect(server.url, purpose="treatment", token=tokens["svc-training"], tls_root_certs=ca) as s:
            try:
                _read_as(s, query, [(b"x-lineage-guard-identity", b"dr-grey")])
                raise AssertionError("the service accepted a header naming another identity")
            except (ServiceError, AccessDenied) as exc:
                refusals.append(f"svc-training's token naming dr-grey: {_first_line(exc)}")
        # Spoofing 2: a forged API token.
        forged = "lgt_" + secrets.token_hex(6) + "_" + secrets.token_urlsafe(32)
        with connect(server.url, purpose="treatment", token=forged, tls_root_certs=ca) as s:
            try:
                s.read_arrow(f"{query} LIMIT 3")
                raise AssertionError("the service accepted a forged token")
            except NotAuthenticated as exc:
                refusals.append(f"a forged token: {_first_line(exc)}")
        for line in refusals:
            console.print(f"[bold]Refused[/bold] {line}", highlight=False)
    finally:
        code = server.stop()
    if code != 0:
        from ..errors import LineageGuardError

        raise LineageGuardError(f"the demo's service exited with {code}: " + "".join(server.errors)[-2000:])
    with Ledger.open(f"sqlite:///{home / 'server-home' / 'ledger.sqlite'}", create=False) as led:
        entries = [e["body"] for e in led.entries()]
        first_key = [next(led.entries())["public_key"]]
        report = led.verify(first_key)
    if not report.ok:
        from ..audit import LedgerError

        raise LedgerError(f"the service's ledger does not verify (first bad {report.problem})")
    methods = {b["who"]["principal"]: (b["who"].get("auth") or {}).get("method", "asserted") for b in entries}
    denied = sum(1 for b in entries if b["outcome"] == "denied")
    console.print(f"service ledger: {len(entries)} entries, chain verified, {denied} denied; identities established "
                  f"as {', '.join(f'{p}={m}' for p, m in sorted(methods.items()))} (embedded runs say 'asserted')",
                  highlight=False)
    return ServedReads(previews, refusals, len(entries), methods)


def _read_as(session, query: str, extra: list[tuple[bytes, bytes]]) -> None:
    """One read whose call headers carry `extra` too: what a client trying to choose its identity sends."""
    from pyarrow import flight

    from ..client.session import _error
    from ..service import flightsql as fs

    descriptor = flight.FlightDescriptor.for_command(fs.pack(fs.MESSAGES.CommandStatementQuery(query=query)))
    try:
        info = session._client.get_flight_info(descriptor, session._options(extra))
        for endpoint in info.endpoints:
            session._client.do_get(endpoint.ticket, session._options(extra)).read_all()
    except flight.FlightError as exc:
        raise _error(exc) from None


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:200]
