"""`lineage-guard audit ...`: verify the ledger, read it, answer who saw a column, check receipts, export.

    lineage-guard audit verify [--ledger URL] [--public-key HEX]      exit 1 on a bad chain
    lineage-guard audit verify --export ledger.jsonl --public-key HEX  offline, no database
    lineage-guard audit log --identity svc-training --since 2026-03-01 [--json]
    lineage-guard audit who-saw public.patients.ssn [--json]
    lineage-guard audit receipt 3f0c...                               exit 1 if it does not verify
    lineage-guard audit export ledger.jsonl
    lineage-guard audit keys                                          the public key(s) auditors pin

Verification pins keys: the one derived from LINEAGE_GUARD_MASTER_KEY and any --public-key.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.markup import escape
from rich.table import Column, Table
from rich.text import Text

from ..audit import Filters, Ledger, VerifyReport, export_ledger, verify_export, who_saw
from ..audit.entry import verify_entry_document
from ..audit.query import parse_time
from ..audit.signing import signing_keys, trusted_keys
from ..errors import ConfigError
from .common import console
from .common import run_guarded as _guarded

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="The who-saw-what ledger: verify, log, who-saw, receipt, export.",
)
out = console()
err = console(stderr=True)

LedgerOpt = Annotated[
    str | None,
    typer.Option(
        "--ledger",
        help="sqlite:///path, a file path or postgresql://... (default: $LINEAGE_GUARD_LEDGER_URL, then the state folder).",
    ),
]
KeyOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--public-key",
        help="A trusted ledger public key (hex, repeat); the master key's is trusted when set.",
    ),
]
SHORT = 8  # receipt ids are shown like short git hashes; `audit receipt` accepts a unique prefix
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
NoVerifyOpt = Annotated[
    bool,
    typer.Option("--no-verify", help="Read without verifying the chain first (e.g. to inspect a bad one)."),
]


def _plain(value: Any) -> Text:
    # Ledger text is data, never markup: a principal named "[red]" must print as itself.
    return Text(str(value))


def _open(url: str | None) -> Ledger:
    # Readers never create: a mistyped --ledger must fail, not verify an empty new ledger.
    return Ledger.open(url, create=False)


def _entries(url: str | None, public_keys: list[str] | None, no_verify: bool) -> list[dict[str, Any]]:
    """The ledger's entries, after verifying the chain: an audit answer from a tampered ledger would mislead."""
    opened = _open(url)
    if not no_verify:
        report = opened.verify(public_keys or ())
        if not report.ok:
            raise ConfigError(
                f"the ledger does not verify (first bad {report.problem}); see `lineage-guard audit verify`, "
                "or pass --no-verify to read it anyway"
            )
    return list(opened.entries())


