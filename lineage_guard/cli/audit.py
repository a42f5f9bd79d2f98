"""`lineage-guard audit ...`: verify the ledger, read it, answer who saw a column, check receipts, export.

    lineage-guard audit verify [--ledger URL] [--public-key HEX] [--anchor HEAD]  exit 1 on a bad chain
    lineage-guard audit verify --export ledger.jsonl --public-key HEX  offline, no database
    lineage-guard audit log --identity svc-training --since 2026-03-01 [--json]
    lineage-guard audit who-saw public.patients.ssn [--json]
    lineage-guard audit receipt 3f0c...                               exit 1 if it does not verify
    lineage-guard audit export ledger.jsonl
    lineage-guard audit public-key                                    the key auditors pin
    lineage-guard audit new-key PATH                                  a new signing key file (0600)
    lineage-guard audit rotate-key --new-key-file NEW.key             hand the ledger over to a new key
    lineage-guard audit model PATH|sha256:HEX [--json]                which governed data fed a model (attested)

Verification pins keys: any --public-key, LINEAGE_GUARD_LEDGER_PUBLIC_KEY, and this machine's
signing key (LINEAGE_GUARD_LEDGER_SIGNING_KEY_FILE or the state folder's), never the ledger's own.
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

from ..audit import Filters, Ledger, VerifyReport, export_ledger, open_runs, verify_export, who_saw
from ..audit.entry import LedgerError, verify_entry_document
from ..audit.query import auth_method, parse_time
from ..audit.signing import KEY_FILE_ENV, NO_TRUSTED_KEY, Signer, local_signer, trusted_keys, write_key_file
from ..errors import ConfigError
from .common import console
from .common import run_guarded as _guarded

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="The who-saw-what ledger: verify, log, who-saw, receipt, export, public-key, rotate-key.",
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
AnchorOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--anchor",
        help="A head hash published earlier (`audit export` prints it): fail if the chain no longer holds it "
        "(truncated or rewritten). Repeat for several.",
    ),
]
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


def _anchors(anchors: list[str] | None) -> list[str]:
    for anchor in anchors or ():
        if len(anchor.strip()) != 64 or any(c not in "0123456789abcdef" for c in anchor.strip().lower()):
            raise ConfigError(f"--anchor {anchor!r} is not a head hash (64 hex digits, as `audit export` prints)")
    return [a.strip().lower() for a in anchors or ()]


def _report(report: VerifyReport, as_json: bool, what: str, opened: list[dict[str, Any]] = ()) -> None:
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "ok": report.ok,
                    "entries": report.entries,
                    "head": report.head_hash,
                    "key_ids": sorted(report.key_ids),
                    "keys": [{"key_id": k.key_id, "public_key": k.public_key, "since": k.since} for k in report.keys],
                    "trusted_by": report.trusted_by,
                    "open": [{"receipt": e["id"], "run_id": e["body"]["run_id"],
                              "principal": e["body"]["who"]["principal"], "recorded_at": e["recorded_at"],
                              "write": bool(e["body"].get("write"))}
                             for e in opened],
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
        if report.current_key is not None:
            rotated = f" ({len(report.keys) - 1} rotation(s))" if len(report.keys) > 1 else ""
            note = "" if report.trusted_by == report.current_key.key_id else (
                f"; verified through the rotation from your pinned key {report.trusted_by}: pin the current key")
            out.print(Text(f"signed by {report.current_key.key_id}{rotated}{note}"))
        for e in opened:
            who = f"open: receipt {e['id'][:SHORT]} ({e['body']['who']['principal']}, {e['recorded_at'][:19]})"
            err.print(Text(
                f"{who} is a write whose outcome was never recorded (its final entry failed, or the process "
                "died or is still writing): it may have committed; check its target table, `lineage-guard "
                "audit receipt` shows the statement" if e["body"].get("write") else
                f"{who} started a stream that never completed (killed, or still running): it may have delivered "
                "data; `lineage-guard audit receipt` shows what it was allowed to read"))
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
    anchor: AnchorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Check the whole chain: any edit, deletion, insertion, reordering, re-signing or truncation
    after an --anchor is named; exit 1 if bad. Streams left open (killed mid-stream) are listed."""

    def run() -> None:
        anchors = _anchors(anchor)
        if export is not None:
            _report(verify_export(export, public_key or (), anchors=anchors), as_json, str(export))
        else:
            opened = _open(ledger)
            report = opened.verify(public_key or (), anchors)
            _report(report, as_json, "ledger", open_runs(opened.entries()) if report.ok else [])

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
        "auth": auth_method(body),
        # The whole account of how the identity was established: for a service call, the verified issuer,
        # subject, token id digest, expiry and client address (never the token itself).
        "authentication": body["who"].get("auth") or {"method": "asserted"},
        "purpose": body["purpose"],
        "action": body["decision"]["action"],
        "outcome": body["outcome"],
        "rows": body["rows"],
        "tables": body["source"]["tables"],
        "clear": [c["name"] for c in body["columns"] if not c["masked"]],
        "masked": [f"{c['name']}:{c['method']}" for c in body["columns"] if c["masked"]],
        "used": [f"{u['column']}:{u['clause']}" for u in body.get("used", ())],
        "run_id": body["run_id"],
        "supersedes": body.get("supersedes"),
        "write": bool(body.get("write")),
    }


