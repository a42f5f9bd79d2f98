"""`lineage-guard lineage ...`: the OpenLineage outbox: ship it, export it, see what is queued.

    lineage-guard lineage status [--json]                     queued / shipped / rejected counts, last error
    lineage-guard lineage flush [--retry-rejected]            ship queued events now (oldest first); exit 1 if any stay
    lineage-guard lineage export events.jsonl --run-id ID     one run's events as JSON Lines
    lineage-guard lineage export events.jsonl --since 2026-11-01 --until 2026-11-02
    lineage-guard lineage prune --older-than-days 30         drop shipped events (queued ones are kept)

Shipping uses the openlineage-python client configured the standard way
(OPENLINEAGE_URL, openlineage.yml, OPENLINEAGE__TRANSPORT__*).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from ..fileio import atomic_write
from ..lineage.outbox import Outbox
from ..lineage.shipping import lineage_disabled, ship_pending, transport_configured
from .common import console

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="The OpenLineage outbox: status, flush, export.")
out = console()
err = console(stderr=True)
NO_TRANSPORT = ("no OpenLineage transport is configured: set OPENLINEAGE_URL (e.g. http://localhost:5000 for "
                "Marquez), an openlineage.yml or OPENLINEAGE__TRANSPORT__TYPE; events stay in the outbox")


def _when(text: str | None, option: str) -> datetime | None:
    if not text:
        return None
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not an ISO 8601 date or date-time (e.g. 2026-11-01T08:00:00+00:00)",
                                 param_hint=option) from None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


@app.command()
def status(as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False) -> None:
    """How many events are queued, shipped and rejected, and why shipping last stopped."""
    info = Outbox().status()
    info["transport_configured"] = transport_configured() and not lineage_disabled()
    if as_json:
        typer.echo(json.dumps(info, sort_keys=True))
        return
    out.print(f"queued {info['queued']}, shipped {info['shipped']}, rejected {info['rejected']}", highlight=False)
    if info["oldest_queued"]:
        out.print(f"oldest queued event: {info['oldest_queued']} ({info['attempts']} attempt(s), "
                  f"last error: {info['last_error'] or 'none'})", highlight=False)
    if not info["transport_configured"]:
        out.print(NO_TRANSPORT, highlight=False)


@app.command()
def flush(retry_rejected: Annotated[bool, typer.Option(
        "--retry-rejected", help="Queue events the backend rejected (4xx) again first.")] = False) -> None:
    """Ship every queued event now, oldest first, stopping at the first failure; exit 1 if any stay queued."""
    box = Outbox()
    if lineage_disabled():
        err.print("OPENLINEAGE_DISABLED=true: nothing shipped", highlight=False)
        raise typer.Exit(1)
    if not transport_configured():
        err.print(f"error: {NO_TRANSPORT} ({box.counts()['queued']} queued)", highlight=False)
        raise typer.Exit(1)
    if retry_rejected:
        box.requeue_rejected()
    result = ship_pending(box)
    out.print(f"shipped {result.shipped}, {result.remaining} still queued", highlight=False)
    if result.remaining:
        err.print(f"shipping stopped: {result.error or 'another flush is running'}; run flush again later",
                  highlight=False)
        raise typer.Exit(1)


@app.command()
def export(
    path: Annotated[Path, typer.Argument(help="JSON Lines file to write ('-' for stdout).")],
    run_id: Annotated[str | None, typer.Option("--run-id", help="Only this run's events.")] = None,
    since: Annotated[str | None, typer.Option("--since", help="Events at or after this time (ISO 8601, UTC if no offset).")] = None,
    until: Annotated[str | None, typer.Option("--until", help="Events before this time.")] = None,
) -> None:
    """Write stored events (shipped or not) as JSON Lines, in order; the file appears whole or not at all."""
    events = Outbox().events(run_id=run_id, since=_when(since, "--since"), until=_when(until, "--until"))
    if not events:
        err.print("error: no stored event matches (check --run-id / --since / --until)", highlight=False)
        raise typer.Exit(1)
    text = "".join(json.dumps(e, sort_keys=True) + "\n" for e in events)
    if str(path) == "-":
        typer.echo(text, nl=False)
        return
    target = path.resolve()
    atomic_write(target, text.encode())
    out.print(f"wrote {len(events)} event(s) to {target}", highlight=False)


@app.command()
def prune(older_than_days: Annotated[float, typer.Option(
        "--older-than-days", help="Delete shipped events queued more than this many days ago.")] = 30.0) -> None:
    """Keep the outbox small: delete old shipped events; queued and rejected events are never deleted."""
    if older_than_days < 0:
        raise typer.BadParameter("must be zero or more", param_hint="--older-than-days")
    out.print(f"deleted {Outbox().prune(older_than_days)} shipped event(s)", highlight=False)
