"""A durable, ordered outbox of OpenLineage events (SQLite in the state folder).

Events are written here before anything is shipped, so a backend outage loses
nothing. Rows keep their insertion order (`seq`); shipping marks a row shipped
only after the backend accepted it, oldest first, stopping at the first failure.
The outbox also enforces the run protocol: one START and at most one terminal
event per run, nothing after the terminal event.

Example:
    >>> box = Outbox()                                   # lineage_guard.paths.state_file("outbox.sqlite")
    >>> box.enqueue(build_event(run, "START"))           # doctest: +SKIP
    >>> box.counts()
    {'queued': 0, 'shipped': 0, 'rejected': 0}
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from .. import paths
from ..errors import LineageGuardError
from ..sqlite_wal import enable_wal

FILE_NAME = "outbox.sqlite"
TERMINAL = ("COMPLETE", "FAIL", "ABORT")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id     TEXT NOT NULL,
    event_type TEXT NOT NULL,
    event_time TEXT NOT NULL,
    event_ts   REAL NOT NULL,
    body       TEXT NOT NULL,
    queued_at  REAL NOT NULL,
    shipped_at REAL,
    rejected_at REAL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    UNIQUE (run_id, event_type)
);
CREATE INDEX IF NOT EXISTS events_unshipped ON events (seq) WHERE shipped_at IS NULL AND rejected_at IS NULL;
CREATE INDEX IF NOT EXISTS events_time ON events (event_ts);
"""


class OutboxError(LineageGuardError):
    """An event breaks the run protocol (second START, event after the terminal one) or is malformed."""


@dataclass(frozen=True)
class QueuedEvent:
    seq: int
    run_id: str
    event_type: str
    event: dict


