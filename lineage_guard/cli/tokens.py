"""`lineage-guard tokens ...`: hashed API tokens for `lineage-guard serve`.

    lineage-guard tokens create --identity svc-training [--label nightly] [--ttl-days 90]   # prints the token once
    lineage-guard tokens list
    lineage-guard tokens revoke 3f0c9a1b2c3d
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import console, run_guarded

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="API tokens for lineage-guard serve (only their hashes are stored).")
out = console()
err = console(stderr=True)
StoreOpt = Annotated[Path | None, typer.Option("--store", help="Token store (default: $LINEAGE_GUARD_API_TOKENS or the state folder).")]


@app.command()
def create(
    identity: Annotated[str, typer.Option("--identity", "-i", help="The declared identity the token authenticates as.")],
    label: Annotated[str, typer.Option("--label", help="A note to tell tokens apart.")] = "",
    ttl_days: Annotated[float | None, typer.Option("--ttl-days", help="Expire after this many days.")] = None,
    store: StoreOpt = None,
) -> None:
    """Create a token; it is printed once (stdout) and only its sha256 is kept."""
    from ..service.tokens import TokenStore

    def go():
        token = TokenStore(store).create(identity, label=label, ttl_days=ttl_days)
        out.print(token, highlight=False, markup=False)
        err.print(f"token for {identity} created; it is shown once, store it as a secret", highlight=False, markup=False)

    run_guarded(go)


@app.command("list")
def list_tokens(store: StoreOpt = None) -> None:
    """Token ids, identities, labels and expiry (never a token)."""
    from ..service.tokens import TokenStore

    def go():
        for t in TokenStore(store).list():
            out.print(f"{t.id}  {t.identity}  {t.label or '-'}  created {t.created_at}  expires {t.expires_at or 'never'}",
                      highlight=False, markup=False)

    run_guarded(go)


@app.command()
def revoke(token_id: Annotated[str, typer.Argument(help="The token id (the part after lgt_).")], store: StoreOpt = None) -> None:
    """Revoke a token at once."""
    from ..service.tokens import TokenStore

    def go():
        if not TokenStore(store).revoke(token_id):
            err.print(f"no token {token_id}", highlight=False, markup=False)
            raise typer.Exit(1)
        out.print(f"revoked {token_id}", highlight=False, markup=False)

    run_guarded(go)
