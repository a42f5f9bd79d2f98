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
3. For a write, record the run with `outcome="open"` BEFORE touching the database
   (a failure to record stops the write), then its success or failure, which
   supersedes the intent. An intent left open is a write that may have committed.

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
from .chain import KeySpan, Problem, StoredRow, VerifyReport, verify_chain
from .entry import LedgerError, body_from_run, check_entry, parse_entry, seal
from .postgres_store import PostgresStore
from .rotation import rotation_body
from .signing import KEY_FILE_ENV, MASTER_KEY_ENV, NO_TRUSTED_KEY, Signer, trusted_keys
from .sqlite_store import SqliteStore

if TYPE_CHECKING:  # imported when recording only: readers and verifiers stay light
    from ..run import Receipt, RunRecord

LEDGER_URL_ENV = "LINEAGE_GUARD_LEDGER_URL"
DEFAULT_FILE = "ledger.sqlite"


class SigningKeyMismatch(LedgerError):
    """This process's signing key is not the one the ledger pinned: nothing was recorded."""


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
        self._signer_checked = False

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
        The signer defaults to `LINEAGE_GUARD_LEDGER_SIGNING_KEY_FILE`, else the state
        folder's `ledger-signing.key` (generated on first record), needed only to record.
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
        """Append the entry for `run` (whose outcome is final, or `open`) and return its receipt, once durable.

        Refused (`SigningKeyMismatch`, nothing written) when this process's signing key is not
        the one the ledger pinned on its first entry.
        """
        from ..run import Receipt

        # A file stamped with its provenance before this entry existed names the id it would take.
        entry_id = run.extra.pop("final_entry_id", None) if run.outcome == "success" else None
        row = self._append(run.run_id, lambda seq, prev, earlier: {**body_from_run(run), "supersedes": earlier},
                           entry_id=entry_id)
        return Receipt(id=row.id, hash=row.hash)

    def check_signer(self) -> None:
        """Refuse early (`SigningKeyMismatch`) when this process's key is not the pinned one, so a
        run fails before it reads anything rather than when it records. `record` checks again."""
        if self._signer_checked:  # once per ledger object: a later rotation is still caught by `record`
            return
        pins = self.store.pins()
        signer = self.signer
        if pins and (pins[-1].key_id, pins[-1].public_key) != (signer.key_id, signer.public_key):
            raise SigningKeyMismatch(_mismatch(self.store, pins[-1], signer))
        self._signer_checked = True

    def rotate_key(self, new: Signer, *, by: str, reason: str | None = None,
                   public_keys: Sequence[str] = ()) -> Receipt:
        """Hand the ledger over to `new`: a rotation entry signed by the current key (this ledger's
        signer) and endorsed by `new`. The chain must verify first (against `public_keys` and the
        current key): a rotation must not vouch for a tampered history."""
        from ..run import Receipt

        old = self.signer
        if new.key_id == old.key_id:
            raise ConfigError("the new signing key is the current one; generate a new key to rotate to")
        report = self.verify([*public_keys, old.public_key])
        if not report.ok:
            raise LedgerError(f"the ledger does not verify (first bad {report.problem}); not rotating its key")
        if report.entries == 0:
            raise ConfigError("the ledger is empty: nothing to rotate, point "
                              f"{KEY_FILE_ENV} at the new key and it is pinned on the first entry")
        run_id = f"key-rotation-{uuid.uuid4()}"
        row = self._append(run_id, lambda seq, prev, earlier: rotation_body(
            old, new, run_id=run_id, seq=seq, prev=prev, by=by, reason=reason), hand_over_to=new)
        return Receipt(id=row.id, hash=row.hash)

    def _append(self, run_id: str, make_body, hand_over_to: Signer | None = None,
                entry_id: str | None = None) -> StoredRow:
        signer = self.signer
        masters = [
            part.rpartition(":")[2].strip().lower().encode()
            for part in os.environ.get(MASTER_KEY_ENV, "").split(",")
        ]
        masters = [m for m in masters if len(m) >= 32]

        def build(seq: int, prev: str, earlier: str | None, pinned: KeySpan | None) -> tuple[StoredRow, KeySpan | None]:
            if pinned is not None and (pinned.key_id, pinned.public_key) != (signer.key_id, signer.public_key):
                raise SigningKeyMismatch(_mismatch(self.store, pinned, signer))
            doc = seal(
                make_body(seq, prev, earlier),
                seq=seq,
                prev=prev,
                entry_id=entry_id or str(uuid.uuid4()),
                recorded_at=datetime.now(UTC).isoformat(),
                signer=signer,
            )
            raw = canonical(doc)
            # Defence in depth: a key can only get here through a caller's bug; refuse to persist it.
            if any(m in raw.lower() for m in masters):
                raise LedgerError(
                    "ledger: refused an entry that contains the master key; check what the run record carries"
                )
            body = doc["body"]
            row = StoredRow(seq, doc["id"], body["run_id"], doc["hash"], raw)
            if hand_over_to is not None:
                return row, KeySpan(hand_over_to.key_id, hand_over_to.public_key, seq + 1)
            return row, (KeySpan(signer.key_id, signer.public_key, seq) if pinned is None else None)

        return self.store.append(run_id, build)

    def verify(self, public_keys: Sequence[str] = (), anchors: Sequence[str] = ()) -> VerifyReport:
        """Verify the whole chain against the keys the verifier pins (`trusted_keys`: the given hex
        public keys, `LINEAGE_GUARD_LEDGER_PUBLIC_KEY`, this machine's signing key), never against
        the keys the ledger names. Every hash in `anchors` (heads published earlier) must be in it."""
        trusted = _trusted(public_keys)
        head = self.store.head()
        report = verify_chain(self.store.rows(), trusted, head, missing_head="the chain's head row is missing",
                              anchors=anchors)
        pins = self.store.pins()
        if report.ok and pins and report.current_key and pins[-1].key_id != report.current_key.key_id:
            return VerifyReport(report.entries, report.head_hash, Problem(
                report.entries, None, f"the ledger pins signing key {pins[-1].key_id} but its chain is signed by "
                f"{report.current_key.key_id} now (the pinned keys table was changed)"), report.keys)
        return report

    def pinned_keys(self) -> list[KeySpan]:
        """The signing keys this ledger pinned, oldest first; the last one is the key writers must use."""
        return self.store.pins()

    def verify_receipt(self, receipt: Receipt | str, public_keys: Sequence[str] = ()) -> ReceiptCheck:
        """Verify one receipt: its entry exists, is authentic, and (for a Receipt) has the receipt's hash."""
        trusted = _trusted(public_keys)
        receipt_id = receipt if isinstance(receipt, str) else receipt.id
        row = self.store.row(receipt_id)
        if row is None:
            return ReceiptCheck(receipt_id, None, "no entry with this receipt id in the ledger")
        reason = check_entry(row.entry, trusted)
        if reason is not None and "not a trusted key" in reason:
            # Signed before a rotation: authentic if the chain hands over from its key to a pinned one.
            report = self.verify(public_keys)
            if report.ok and parse_entry(row.entry)["key_id"] in report.key_ids:
                reason = check_entry(row.entry, {k.key_id: k.public_key for k in report.keys})
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
        raise ConfigError(NO_TRUSTED_KEY)
    return keys


def _mismatch(store, pinned: KeySpan, signer: Signer) -> str:
    return (
        f"ledger {store!r} is pinned to signing key {pinned.key_id} (since entry #{pinned.since}), but this "
        f"process signs with {signer.key_id} ({signer.source}); nothing was recorded. Use the ledger's key "
        f"(point {KEY_FILE_ENV} at it), or hand the ledger over to a new key where the current one is: "
        "`lineage-guard audit rotate-key --new-key-file NEW.key` (a rotation entry signed by the old key; "
        f"then set {KEY_FILE_ENV}=NEW.key). A ledger written before keys were pinned is signed by the key "
        "derived from the master key: rotate it with `lineage-guard audit rotate-key --from-master-key "
        "--new-key-file NEW.key`. See docs/ledger.md"
    )
