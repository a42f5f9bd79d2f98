"""Step 6: read PostgreSQL as streamed Arrow RecordBatches, read-only, with a timeout.

Every read runs inside a transaction opened as `BEGIN READ ONLY` whose mode the
statement cannot undo: a query is run first so the server refuses
`SET TRANSACTION READ WRITE` / `set_config('transaction_read_only', ...)`
("must be set before any query"), writes and temp tables are refused
(`25006 read_only_sql_transaction`), and the transaction is rolled back at the end.

A read on its own (`stream(sql)`) opens a connection and closes it at the end. A session's reads
(`stream(sql, keep=...)`, `GovernedSession` passes its own `read_conn.ReadConnections`) share
one connection, one read at a time: a read that ended cleanly (read to the end, ROLLBACK done)
leaves it reset with `DISCARD ALL` (session advisory locks, prepared statements, temp tables,
session settings, WITH HOLD cursors, LISTEN) for the session's next read; a read cancelled,
errored, timed out or left unfinished closes it, as does a failed reset. Either way nothing a
statement sets reaches the next read (what DISCARD ALL does not cover: `read_conn`).

`search_path` is pinned to `pg_catalog, <schema>, pg_temp`: built-ins are found
before any user object of the same name (a `public.lower()` cannot shadow
`pg_catalog.lower()`), and `pg_temp`, which PostgreSQL otherwise searches first
for relations, comes last.

Example:
    >>> src = PostgresSource("postgresql://postgres@127.0.0.1:5432/shop")   # doctest: +SKIP
    >>> with src.stream("SELECT id, email FROM customers") as batches:     # doctest: +SKIP
    ...     for batch in batches:
    ...         ...
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Self

import pyarrow as pa

from ..errors import ConfigError
from ..extras import install_command
from ..run import SourceInfo
from .pg_errors import connect_error, from_driver_error, guarded, sqlstate_error
from .pg_params import inline_parameters
from .pg_types import TypePlan
from .pg_url import PgUrl

if TYPE_CHECKING:
    from .read_conn import ReadConnections

Parameters = Sequence[Any] | None


def _quote_ident(name: str) -> str:
    if not name or "\x00" in name:
        raise ConfigError("the schema name is empty or contains a NUL byte; give a plain schema name like 'public'")
    return '"' + name.replace('"', '""') + '"'


_NEEDS_POSTGRES_EXTRA = f"reading PostgreSQL needs the [postgres] extra: {install_command('postgres')}"


def _uri_with_timeout(url: PgUrl) -> str:
    uri = url.url
    if "connect_timeout" not in uri:
        # libpq waits forever by default; a pipeline should fail with a clear error instead.
        uri += ("&" if "?" in uri else "?") + "connect_timeout=10"
    return uri


def _connect(url: PgUrl):
    """An ADBC connection in autocommit mode (transactions are opened explicitly)."""
    try:
        from adbc_driver_postgresql import dbapi
    except ImportError:
        raise ConfigError(_NEEDS_POSTGRES_EXTRA) from None
    uri = _uri_with_timeout(url)
    return guarded(lambda: dbapi.connect(uri, autocommit=True), lambda exc: connect_error(str(exc), url.describe()))


def _connect_read(url: PgUrl):
    """A low-level ADBC connection for reads (`adbc_conn`: no DB-API layer, so no pandas at start-up)."""
    try:
        from .adbc_conn import Connection
    except ImportError:
        raise ConfigError(_NEEDS_POSTGRES_EXTRA) from None
    uri = _uri_with_timeout(url)
    return guarded(lambda: Connection(uri), lambda exc: connect_error(str(exc), url.describe()))


class _StaleTypes(Exception):
    """The result has a type the shared database handle does not know (see adbc_databases)."""


def _unknown_types(schema: pa.Schema) -> bool:
    """Whether the driver named a column's type by its OID only: a type its type table does not hold."""
    return any((f.metadata or {}).get(b"ADBC:postgresql:typname", b"").startswith(b"unnamed<oid:")
               or "unnamed<oid:" in str(f.type) for f in schema)


