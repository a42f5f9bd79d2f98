"""`lineage-guard approvals ...`: see, approve and deny approval requests; retry failed notifications.

    lineage-guard approvals list [--status pending] [--json]
    lineage-guard approvals show 3f0c9a1b2c3d4e5f [--json]
    lineage-guard approvals approve 3f0c9a1b2c3d4e5f --as dana [--note "ticket DATA-12"]
    lineage-guard approvals deny 3f0c9a1b2c3d4e5f --as dana [--note "use staging"]
    lineage-guard approvals notify --retry

Every command takes `--store URL` (default: $LINEAGE_GUARD_APPROVALS_URL, then the state folder).
The requester can never approve or deny their own request, however the name is spelled
(kind prefixes, case, whitespace and Unicode forms are normalised before comparing).
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Column, Table
from rich.text import Text

from ..approvals import ApprovalRequest, ApprovalStore, retry_failed
from .common import console
from .common import run_guarded as _guarded

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Approval requests: list, show, approve, deny, notify.")
out = console()
err = console(stderr=True)

StoreOpt = Annotated[str | None, typer.Option(
    "--store", help="sqlite:///path, a file path or postgresql://... "
                    "(default: $LINEAGE_GUARD_APPROVALS_URL, then the state folder).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
AsOpt = Annotated[str, typer.Option("--as", help="Who decides (never the requester).")]
NoteOpt = Annotated[str | None, typer.Option("--note", help="Why; kept with the decision.")]


def _when(req: ApprovalRequest, attr: str) -> str:
    value = getattr(req, attr)
    return value.isoformat(timespec="seconds") if value else ""


def _notify_summary(req: ApprovalRequest) -> str:
    if not req.notifiers:
        return "-"
    failed = req.notify_failed
    return f"failed: {', '.join(failed)}" if failed else "sent"


@app.command("list")
def list_(
    status: Annotated[str | None, typer.Option(
        "--status", help="pending | approved | denied | expired | used")] = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Requests, newest first."""
    def run() -> None:
        requests = ApprovalStore.open(store).list(status=status)
        if as_json:
            typer.echo(json.dumps([r.to_json() for r in requests], sort_keys=True))
            return
        if not requests:
            out.print(f"no {status + ' ' if status else ''}approval requests", highlight=False)
            return
        table = Table("status", "requester", "purpose", "environment", "expires", "decided by", "notified")
        # The id is what an approver copies: never wrapped or cut, whatever the terminal width.
        table.columns.insert(0, Column("id", no_wrap=True, min_width=16))
        for r in requests:
            table.add_row(*map(Text, (r.id, r.status, r.requester, r.purpose, r.environment,
                                      _when(r, "expires_at"), r.approver or "", _notify_summary(r))))
        out.print(table)
    _guarded(run)


@app.command()
def show(request_id: str, store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    """One request in full: why, who asked from where, the statement's shape, the decision."""
    def run() -> None:
        req = ApprovalStore.open(store).get(request_id)
        if as_json:
            typer.echo(json.dumps(req.to_json(), sort_keys=True))
            return
        table = Table("field", "value", show_header=False)
        rows = [
            ("id", req.id), ("status", req.status), ("requester", req.requester), ("purpose", req.purpose),
            ("source", f"{req.namespace}/{req.database} ({req.environment})"),
            ("reasons", "\n".join(req.reasons)),
            ("context", "\n".join(f"{k}={v}" for k, v in sorted(req.context.items()))),
            ("statement", req.statement_shape or "(not shown: could not be parsed to remove its literals)"),
            ("statement sha256", req.statement_hash), ("fingerprint", req.fingerprint),
            ("parameters", _parameters(req)),
            ("requesting run", req.run or "any run of the requester (none named one)"),
            ("created", _when(req, "created_at")), ("expires", _when(req, "expires_at")),
            ("single use", "yes" if req.single_use else "no (until expiry)"),
            ("decided by", req.approver or ""), ("decided", _when(req, "decided_at")), ("note", req.note or ""),
            ("used", f"{req.uses} time(s)" + (f", last {_when(req, 'used_at')}" if req.used_at else "")),
            ("notified", "\n".join(f"{k}: {v}" for k, v in sorted(req.notify_status.items())) or "-"),
        ]
        for name, value in rows:
            table.add_row(name, Text(value))  # Text: a statement like `a[1]` is not Rich markup
        out.print(table)
        if req.status == "pending":
            out.print(f"approve: {req.approve_command}\ndeny:    {req.deny_command}", highlight=False, markup=False)
    _guarded(run)


def _parameters(req: ApprovalRequest) -> str:
    """Value-free: an approval binds to the values, the store knows only their count, types and digest."""
    count = int(req.parameters.get("count", 0) or 0)
    if not count:
        return "none"
    return (f"{count} value(s) ({', '.join(req.parameters.get('types', []))}); only these exact values are covered "
            f"(keyed digest {str(req.parameters.get('digest', ''))[:16]}...)")


def _decide(verb: str, request_id: str, approver: str, note: str | None, store: str | None) -> None:
    def run() -> None:
        opened = ApprovalStore.open(store)
        req = (opened.approve if verb == "approve" else opened.deny)(request_id, approver, note)
        out.print(f"request {req.id} {req.status} by {req.approver}", highlight=False, markup=False)
    _guarded(run)


@app.command()
def approve(request_id: str, approver: AsOpt, note: NoteOpt = None, store: StoreOpt = None) -> None:
    """Approve a pending request (it then covers that exact statement, plan, parameter values, identity,
    purpose, source and requesting run)."""
    _decide("approve", request_id, approver, note, store)


@app.command()
def deny(request_id: str, approver: AsOpt, note: NoteOpt = None, store: StoreOpt = None) -> None:
    """Deny a pending request (blocks that exact statement, plan and parameter values until it expires)."""
    _decide("deny", request_id, approver, note, store)


@app.command()
def notify(
    retry: Annotated[bool, typer.Option("--retry", help="Re-send failed notifications of pending requests.")] = False,
    store: StoreOpt = None,
) -> None:
    """Re-send notifications that failed (notifier down, 5xx, env var unset); exit 1 if any still fail."""
    def run() -> None:
        if not retry:
            raise typer.BadParameter("say --retry to re-send failed notifications of pending requests")
        retried = retry_failed(ApprovalStore.open(store))
        still = [r for r in retried if r.notify_failed]
        for r in retried:
            out.print(f"request {r.id}: " + ", ".join(f"{k} {v}" for k, v in sorted(r.notify_status.items())),
                      highlight=False, markup=False)
        out.print(f"{len(retried)} request(s) retried, {len(still)} still failing", highlight=False)
        if still:
            raise typer.Exit(1)
    _guarded(run)
