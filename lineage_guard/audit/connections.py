"""One open database connection per thread (and per process), reused across ledger calls.

Opening a connection per append cost more than the append itself (PostgreSQL's
handshake; SQLite's checkpoint when its last connection closes). Connections are
never shared between threads, and a forked child opens its own instead of using
its parent's.

Example:
    >>> import sqlite3
    >>> pool = ThreadConnections(lambda: sqlite3.connect(":memory:"))
    >>> pool.get() is pool.get()
    True
    >>> pool.close()
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from contextlib import suppress
from typing import Any


class ThreadConnections:
    """Lazily opens a connection per thread with `open_fn`; `discard()` drops a broken one."""

    def __init__(self, open_fn: Callable[[], Any]):
        self._open = open_fn
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._local = threading.local()
        self._all: list[Any] = []

    def get(self) -> Any:
        if os.getpid() != self._pid:  # forked: the parent's connections are not ours to use or close
            self._reset()
        conn = getattr(self._local, "conn", None)
        if conn is None or getattr(conn, "closed", False):
            conn = self._open()
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def discard(self) -> None:
        """Close and forget this thread's connection (after an error left it in an unknown state)."""
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with self._lock:
                self._all = [c for c in self._all if c is not conn]
            _quiet_close(conn)

    def close(self) -> None:
        """Close every connection this process opened."""
        if os.getpid() != self._pid:
            self._reset()
            return
        with self._lock:
            conns, self._all = self._all, []
        self._local = threading.local()
        for conn in conns:
            _quiet_close(conn)


def _quiet_close(conn: Any) -> None:
    with suppress(Exception):  # closing a broken connection may fail; it is gone either way
        conn.close()
