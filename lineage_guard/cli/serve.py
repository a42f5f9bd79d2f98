"""`lineage-guard serve`: the governed reader as an Arrow Flight SQL service (see lineage_guard/service).

    lineage-guard serve --policy policy.yaml --source postgresql://reader@db/clinic \\
        --tls-cert server.pem --tls-key server.key --host 0.0.0.0 --port 31337
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import err, out, run_guarded


def serve(
    policy: Annotated[Path, typer.Option("--policy", "-p", help="Policy YAML file (with a service: section).")],
    source: Annotated[str, typer.Option("--source", "-s", envvar="LINEAGE_GUARD_SOURCE",
                                        help="PostgreSQL URL (default: $LINEAGE_GUARD_SOURCE). Only the server holds it.")],
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port (0: any free port; the chosen one is printed).")] = 0,
    tls_cert: Annotated[Path | None, typer.Option("--tls-cert", help="Server certificate chain (PEM).")] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", help="Server private key (PEM).")] = None,
    client_ca: Annotated[Path | None, typer.Option("--client-ca", help="Require client certificates signed by this CA (mTLS).")] = None,
    insecure_plaintext: Annotated[bool, typer.Option("--insecure-plaintext", help="No TLS (loopback only, development).")] = False,
    grace: Annotated[float, typer.Option("--grace", help="Seconds open streams get to finish on SIGTERM.")] = 30.0,
    environment: Annotated[str | None, typer.Option("--environment", help="Source environment tag.")] = None,
    tokens: Annotated[Path | None, typer.Option("--tokens", help="API token store (default: $LINEAGE_GUARD_API_TOKENS or the state folder).")] = None,
    console_port: Annotated[int | None, typer.Option("--console-port", help="Also serve the web console (HTTPS with the same certificate) on this port.")] = None,
) -> None:
    """Serve governed reads over Arrow Flight SQL: every call authenticated, masked per the policy."""
    from ..extras import needs_extra

    def go():
        with needs_extra("lineage-guard serve", "service"):
            from ..service.run import build_server, serve_until_signalled

            server = build_server(policy_path=policy, source=source, host=host, port=port, tls_cert=tls_cert,
                                  tls_key=tls_key, client_ca=client_ca, insecure_plaintext=insecure_plaintext,
                                  environment=environment, token_store=tokens)
        scheme = "grpc+tls" if tls_cert else "grpc+tcp"
        out.print(f"lineage-guard serve: listening on {scheme}://{host}:{server.port}", highlight=False, markup=False)
        if console_port is not None:
            with needs_extra("lineage-guard serve --console-port", "console"):
                from ..console.run import console_beside
            out.print(f"lineage-guard serve: console on {console_beside(policy, host, console_port, tls_cert, tls_key)}",
                      highlight=False, markup=False)

        def announce(message: str) -> None:
            err.print(f"lineage-guard serve: {message}", highlight=False, markup=False)

        serve_until_signalled(server, grace_s=grace, announce=announce)

    run_guarded(go)