class BatchStream:
    """The batches of one read: an iterator and a context manager that always cleans up.

    `schema` is known before the first batch (sinks open with it). Iterating to
    the end, leaving the `with` block, `close()` or an error each end the read
    transaction and close the connection; an unfinished read is cancelled on the server.
    With `keep` (a session's `ReadConnections`), the connection comes from it and only a read
    iterated to the end whose ROLLBACK succeeded gives it back (reset there); every other end closes it.
    """

    def __init__(self, source: PostgresSource, sql: str, parameters: Parameters,
                 verify: Callable[[Any], None] | None = None, keep: ReadConnections | None = None):
        self._source = source
        self._keep = keep
        self._conn = None
        self._reader = None
        self._pending: list[pa.RecordBatch] = []
        self._done = False
        self.rows = 0
        try:
            try:
                self._open(sql, parameters, verify, renewable=True)
            except _StaleTypes:
                # The shared database handle predates a type this result has (adbc_databases): read
                # again on a new handle, whose type table has it (the read-only transaction is redone).
                from .adbc_databases import renew

                stale = self._conn
                self.close()
                renew(stale.uri, stale.database)
                self._done = False
                self._open(sql, parameters, verify)
        except BaseException:
            self.close()
            raise

    def _open(self, sql: str, parameters: Parameters, verify: Callable[[Any], None] | None,
              renewable: bool = False) -> None:
        source = self._source
        kept = False
        if self._keep is None:
            conn = self._conn = _connect_read(source._url)
        else:
            conn, kept = self._keep.take(_uri_with_timeout(source._url), lambda: _connect_read(source._url))
            self._conn = conn
        setup = [
            "BEGIN TRANSACTION READ ONLY",
            f"SET LOCAL statement_timeout = {int(source.statement_timeout_ms)}",
            f"SET LOCAL lock_timeout = {int(source.statement_timeout_ms)}",
            f"SET LOCAL search_path = pg_catalog, {_quote_ident(source.schema)}, pg_temp",
            "SET LOCAL default_transaction_read_only = on",
            "SET LOCAL standard_conforming_strings = on",  # how inlined parameter literals are quoted
            # Takes the snapshot: from here on the read-only mode can no longer be changed.
            "SELECT 1",
        ]
        try:
            guarded(lambda: [conn.execute(statement) for statement in setup],
                    lambda exc: from_driver_error(exc, doing="opening the read-only transaction"))
        except Exception:
            if not kept:
                raise
            # The kept connection's backend went away while idle (terminated, idle_session_timeout): a
            # new connection, the transaction opened again. Nothing of the statement has run.
            with contextlib.suppress(Exception):
                conn.close()
            conn = self._conn = self._keep.take(_uri_with_timeout(source._url), lambda: _connect_read(source._url))[0]
            guarded(lambda: [conn.execute(statement) for statement in setup],
                    lambda exc: from_driver_error(exc, doing="opening the read-only transaction"))
        if parameters is not None:
            # Bound parameters would make ADBC load the whole result before the first batch.
            sql = inline_parameters(sql, parameters)
        if verify is not None:
            verify(self._explain(conn, sql))
        self._reader = guarded(lambda: conn.query(sql),
                               lambda exc: from_driver_error(exc, timeout_ms=source.statement_timeout_ms))
        if renewable and _unknown_types(self._reader.schema):
            raise _StaleTypes
        self._plan = TypePlan.for_schema(self._reader.schema)

    def _explain(self, conn, sql: str) -> Any:
        """The server's plan of `sql` (EXPLAIN VERBOSE, JSON), in the read's own transaction; nothing runs."""
        def explain():
            table = conn.query(f"EXPLAIN (VERBOSE, FORMAT JSON) {sql}", use_copy=False).read_all()
            value = table.column(0)[0].as_py()
            return json.loads(value) if isinstance(value, str) else value

        return guarded(explain, lambda exc: from_driver_error(exc, timeout_ms=self._source.statement_timeout_ms,
                                                               doing="asking the server how it binds the statement"))

    @property
    def schema(self) -> pa.Schema:
        """The Arrow schema of every batch this stream yields (after type mapping)."""
        return self._plan.schema

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        return self

    def __next__(self) -> pa.RecordBatch:
        if self._pending:
            return self._take(self._pending.pop(0))
        if self._done or self._reader is None:
            raise StopIteration
        try:
            batch = guarded(self._reader.read_next_batch,
                            lambda exc: from_driver_error(exc, timeout_ms=self._source.statement_timeout_ms))
        except StopIteration:
            self._finish()
            raise
        except BaseException:
            self.close()
            raise
        try:
            batch = self._plan.apply(batch)
        except BaseException:
            self.close()
            raise
        size = self._source.batch_rows
        if size and batch.num_rows > size:
            self._pending = [batch.slice(i, size) for i in range(size, batch.num_rows, size)]
            batch = batch.slice(0, size)
        return self._take(batch)

    def _take(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        self.rows += batch.num_rows
        return batch

    def _finish(self) -> None:
        """The result was read to the end: roll back cleanly, then give the connection back (kept) or close it."""
        self._done = True
        clean = False
        with contextlib.suppress(Exception):  # closing the connection rolls back anyway
            if self._reader is not None:
                self._reader.close()
                self._reader = None
            self._conn.execute("ROLLBACK")
            clean = True
        if clean and self._keep is not None and not self._pending:
            conn, self._conn = self._conn, None
            self._keep.give_back(conn)   # reset (DISCARD ALL) and kept, or closed if the reset fails
        self.close()

    def close(self) -> None:
        """End the read: cancel it if unfinished, drop the transaction, close the connection. Idempotent."""
        self._done = True
        self._pending = []
        conn, self._conn = self._conn, None
        reader, self._reader = self._reader, None
        if conn is None:
            return
        with contextlib.suppress(Exception):  # the server rolls back when the connection closes
            if reader is not None:
                conn.cancel()
                reader.close()
        with contextlib.suppress(Exception):
            conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


class PostgresSource:
    """A PostgreSQL database read through ADBC.

    `statement_timeout_ms` bounds every statement. A streamed read is one statement
    until its last batch is consumed, so the timeout also bounds the time the consumer
    spends between batches (masking, uploading): raise it for large extractions
    (10M narrow rows through mask + Parquet took ~50 s on a 2-core machine). `environment` tags the
    source (policies may differ per environment); `schema` is the one schema on
    the pinned search path; `batch_rows` caps the rows per yielded batch (the
    driver otherwise sizes batches at about 16 MB).

    Example:
        >>> src = PostgresSource("postgresql://app:pw@db:6543/shop", environment="production")
        >>> src.info.namespace, src.info.dataset_name("public", "customers")
        ('postgres://db:6543', 'shop.public.customers')
    """

    def __init__(self, url: str, *, statement_timeout_ms: int = 60_000, environment: str = "default",
                 batch_rows: int | None = None, schema: str = "public"):
        if not isinstance(statement_timeout_ms, int) or statement_timeout_ms <= 0:
            raise ConfigError("statement_timeout_ms must be a positive integer (milliseconds), e.g. 60000")
        if batch_rows is not None and (not isinstance(batch_rows, int) or batch_rows <= 0):
            raise ConfigError("batch_rows must be a positive integer or None")
        _quote_ident(schema)
        self._url = PgUrl.parse(url)
        self.statement_timeout_ms = statement_timeout_ms
        self.environment = environment
        self.batch_rows = batch_rows
        self.schema = schema

    @property
    def info(self) -> SourceInfo:
        """Where the data comes from, named the OpenLineage way (no credentials)."""
        u = self._url
        return SourceInfo(scheme="postgres", host=u.host, port=u.port, database=u.database,
                          environment=self.environment)

    @property
    def catalog_url(self) -> str:
        """The connection URL, for `Catalog.from_postgres`. It may hold a password: never log it."""
        return self._url.url

    @property
    def redacted_url(self) -> str:
        """The URL with the password replaced by `***`: safe to log."""
        return self._url.redacted

    def stream(self, sql: str, parameters: Parameters = None,
               verify: Callable[[Any], None] | None = None, keep: ReadConnections | None = None) -> BatchStream:
        """Run one read-only statement and stream its rows as Arrow batches.

        `parameters` fill `$1, $2, ...` placeholders (inlined as quoted literals so the result
        still streams; see `pg_params`). Raises `SourceError`
        (sanitized: SQLSTATE and what to fix, never the server's text). `verify`, if given, is called
        with the server's `EXPLAIN (VERBOSE, FORMAT JSON)` of the statement before it runs, in the same
        transaction, and may raise to refuse the read. `keep`, if given (a session's
        `ReadConnections`), lends the read its kept connection and keeps it again, reset, if the read
        ends cleanly; without it the read opens its own connection and closes it.
        """
        return BatchStream(self, sql, parameters, verify, keep)

    def read_all(self, sql: str, parameters: Parameters = None) -> pa.Table:
        """Convenience for small results: the whole result as one table."""
        with self.stream(sql, parameters) as batches:
            return pa.Table.from_batches(list(batches), schema=batches.schema)

    def execute_write(self, sql: str, parameters: Parameters = None) -> int:
        """Run one write in a read-write transaction with the statement timeout; returns rows affected.

        Only the session calls this, after the write guardrails allowed the statement.
        """
        return self.execute_write_batch(sql, [parameters])

    def execute_write_batch(self, sql: str, parameter_rows: Sequence[Parameters]) -> int:
        """Run `sql` once per parameter row, all in one transaction: every row is written or none is.

        The statement timeout bounds the whole batch (each statement gets what is left of it), so a
        long batch cannot outrun it row by row. Returns the rows affected, summed.

        Example:
            >>> src.execute_write_batch("INSERT INTO notes VALUES ($1, $2)", [[1, "a"], [2, "b"]])  # doctest: +SKIP
            2
        """
        import time

        conn = _connect(self._url)
        try:
            cursor = conn.cursor()
            setup = ["BEGIN", f"SET LOCAL statement_timeout = {int(self.statement_timeout_ms)}",
                     f"SET LOCAL search_path = pg_catalog, {_quote_ident(self.schema)}, pg_temp",
                     "SET LOCAL standard_conforming_strings = on"]
            # Typed like reads: each value as a quoted literal the server types from its context (a date
            # column takes '2026-03-01'); ADBC's binding would send text and fail with 42883 (date = text).
            texts = [sql if parameters is None else inline_parameters(sql, parameters) for parameters in parameter_rows]
            guarded(lambda: [cursor.execute(statement) for statement in setup],
                    lambda exc: from_driver_error(exc, doing="opening the write transaction"))
            deadline = time.monotonic() + self.statement_timeout_ms / 1000

            def write() -> int:
                affected = 0
                for i, text in enumerate(texts):
                    if i:   # what is left of the batch's timeout
                        left = int((deadline - time.monotonic()) * 1000)
                        if left <= 0:
                            raise sqlstate_error("57014", timeout_ms=self.statement_timeout_ms,
                                                 doing=f"running the write (row {i + 1} of {len(texts)})")
                        cursor.execute(f"SET LOCAL statement_timeout = {left}")
                    cursor.execute(text)
                    affected += max(int(cursor.rowcount), 0)
                cursor.execute("COMMIT")
                return affected

            return guarded(write, lambda exc: from_driver_error(exc, timeout_ms=self.statement_timeout_ms,
                                                                doing="running the write"))
        finally:
            with contextlib.suppress(Exception):
                conn.close()  # an uncommitted transaction is rolled back by the server

    def __repr__(self) -> str:
        return f"PostgresSource({self._url.redacted!r}, environment={self.environment!r})"
