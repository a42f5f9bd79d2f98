"""One ledger entry: what a run did (the body), chained and signed (the envelope).

An entry is a canonical JSON document:

    {"v": 1, "seq": 7, "id": "<receipt id>", "prev": "<hash of entry 6>",
     "recorded_at": "...", "key_id": "ed25519:...", "public_key": "<hex>",
     "body": {...}, "hash": "<sha256 of the entry without hash and signature>",
     "signature": "<Ed25519 signature of the hash>"}

`body_from_run` keeps names, counts, hashes, mask methods and key ids, never a
value or a key. `check_entry` verifies one stored entry on its own (bytes,
hash, signature, pinned key); the chain checks in `chain.py` add order, links
and the chain's signing key at each position.

Example:
    >>> from lineage_guard.audit.signing import Signer
    >>> signer = Signer.generate()
    >>> doc = seal({"run_id": "r1"}, seq=1, prev=GENESIS, entry_id="e1", recorded_at="2026-01-01T00:00:00+00:00", signer=signer)
    >>> check_entry(canonical(doc), {signer.key_id: signer.public_key}) is None
    True
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from ..errors import LineageGuardError
from .canonical import NotCanonical, canonical, loads, sha256_hex
from .signing import Signer, key_id_for, verify_signature
from .statement import redact_literals

if TYPE_CHECKING:  # the run record's module pulls in the masking engine; reading a ledger needs none of it
    from ..run import RunRecord

VERSION = 1
GENESIS = "0" * 64
FINAL_OUTCOMES = ("success", "denied", "needs_approval", "failed")
# `open`: a run's intent, recorded before its first batch leaves (a stream, a file) or before a write
# touches the database; its final entry supersedes it. One left open is a stream that never finished
# (it may have delivered data) or a write whose outcome was never recorded (it may have committed).
OUTCOMES = (*FINAL_OUTCOMES, "open")
_MAX_TEXT = 500
_SIGNATURE = re.compile("[0-9a-f]{128}")
_ENVELOPE = ("v", "seq", "id", "prev", "recorded_at", "key_id", "public_key", "body", "hash", "signature")


class LedgerError(LineageGuardError):
    """The ledger cannot record or read; the message names the backend step, never a value or secret."""


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:  # naive datetimes in RunRecord are UTC by convention
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat()


def _short(text: str | None) -> str | None:
    return None if text is None else text[:_MAX_TEXT]


def safe_uri(uri: str) -> str:
    """A URI without user info, query or fragment: where a credential would sit."""
    try:
        parts = urlsplit(uri)
        if not parts.scheme or not parts.netloc:
            return uri.split("?", 1)[0].split("#", 1)[0]
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
    except ValueError:  # a malformed authority (bad port, unclosed IPv6 bracket): keep nothing of it
        return f"{uri.split(':', 1)[0]}:<unparseable>"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _tables(run: RunRecord) -> list[str]:
    tables = {str(c.table_ref) for col in run.decision.columns for c in col.sources}
    analysis = run.decision.analysis
    if analysis is not None:
        # A write's or DDL's target is a table it touched: `who touched public.orders` must find it.
        tables.update(str(t) for t in (*analysis.tables_read, *analysis.tables_written))
    tables.update(run.input_schemas)
    return sorted(tables)


def body_from_run(run: RunRecord) -> dict[str, Any]:
    """The key-free, value-free content of a ledger entry for one finished run."""
    if run.outcome not in OUTCOMES:
        raise LedgerError(
            f"ledger: record a run once it has an outcome ({', '.join(OUTCOMES)}), not {run.outcome!r}"
        )
    tables = _tables(run)
    columns = []
    for col in run.decision.columns:
        columns.append(
            {
                "position": col.position,
                "name": col.name,
                "sources": [str(s) for s in col.sources],
                "masked": col.masked,
                "method": col.mask.describe() if col.mask else None,
                "scope": col.mask.scope if col.mask else None,
                "key_id": run.key_ids.get(col.position) if col.mask else None,
                # the policy's classifications of the column (names, no value): what an attestation tags as pii
                **({"labels": sorted(col.labels)} if col.labels else {}),
            }
        )
    sink = run.sink
    return _utf8_safe(
        {
            "run_id": run.run_id,
            "job": {"namespace": run.job_namespace, "name": run.job_name},
            "parent": None
            if run.parent is None
            else {
                "run_id": run.parent.run_id,
                "job_namespace": run.parent.job_namespace,
                "job_name": run.parent.job_name,
            },
            "who": {
                "principal": run.identity.principal,
                "kind": run.identity.kind,
                "groups": sorted(run.identity.groups),
                "auth": _auth(run.identity),
            },
            "purpose": run.purpose,
            "statement": {"text": redact_literals(run.sql), "sha256": _statement_sha(run)},
            "source": {
                "namespace": run.source.namespace,
                "database": run.source.database,
                "environment": run.source.environment,
                "tables": tables,
                "datasets": [run.source.dataset_name(*t.split(".", 1)) for t in tables if "." in t],
            },
            "columns": columns,
            "used": _uses(run),
            **_row_filters(run),
            "rows": int(run.rows),
            **({"parameter_rows": int(run.extra["parameter_rows"])} if "parameter_rows" in run.extra else {}),
            # A write (DML or DDL): its `open` intent is recorded before the database is touched.
            **({"write": True} if run.extra.get("write") else {}),
            "delivered_rows": _delivered(run),
            "bytes": int(run.bytes),
            "sink": None
            if sink is None
            else {
                "kind": sink.kind,
                "uri": safe_uri(sink.uri),
                "namespace": safe_uri(sink.namespace),
                "name": sink.name,
            },
            "decision": {"action": run.decision.action, "reasons": [_short(r) for r in run.decision.reasons]},
            "approval_id": run.approval_id,
            "started_at": _iso(run.started_at),
            "ended_at": _iso(run.ended_at),
            "outcome": run.outcome,
            "validation": run.extra.get("validation"),  # value-free proof of masking, when the policy asks
            **_provenance_fields(run),
            "error": None
            if run.error_class is None and run.error_message is None
            else {
                "class": run.error_class,
                "message": _short(run.error_message),
            },
        }
    )


def _row_filters(run: RunRecord) -> dict[str, Any]:
    """The policy row filters applied: per table, names, digest and the attribute names bound (never values).

    Present only when a filter applied, so entries of runs without one keep their earlier shape.
    """
    analysis = run.decision.analysis
    applied = getattr(analysis, "row_filters", ()) if analysis is not None else ()
    if not applied:
        return {}
    return {"row_filters": [{"table": str(f.table), "filters": list(f.filters), "combine": f.combine,
                             "digest": f.digest, "attributes": list(f.attributes)} for f in applied]}


def _provenance_fields(run: RunRecord) -> dict[str, Any]:
    """The policy digest, and the sha256 of the file a success published (what attestation matches)."""
    fields = {}
    if run.extra.get("policy_digest"):
        fields["policy_digest"] = run.extra["policy_digest"]
    if run.extra.get("reidentification"):  # the purpose's floor as measured: class sizes, column names, no value
        fields["reidentification"] = run.extra["reidentification"]
    if run.extra.get("exchange"):   # file data masked as a table's columns: the file's URI, the table, unmapped columns
        fields["exchange"] = run.extra["exchange"]
    if run.extra.get("split"):   # a split read: the summary, or one endpoint of it (index, attempt, retry_of)
        fields["split"] = run.extra["split"]
    if run.extra.get("output_sha256") and run.outcome == "success":
        fields["output_sha256"] = run.extra["output_sha256"]
    return fields


def _auth(identity) -> dict[str, Any]:
    """How the identity was established; embedded callers assert who they are."""
    auth = getattr(identity, "auth", None)
    return {"method": "asserted"} if auth is None else {k: v for k, v in auth.to_dict().items() if v is not None}


def _uses(run: RunRecord) -> list[dict[str, str]]:
    """Source columns the statement used outside its output (filters, joins, grouping...), one per clause.

    Read generically (any use with a `column` or `columns` and a `clause` or `kind`): the SQL
    rule that produces them may grow new kinds of use; the ledger keeps whatever it reports.
    """
    analysis = run.decision.analysis
    found: set[tuple[str, str]] = set()
    for use in getattr(analysis, "uses", None) or ():
        refs = getattr(use, "columns", None) or (getattr(use, "column", None),)
        clause = str(getattr(use, "clause", None) or getattr(use, "kind", None) or "filter")
        found.update((str(ref), clause) for ref in refs if ref is not None)
    return [{"column": column, "clause": clause} for column, clause in sorted(found)]


def _delivered(run: RunRecord) -> int:
    """Rows that reached the caller: all of a success, none of a failed read whose sink was aborted,
    what a stream had handed over when it failed (the session sets `delivered_rows` then)."""
    if "delivered_rows" in run.extra:
        return int(run.extra["delivered_rows"])
    return int(run.rows) if run.outcome == "success" else 0


def _statement_sha(run: RunRecord) -> str:
    try:
        return run.statement_hash
    except UnicodeEncodeError:  # lone surrogates: hash the code points as they are
        return sha256_hex(run.sql.encode("utf-8", "surrogatepass"))


def _utf8_safe(value: Any) -> Any:
    """`value` with every string encodable as UTF-8 (lone surrogates, e.g. from undecodable file
    names, become `\\udcxx` text), so a strange name can never stop a run from being recorded."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-8", "backslashreplace").decode("utf-8")
        return value
    if isinstance(value, dict):
        return {_utf8_safe(k): _utf8_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_utf8_safe(v) for v in value]
    return value


