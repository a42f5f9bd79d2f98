"""One ADBC PostgreSQL database handle per URI, shared by the reads that open connections on it.

Opening an `AdbcDatabase` makes the driver load the server's whole type table (`pg_type`): about
35 ms of CPU and 50 ms of wall per handle, against 0.4 ms / 4 ms for a connection on a handle
already open. The handle, which holds the URI and the type table, is shared by every reader of
the URI; a connection is one reader's (a session keeps its own between its reads, reset:
`sources.read_conn`). A type created after the handle was opened is unknown to it (its column
would come back as opaque bytes): the reader that sees such a column calls `renew(uri)` and reads
again on a new connection on a new handle (`sources.postgres.BatchStream`); a session's kept
connection on a renewed handle is closed instead of reused (`DatabaseLease.current`). A renewed
handle is closed once its last connection is.

Example:
    >>> lease = lease_database("postgresql://postgres@127.0.0.1:5432/postgres")   # doctest: +SKIP
    >>> conn = adbc_driver_manager.AdbcConnection(lease.database)                  # doctest: +SKIP
    >>> conn.close(); lease.release()                                              # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from typing import Any

_LOCK = threading.Lock()


@dataclass
class DatabaseLease:
    """A database handle held by one connection until `release()`."""

    database: Any
    _entry: _Entry = field(repr=False)
    _released: bool = False

    @property
    def current(self) -> bool:
        """Whether the handle is still the one handed out for its URI (not renewed since)."""
        return not self._entry.retired

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        with _LOCK:
            self._entry.users -= 1
            close = self._entry.retired and self._entry.users == 0
        if close:
            with contextlib.suppress(Exception):
                self._entry.database.close()


@dataclass
class _Entry:
    database: Any
    users: int = 0
    retired: bool = False


_HANDLES: dict[str, _Entry] = {}


def lease_database(uri: str, connect: Any = None) -> DatabaseLease:
    """The shared handle for `uri` (opened on first use), counted as in use until the lease is released.

    Connections are opened by the caller; opening the handle is serialized here (one type-table load
    per URI, not one per concurrent caller).
    """
    with _LOCK:
        entry = _HANDLES.get(uri)
        if entry is None:
            if connect is None:
                import adbc_driver_postgresql

                connect = adbc_driver_postgresql.connect
            entry = _HANDLES[uri] = _Entry(connect(uri))
        entry.users += 1
        return DatabaseLease(entry.database, entry)


def renew(uri: str, stale: Any) -> None:
    """Stop handing out `stale` (the handle whose type table missed a type); the next lease opens a new one."""
    with _LOCK:
        entry = _HANDLES.get(uri)
        if entry is None or entry.database is not stale:
            return   # another reader renewed it already
        del _HANDLES[uri]
        entry.retired = True
        close = entry.users == 0
    if close:
        with contextlib.suppress(Exception):
            entry.database.close()
