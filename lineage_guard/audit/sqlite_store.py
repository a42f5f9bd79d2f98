"""The ledger in a SQLite file: WAL, synchronous=FULL, one writer at a time.

Appends run in `BEGIN IMMEDIATE`, so writers in other threads or processes wait
their turn and the chain stays one chain; a commit is on disk before `append`
returns. Triggers refuse UPDATE and DELETE on entries (defence in depth: the
chain verification is what proves nothing changed).

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
from .chain import StoredRow
from .connections import ThreadConnections
from .entry import GENESIS, LedgerError

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
"""

Build = Callable[[int, str, "str | None"], StoredRow]


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

    def close(self) -> None:
        """Close this process's connections (the last close checkpoints the WAL into the file)."""
        self._conns.close()

    def append(self, run_id: str, build: Build) -> StoredRow:
        """Append the row `build(seq, prev_hash, previous_id_of_this_run)` as the new head, durably."""
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
                row = build(seq + 1, prev, earlier[0] if earlier else None)
                conn.execute(
                    "INSERT INTO ledger_entries (seq, id, run_id, hash, entry) VALUES (?, ?, ?, ?, ?)",
                    (row.seq, row.id, row.run_id, row.hash, row.entry),
                )
                conn.execute("UPDATE ledger_head SET seq = ?, hash = ? WHERE one = 1", (row.seq, row.hash))
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        return row

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
