"""Run `GovernedFlightServer` until SIGTERM/SIGINT, then shut down gracefully.

On a signal the server stops accepting calls (they get UNAVAILABLE), lets open streams finish for
`grace_s`, then fails the rest cleanly (each gets a failed ledger entry and a FAIL lineage event;
a client's sink is aborted, never half-written) and stops.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path

from ..errors import ConfigError

LOOPBACK = ("127.0.0.1", "::1", "localhost")
STALLED_CLIENT_S = 10.0


def read_pem(path: Path | None, what: str) -> bytes | None:
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} {path}: {exc.strerror}") from None


def build_server(*, policy_path: Path, source: str, host: str, port: int, tls_cert: Path | None,
                 tls_key: Path | None, client_ca: Path | None, insecure_plaintext: bool,
                 environment: str | None = None, token_store: Path | None = None):
    from ..policy import load_policy
    from .server import GovernedFlightServer
    from .tokens import TokenStore

    if bool(tls_cert) != bool(tls_key):
        raise ConfigError("give both --tls-cert and --tls-key (PEM files)")
    if not tls_cert and not (insecure_plaintext and host in LOOPBACK):
        raise ConfigError("the service speaks TLS: give --tls-cert and --tls-key (plaintext only with "
                          "--insecure-plaintext on a loopback address, for local development)")
    if client_ca and not tls_cert:
        raise ConfigError("--client-ca (mTLS) needs TLS: give --tls-cert and --tls-key too")
    policy = load_policy(policy_path)
    scheme = "grpc+tls" if tls_cert else "grpc+tcp"
    certs = [(read_pem(tls_cert, "TLS certificate"), read_pem(tls_key, "TLS key"))] if tls_cert else None
    return GovernedFlightServer(f"{scheme}://{host}:{port}", policy, source, tls_certificates=certs,
                                client_ca=read_pem(client_ca, "client CA"), environment=environment,
                                token_store=TokenStore(token_store) if token_store else None)


def serve_until_signalled(server, *, grace_s: float, announce: Callable[[str], None]) -> None:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server.warm()
    announce("ready")
    while not stop.wait(0.2):   # the main thread stays in Python so the handlers run
        pass
    announce(f"draining: {server.limiter.active()} open stream(s) get {grace_s:g} s to finish")
    server.drain(grace_s)
    # Streams still open now fail at their next batch (a failed ledger entry each). A client that stopped
    # reading never lets its stream get there; pyarrow's shutdown() would wait for it forever.
    stopper = threading.Thread(target=server.shutdown, daemon=True)
    stopper.start()
    stopper.join(grace_s + STALLED_CLIENT_S)
    if stopper.is_alive():
        announce(f"{server.limiter.active()} stream(s) of stalled clients left unrecorded as failed; "
                 "their lineage runs stay open")
        server.close_stores()
        os._exit(1)
    server.close_stores()
    announce("stopped")
