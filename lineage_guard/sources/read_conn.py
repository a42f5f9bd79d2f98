"""The one ADBC read connection a session keeps between its reads, reset after each.

Every governed read used to open its own connection (about 4 ms of wall, 0.4 ms CPU on a shared
database handle, plus a backend start on the server) and close it at the end, so nothing a read's
statement set could reach the next read. A `ReadConnections` keeps that guarantee with one
connection per session (`GovernedSession` owns one; nothing else shares it: not another session,
identity or caller):

- A read takes the kept connection if there is one, else opens one. It holds it alone until the
  read ends: a second read started while a stream is still open finds none kept and opens its
  own. A connection is never used by two reads at once, so never by two threads at once.
- Only a read that ended cleanly gives its connection back: read to the end and `ROLLBACK`
  succeeded (`BatchStream._finish`). Before it is kept it is reset with `DISCARD ALL`, which
  PostgreSQL runs only outside a transaction block, so a transaction still open fails the reset.
  A failed reset, a read cancelled, errored, timed out or not read to the end: the connection is
  closed, as every read's was before (fail closed).
- What the ROLLBACK + DISCARD ALL pair undoes: the read's transaction (and with it `SET`,
  `set_config`, cursors, LISTEN, transaction-level advisory locks, written rows of temp tables);
  then session-level advisory locks (`pg_advisory_lock` survives a ROLLBACK), prepared statements,
  WITH HOLD cursors, temp tables, session GUCs, `SET ROLE` / `SET SESSION AUTHORIZATION`, LISTEN,
  cached plans and sequence state. What it does not: a custom setting's name, once set, stays
  defined (`current_setting('x.y', true)` is '' instead of NULL; its value is gone), the backend is
  the same (`pg_backend_pid()`, its statistics and catalog caches), a library `LOAD`ed stays loaded,
  and an extension's own session state (dblink/postgres_fdw connections) is not touched; a prepared
  transaction or anything committed outlives any connection anyway. The read path's read-only
  transaction refuses the writes that would create most of these (temp tables, sequences), and the
  guard refuses the statements that would reach the rest before they get here.
- A kept connection on a database handle renewed since (a type the old handle did not know,
  `adbc_databases.renew`) is closed instead of reused, and a kept connection whose backend went
  away (terminated, `idle_session_timeout`) fails the read's first setup statement: the read then
  opens a new connection and starts again (nothing of the statement has run).
- `close()` (the session's) closes the kept connection; a read after that is not kept. A session
  dropped without `close()` closes it when collected.

`opened` and `reused` count connections made and reads that reused one (tests and the benchmark).

Example:
    >>> reads = ReadConnections()
    >>> src.stream("SELECT 1 AS one", keep=reads).schema         # doctest: +SKIP
    >>> reads.close()
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any


class ReadConnections:
    """At most one idle, reset read connection of one session; see the module docstring. Thread-safe."""

    def __init__(self) -> None:
        self._idle: Any = None
        self._lock = threading.Lock()
        self._closed = False
        self.opened = 0
        self.reused = 0

    def take(self, uri: str, connect: Callable[[], Any]) -> tuple[Any, bool]:
        """A connection for one read, this caller's alone until `give_back` or its close; and whether it was kept."""
        with self._lock:
            conn, self._idle = self._idle, None
        if conn is not None:
            if conn.uri == uri and conn.current:
                with self._lock:
                    self.reused += 1
                return conn, True
            _close(conn)
        conn = connect()
        with self._lock:
            self.opened += 1
        return conn, False

    def give_back(self, conn: Any) -> bool:
        """A read that ended cleanly (ROLLBACK done) returns its connection: reset and kept, else closed.

        Returns whether it was kept. Only one connection is kept; a second (from a concurrent read) is closed.
        """
        try:
            conn.reset()
        except Exception:  # noqa: BLE001 - a connection that cannot be reset is not reused (fail closed)
            _close(conn)
            return False
        with self._lock:
            if self._idle is None and not self._closed:
                self._idle = conn
                return True
        _close(conn)
        return False

    def close(self) -> None:
        """Close the kept connection; reads after this are not kept. Idempotent."""
        with self._lock:
            self._closed = True
            conn, self._idle = self._idle, None
        if conn is not None:
            _close(conn)

    def __del__(self) -> None:  # a session dropped without close(): give the server its backend back now
        with contextlib.suppress(Exception):
            conn, self._idle = self._idle, None
            if conn is not None:
                conn.close()


def _close(conn: Any) -> None:
    with contextlib.suppress(Exception):
        conn.close()
