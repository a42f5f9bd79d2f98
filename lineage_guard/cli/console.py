"""`lineage-guard console`: the web console over the ledger and approval stores (see lineage_guard/console).

    lineage-guard console --policy policy.yaml --tls-cert console.pem --tls-key console.key --port 8710
    lineage-guard console --policy policy.yaml --insecure-http --port 8710     # loopback development only
    lineage-guard console --policy policy.yaml --end-sessions dana             # sign dana out everywhere, then exit
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import out, run_guarded


def console(
    policy: Annotated[Path, typer.Option("--policy", "-p", help="Policy YAML file (with a console: section).")],
    ledger: Annotated[str | None, typer.Option("--ledger", help="Ledger URL (default: $LINEAGE_GUARD_LEDGER_URL, then the state folder).")] = None,
    store: Annotated[str | None, typer.Option("--store", help="Approval store URL (default: $LINEAGE_GUARD_APPROVALS_URL, then the policy, then the state folder).")] = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port.")] = 8710,
    tls_cert: Annotated[Path | None, typer.Option("--tls-cert", help="Certificate chain (PEM).")] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", help="Private key (PEM).")] = None,
    public_url: Annotated[str | None, typer.Option("--public-url", help="The URL people use (behind a proxy); the OpenID redirect goes to it.")] = None,
    insecure_http: Annotated[bool, typer.Option("--insecure-http", help="Plain HTTP, cookies without Secure (loopback only, development).")] = False,
    public_key: Annotated[list[str] | None, typer.Option("--public-key", help="Ledger public key to verify receipts against (repeat).")] = None,
    attestations: Annotated[Path | None, typer.Option("--attestations", help="Folder of attestation envelopes for the Models page (default: the state folder's attestations/, where `lineage-guard attest` keeps them).")] = None,
    end_sessions: Annotated[str | None, typer.Option("--end-sessions", help="End every console session of this identity (kept in the approval store) and exit; serves nothing.")] = None,
) -> None:
    """Serve the web console: approvals inbox, who-saw-what timeline, receipts (OpenID Connect sign-in)."""
    from ..errors import ConfigError
    from ..extras import needs_extra

    def go():
        with needs_extra("lineage-guard console", "console"):
            from ..console.run import open_console, serve_console

            if end_sessions is not None:
                from ..console.run import end_sessions_of

                ended = end_sessions_of(policy_path=policy, approvals_url=store, identity=end_sessions)
                out.print(f"ended {ended} console session(s) of {end_sessions}", highlight=False, markup=False)
                return
            if bool(tls_cert) != bool(tls_key):
                raise ConfigError("give both --tls-cert and --tls-key (PEM files)")
            app = open_console(policy_path=policy, ledger_url=ledger, approvals_url=store, insecure_http=insecure_http,
                               host=host, tls=bool(tls_cert), public_url=public_url, public_keys=tuple(public_key or ()),
                               attestations=attestations)
            scheme = "https" if tls_cert else "http"
            out.print(f"lineage-guard console: listening on {scheme}://{host}:{port}", highlight=False, markup=False)
            serve_console(app, host=host, port=port, tls_cert=tls_cert, tls_key=tls_key)

    run_guarded(go)