@app.command()
def log(
    ledger: LedgerOpt = None,
    identity: Annotated[str | None, typer.Option("--identity", help="Principal or group.")] = None,
    table: Annotated[str | None, typer.Option("--table", help="schema.table read.")] = None,
    column: Annotated[
        str | None, typer.Option("--column", help="schema.table.column returned (clear or masked) or used to filter.")
    ] = None,
    purpose: Annotated[str | None, typer.Option("--purpose")] = None,
    outcome: Annotated[
        str | None, typer.Option("--outcome", help="success | denied | needs_approval | failed | open.")
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
                "auth",
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
                        r["auth"],
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
        still_open = {e["id"]: bool(e["body"].get("write")) for e in open_runs(_entries(ledger, public_key, True))}
        shown = {still_open[r["receipt"]] for r in rows if r["receipt"] in still_open}
        if False in shown:
            err.print(Text("outcome 'open' on a run's latest entry: a stream that never completed (killed, or "
                           "still running); it may have delivered data"))
        if True in shown:
            err.print(Text("outcome 'open' on a write's latest entry: its outcome was never recorded (its final "
                           "entry failed, or the process died); it may have committed: check its target table"))

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
    """Who received this column (or values derived from it) clear, who masked, who used it to filter:
    runs that returned data (failed or never completed ones too), rows, last time, how they authenticated."""

    def run() -> None:
        parts = column.split(".")
        if len(parts) != 3 or not all(parts):
            raise _usage(f"column must be schema.table.column, got {column!r}")
        seen = who_saw(_entries(ledger, public_key, no_verify), column)
        if as_json:
            typer.echo(json.dumps({k: [s.to_json() for s in v] for k, v in seen.items()}, sort_keys=True))
            return
        titles = {"clear": "saw it clear", "masked": "saw it masked", "filtered": "used it to filter rows"}
        for label, title in titles.items():
            widest = max((len(x.principal) for x in seen[label]), default=1)
            grid = Table(
                *_columns("who", "kind", "auth", "how", "runs", "rows", "last", "purposes", "note",
                          keep={"who": widest}),
                title=Text(f"{column}: {title}"),
            )
            for s in seen[label]:
                grid.add_row(
                    *map(
                        _plain,
                        (
                            s.principal,
                            s.kind,
                            ", ".join(sorted(s.auth)),
                            s.how,
                            s.runs,
                            s.rows,
                            s.last[:19],
                            ", ".join(sorted(s.purposes)),
                            f"{s.incomplete} failed/unfinished" if s.incomplete else "",
                        ),
                    )
                )
            out.print(grid if seen[label] else Text(f"{column}: nobody {title.replace('saw it', 'saw it', 1)}"),
                      highlight=False)

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
    raise ConfigError(NO_TRUSTED_KEY)


@app.command()
def export(
    file: Annotated[Path, typer.Argument(help="Where to write the JSON Lines export (atomically).")],
    ledger: LedgerOpt = None,
    public_key: KeyOpt = None,
) -> None:
    """Verify, then write every entry plus the public key(s) needed to verify the file offline."""

    def run() -> None:
        report = export_ledger(_open(ledger), file, public_key or ())
        out.print(Text(f"exported {report.entries} entries to {file} (head {report.head_hash}); publish the head: "
                       f"`lineage-guard audit verify --anchor {report.head_hash}` then detects a later truncation"))

    _guarded(run)


@app.command("public-key")
def public_key_cmd(
    ledger: LedgerOpt = None,
    all_keys: Annotated[bool, typer.Option("--all", help="Every key the ledger was signed by, oldest first.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Print the ledger's pinned public signing key (what auditors pin) and this machine's, if it has one."""

    def run() -> None:
        own = local_signer()
        try:
            pins = _open(ledger).pinned_keys()
        except LedgerError:  # no ledger yet: this machine's key is what it will pin
            pins = []
        if not pins and own is None:
            raise ConfigError(f"no ledger signing key here: {KEY_FILE_ENV} is unset and the state folder has none "
                              "(the first recorded run creates one)")
        shown = pins if all_keys else pins[-1:]
        if as_json:
            typer.echo(json.dumps({
                "pinned": [{"key_id": k.key_id, "public_key": k.public_key, "since": k.since} for k in shown],
                "local": None if own is None else {"key_id": own.key_id, "public_key": own.public_key,
                                                   "file": own.source},
            }, sort_keys=True))
        else:
            for k in shown:
                out.print(Text(f"{k.public_key}  {k.key_id}  pinned by the ledger since entry #{k.since}"))
            if own is not None and (not pins or own.key_id != pins[-1].key_id):
                out.print(Text(f"{own.public_key}  {own.key_id}  this machine's key ({own.source})"))
        if own is not None and pins and own.key_id != pins[-1].key_id:
            err.print(Text(f"warning: this machine signs with {own.key_id}, not the ledger's {pins[-1].key_id}: "
                           "its runs are refused until it uses the ledger's key (or rotates to its own)"))

    _guarded(run)


@app.command("new-key")
def new_key(
    file: Annotated[Path, typer.Argument(help="Where to write the new Ed25519 private key (PEM, mode 0600).")],
) -> None:
    """Create a ledger signing key file (never overwrites); point LINEAGE_GUARD_LEDGER_SIGNING_KEY_FILE at it."""

    def run() -> None:
        signer = write_key_file(file)
        out.print(Text(f"wrote {file} ({signer.key_id}); public key {signer.public_key}"))

    _guarded(run)


@app.command("rotate-key")
def rotate_key(
    new_key_file: Annotated[
        Path, typer.Option("--new-key-file", help="The new key (created, mode 0600, if it does not exist).")
    ],
    ledger: LedgerOpt = None,
    old_key_file: Annotated[
        Path | None, typer.Option("--old-key-file", help=f"The current key (default: ${KEY_FILE_ENV} or the state folder's).")
    ] = None,
    from_master_key: Annotated[
        bool, typer.Option("--from-master-key", help="The current key is the one older versions derived from "
                           "LINEAGE_GUARD_MASTER_KEY (move a ledger off it).")
    ] = False,
    by: Annotated[str, typer.Option("--as", help="Who rotates (kept in the rotation entry).")] = "operator",
    reason: Annotated[str | None, typer.Option("--reason", help="Why (kept in the rotation entry).")] = None,
    public_key: KeyOpt = None,
) -> None:
    """Hand the ledger over to a new signing key: a rotation entry signed by the current key and endorsed
    by the new one, after verifying the chain. Writers then need the new key; verifiers pin it."""

    def run() -> None:
        if from_master_key and old_key_file is not None:
            raise ConfigError("give --old-key-file or --from-master-key, not both")
        old = (Signer.from_master_key() if from_master_key
               else Signer.from_file(old_key_file) if old_key_file is not None else Signer.from_env(create=False))
        new = Signer.from_file(new_key_file) if new_key_file.exists() else write_key_file(new_key_file)
        opened = Ledger.open(ledger, create=False, signer=old)
        receipt = opened.rotate_key(new, by=by, reason=reason, public_keys=public_key or ())
        out.print(Text(f"rotated: {old.key_id} -> {new.key_id} (receipt {receipt.id}). Now set "
                       f"{KEY_FILE_ENV}={new_key_file} wherever runs are recorded, publish the new public key "
                       f"{new.public_key}, and retire the old key."))

    _guarded(run)


def _register_model() -> None:
    # The model view lives in its own module (attestation, not the chain); `audit model` is where auditors look.
    from .audit_model import model

    app.command("model")(model)


_register_model()