def _report(report: VerifyReport, as_json: bool, what: str) -> None:
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "ok": report.ok,
                    "entries": report.entries,
                    "head": report.head_hash,
                    "key_ids": sorted(report.key_ids),
                    "first_bad": None
                    if report.ok
                    else {
                        "position": report.problem.position,
                        "id": report.problem.entry_id,
                        "reason": report.problem.reason,
                    },
                },
                sort_keys=True,
            )
        )
    elif report.ok:
        out.print(
            f"[green]ok[/green]: {escape(what)}: {report.entries} entries verify; head {report.head_hash}",
            highlight=False,
        )
    else:
        err.print(
            f"[red]BAD[/red]: {escape(what)}: first bad {escape(str(report.problem))}; "
            f"the {report.entries} entries before it verify",
            highlight=False,
        )
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def verify(
    ledger: LedgerOpt = None,
    public_key: KeyOpt = None,
    export: Annotated[
        Path | None, typer.Option("--export", help="Verify an exported file instead (offline).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Check the whole chain: any edit, deletion, insertion or reordering is named; exit 1 if bad."""

    def run() -> None:
        if export is not None:
            _report(verify_export(export, public_key or ()), as_json, str(export))
        else:
            opened = _open(ledger)
            _report(opened.verify(public_key or ()), as_json, "ledger")

    _guarded(run)


def _columns(*names: str, keep: dict[str, int] | None = None) -> list[Column]:
    # Never truncate: other cells fold, and `keep` columns (names, receipt ids: what a reader copies)
    # get the width of their longest value so they stay on one line.
    keep = keep or {}
    return [Column(name, overflow="fold", no_wrap=name in keep, min_width=keep.get(name)) for name in names]


def _row(entry: dict[str, Any]) -> dict[str, Any]:
    body = entry["body"]
    return {
        "seq": entry["seq"],
        "receipt": entry["id"],
        "recorded_at": entry["recorded_at"],
        "principal": body["who"]["principal"],
        "kind": body["who"]["kind"],
        "purpose": body["purpose"],
        "action": body["decision"]["action"],
        "outcome": body["outcome"],
        "rows": body["rows"],
        "tables": body["source"]["tables"],
        "clear": [c["name"] for c in body["columns"] if not c["masked"]],
        "masked": [f"{c['name']}:{c['method']}" for c in body["columns"] if c["masked"]],
        "run_id": body["run_id"],
        "supersedes": body.get("supersedes"),
    }


@app.command()
def log(
    ledger: LedgerOpt = None,
    identity: Annotated[str | None, typer.Option("--identity", help="Principal or group.")] = None,
    table: Annotated[str | None, typer.Option("--table", help="schema.table read.")] = None,
    column: Annotated[
        str | None, typer.Option("--column", help="schema.table.column returned (clear or masked).")
    ] = None,
    purpose: Annotated[str | None, typer.Option("--purpose")] = None,
    outcome: Annotated[
        str | None, typer.Option("--outcome", help="success | denied | needs_approval | failed.")
    ] = None,
    since: Annotated[str | None, typer.Option("--since", help="ISO date or time (UTC if no offset).")] = None,
    until: Annotated[str | None, typer.Option("--until", help="ISO date or time (UTC if no offset).")] = None,
    public_key: KeyOpt = None,
    no_verify: NoVerifyOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """List entries, oldest first, after verifying the chain (exit 1 if it does not verify)."""

    def run() -> None:
        filters = Filters(
            identity,
            table,
            column,
            purpose,
            outcome,
            parse_time(since) if since else None,
            _until(until) if until else None,
        )
        rows = [_row(e) for e in _entries(ledger, public_key, no_verify) if filters.matches(e)]
        if as_json:
            for row in rows:
                typer.echo(json.dumps(row, sort_keys=True))
            return
        # The terminal view is a summary; --json and `audit receipt ID` give every column, method and table.
        grid = Table(
            *_columns(
                "#",
                "when (UTC)",
                "who",
                "purpose",
                "outcome",
                "rows",
                "clear/masked",
                "receipt",
                keep={
                    "when (UTC)": 16,
                    "who": max((len(r["principal"]) for r in rows), default=3),
                    "receipt": SHORT,
                },
            ),
            box=box.SIMPLE_HEAD,
        )
        for r in rows:
            ended = r["outcome"] + ("*" if r["supersedes"] else "")
            grid.add_row(
                *map(
                    _plain,
                    (
                        r["seq"],
                        r["recorded_at"][:16].replace("T", " "),
                        r["principal"],
                        r["purpose"],
                        ended,
                        r["rows"],
                        f"{len(r['clear'])}/{len(r['masked'])}",
                        r["receipt"][:SHORT],
                    ),
                )
            )
        out.print(grid)
        out.print(
            f"{len(rows)} entries"
            + (
                " (* supersedes an earlier entry of the same run)"
                if any(r["supersedes"] for r in rows)
                else ""
            ),
            highlight=False,
        )

    _guarded(run)


def _until(text: str):
    """`--until 2026-03-01` includes that whole day."""
    moment = parse_time(text)
    return moment + timedelta(days=1) - timedelta(microseconds=1) if len(text.strip()) == 10 else moment


@app.command("who-saw")
def who_saw_cmd(
    column: Annotated[str, typer.Argument(help="schema.table.column")],
    ledger: LedgerOpt = None,
    public_key: KeyOpt = None,
    no_verify: NoVerifyOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Who received this column (or values derived from it) clear, and who masked: runs, rows, last time."""

    def run() -> None:
        parts = column.split(".")
        if len(parts) != 3 or not all(parts):
            raise _usage(f"column must be schema.table.column, got {column!r}")
        seen = who_saw(_entries(ledger, public_key, no_verify), column)
        if as_json:
            typer.echo(json.dumps({k: [s.to_json() for s in v] for k, v in seen.items()}, sort_keys=True))
            return
        for label in ("clear", "masked"):
            widest = max((len(x.principal) for x in seen[label]), default=1)
            grid = Table(
                *_columns("who", "kind", "how", "runs", "rows", "last", "purposes", keep={"who": widest}),
                title=Text(f"{column}: saw it {label}"),
            )
            for s in seen[label]:
                grid.add_row(
                    *map(
                        _plain,
                        (
                            s.principal,
                            s.kind,
                            s.how,
                            s.runs,
                            s.rows,
                            s.last[:19],
                            ", ".join(sorted(s.purposes)),
                        ),
                    )
                )
            out.print(grid if seen[label] else Text(f"{column}: nobody saw it {label}"), highlight=False)

    _guarded(run)


def _usage(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    return typer.Exit(1)


def _resolve(ledger: Ledger, receipt_id: str) -> str:
    """The full id for a unique prefix of at least SHORT characters; else the id as given."""
    if len(receipt_id) < SHORT or ledger.store.row(receipt_id) is not None:
        return receipt_id
    matches = [e["id"] for e in ledger.entries() if e["id"].startswith(receipt_id)]
    return matches[0] if len(matches) == 1 else receipt_id


@app.command()
def receipt(
    receipt_id: Annotated[str, typer.Argument(metavar="ID", help="The receipt id a governed call returned.")],
    ledger: LedgerOpt = None,
    public_key: KeyOpt = None,
    entry_file: Annotated[
        Path | None,
        typer.Option(
            "--entry",
            help="Verify a saved entry (this command's output) offline instead of reading the ledger.",
        ),
    ] = None,
) -> None:
    """Print one entry and verify it (hash, signature, pinned key); exit 1 if it does not verify."""

    def run() -> None:
        if entry_file is not None:
            _offline_receipt(receipt_id, entry_file, public_key or ())
            return
        opened = _open(ledger)
        full = _resolve(opened, receipt_id)
        check = opened.verify_receipt(full, public_key or ())
        if check.entry is not None:
            typer.echo(json.dumps(check.entry, indent=2, sort_keys=True, ensure_ascii=False))
        if not check.ok:
            err.print(f"[red]BAD[/red]: receipt {escape(full)}: {escape(check.reason)}", highlight=False)
            raise typer.Exit(1)
        superseded = [e["id"] for e in opened.entries() if e["body"].get("supersedes") == full]
        note = f" (superseded by {superseded[0]})" if superseded else ""
        err.print(
            f"[green]ok[/green]: receipt {escape(full)} verifies (key {check.entry['key_id']}){escape(note)}",
            highlight=False,
        )

    _guarded(run)


def _offline_receipt(receipt_id: str, path: Path, public_keys: list[str] | tuple[str, ...]) -> None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the entry in {path}: {type(exc).__name__}") from None
    reason = verify_entry_document(doc, trusted_keys(tuple(public_keys)) or _no_key())
    if reason is None and not (isinstance(doc.get("id"), str) and doc["id"].startswith(receipt_id)):
        reason = "the saved entry is for another receipt id"
    if reason is not None:
        err.print(f"[red]BAD[/red]: receipt {escape(receipt_id)}: {escape(reason)}", highlight=False)
        raise typer.Exit(1)
    err.print(
        f"[green]ok[/green]: receipt {escape(doc['id'])} verifies offline (key {doc['key_id']})",
        highlight=False,
    )


def _no_key() -> dict[str, str]:
    raise ConfigError("verifying offline needs the ledger's public key (--public-key HEX) or the master key")


@app.command()
def export(
    file: Annotated[Path, typer.Argument(help="Where to write the JSON Lines export (atomically).")],
    ledger: LedgerOpt = None,
    public_key: KeyOpt = None,
) -> None:
    """Verify, then write every entry plus the public key(s) needed to verify the file offline."""

    def run() -> None:
        report = export_ledger(_open(ledger), file, public_key or ())
        out.print(Text(f"exported {report.entries} entries to {file} (head {report.head_hash})"))

    _guarded(run)


@app.command()
def keys(as_json: JsonOpt = False) -> None:
    """Print the ledger's public signing key(s) derived from the master key: what auditors pin."""

    def run() -> None:
        found = signing_keys()
        if as_json:
            typer.echo(json.dumps([{"version": v, "key_id": k, "public_key": p} for v, k, p in found]))
            return
        for version, key_id, public in found:
            out.print(Text(f"master v{version}  {key_id}  {public}"))

    _guarded(run)
