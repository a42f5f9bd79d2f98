"""Check one governed dataset file against the ledger: the file names its receipt, the ledger vouches for it.

A file passes when its footer carries lineage_guard provenance, the receipt it names is an
authentic success entry (signed by a pinned key), that entry supersedes the `open` intent entry
the file names (same id and hash), belongs to the same run, and records this file's sha256.
The predicate record is built from the verified ledger entry, not from the file: the footer
only says where to look.

Example:
    >>> record, problems = check_dataset("patients.parquet", Ledger.open())   # doctest: +SKIP
    >>> problems
    []
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from . import files
from .provenance import ProvenanceError, read_provenance


def expand(paths: Sequence[str | os.PathLike]) -> list[str]:
    """Dataset arguments (paths or fsspec URIs) as file names: a folder stands for the Parquet files under it."""
    out: list[str] = []
    for given in paths:
        name = files.name_of(given)
        if files.is_dir(name):
            out.extend(files.parquet_under(name))
        else:
            out.append(name)
    return out


def treatment(column: dict[str, Any]) -> dict[str, Any]:
    """A ledger entry's column as the predicate names it."""
    return {"name": column["name"], "sources": list(column.get("sources") or ()),
            "treatment": "masked" if column.get("masked") else "clear",
            "method": column.get("method"), "keyId": column.get("key_id"),
            "classifications": list(column.get("labels") or ())}


def reidentification(measured: dict[str, Any]) -> dict[str, Any]:
    """The purpose's re-identification floor as the extract measured it (column names and class sizes only)."""
    return {"quasiIdentifiers": list(measured.get("quasi_identifiers") or ()),
            "sensitive": list(measured.get("sensitive") or ()), "counted": measured.get("counted", "rows"),
            "rows": measured.get("rows", 0), "classes": measured.get("classes", 0),
            "k": measured.get("k"), "l": measured.get("l"),
            "requiredK": measured.get("required_k"), "requiredL": measured.get("required_l"),
            "smallestClasses": [{"size": c["size"], "classes": c["classes"]}
                                for c in measured.get("smallest_classes") or ()]}


def check_dataset(path: str | os.PathLike, ledger: Any, public_keys: Sequence[str] = ()
                  ) -> tuple[dict[str, Any] | None, list[str]]:
    """(the predicate's record for this file or None, the problems found; empty when it passes).

    `path` is a local path or an fsspec URI (`file://`, `memory://`, `s3://`...)."""
    name = files.name_of(path)
    if not files.is_file(name):
        return None, [f"dataset {name}: no such file"]
    try:
        prov = read_provenance(name)
    except ProvenanceError as exc:
        return None, [f"dataset {exc}"]
    if prov is None:
        return None, [(f"dataset {name}: no lineage_guard provenance in its Parquet metadata "
                       "(it was not written by a governed read)")]
    digest = files.sha256(name)
    receipt_id = str(prov.get("receipt_id"))
    check = ledger.verify_receipt(receipt_id, public_keys)
    if not check.ok:
        return None, [f"dataset {name}: receipt {receipt_id}: {check.reason}"]
    entry = check.entry
    body = entry["body"]
    problems = []
    intent = prov.get("ledger_entry") or {}
    if body.get("outcome") != "success":
        problems.append(f"dataset {name}: receipt {receipt_id} records outcome {body.get('outcome')!r}, "
                        "not a successful read")
    if body.get("run_id") != prov.get("run_id"):
        problems.append(f"dataset {name}: receipt {receipt_id} belongs to another run than the file names")
    if body.get("supersedes") != intent.get("id"):
        problems.append(f"dataset {name}: receipt {receipt_id} does not complete the intent entry the file names")
    else:
        opened = ledger.verify_receipt(str(intent.get("id")), public_keys)
        if not opened.ok or opened.entry["hash"] != intent.get("hash"):
            problems.append(f"dataset {name}: the intent entry the file names "
                            f"({intent.get('id')}) is not in the ledger with that hash")
    if body.get("output_sha256") != digest:
        problems.append(f"dataset {name}: its sha256 {digest} is not the digest receipt {receipt_id} recorded "
                        "for the file it published (the file was changed after it was written)")
    if problems:
        return None, problems
    who = body["who"]
    record = {
        "name": name,
        "digest": {"sha256": digest},
        "receiptId": receipt_id,
        "entryHash": entry["hash"],
        "entrySeq": entry["seq"],
        "runId": body["run_id"],
        "intentEntry": {"id": intent["id"], "hash": intent["hash"]},
        "identity": {"principal": who["principal"], "kind": who["kind"], "groups": list(who["groups"]),
                     "auth": who.get("auth") or {"method": "asserted"}},
        "purpose": body["purpose"],
        "policyDigest": body.get("policy_digest"),
        "statement": {"text": body["statement"]["text"], "sha256": body["statement"]["sha256"]},
        "source": {"namespace": body["source"]["namespace"], "database": body["source"]["database"],
                   "tables": list(body["source"]["tables"])},
        "columns": [treatment(c) for c in body["columns"]],
        "approvalId": body.get("approval_id"),
        "rows": body["rows"],
        "startedAt": body.get("started_at"),
        "endedAt": body.get("ended_at"),
        "recordedAt": entry["recorded_at"],
    }
    if body.get("reidentification"):   # the purpose required a floor: what the masked output achieved
        record["reidentification"] = reidentification(body["reidentification"])
    return record, []
