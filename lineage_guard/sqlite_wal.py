"""Put a SQLite state file (ledger, outbox, approvals) in WAL mode, safely under concurrency.

Changing the journal mode does not wait on SQLite's busy handler, so several processes opening
a new file at the same moment can see "database is locked": this retries for a while instead.
"""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from pathlib import Path


def enable_wal(path: Path, patience_s: float = 30.0) -> None:
    """Make `path` a WAL database (persistent on the file); raises sqlite3.Error after `patience_s`."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            with closing(sqlite3.connect(path, timeout=patience_s, isolation_level=None)) as conn:
                if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                    conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
