"""A session reads on one connection, and nothing a read leaves on it reaches the next read.

Every governed read used to open its own connection. A `GovernedSession` now keeps one between its
reads (`lineage_guard/sources/read_conn.py`): reset with `DISCARD ALL` after a read that ended
cleanly, closed after any other end. The attacks run at the source level, on the session's own
`ReadConnections`, with statements the guard would refuse: the first read tries to leave state on
the connection, the second (same backend, checked by pid) looks for it. `NoReset` keeps the
connection without `DISCARD ALL`, to show what the reset is for. Connections are counted on the
server (pg_stat_activity of a database of the test's own), not by mocking.
"""

from __future__ import annotations

import threading
import time

import pytest
from conftest import CORPUS, require

from lineage_guard import GovernedSession, Identity
from lineage_guard.errors import SourceError
from lineage_guard.sources import PostgresSource
from lineage_guard.sources.read_conn import ReadConnections

psycopg = require("psycopg", "postgres")  # fails under CI=true instead of skipping
POLICY = CORPUS / "policy.yaml"
PEEK = ("SELECT pg_backend_pid() AS pid,"
        " (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()) AS locks,"
        " (SELECT count(*) FROM pg_prepared_statements) AS prepared,"
        " (SELECT count(*) FROM pg_cursors WHERE is_holdable) AS cursors,"
        " (SELECT count(*) FROM pg_listening_channels()) AS listening,"
        " to_regclass('pg_temp.lg_left_behind') IS NOT NULL AS temp_table,"
        " current_setting('application_name') AS app,"
        " current_setting('work_mem') AS work_mem,"
        " current_setting('lg.note', true) AS note")


class NoReset(ReadConnections):
    """The kept connection without its reset (only the read's statements closed): what DISCARD ALL prevents."""

    def give_back(self, conn) -> bool:
        for stmt in list(conn._statements):
            conn._close_statement(stmt)
        with self._lock:
            self._idle = conn
        return True


@pytest.fixture
def url(new_database):
    url = new_database()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute((CORPUS / "schema.sql").read_text())
    return url


def _session(url: str, source=None) -> GovernedSession:
    return GovernedSession(source or url, POLICY, Identity("svc-training", "service"), "ai_training")


def _backends(url: str, exclude=frozenset(), expect: int | None = None) -> set[int]:
    """Client backends on the test's database, other than this observer and `exclude`.

    A closed connection's backend leaves pg_stat_activity a moment after the client closed it: with
    `expect`, look again (up to 3 s) until that many are left.
    """
    deadline = time.monotonic() + 3
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                                " AND backend_type = 'client backend' AND pid <> pg_backend_pid()").fetchall()
            pids = {pid for (pid,) in rows} - set(exclude)
            if expect is None or len(pids) == expect or time.monotonic() > deadline:
                return pids
            time.sleep(0.05)


def _read_backends(url: str, s: GovernedSession, expect: int | None = None) -> set[int]:
    """The session's read connections on the server: its backends but the metadata connection's."""
    meta = s._meta._conn.info.backend_pid if s._meta is not None and s._meta._conn is not None else None
    return _backends(url, {meta}, expect)


def _one(src: PostgresSource, sql: str, keep) -> dict:
    with src.stream(sql, keep=keep) as batches:
        rows = [row for batch in batches for row in batch.to_pylist()]
    return rows[0] if rows else {}


def _outsider_can_lock(url: str, key: int) -> bool:
    with psycopg.connect(url, autocommit=True) as conn:
        got = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]
        if got:
            conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
        return got


ATTACKS = {
    # ROLLBACK alone keeps both: a session-level advisory lock and a prepared statement are not transactional.
    "advisory lock": ("SELECT pg_advisory_lock(42)::text AS locked", "locks"),
    "prepared statement": ("PREPARE lg_p AS SELECT 1", "prepared"),   # the driver runs it as is (no COPY)
}


@pytest.mark.parametrize("keep", [ReadConnections, NoReset], ids=["reset", "no-reset"])
@pytest.mark.parametrize("attack", list(ATTACKS))
def test_a_read_that_leaves_a_lock_or_a_prepared_statement_leaves_nothing_for_the_next(url, keep, attack):
    sql, counter = ATTACKS[attack]
    src, reads = PostgresSource(url), keep()
    try:
        pid = _one(src, "SELECT pg_backend_pid() AS pid", reads)["pid"]
        _one(src, sql, reads)
        second = _one(src, PEEK, reads)
        assert second["pid"] == pid, "not the same connection: nothing was reused"
        survived = (second[counter], _outsider_can_lock(url, 42))
        if keep is NoReset:   # without DISCARD ALL the next read finds it (and no one else can take lock 42)
            assert survived == (1, attack != "advisory lock")
        else:
            assert survived == (0, True)
    finally:
        reads.close()


