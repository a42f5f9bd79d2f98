"""One ADBC PostgreSQL connection through the driver manager's low-level API, without its DB-API layer.

`adbc_driver_manager.dbapi` imports `pyarrow.dataset` and, through it, pandas: about a third of
a fresh task process's time before its first row (benchmarks/cold_start.py). The read path needs
four things (run a statement, stream a query's Arrow batches, cancel, close; and reset, for a
connection a session keeps), which the
low-level `AdbcDatabase` / `AdbcConnection` / `AdbcStatement` give directly; errors are the same
`adbc_driver_manager` exceptions with their SQLSTATE, so `pg_errors` classifies them as before.

    >>> conn = Connection("postgresql://postgres@127.0.0.1:5432/postgres")   # doctest: +SKIP
    >>> conn.execute("BEGIN TRANSACTION READ ONLY")                           # doctest: +SKIP
    >>> conn.query("SELECT 1 AS one").read_all().column("one").to_pylist()    # doctest: +SKIP
    [1]
"""

from __future__ import annotations

import contextlib

import pyarrow as pa

_USE_COPY = "adbc.postgresql.use_copy"


class Connection:
    """An autocommit ADBC connection (transactions are opened explicitly with SQL). Not thread-safe."""

    def __init__(self, uri: str) -> None:
        import adbc_driver_manager

        from .adbc_databases import lease_database

        self._manager = adbc_driver_manager
        self.uri = uri
        # The database handle (URI + the server's type table) is shared; the connection is this read's own.
        self._lease = lease_database(uri)
        try:
            self._conn = adbc_driver_manager.AdbcConnection(self._lease.database)
        except BaseException:
            self._lease.release()
            raise
        self._statements: list = []

    @property
    def database(self):
        """The shared database handle this connection was opened on."""
        return self._lease.database

    def _statement(self, sql: str, *, use_copy: bool = True):
        stmt = self._manager.AdbcStatement(self._conn)
        self._statements.append(stmt)
        if not use_copy:  # the driver reads results through COPY (...) TO STDOUT, which cannot wrap EXPLAIN
            stmt.set_options(**{_USE_COPY: "false"})
        stmt.set_sql_query(sql)
        return stmt

    def execute(self, sql: str) -> int:
        """Run one statement whose result is not read; returns the rows it affected (-1 when unknown)."""
        stmt = self._statement(sql)
        try:
            return int(stmt.execute_update())
        finally:
            self._close_statement(stmt)

    def query(self, sql: str, *, use_copy: bool = True) -> pa.RecordBatchReader:
        """Run a query and stream its result as Arrow batches (the statement stays open until `close`)."""
        from adbc_driver_manager._reader import AdbcRecordBatchReader

        stmt = self._statement(sql, use_copy=use_copy)
        handle, _ = stmt.execute_query()
        return AdbcRecordBatchReader._import_from_c(handle.address)

    @property
    def current(self) -> bool:
        """Whether the database handle is still the shared one for the URI (see `adbc_databases.renew`)."""
        return self._lease.current

    def reset(self) -> None:
        """Undo what a finished read left on the session, to reuse the connection (`sources.read_conn`).

        Closes the read's statements, then `DISCARD ALL`. Run after the read's `ROLLBACK`: PostgreSQL
        refuses `DISCARD ALL` inside a transaction block, so a transaction still open makes this raise.
        """
        for stmt in list(self._statements):
            self._close_statement(stmt)
        self.execute("DISCARD ALL")

    def cancel(self) -> None:
        """Ask the server to cancel what this connection is running."""
        self._conn.cancel()

    def _close_statement(self, stmt) -> None:
        with contextlib.suppress(Exception):
            stmt.close()
        with contextlib.suppress(ValueError):
            self._statements.remove(stmt)

    def close(self) -> None:
        """Close the statements and the connection (the server rolls back what is open); the shared
        database handle stays open for the next read."""
        for stmt in list(self._statements):
            self._close_statement(stmt)
        with contextlib.suppress(Exception):
            self._conn.close()
        self._lease.release()
