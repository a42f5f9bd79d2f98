"""Provenance that travels with a governed file: one JSON document in the Parquet key-value metadata.

The footer of every Parquet file a governed read writes carries, under the key
`lineage_guard.provenance`, who read what, for which purpose, under which policy, and how
each column left (clear, or masked by which method and key id): never a key or a value.

The document is written before the ledger's final entry exists, so it names two things
the ledger can match later: the run's `open` intent entry (recorded before the first batch;
its id and hash are known) and the id the final entry will take (chosen up front). The
final entry records the file's sha256; the file cannot record its own digest.

Example:
    >>> import pyarrow as pa, pyarrow.parquet as pq
    >>> pq.write_table(pa.table({"x": [1]}), tmp / "plain.parquet")       # doctest: +SKIP
    >>> read_provenance(tmp / "plain.parquet") is None                     # doctest: +SKIP
    True
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import TYPE_CHECKING, Any

from ..errors import LineageGuardError

if TYPE_CHECKING:  # pragma: no cover
    from ..policy import Policy
    from ..run import Receipt, RunRecord

KEY = "lineage_guard.provenance"
VERSION = 1


class ProvenanceError(LineageGuardError):
    """A file's provenance is missing or unreadable; the message names the file, never a value."""


def policy_digest(policy: Policy) -> str:
    """`sha256:` + the digest of the policy as loaded (canonical JSON of the validated model).

    The loaded model, not the file's bytes: comments and key order do not change what is enforced.
    """
    doc = policy.model_dump(mode="json")
    raw = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def column_treatments(run: RunRecord) -> list[dict[str, Any]]:
    """Per output column: `clear`, or `masked` with the method and key id (names only)."""
    out = []
    for col in run.decision.columns:
        out.append({
            "position": col.position,
            "name": col.name,
            "sources": [str(s) for s in col.sources],
            "treatment": "masked" if col.masked else "clear",
            "method": col.mask.describe() if col.mask else None,
            "key_id": run.key_ids.get(col.position) if col.mask else None,
        })
    return out


def provenance_for(run: RunRecord, *, intent: Receipt, receipt_id: str, policy_digest: str) -> dict[str, Any]:
    """The document stamped into the file `run` writes. `intent` is its recorded `open` entry;
    `receipt_id` the id its final entry will take."""
    from ..audit.entry import _auth
    from ..audit.statement import redact_literals

    return {
        "v": VERSION,
        "receipt_id": receipt_id,
        "run_id": run.run_id,
        "ledger_entry": {"id": intent.id, "hash": intent.hash, "outcome": "open"},
        "policy_digest": policy_digest,
        "statement": {"text": redact_literals(run.sql), "sha256": run.statement_hash},
        "identity": {
            "principal": run.identity.principal,
            "kind": run.identity.kind,
            "groups": sorted(run.identity.groups),
            "auth": _auth(run.identity),
        },
        "purpose": run.purpose,
        "source": {"namespace": run.source.namespace, "database": run.source.database,
                   "environment": run.source.environment},
        "job": {"namespace": run.job_namespace, "name": run.job_name},
        "approval_id": run.approval_id,
        "columns": column_treatments(run),
    }


def encode(doc: dict[str, Any]) -> dict[str, str]:
    """The key-value pair for a Parquet footer."""
    return {KEY: json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)}


def read_provenance(path: str | os.PathLike) -> dict[str, Any] | None:
    """The provenance document in a Parquet file's footer (a path or fsspec URI), None when it has none."""
    import pyarrow.parquet as pq

    from .files import open_binary

    try:
        with open_binary(os.fspath(path)) as fh:
            meta = pq.read_metadata(fh).metadata or {}
    except FileNotFoundError:
        raise ProvenanceError(f"{os.fspath(path)}: no such file") from None
    except Exception as exc:  # noqa: BLE001 - a corrupt footer: say so, quote nothing of it
        raise ProvenanceError(f"{os.fspath(path)} is not a readable Parquet file ({type(exc).__name__})") from None
    raw = meta.get(KEY.encode())
    if raw is None:
        return None
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ProvenanceError(f"{os.fspath(path)}: its {KEY} metadata is not JSON") from None
    if not isinstance(doc, dict) or doc.get("v") != VERSION:
        raise ProvenanceError(f"{os.fspath(path)}: its {KEY} metadata is not a version-{VERSION} document")
    return doc