def test_settings_a_read_sets_for_the_session_do_not_reach_the_next(url):
    with _session(url) as s:
        src, reads = s.source, s._read_connections()
        before = _one(src, PEEK, reads)
        _one(src, "SELECT set_config('application_name', 'x', false) AS a, set_config('work_mem', '77MB', false) AS w,"
                  " set_config('lg.note', 'left by read 1', false) AS n", reads)
        after = _one(src, PEEK, reads)
    assert after["pid"] == before["pid"]
    assert (after["app"], after["work_mem"]) == (before["app"], before["work_mem"]) != ("x", "77MB")
    # The custom setting's value is gone; its name stays defined ('' instead of NULL): see read_conn.
    assert after["note"] in (None, "")


def test_prepare_and_temp_tables_are_refused_on_the_read_path(url):
    with _session(url) as s:
        src, reads = s.source, s._read_connections()
        for sql in ("SELECT 1 AS a; PREPARE lg_p AS SELECT 1", "CREATE TEMP TABLE lg_left_behind (x int)",
                    "SELECT 1 AS a; CREATE TEMP TABLE lg_left_behind (x int)"):
            with pytest.raises(SourceError):
                _one(src, sql, reads)
        with pytest.raises(SourceError):   # EXPLAIN (the binding check's) wraps it: a syntax error too
            with src.stream("PREPARE lg_p AS SELECT 1", verify=lambda plan: None, keep=reads):
                pass
        after = _one(src, PEEK, reads)
    assert (after["prepared"], after["temp_table"]) == (0, False)


@pytest.mark.parametrize("keep", [ReadConnections, NoReset], ids=["reset", "no-reset"])
def test_what_a_connection_is_given_back_with_is_discarded(url, keep):
    """State the read path cannot create (it refuses PREPARE, temp tables, WITH HOLD): left directly on the
    connection before it is given back, as a driver or future path might; the reset must clear it all."""
    from lineage_guard.sources.postgres import _uri_with_timeout

    src, reads = PostgresSource(url), keep()
    pid = _one(src, "SELECT pg_backend_pid() AS pid", reads)["pid"]
    # Take the kept connection the way a read does, leave state on it, give it back.
    conn, kept = reads.take(_uri_with_timeout(src._url), lambda: pytest.fail("the kept connection was not lent"))
    assert kept
    for sql in ("PREPARE lg_p AS SELECT 1", "CREATE TEMP TABLE lg_left_behind (x int)", "LISTEN lg_channel",
                "BEGIN", "DECLARE lg_c CURSOR WITH HOLD FOR SELECT 1", "COMMIT",
                "SELECT pg_advisory_lock(43)", "SET application_name = 'x'"):
        conn.execute(sql)
    reads.give_back(conn)
    after = _one(src, PEEK, reads)
    reads.close()
    assert after["pid"] == pid
    left = {k: after[k] for k in ("locks", "prepared", "cursors", "listening", "temp_table")}
    if keep is NoReset:
        assert left == {"locks": 1, "prepared": 1, "cursors": 1, "listening": 1, "temp_table": True}
        assert after["app"] == "x"
    else:
        assert left == {"locks": 0, "prepared": 0, "cursors": 0, "listening": 0, "temp_table": False}
        assert after["app"] != "x"


def test_n_reads_in_a_session_use_one_read_connection(url):
    with _session(url) as s:
        seen = []
        for _ in range(6):
            assert s.read_arrow("SELECT id, plan FROM customers WHERE id <= 10").num_rows == 10
            seen.append(_read_backends(url, s))
        assert s._reads.opened == 1 and s._reads.reused == 5
    assert len(seen[0]) == 1 and all(pids == seen[0] for pids in seen), seen


