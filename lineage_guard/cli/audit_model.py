"""`lineage-guard audit model PATH|sha256:...`: the auditor's question about a model, on one screen.

Finds the model's attestation (`--attestation FILE`, else the state folder's `attestations/`),
verifies it (signature with the pinned key, receipts, chain up to the attested head, and the
model's files when PATH is given), and shows which tables and columns fed the model, clear or
masked and how, by whom, for what purpose, under which policy and approvals, when.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from .. import paths
from ..errors import ConfigError
from .common import EXIT_ERROR, console, print_json
from .common import run_guarded as _guarded

out = console()
err = console(stderr=True)


def _payload(envelope: dict[str, Any]) -> dict[str, Any] | None:
    try:
        return json.loads(base64.b64decode(envelope["payload"]))
    except Exception:  # noqa: BLE001 - an unreadable file in the folder is skipped, never trusted
        return None


def find_attestation(model: str, digest: str | None) -> Path:
    """The newest attestation in the state folder whose model (or one of its files) has `digest`."""
    folder = paths.state_file("attestations")
    found = []
    for path in sorted(folder.glob("*.dsse.json")) if folder.is_dir() else ():
        try:
            statement = _payload(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError):
            continue
        if not isinstance(statement, dict):
            continue
        predicate = statement.get("predicate") or {}
        digests = {(predicate.get("model") or {}).get("digest")}
        digests |= {"sha256:" + str((s.get("digest") or {}).get("sha256")) for s in statement.get("subject") or ()}
        if digest in digests:
            found.append((str(predicate.get("attestedAt")), path))
    if not found:
        raise ConfigError(f"no attestation for {model} in {folder}; give one with --attestation FILE "
                          "(`lineage-guard attest` writes it)")
    return max(found)[1]


def summary(statement: dict[str, Any]) -> dict[str, Any]:
    """The auditor's view of a verified statement (names, treatments, digests; no value)."""
    predicate = statement["predicate"]
    return {
        "model": predicate["model"],
        "files": [{"name": s["name"], "sha256": s["digest"]["sha256"]} for s in statement["subject"]],
        "attestedAt": predicate["attestedAt"],
        "ledgerHead": predicate["ledger"]["head"],
        "training": predicate.get("training"),
        "datasets": [{
            "name": d["name"], "sha256": d["digest"]["sha256"], "receiptId": d["receiptId"],
            "principal": d["identity"]["principal"], "kind": d["identity"]["kind"],
            "auth": d["identity"]["auth"].get("method"), "purpose": d["purpose"], "policyDigest": d["policyDigest"],
            "tables": d["source"]["tables"], "source": d["source"]["namespace"], "approvalId": d["approvalId"],
            "rows": d["rows"], "startedAt": d["startedAt"], "endedAt": d["endedAt"],
            "columns": [{"name": c["name"], "sources": c["sources"], "treatment": c["treatment"],
                         "method": c["method"], "classifications": c.get("classifications", [])}
                        for c in d["columns"]],
            "reidentification": d.get("reidentification"),
        } for d in predicate["datasets"]],
    }


def model(
    target: Annotated[str, typer.Argument(metavar="PATH|sha256:HEX", help="The model (file or folder) or its digest.")],
    attestation: Annotated[Path | None, typer.Option("--attestation", help="The attestation to read "
                                                     "(default: the newest one for this model in the state folder).")] = None,
    ledger: Annotated[str | None, typer.Option("--ledger", help="sqlite:///path, a file path or postgresql://...")] = None,
    public_key: Annotated[list[str] | None, typer.Option("--public-key", help="A trusted ledger public key (hex).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Which production tables and columns fed a model: clear vs masked and how, who, why, when (verified)."""

    def run() -> None:
        from ..attest.attestation import verify
        from ..attest.manifest import digest_tree, manifest_digest

        path = None if target.startswith("sha256:") else Path(target)
        digest = target.lower() if path is None else manifest_digest(digest_tree(path))
        found = attestation or find_attestation(target, digest)
        result = verify(found, model=path, ledger=ledger, public_keys=public_key or ())
        if result.statement is None:
            doc: dict[str, Any] = {"verified": False, "attestation": str(found)}
        else:
            doc = {"verified": result.ok, "attestation": str(found), **summary(result.statement)}
        doc["failures"] = [{"check": f.check, "message": f.message} for f in result.failures]
        if as_json:
            print_json(doc)
        else:
            _show(doc)
        if not result.ok:
            raise typer.Exit(EXIT_ERROR)

    _guarded(run)


def _show(doc: dict[str, Any]) -> None:
    for failure in doc["failures"]:
        err.print(f"FAIL {failure['check']}: {failure['message']}", markup=False, highlight=False)
    if "model" not in doc:
        return
    verdict = "verified" if doc["verified"] else "NOT VERIFIED"
    out.print(Text(f"model {doc['model']['digest']} ({doc['model']['files']} file(s)), attested "
                   f"{doc['attestedAt']}, {verdict} against the ledger up to #{doc['ledgerHead']['entries']}"))
    for d in doc["datasets"]:
        out.print(Text(f"\n{d['name']}  sha256 {d['sha256'][:16]}...  receipt {d['receiptId']}"))
        out.print(Text(f"  read by {d['principal']} ({d['kind']}, {d['auth']}) for {d['purpose']}, "
                       f"{d['rows']} rows from {', '.join(d['tables'])} at {d['source']}, "
                       f"{d['startedAt']} .. {d['endedAt']}"))
        out.print(Text(f"  policy {d['policyDigest']}; approval {d['approvalId'] or '-'}"))
        if d["reidentification"]:
            out.print(Text("  " + reidentification_line(d["reidentification"])))
        table = Table(box=box.SIMPLE, show_header=True)
        for name in ("column", "from", "classification", "treatment", "how"):
            table.add_column(name)
        for c in d["columns"]:
            table.add_row(Text(c["name"]), Text(", ".join(c["sources"])), Text(", ".join(c["classifications"]) or "-"),
                          Text(c["treatment"]), Text(c["method"] or "-"))
        out.print(table)


def reidentification_line(r: dict[str, Any]) -> str:
    """One line: the floor the purpose required and what the masked output achieved (sizes, no value)."""
    text = (f"re-identification: k-anonymity {r['k']} (required {r['requiredK'] if r['requiredK'] is not None else '-'})"
            f" over ({', '.join(r['quasiIdentifiers']) or 'no quasi-identifier left'}), counted in {r['counted']}")
    if r["sensitive"]:
        text += f"; l-diversity of {', '.join(r['sensitive'])} {r['l']} (required {r['requiredL']})"
    return text
