"""Run the console with uvicorn: in the foreground (`lineage-guard console`) or in a thread beside
the Flight SQL server (`lineage-guard serve --console-port N`).

Example:
    >>> server, thread = start_in_thread(app, host="127.0.0.1", port=8710)   # doctest: +SKIP
    >>> server.should_exit = True; thread.join()                               # doctest: +SKIP
"""

from __future__ import annotations

import threading
from pathlib import Path

from ..errors import ConfigError

LOOPBACK = ("127.0.0.1", "::1", "localhost")


def open_console(*, policy_path: Path, ledger_url: str | None, approvals_url: str | None,
                 insecure_http: bool, host: str, tls: bool, public_url: str | None = None,
                 public_keys: tuple[str, ...] = (), create_ledger: bool = False, attestations: Path | None = None):
    """The console app over the ledger and approval store the CLI would use (same URLs, same defaults)."""
    from ..approvals.store import ApprovalStore
    from ..audit.ledger import Ledger
    from ..policy import load_policy
    from .app import build_app

    if not tls and not (insecure_http and host in LOOPBACK):
        raise ConfigError("the console sets Secure cookies: serve it over TLS (--tls-cert/--tls-key, or behind a "
                          "TLS proxy with --public-url https://...), or use --insecure-http on a loopback address")
    policy = load_policy(policy_path)
    if not policy.console.issuer:
        raise ConfigError(f"{policy_path} has no console.issuer / console.client_id: the console signs people in "
                          "with OpenID Connect; see docs/console.md")
    behind_tls_proxy = bool(public_url and public_url.startswith("https://"))
    return build_app(policy, approvals=ApprovalStore.open(approvals_url, config=policy.approvals),
                     ledger=Ledger.open(ledger_url, create=create_ledger), secure_cookies=tls or behind_tls_proxy,
                     public_url=public_url, public_keys=public_keys, attestations=attestations)


def end_sessions_of(*, policy_path: Path, approvals_url: str | None, identity: str) -> int:
    """End every console session of `identity` in the approval store the console would open; returns how many."""
    from ..approvals.store import ApprovalStore
    from ..policy import load_policy
    from .sessions import SessionRegistry

    policy = load_policy(policy_path)
    if not identity.strip():
        raise ConfigError("--end-sessions needs an identity, as the policy's console.users names it")
    store = ApprovalStore.open(approvals_url, config=policy.approvals)
    return SessionRegistry(store, policy.console.session_minutes, policy.console.grants).end_all(identity)


def _server(app, host: str, port: int, tls_cert: Path | None = None, tls_key: Path | None = None):
    import uvicorn

    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                            ssl_certfile=str(tls_cert) if tls_cert else None,
                            ssl_keyfile=str(tls_key) if tls_key else None, lifespan="off")
    return uvicorn.Server(config)


def serve_console(app, *, host: str, port: int, tls_cert: Path | None = None, tls_key: Path | None = None) -> None:
    """Serve until SIGINT/SIGTERM (uvicorn's handlers)."""
    _server(app, host, port, tls_cert, tls_key).run()


def start_in_thread(app, *, host: str, port: int, tls_cert: Path | None = None, tls_key: Path | None = None):
    """Serve in a daemon thread (no signal handlers there: the caller's process owns them); returns
    (server, thread) once the socket listens. Stop with `server.should_exit = True`."""
    server = _server(app, host, port, tls_cert, tls_key)
    server.install_signal_handlers = lambda: None  # uvicorn < 0.29 spelling; newer ones skip off-main-thread
    thread = threading.Thread(target=server.run, name="lineage-guard-console", daemon=True)
    thread.start()
    while not server.started and thread.is_alive():
        thread.join(0.05)
    if not server.started:
        raise ConfigError(f"the console could not listen on {host}:{port} (in use, or not an address here)")
    return server, thread


def bound_port(server) -> int:
    """The port a started server listens on (useful with port 0)."""
    return server.servers[0].sockets[0].getsockname()[1]


def console_beside(policy_path: Path, host: str, port: int, tls_cert: Path | None, tls_key: Path | None) -> str:
    """For `lineage-guard serve --console-port`: the console in a thread of the serving process, over the
    same ledger and approval store the governed reader writes (its environment's URLs); returns its URL."""
    app = open_console(policy_path=policy_path, ledger_url=None, approvals_url=None, insecure_http=True, host=host,
                       tls=bool(tls_cert), create_ledger=True)
    server, _ = start_in_thread(app, host=host, port=port, tls_cert=tls_cert, tls_key=tls_key)
    return f"{'https' if tls_cert else 'http'}://{host}:{bound_port(server)}"
