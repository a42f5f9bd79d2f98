"""The one psycopg connection a session reads metadata on: schema version, catalog, detection.

A plan used to open a connection for the schema-version query and another for detection (its data
fingerprint and any sampling): two connection set-ups per plan, the larger part of a warm plan's
cost (benchmarks/plan_cost.py). A `MetaConnection` is opened on first use and kept until the
session closes; reads (ADBC) and writes keep their own connections.

What keeps it correct on a long-lived connection:

- It is in autocommit mode with `default_transaction_read_only = on`: each `statement()` query is
  its own read-only transaction, so it sees the data, catalog and statistics committed before it.
  PostgreSQL caches `pg_stat_*` values for the rest of a transaction once read
  (`stats_fetch_consistency = cache`, the default): a transaction left open would keep serving old
  counters, and a data fingerprint built from them would call changed data unchanged. So no
  transaction is ever left open: `transaction()` always rolls back, and a connection found inside
  a transaction (or broken) is closed and a new one opened before the next use.
- `transaction()` starts with `pg_stat_clear_snapshot()` in the same statement that sets the
  timeout, so even the first statistics read in it is fresh (no extra round trip).
- One lock: the service plans on many threads, each on its own session, but a session shared
  between threads serializes on its connection instead of interleaving statements.

Errors are psycopg's own; callers sanitize them as they did for their one-shot connections
(`catalog_error`, `classify.sampling._sanitized`): the server's text never leaves.

Example:
    >>> meta = MetaConnection("postgresql://postgres@127.0.0.1/app")   # doctest: +SKIP
    >>> with meta.statement() as conn:                                    # doctest: +SKIP
    ...     conn.execute("SELECT 1").fetchone()
    >>> meta.close()                                                      # doctest: +SKIP
"""

from __future__ import annotations

import select
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any


def _has_unread(conn) -> bool:
    """Whether an idle connection has something to read: the server only speaks unasked to end it.

    A terminated backend (pg_terminate_backend, a restart, idle_session_timeout) sends its FATAL and
    closes the socket; found here (no round trip), the next use gets a new connection instead of an
    error. A connection dropped silently still fails its statement, and the one after reconnects.
    """
    try:
        return bool(select.select([conn.fileno()], [], [], 0)[0])
    except (OSError, ValueError):
        return True


class MetaConnection:
    """A lazily opened, reconnecting, read-only psycopg connection; see the module docstring.

    `statement_timeout_ms` bounds each statement (30 s, as the one-shot catalog reads had);
    `transaction(timeout_ms)` can set a tighter one for its own statements. `opened` counts the
    connections made (the benchmark and tests read it).
    """

    def __init__(self, url: str, *, statement_timeout_ms: int = 30_000):
        self._url = url
        self._timeout_ms = int(statement_timeout_ms)
        self._conn: Any = None
        self._lock = threading.RLock()
        self.opened = 0

    def _live(self):
        """The connection, (re)opened when missing, closed, broken or (never expected) inside a transaction."""
        import psycopg
        from psycopg.pq import TransactionStatus

        conn = self._conn
        if conn is not None and (conn.closed or conn.broken
                                 or conn.info.transaction_status != TransactionStatus.IDLE
                                 or _has_unread(conn)):
            with suppress(psycopg.Error):
                conn.close()
            conn = self._conn = None
        if conn is None:
            options = f"-c default_transaction_read_only=on -c statement_timeout={self._timeout_ms}"
            conn = psycopg.connect(self._url, autocommit=True, connect_timeout=10, options=options)
            self._conn = conn
            self.opened += 1
        return conn

    @contextmanager
    def statement(self) -> Iterator[Any]:
        """The connection for single statements, each its own read-only transaction (fresh snapshot and stats)."""
        with self._lock:
            yield self._live()

    @contextmanager
    def transaction(self, timeout_ms: int | None = None) -> Iterator[Any]:
        """The connection inside `BEGIN READ ONLY` (statement timeout `timeout_ms`), always rolled back."""
        import psycopg

        with self._lock:
            conn = self._live()
            conn.execute("BEGIN READ ONLY")
            try:
                conn.execute("SELECT set_config('statement_timeout', %s, true), pg_stat_clear_snapshot()",
                             (str(int(timeout_ms or self._timeout_ms)),))
                yield conn
            finally:
                with suppress(psycopg.Error):  # a broken connection is replaced by the next _live()
                    conn.execute("ROLLBACK")

    def close(self) -> None:
        """Close the connection (idempotent); a later use opens a new one."""
        import psycopg

        with self._lock:
            if self._conn is not None:
                with suppress(psycopg.Error):
                    self._conn.close()
                self._conn = None

    def __del__(self) -> None:  # a session dropped without close(): give the server its backend back now
        with suppress(Exception):
            if self._conn is not None:
                self._conn.close()
