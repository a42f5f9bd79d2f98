"""The ledger in PostgreSQL: a schema with an entries table and a one-row head.

Concurrent writers (many tasks, threads or processes) keep ONE chain: every
append locks the head row (`SELECT ... FOR UPDATE`), so appends are serialized
and each links to the one before. A commit (synchronous_commit on) is durable
before `append` returns. Triggers refuse UPDATE and DELETE on entries and on
`ledger_keys`, which pins the signing key (first append; rotations add one). Errors
name the PostgreSQL error class and SQLSTATE, never the server's text.

Example (needs a server):
    store = PostgresStore("postgresql://postgres@127.0.0.1:5432/app", schema="lineage_guard")
    store.head()   # (0, '000...') on a fresh ledger
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

from .chain import KeySpan, StoredRow
from .connections import ThreadConnections
from .entry import GENESIS, LedgerError
from .sqlite_store import legacy_pin

# build(seq, prev_hash, earlier_id_of_this_run, pinned_key) -> (row, key to pin from now on or None)
Build = Callable[[int, str, "str | None", "KeySpan | None"], "tuple[StoredRow, KeySpan | None]"]
_CREATE_LOCK = 0x6C675F6C6564  # "lg_led": serializes the CREATE statements of concurrent first users


def _where(url: str) -> str:
    parts = urlsplit(url)
    return f"postgresql://{parts.hostname or ''}{':' + str(parts.port) if parts.port else ''}{parts.path}"


class PostgresStore:
    """Entries and head in `<schema>.ledger_entries` / `<schema>.ledger_head`; `create=False` only opens."""

    def __init__(self, url: str, schema: str = "lineage_guard", create: bool = True):
        try:
            import psycopg
            from psycopg import sql
        except ImportError:
            raise LedgerError("a PostgreSQL ledger needs the [postgres] extra (psycopg)") from None
        self._psycopg = psycopg
        # synchronous_commit on: a commit is on disk before `append` returns, whatever the server default.
        self._conns = ThreadConnections(
            lambda: psycopg.connect(
                url, autocommit=True, connect_timeout=30, options="-c synchronous_commit=on"
            )
        )
        self.url = url
        self.where = _where(url)
        self.schema = schema
        ident = sql.Identifier(schema)
        self._q = {
            # The head, locked, with the pinned key in the same round trip.
            "head_lock": sql.SQL(
                "SELECT h.seq, h.hash, k.key_id, k.public_key, k.since_seq FROM {s}.ledger_head h"
                " LEFT JOIN LATERAL (SELECT key_id, public_key, since_seq FROM {s}.ledger_keys"
                " ORDER BY epoch DESC LIMIT 1) k ON true WHERE h.one = 1 FOR UPDATE OF h"
            ).format(s=ident),
            # After the lock, in its own statement: READ COMMITTED gives it a snapshot that sees every
            # append committed before ours, so a concurrent record of the same run is still found.
            "earlier": sql.SQL(
                "SELECT id FROM {}.ledger_entries WHERE run_id = %s ORDER BY seq DESC LIMIT 1"
            ).format(ident),
            # One round trip: insert the entry and move the head to it.
            "insert": sql.SQL(
                "WITH added AS (INSERT INTO {s}.ledger_entries (seq, id, run_id, hash, entry)"
                " VALUES (%s, %s, %s, %s, %s) RETURNING seq, hash)"
                " UPDATE {s}.ledger_head SET seq = added.seq, hash = added.hash FROM added WHERE one = 1"
            ).format(s=ident),
            "head": sql.SQL("SELECT seq, hash FROM {}.ledger_head WHERE one = 1").format(ident),
            "pins": sql.SQL("SELECT key_id, public_key, since_seq FROM {}.ledger_keys ORDER BY epoch").format(ident),
            "pin": sql.SQL(
                "INSERT INTO {s}.ledger_keys (epoch, key_id, public_key, since_seq)"
                " SELECT COALESCE(MAX(epoch), 0) + 1, %s, %s, %s FROM {s}.ledger_keys"
            ).format(s=ident),
            "last": sql.SQL("SELECT entry FROM {}.ledger_entries ORDER BY seq DESC LIMIT 1").format(ident),
            "rows": sql.SQL("SELECT seq, id, run_id, hash, entry FROM {}.ledger_entries ORDER BY seq").format(
                ident
            ),
            "row": sql.SQL("SELECT seq, id, run_id, hash, entry FROM {}.ledger_entries WHERE id = %s").format(
                ident
            ),
        }
        ddl = sql.SQL("""
            CREATE SCHEMA IF NOT EXISTS {s};
            CREATE TABLE IF NOT EXISTS {s}.ledger_entries (
                seq bigint PRIMARY KEY, id text NOT NULL UNIQUE, run_id text NOT NULL,
                hash text NOT NULL, entry bytea NOT NULL);
            CREATE INDEX IF NOT EXISTS ledger_entries_run_id ON {s}.ledger_entries (run_id);
            CREATE TABLE IF NOT EXISTS {s}.ledger_head (
                one int PRIMARY KEY CHECK (one = 1), seq bigint NOT NULL, hash text NOT NULL);
            INSERT INTO {s}.ledger_head (one, seq, hash) SELECT 1, 0, {genesis}
                WHERE NOT EXISTS (SELECT 1 FROM {s}.ledger_entries) ON CONFLICT DO NOTHING;
            CREATE OR REPLACE FUNCTION {s}.ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS
                $$ BEGIN RAISE EXCEPTION 'ledger entries are append-only'; END $$;
            CREATE OR REPLACE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON {s}.ledger_entries
                FOR EACH ROW EXECUTE FUNCTION {s}.ledger_append_only();
            CREATE TABLE IF NOT EXISTS {s}.ledger_keys (
                epoch int PRIMARY KEY, key_id text NOT NULL, public_key text NOT NULL, since_seq bigint NOT NULL);
            CREATE OR REPLACE TRIGGER ledger_keys_append_only BEFORE UPDATE OR DELETE ON {s}.ledger_keys
                FOR EACH ROW EXECUTE FUNCTION {s}.ledger_append_only();
        """).format(s=ident, genesis=sql.Literal(GENESIS))
        if not create:
            with self._connect() as conn:
                found = conn.execute("SELECT to_regclass(%s)", (f'"{schema}".ledger_entries',)).fetchone()[0]
            if found is None:
                raise LedgerError(
                    f"no ledger in schema {schema!r} at {self.where}: check --ledger / LINEAGE_GUARD_LEDGER_URL"
                )
            return
        with self._connect() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_CREATE_LOCK,))
            # Once the ledger is complete its DDL never runs again: CREATE OR REPLACE TRIGGER locks the
            # tables an append is writing, and a second process opening the ledger while the first
            # appends would deadlock with it (40P01).
            done = conn.execute(
                "SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'ledger_keys_append_only' "
                "AND tgrelid = to_regclass(%s))", (f'"{schema}".ledger_keys',)).fetchone()[0]
            if not done:
                conn.execute(ddl)

    def __repr__(self) -> str:
        return f"PostgresStore({self.where!r}, schema={self.schema!r})"

    @contextmanager
    def _connect(self) -> Iterator:
        psycopg = self._psycopg
        try:
            yield self._conns.get()
        except psycopg.Error as exc:
            self._conns.discard()
            # The server's message can quote values; name only the class and SQLSTATE.
            state = getattr(exc, "sqlstate", None)
            detail = (
                f"SQLSTATE {state}"
                if state
                else "no SQLSTATE: check the URL, that the server is up and the credentials"
            )
            raise LedgerError(f"ledger {self.where}: PostgreSQL {type(exc).__name__} ({detail})") from None

    def connection(self):
        """This thread's connection, errors named as ledger errors: for the derived search index
        (`index.py`), which keeps its side tables in the ledger's own database."""
        return self._connect()

    def close(self) -> None:
        """Close this process's connections."""
        self._conns.close()

    def append(self, run_id: str, build: Build) -> StoredRow:
        """Append the row `build(seq, prev_hash, previous_id_of_this_run, pinned_key)` as the new head, durably."""
        with self._connect() as conn, conn.transaction():
            head = conn.execute(self._q["head_lock"]).fetchone()
            if head is None:
                raise LedgerError(
                    f"ledger {self.where}: its head row is missing; run `lineage-guard audit verify`"
                )
            seq, prev, *pinned = head
            earlier = conn.execute(self._q["earlier"], (run_id,)).fetchone()
            current = KeySpan(*pinned) if pinned[0] is not None else self._legacy_pin(conn, seq)
            row, pin = build(seq + 1, prev, earlier[0] if earlier else None, current)
            conn.execute(self._q["insert"], (row.seq, row.id, row.run_id, row.hash, row.entry))
            if pin is not None:
                conn.execute(self._q["pin"], (pin.key_id, pin.public_key, pin.since))
        return row

    def _legacy_pin(self, conn, seq: int) -> KeySpan | None:
        """No key pinned yet: none on an empty ledger; a ledger older than pinning pins its last entry's key now."""
        if seq == 0:
            return None
        last = conn.execute(self._q["last"]).fetchone()
        pin = legacy_pin(bytes(last[0]) if last else None, self.where)
        conn.execute(self._q["pin"], (pin.key_id, pin.public_key, pin.since))
        return pin

    def pins(self) -> list[KeySpan]:
        """The pinned signing keys, oldest first (the last one signs now)."""
        with self._connect() as conn:
            if conn.execute("SELECT to_regclass(%s)", (f'"{self.schema}".ledger_keys',)).fetchone()[0] is None:
                return []  # a ledger from before pinning, opened read-only
            found = conn.execute(self._q["pins"]).fetchall()
        return [KeySpan(*row) for row in found]

    def rows(self) -> Iterator[StoredRow]:
        """Every stored row in sequence order."""
        with self._connect() as conn:  # fetched whole: no cursor stays open on the shared connection
            found = conn.execute(self._q["rows"]).fetchall()
        for seq, entry_id, run_id, hash_, entry in found:
            yield StoredRow(seq, entry_id, run_id, hash_, bytes(entry))

    def row(self, entry_id: str) -> StoredRow | None:
        """The stored row with this id, if any."""
        with self._connect() as conn:
            found = conn.execute(self._q["row"], (entry_id,)).fetchone()
        return None if found is None else StoredRow(found[0], found[1], found[2], found[3], bytes(found[4]))

    def head(self) -> tuple[int, str] | None:
        """(count, last hash) as recorded by the last append; None if the head row is gone."""
        with self._connect() as conn:
            found = conn.execute(self._q["head"]).fetchone()
        return None if found is None else (found[0], found[1])