def entry_hash(doc: Mapping[str, Any], *, check: bool = True) -> str:
    """sha256 over the canonical entry without its `hash` and `signature`."""
    return sha256_hex(
        canonical({k: v for k, v in doc.items() if k not in ("hash", "signature")}, check=check)
    )


def seal(
    body: dict[str, Any], *, seq: int, prev: str, entry_id: str, recorded_at: str, signer: Signer
) -> dict[str, Any]:
    """The full signed entry for `body` at position `seq` after the entry hashed `prev`."""
    doc: dict[str, Any] = {
        "v": VERSION,
        "seq": seq,
        "id": entry_id,
        "prev": prev,
        "recorded_at": recorded_at,
        "key_id": signer.key_id,
        "public_key": signer.public_key,
        "body": body,
    }
    doc["hash"] = entry_hash(doc)
    doc["signature"] = signer.sign(doc["hash"].encode())
    return doc


def parse_entry(raw: bytes) -> dict[str, Any]:
    """The entry in `raw`, which must be exactly its canonical bytes; ValueError otherwise."""
    try:
        doc = loads(raw)
    except NotCanonical as exc:
        raise ValueError(str(exc)) from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError("not valid UTF-8 JSON") from None
    if not isinstance(doc, dict) or set(doc) != set(_ENVELOPE):
        raise ValueError("not a ledger entry (wrong fields)")
    if canonical(doc, check=False) != raw:
        raise ValueError("bytes are not the canonical encoding of the entry")
    return doc