def test_an_errored_a_timed_out_or_an_unfinished_read_does_not_leave_its_connection(url):
    with _session(url, PostgresSource(url, statement_timeout_ms=300, batch_rows=5)) as s:
        src, reads = s.source, s._read_connections()
        kept = _one(src, "SELECT pg_backend_pid() AS pid", reads)["pid"]
        assert _read_backends(url, s) == {kept}
        ends = {
            "error": "SELECT 1 / (pg_backend_pid() - pg_backend_pid()) AS boom",
            "timeout": "SELECT pg_sleep(2) AS slept",
        }
        for what, sql in ends.items():
            with pytest.raises(SourceError):
                _one(src, sql, reads)
            assert _read_backends(url, s, expect=0) == set(), f"{what}: the connection was not closed"
            kept = _one(src, "SELECT pg_backend_pid() AS pid", reads)["pid"]
        # Not read to the end (the caller stops after the first of several batches): cancelled, closed.
        with s.stream("SELECT id, plan FROM customers") as batches:
            next(iter(batches))
        assert _read_backends(url, s, expect=0) == set()
        # The caller's own code fails inside the block, after its first batch.
        with pytest.raises(RuntimeError), s.stream("SELECT id, plan FROM customers") as batches:
            next(iter(batches))
            raise RuntimeError("consumer failed")
        assert _read_backends(url, s, expect=0) == set()
        assert s.read_arrow("SELECT id FROM customers WHERE id <= 3").num_rows == 3
        assert len(_read_backends(url, s, expect=1)) == 1 and reads.opened == 5


def test_two_streams_open_at_once_use_two_connections(url):
    # One row per batch: a stream of 50 rows is still open after its first batch.
    with _session(url, PostgresSource(url, batch_rows=1)) as s:
        s.read_arrow("SELECT id FROM customers WHERE id <= 2")
        with s.stream("SELECT id FROM customers") as one:
            first = next(iter(one)).num_rows
            with s.stream("SELECT plan FROM customers") as two:
                assert next(iter(two)).num_rows == 1
                assert len(_read_backends(url, s)) == 2
                assert 1 + sum(b.num_rows for b in two) == 50
            assert first + sum(b.num_rows for b in one) == 50
        assert len(_read_backends(url, s, expect=1)) == 1   # one kept, the other closed
        assert s._reads.opened == 2


def test_closing_or_dropping_the_session_leaves_no_backend(url):
    s = _session(url)
    s.read_arrow("SELECT id FROM customers WHERE id <= 2")
    assert len(_read_backends(url, s)) == 1
    s.close()
    assert _backends(url, expect=0) == set()
    s = _session(url)
    s.read_arrow("SELECT id FROM customers WHERE id <= 2")
    assert len(_backends(url)) == 2   # the read connection and the metadata connection
    del s   # never closed (as the service's per-call sessions): its connections go with it, no gc needed
    assert _backends(url, expect=0) == set()


def test_sessions_never_share_a_read_connection(url):
    with _session(url) as a, _session(url) as b:
        src = a.source
        pa_ = _one(src, "SELECT pg_backend_pid() AS pid", a._read_connections())["pid"]
        pb = _one(b.source, "SELECT pg_backend_pid() AS pid", b._read_connections())["pid"]
        assert pa_ != pb
        # Reads on two threads of one session: each holds the connection alone, or has its own.
        errors: list[BaseException] = []

        def read() -> None:
            try:
                for _ in range(5):
                    assert a.read_arrow("SELECT id FROM customers WHERE id <= 4").num_rows == 4
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=read) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert len(_backends(url, {a._meta._conn.info.backend_pid, pb}, expect=1)) == 1   # b's is not a's


def test_a_kept_connection_whose_backend_was_terminated_is_replaced(url):
    with _session(url) as s:
        s.read_arrow("SELECT id FROM customers WHERE id <= 2")
        [pid] = _read_backends(url, s)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        assert s.read_arrow("SELECT id FROM customers WHERE id <= 2").num_rows == 2
        assert _read_backends(url, s, expect=1) not in (set(), {pid}) and s._reads.opened == 2


def test_a_type_created_since_the_kept_connection_is_read_on_a_renewed_handle(url):
    from lineage_guard.sources import adbc_databases

    with _session(url) as s:
        src, reads = s.source, s._read_connections()
        _one(src, "SELECT 1 AS one", reads)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TYPE lg_mood AS ENUM ('ok', 'sad')")
        # The kept connection's handle predates the type: it is dropped, the handle renewed, the read redone.
        assert _one(src, "SELECT 'sad'::lg_mood AS m", reads) == {"m": "sad"}
        assert reads.opened == 2
        assert _one(src, "SELECT 'ok'::lg_mood AS m", reads) == {"m": "ok"} and reads.opened == 2
        # A connection kept on a handle renewed by another reader since is not reused.
        conn, _ = reads.take(reads._idle.uri, lambda: None)
        reads.give_back(conn)
        adbc_databases.renew(conn.uri, conn.database)
        assert _one(src, "SELECT 1 AS one", reads) == {"one": 1} and reads.opened == 3
