"""The ledger in a SQLite file: WAL, synchronous=FULL, one writer at a time.

Appends run in `BEGIN IMMEDIATE`, so writers in other threads or processes wait
their turn and the chain stays one chain; a commit is on disk before `append`
returns. Triggers refuse UPDATE and DELETE on entries and pinned keys (defence
in depth: the chain verification is what proves nothing changed). `ledger_keys`
pins the signing key: the first append pins its key, a rotation appends the next.

Example:
    >>> import tempfile, pathlib
    >>> store = SqliteStore(pathlib.Path(tempfile.mkdtemp()) / "ledger.sqlite")
    >>> store.head()
    (0, '0000000000000000000000000000000000000000000000000000000000000000')
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..sqlite_wal import enable_wal
from .chain import KeySpan, StoredRow
from .connections import ThreadConnections
from .entry import GENESIS, LedgerError, parse_entry

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS ledger_entries (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    run_id TEXT NOT NULL,
    hash TEXT NOT NULL,
    entry BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS ledger_entries_run_id ON ledger_entries (run_id);
CREATE TABLE IF NOT EXISTS ledger_head (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL
);
INSERT OR IGNORE INTO ledger_head (one, seq, hash)
    SELECT 1, 0, '{GENESIS}' WHERE NOT EXISTS (SELECT 1 FROM ledger_entries);
CREATE TRIGGER IF NOT EXISTS ledger_entries_no_update BEFORE UPDATE ON ledger_entries
BEGIN SELECT RAISE(ABORT, 'ledger entries are append-only'); END;
CREATE TRIGGER IF NOT EXISTS ledger_entries_no_delete BEFORE DELETE ON ledger_entries
BEGIN SELECT RAISE(ABORT, 'ledger entries are append-only'); END;
CREATE TABLE IF NOT EXISTS ledger_keys (
    epoch INTEGER PRIMARY KEY,
    key_id TEXT NOT NULL,
    public_key TEXT NOT NULL,
    since_seq INTEGER NOT NULL
);
CREATE TRIGGER IF NOT EXISTS ledger_keys_no_update BEFORE UPDATE ON ledger_keys
BEGIN SELECT RAISE(ABORT, 'pinned ledger keys are append-only'); END;
CREATE TRIGGER IF NOT EXISTS ledger_keys_no_delete BEFORE DELETE ON ledger_keys
BEGIN SELECT RAISE(ABORT, 'pinned ledger keys are append-only'); END;
"""

# build(seq, prev_hash, earlier_id_of_this_run, pinned_key) -> (row, key to pin from now on or None)
Build = Callable[[int, str, "str | None", "KeySpan | None"], "tuple[StoredRow, KeySpan | None]"]