class Outbox:
    """The SQLite outbox at `path` (default: `state_file("outbox.sqlite")`)."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else paths.state_file(FILE_NAME)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._connect() as db:
            enable_wal(self.path)  # readers and one writer never block each other
            db.executescript(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # One connection per thread, kept open: closing the last connection checkpoints the WAL
        # (an fsync), which would otherwise dominate the data path's cost. Other processes use their own.
        # A connection inherited through fork (Airflow's executors fork) must not be reused.
        try:
            db, pid = getattr(self._local, "db", None), getattr(self._local, "pid", None)
            if db is None or pid != os.getpid():
                db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
                db.execute("PRAGMA synchronous=NORMAL")
                self._local.db, self._local.pid = db, os.getpid()
            yield db
        except sqlite3.Error as exc:  # SQLite's messages name the problem, never a stored value
            raise OutboxError(f"lineage outbox {self.path}: {exc} ({type(exc).__name__}); check that the state "
                              "folder (LINEAGE_GUARD_HOME) is writable and has free space") from None

    def close(self) -> None:
        """Close this thread's connection (others close when their thread ends)."""
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    def enqueue(self, event: dict) -> int:
        """Store `event` durably; return its sequence number. Raises OutboxError on a protocol breach."""
        try:
            run_id, event_type, event_time = event["run"]["runId"], event["eventType"], event["eventTime"]
        except (KeyError, TypeError):
            raise OutboxError("lineage outbox: an event needs run.runId, eventType and eventTime") from None
        try:
            event_ts = datetime.fromisoformat(event_time).timestamp()
        except (TypeError, ValueError):
            raise OutboxError(f"lineage outbox: eventTime {event_time!r} is not an ISO 8601 date-time") from None
        body = json.dumps(event, separators=(",", ":"), sort_keys=True)
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                types = {t for (t,) in db.execute("SELECT event_type FROM events WHERE run_id = ?", (run_id,))}
                if types & set(TERMINAL):
                    raise OutboxError(f"lineage outbox: run {run_id} already ended ({min(types & set(TERMINAL))}); "
                                      "nothing may follow a terminal event")
                if event_type in types:
                    raise OutboxError(f"lineage outbox: run {run_id} already has a {event_type} event")
                seq = db.execute(
                    "INSERT INTO events (run_id, event_type, event_time, event_ts, body, queued_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)", (run_id, event_type, event_time, event_ts, body, time.time())).lastrowid
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return int(seq)

    def has(self, run_id: str, event_type: str) -> bool:
        with self._connect() as db:
            return db.execute("SELECT 1 FROM events WHERE run_id = ? AND event_type = ?",
                              (run_id, event_type)).fetchone() is not None

    def pending(self, limit: int | None = None) -> list[QueuedEvent]:
        """Events still to ship, oldest first (rejected ones are set aside, see `mark_rejected`)."""
        sql = ("SELECT seq, run_id, event_type, body FROM events WHERE shipped_at IS NULL AND rejected_at IS NULL "
               "ORDER BY seq")
        with self._connect() as db:
            rows = db.execute(sql + (" LIMIT ?" if limit else ""), (limit,) if limit else ()).fetchall()
        return [QueuedEvent(s, r, t, json.loads(b)) for s, r, t, b in rows]

    def mark_shipped(self, seq: int) -> None:
        with self._connect() as db:
            db.execute("UPDATE events SET shipped_at = ?, attempts = attempts + 1, last_error = NULL "
                       "WHERE seq = ? AND shipped_at IS NULL", (time.time(), seq))

    def mark_failed(self, seq: int, error: str) -> None:
        """Record a failed attempt; `error` must be value-free (an exception class, an HTTP status)."""
        with self._connect() as db:
            db.execute("UPDATE events SET attempts = attempts + 1, last_error = ? WHERE seq = ?", (error, seq))

    def mark_rejected(self, seq: int, error: str) -> None:
        """The backend refused this event as invalid (HTTP 4xx): set it aside so it cannot block the queue.

        It stays in the outbox (`export` shows it, `requeue_rejected` puts it back).
        """
        with self._connect() as db:
            db.execute("UPDATE events SET rejected_at = ?, attempts = attempts + 1, last_error = ? WHERE seq = ?",
                       (time.time(), error, seq))

    def requeue_rejected(self) -> int:
        """Put every rejected event back in the queue (after fixing the backend); returns how many."""
        with self._connect() as db:
            return db.execute("UPDATE events SET rejected_at = NULL WHERE rejected_at IS NOT NULL").rowcount

    def prune(self, older_than_days: float) -> int:
        """Delete shipped events queued more than `older_than_days` ago; queued/rejected ones are kept."""
        if older_than_days < 0:
            raise OutboxError("lineage outbox: --older-than-days must be zero or more")
        cutoff = time.time() - older_than_days * 86400
        with self._connect() as db:
            return db.execute("DELETE FROM events WHERE shipped_at IS NOT NULL AND queued_at < ?",
                              (cutoff,)).rowcount

    def counts(self) -> dict[str, int]:
        """{"queued": n, "shipped": n, "rejected": n}."""
        with self._connect() as db:
            queued, shipped, rejected = db.execute(
                "SELECT COALESCE(SUM(shipped_at IS NULL AND rejected_at IS NULL), 0), "
                "COALESCE(SUM(shipped_at IS NOT NULL), 0), COALESCE(SUM(rejected_at IS NOT NULL), 0) FROM events"
            ).fetchone()
        return {"queued": int(queued), "shipped": int(shipped), "rejected": int(rejected)}

    def status(self) -> dict:
        """Counts plus the oldest queued event's time and the last shipping error, for `lineage status`."""
        out: dict = self.counts()
        with self._connect() as db:
            row = db.execute("SELECT event_time, attempts, last_error FROM events WHERE shipped_at IS NULL "
                             "AND rejected_at IS NULL ORDER BY seq LIMIT 1").fetchone()
        out["oldest_queued"] = row[0] if row else None
        out["attempts"] = row[1] if row else 0
        out["last_error"] = row[2] if row else None
        return out

    def events(self, run_id: str | None = None, since: datetime | None = None,
               until: datetime | None = None) -> list[dict]:
        """Stored events (shipped or not) in order, filtered by run id and/or eventTime window [since, until)."""
        clauses, args = [], []
        if run_id:
            clauses.append("run_id = ?")
            args.append(run_id)
        if since:
            clauses.append("event_ts >= ?")
            args.append(since.timestamp())
        if until:
            clauses.append("event_ts < ?")
            args.append(until.timestamp())
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        with self._connect() as db:
            return [json.loads(b) for (b,) in db.execute(f"SELECT body FROM events{where} ORDER BY seq", args)]
