"""The who-saw-what ledger: append one signed, hash-chained entry per governed run.

Protocol offered to the session:

1. When a run reaches its outcome, call `record(run)`; it returns a `Receipt` once
   the entry is durable. Denials, approvals-needed and failures are recorded too.
2. For a successful read, record BEFORE committing the sink, then commit. If the
   commit then fails, `record()` the same run again with `outcome="failed"`: the
   later entry for a run id supersedes the earlier (`body.supersedes` names it),
   and the views (`effective`, who-saw) use only the latest entry per run. A crash
   between the two leaves a success entry for data that was never released: the
   ledger may over-report who saw what, never under-report.

Example:
    >>> ledger = Ledger.open(str(tmp / "ledger.sqlite"))          # doctest: +SKIP
    >>> receipt = ledger.record(run)                               # doctest: +SKIP
    >>> ledger.verify().ok and ledger.verify_receipt(receipt.id).ok  # doctest: +SKIP
    True
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import urlsplit

from .. import paths
from ..errors import ConfigError
from .canonical import canonical
from .chain import StoredRow, VerifyReport, verify_chain
from .entry import LedgerError, body_from_run, check_entry, parse_entry, seal
from .postgres_store import PostgresStore
from .signing import MASTER_KEY_ENV, Signer, trusted_keys
from .sqlite_store import SqliteStore

if TYPE_CHECKING:  # imported when recording only: readers and verifiers stay light
    from ..run import Receipt, RunRecord

LEDGER_URL_ENV = "LINEAGE_GUARD_LEDGER_URL"
DEFAULT_FILE = "ledger.sqlite"


@dataclass(frozen=True)
class ReceiptCheck:
    """The verification of one receipt: the entry (when found) and why it fails, if it does."""

    receipt_id: str
    entry: dict[str, Any] | None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None


def _store_for(url: str | None, schema: str, create: bool):
    url = (url or os.environ.get(LEDGER_URL_ENV, "")).strip() or None
    if url is None:
        return SqliteStore(paths.state_file(DEFAULT_FILE), create)
    scheme = urlsplit(url).scheme.lower() if "://" in url else ""
    if scheme in ("postgresql", "postgres"):
        return PostgresStore(url, schema=schema, create=create)
    if scheme == "sqlite":
        path = url[len("sqlite://") :]
        if not path:
            raise ConfigError(
                "ledger URL sqlite:// needs a path, e.g. sqlite:///var/lib/lineage_guard/ledger.sqlite"
            )
        return SqliteStore(Path(path), create)
    if scheme:
        raise ConfigError(
            f"ledger URL scheme {scheme!r} is not supported; use sqlite:///path, a file path or postgresql://..."
        )
    return SqliteStore(Path(url), create)


class Ledger:
    """An append-only, hash-chained, signed ledger of governed runs (SQLite or PostgreSQL)."""

    def __init__(self, store, signer: Signer | None = None):
        self.store = store
        self._signer = signer

    @classmethod
    def open(
        cls,
        url: str | None = None,
        *,
        schema: str = "lineage_guard",
        create: bool = True,
        signer: Signer | None = None,
    ) -> Ledger:
        """Open (creating if needed) the ledger at `url`.

        `url`: `sqlite:///path`, a plain path, `postgresql://...`; else env
        `LINEAGE_GUARD_LEDGER_URL`; else `ledger.sqlite` in the state folder.
        `schema` is where a PostgreSQL ledger keeps its tables. `create=False` (readers,
        verifiers) refuses a ledger that does not exist instead of creating an empty one.
        The signer defaults to the key derived from `LINEAGE_GUARD_MASTER_KEY`,
        needed only to record.
        """
        return cls(_store_for(url, schema, create), signer)

    def __repr__(self) -> str:
        return f"Ledger({self.store!r})"

    def close(self) -> None:
        """Close the connections this process opened (one per thread; reopened on next use)."""
        self.store.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def signer(self) -> Signer:
        if self._signer is None:
            self._signer = Signer.from_env()
        return self._signer

    def record(self, run: RunRecord) -> Receipt:
        """Append the entry for `run` (whose outcome is final) and return its receipt, once durable."""
        body = body_from_run(run)
        signer = self.signer
        masters = [
            part.rpartition(":")[2].strip().lower().encode()
            for part in os.environ.get(MASTER_KEY_ENV, "").split(",")
        ]
        masters = [m for m in masters if len(m) >= 32]

        def build(seq: int, prev: str, earlier: str | None) -> StoredRow:
            doc = seal(
                {**body, "supersedes": earlier},
                seq=seq,
                prev=prev,
                entry_id=str(uuid.uuid4()),
                recorded_at=datetime.now(UTC).isoformat(),
                signer=signer,
            )
            raw = canonical(doc)
            # Defence in depth: a key can only get here through a caller's bug; refuse to persist it.
            if any(m in raw.lower() for m in masters):
                raise LedgerError(
                    "ledger: refused an entry that contains the master key; check what the run record carries"
                )
            return StoredRow(seq, doc["id"], run.run_id, doc["hash"], raw)

        row = self.store.append(run.run_id, build)
        from ..run import Receipt

        return Receipt(id=row.id, hash=row.hash)

    def verify(self, public_keys: Sequence[str] = ()) -> VerifyReport:
        """Verify the whole chain against the pinned keys (given hex public keys + the master key's)."""
        trusted = _trusted(public_keys)
        head = self.store.head()
        return verify_chain(self.store.rows(), trusted, head, missing_head="the chain's head row is missing")

    def verify_receipt(self, receipt: Receipt | str, public_keys: Sequence[str] = ()) -> ReceiptCheck:
        """Verify one receipt: its entry exists, is authentic, and (for a Receipt) has the receipt's hash."""
        trusted = _trusted(public_keys)
        receipt_id = receipt if isinstance(receipt, str) else receipt.id
        row = self.store.row(receipt_id)
        if row is None:
            return ReceiptCheck(receipt_id, None, "no entry with this receipt id in the ledger")
        reason = check_entry(row.entry, trusted)
        if reason is not None:
            return ReceiptCheck(receipt_id, None, reason)
        doc = parse_entry(row.entry)
        if doc["id"] != receipt_id:
            return ReceiptCheck(receipt_id, doc, "the stored row's id disagrees with the signed entry")
        if not isinstance(receipt, str) and receipt.hash != doc["hash"]:
            return ReceiptCheck(receipt_id, doc, "the entry's hash differs from the receipt's")
        return ReceiptCheck(receipt_id, doc)

    def entries(self) -> Iterator[dict[str, Any]]:
        """Every entry (parsed, unverified) in chain order; run `verify()` to trust them."""
        for row in self.store.rows():
            try:
                yield parse_entry(row.entry)
            except ValueError:
                raise LedgerError(
                    f"ledger entry #{row.seq} is unreadable; run `lineage-guard audit verify`"
                ) from None

    def get(self, receipt_id: str) -> dict[str, Any] | None:
        """The entry with this receipt id (parsed, unverified), if any."""
        row = self.store.row(receipt_id)
        return None if row is None else parse_entry(row.entry)


def _trusted(public_keys: Sequence[str]) -> dict[str, str]:
    keys = trusted_keys(tuple(public_keys))
    if not keys:
        raise ConfigError(
            f"no trusted key to verify against: set {MASTER_KEY_ENV} or pass the ledger's public key (--public-key)"
        )
    return keys
