"""The Models page's source: the attestations `lineage-guard attest` keeps, each verified against the ledger.

`lineage_guard.attest(...)` (and `lineage-guard attest`) keeps a copy of every DSSE envelope it signs
in the state folder's `attestations/` (`<model digest>.dsse.json`, written whole by rename): that
folder is the registry. Writers only add or replace whole files, so the console needs no lock and no
coordination with them; it reads the folder on each page view.

Each envelope is verified with the attest module's own `verify` (signature against the pinned keys
only, statement schema, every dataset's receipt and the chain up to the attested head). The dataset
files themselves are not re-hashed here (they may live on another machine; `lineage-guard attest
verify` does that): the receipts vouch for the digests the ledger recorded. A verification is
reused for `recheck_seconds` (a chain of a million entries takes a while to walk), keyed by the
envelope's bytes, so a changed file is re-verified at once.

Example:
    >>> source = FolderAttestations(Path("~/.lineage_guard/attestations"), Ledger.open(create=False))  # doctest: +SKIP
    >>> [a.model_digest for a in source.attestations(10)]                                             # doctest: +SKIP
    ['sha256:4c1f...']
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger("lineage_guard.console")

_MAX_FILES = 2_000          # newest first; a page never reads more
_MAX_BYTES = 4 * 1024 * 1024  # an envelope is a few KB; a huge file is refused, not parsed


@dataclass(frozen=True)
class AttestedColumn:
    """One column of a dataset: its name, the table columns it came from, and how it left the database."""

    name: str
    sources: list[str]
    treatment: str          # "clear" or "masked (method)"


@dataclass(frozen=True)
class AttestedDataset:
    """One governed extract the model was trained on, as the ledger recorded it."""

    name: str
    sha256: str
    receipt: str
    principal: str
    purpose: str | None
    tables: list[str]
    columns: list[AttestedColumn]
    rows: int | None
    approval_id: str | None


@dataclass(frozen=True)
class ModelAttestation:
    """What the Models page lists for one attestation."""

    model_digest: str
    datasets: list[str]
    verified: bool
    reason: str | None = None                       # why it does not verify
    receipts: list[str] = field(default_factory=list)   # ledger receipts: the path back to tables and columns
    file: str = ""
    attested_at: str | None = None
    model_files: int = 0
    ledger_head: int | None = None
    key_id: str | None = None
    sources: list[AttestedDataset] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    checked_at: float = 0.0


class AttestationSource(Protocol):
    def attestations(self, limit: int) -> list[ModelAttestation]:
        """The newest attestations, verified."""
        ...


def _statement(envelope: Any) -> dict[str, Any] | None:
    """The envelope's payload as JSON, unverified (for display of what does not verify)."""
    try:
        found = json.loads(base64.b64decode(envelope["payload"], validate=True))
    except Exception:  # noqa: BLE001 - an unreadable payload is shown as such, never trusted
        return None
    return found if isinstance(found, dict) else None


def _treatment(column: dict[str, Any]) -> str:
    if column.get("treatment") == "masked":
        return f"masked ({column.get('method')})"
    return "clear"


def _datasets(predicate: dict[str, Any]) -> list[AttestedDataset]:
    out = []
    for d in predicate.get("datasets") or ():
        out.append(AttestedDataset(
            name=str(d.get("name")), sha256=str((d.get("digest") or {}).get("sha256")),
            receipt=str(d.get("receiptId")), principal=str((d.get("identity") or {}).get("principal")),
            purpose=d.get("purpose"), tables=[str(t) for t in (d.get("source") or {}).get("tables") or ()],
            columns=[AttestedColumn(str(c.get("name")), [str(s) for s in c.get("sources") or ()], _treatment(c))
                     for c in d.get("columns") or ()],
            rows=d.get("rows"), approval_id=d.get("approvalId")))
    return out


class FolderAttestations:
    """The attestations in a folder of DSSE envelopes (`*.dsse.json`), newest first, each verified."""

    def __init__(self, folder: Path, ledger: Any, public_keys: Sequence[str] = (), *, recheck_seconds: float = 60,
                 clock: Callable[[], float] = time.time):
        self.folder = Path(folder)
        self.ledger = ledger
        self.public_keys = tuple(public_keys)
        self.recheck_seconds = recheck_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, ModelAttestation] = {}

    def attestations(self, limit: int) -> list[ModelAttestation]:
        if not self.folder.is_dir():
            return []
        files = sorted(self.folder.glob("*.dsse.json"), key=lambda p: p.stat().st_mtime, reverse=True)
        return [self._one(path) for path in files[: min(limit, _MAX_FILES)]]

    def _one(self, path: Path) -> ModelAttestation:
        try:
            raw = path.read_bytes()[: _MAX_BYTES + 1]
        except OSError as exc:
            return ModelAttestation("(unreadable)", [], False, f"cannot read the file ({exc.strerror})", file=path.name)
        if len(raw) > _MAX_BYTES:
            return ModelAttestation("(refused)", [], False, "the file is larger than an attestation can be",
                                    file=path.name)
        key = hashlib.sha256(raw).hexdigest()
        now = self._clock()
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and now - cached.checked_at < self.recheck_seconds:
            return cached
        found = self._verify(path.name, raw, now)
        with self._lock:
            if len(self._cache) > _MAX_FILES:
                self._cache.clear()
            self._cache[key] = found
        return found

    def _verify(self, name: str, raw: bytes, now: float) -> ModelAttestation:
        from ..attest.attestation import verify
        from ..errors import LineageGuardError

        try:
            envelope = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return ModelAttestation("(not JSON)", [], False, "the file is not a JSON DSSE envelope", file=name,
                                    checked_at=now)
        if not isinstance(envelope, dict):
            return ModelAttestation("(not an envelope)", [], False, "the file is not a DSSE envelope", file=name,
                                    checked_at=now)
        verified_statement, key_id = None, None
        try:
            result = verify(envelope, ledger=self.ledger, public_keys=self.public_keys, check_datasets=False)
            failures = [str(f) for f in result.failures]
            verified_statement, key_id = result.statement, result.key_id
        except LineageGuardError as exc:   # e.g. no pinned key to verify with: fail closed, say why
            failures = [f"cannot verify: {exc}"]
        # What a verified statement says; for one that does not verify, what it claims (shown as unverified).
        statement = verified_statement if not failures else _statement(envelope)
        predicate = (statement or {}).get("predicate") or {}
        model = predicate.get("model") or {}
        sources = _datasets(predicate) if isinstance(predicate, dict) else []
        return ModelAttestation(
            model_digest=str(model.get("digest") or "(unknown)"), datasets=[d.name for d in sources],
            verified=not failures, reason="; ".join(failures) or None, receipts=[d.receipt for d in sources],
            file=name, attested_at=predicate.get("attestedAt"), model_files=int(model.get("files") or 0),
            ledger_head=((predicate.get("ledger") or {}).get("head") or {}).get("entries"), key_id=key_id,
            sources=sources, failures=failures, checked_at=now)