class SqliteStore:
    """Entries and head in one SQLite file; `create=False` opens an existing ledger only (for readers)."""

    def __init__(self, path: Path, create: bool = True):
        self.path = Path(path)
        self._conns = ThreadConnections(self._open)
        if not create:
            if not self.path.is_file():  # checked before connecting: connecting would create it
                raise LedgerError(f"no ledger at {self.path}: check --ledger / LINEAGE_GUARD_LEDGER_URL")
            with self._connect() as conn:
                if (
                    conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'ledger_entries'").fetchone()
                    is None
                ):
                    raise LedgerError(f"{self.path} is not a lineage_guard ledger (no ledger_entries table)")
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            enable_wal(self.path)
            conn.executescript(_SCHEMA)

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.path)!r})"

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        conn.execute("PRAGMA synchronous=FULL")  # WAL is set once on the file (enable_wal)
        return conn

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            yield self._conns.get()
        except sqlite3.Error as exc:
            self._conns.discard()
            raise LedgerError(
                f"ledger {self.path}: SQLite {type(exc).__name__} ({exc.sqlite_errorname})"
            ) from None

    def connection(self):
        """This thread's connection, errors named as ledger errors: for the derived search index
        (`index.py`), which keeps its side tables in the ledger's own database."""
        return self._connect()

    def close(self) -> None:
        """Close this process's connections (the last close checkpoints the WAL into the file)."""
        self._conns.close()

    def append(self, run_id: str, build: Build) -> StoredRow:
        """Append the row `build(seq, prev_hash, previous_id_of_this_run, pinned_key)` as the new head, durably."""
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                head = conn.execute("SELECT seq, hash FROM ledger_head WHERE one = 1").fetchone()
                if head is None:
                    raise LedgerError(
                        f"ledger {self.path}: its head row is missing; run `lineage-guard audit verify`"
                    )
                seq, prev = head
                earlier = conn.execute(
                    "SELECT id FROM ledger_entries WHERE run_id = ? ORDER BY seq DESC LIMIT 1", (run_id,)
                ).fetchone()
                row, pin = build(seq + 1, prev, earlier[0] if earlier else None, self._pinned(conn, seq))
                conn.execute(
                    "INSERT INTO ledger_entries (seq, id, run_id, hash, entry) VALUES (?, ?, ?, ?, ?)",
                    (row.seq, row.id, row.run_id, row.hash, row.entry),
                )
                conn.execute("UPDATE ledger_head SET seq = ?, hash = ? WHERE one = 1", (row.seq, row.hash))
                if pin is not None:
                    self._pin(conn, pin)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        return row

    def _pinned(self, conn: sqlite3.Connection, seq: int) -> KeySpan | None:
        """The key appends must be signed by; a ledger older than pinning pins its last entry's key now."""
        found = conn.execute(
            "SELECT key_id, public_key, since_seq FROM ledger_keys ORDER BY epoch DESC LIMIT 1"
        ).fetchone()
        if found is not None:
            return KeySpan(*found)
        if seq == 0:
            return None
        last = conn.execute("SELECT entry FROM ledger_entries ORDER BY seq DESC LIMIT 1").fetchone()
        pin = legacy_pin(bytes(last[0]) if last else None, self.path)
        self._pin(conn, pin)
        return pin

    def _pin(self, conn: sqlite3.Connection, pin: KeySpan) -> None:
        conn.execute(
            "INSERT INTO ledger_keys (epoch, key_id, public_key, since_seq)"
            " SELECT COALESCE(MAX(epoch), 0) + 1, ?, ?, ? FROM ledger_keys",
            (pin.key_id, pin.public_key, pin.since),
        )

    def pins(self) -> list[KeySpan]:
        """The pinned signing keys, oldest first (the last one signs now)."""
        with self._connect() as conn:
            if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'ledger_keys'").fetchone() is None:
                return []  # a ledger from before pinning, opened read-only
            found = conn.execute("SELECT key_id, public_key, since_seq FROM ledger_keys ORDER BY epoch").fetchall()
        return [KeySpan(*row) for row in found]

    def rows(self) -> Iterator[StoredRow]:
        """Every stored row in sequence order."""
        with self._connect() as conn:  # fetched whole: no cursor stays open on the shared connection
            found = conn.execute(
                "SELECT seq, id, run_id, hash, entry FROM ledger_entries ORDER BY seq"
            ).fetchall()
        for seq, entry_id, run_id, hash_, entry in found:
            yield StoredRow(seq, entry_id, run_id, hash_, bytes(entry))

    def row(self, entry_id: str) -> StoredRow | None:
        """The stored row with this id, if any."""
        with self._connect() as conn:
            found = conn.execute(
                "SELECT seq, id, run_id, hash, entry FROM ledger_entries WHERE id = ?", (entry_id,)
            ).fetchone()
        return None if found is None else StoredRow(found[0], found[1], found[2], found[3], bytes(found[4]))

    def head(self) -> tuple[int, str] | None:
        """(count, last hash) as recorded by the last append; None if the head row is gone."""
        with self._connect() as conn:
            found = conn.execute("SELECT seq, hash FROM ledger_head WHERE one = 1").fetchone()
        return None if found is None else (found[0], found[1])


def legacy_pin(last_entry: bytes | None, where: object) -> KeySpan:
    """The key of a ledger written before keys were pinned: the one its last entry is signed by."""
    try:
        doc = parse_entry(last_entry or b"")
    except ValueError:
        raise LedgerError(
            f"ledger {where}: its last entry is unreadable, so its signing key cannot be pinned; "
            "run `lineage-guard audit verify`"
        ) from None
    return KeySpan(doc["key_id"], doc["public_key"], 1)