def check_entry(raw: bytes, trusted: Mapping[str, str]) -> str | None:
    """Why the stored entry `raw` is not authentic on its own, or None if it is.

    `trusted` maps key id -> hex public key, pinned by the verifier.
    """
    return inspect_entry(raw, trusted)[1]


def inspect_entry(
    raw: bytes, trusted: Mapping[str, str] | None = None
) -> tuple[dict[str, Any] | None, str | None]:
    """(the parsed entry or None, why it is not authentic or None): `check_entry` with its document.

    With `trusted` None the signature is checked against the entry's own key only (the chain
    decides which keys it may be signed by, and that one of them is pinned).
    """
    try:
        doc = parse_entry(raw)
    except ValueError as exc:
        return None, str(exc)
    return doc, _problem(doc, trusted)


def verify_entry_document(doc: Any, trusted: Mapping[str, str]) -> str | None:
    """Why a saved entry (parsed JSON in any layout, e.g. `audit receipt` output) is not authentic, or None.

    This is a receipt's offline check: no ledger, only the entry and a pinned public key.
    """
    if not isinstance(doc, dict):
        return "not a ledger entry (expected a JSON object)"
    try:
        raw = canonical(doc)
    except NotCanonical as exc:
        return str(exc)
    return check_entry(raw, trusted)


def _problem(doc: dict[str, Any], trusted: Mapping[str, str] | None) -> str | None:
    if doc["v"] != VERSION:
        return f"unknown entry version {doc['v']!r}"
    if not isinstance(doc["public_key"], str) or not isinstance(doc["key_id"], str):
        return "key fields are malformed"
    try:
        if key_id_for(doc["public_key"]) != doc["key_id"]:
            return "key id does not match the public key"
    except ValueError:
        return "public key is not hex"
    if trusted is not None and trusted.get(doc["key_id"]) != doc["public_key"]:
        return (
            f"signed by key {doc['key_id']}, which is not a trusted key "
            "(pass the key that signed it with --public-key; `lineage-guard audit public-key --all` lists them)"
        )
    if entry_hash(doc, check=False) != doc["hash"]:
        return "content does not match its hash (the entry was edited)"
    # Hex is case-insensitive, so an unhashed signature must also be in its one canonical spelling.
    signature = doc["signature"]
    if (
        not isinstance(signature, str)
        or not _SIGNATURE.fullmatch(signature)
        or not verify_signature(doc["public_key"], doc["hash"].encode(), signature)
    ):
        return "signature does not verify"
    return None
