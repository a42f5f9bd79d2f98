"""A PostgreSQL table sink: masked rows ingested through ADBC (COPY) in one transaction.

Nothing is visible to other sessions until `commit()`; `abort()` rolls back,
including the table's creation. `mode` is `create` (fail if the table exists),
`append`, or `replace` (drop and recreate, inside the same transaction).

Example:
    >>> sink = PostgresTableSink("postgresql://etl@db/warehouse", "customers_masked")   # doctest: +SKIP
    >>> sink.info.name                                                                 # doctest: +SKIP
    'warehouse.public.customers_masked'
"""

from __future__ import annotations

import contextlib
from typing import Literal

import pyarrow as pa

from ..errors import ConfigError, SinkError
from ..run import SinkInfo
from ..sources.pg_errors import from_driver_error, guarded
from ..sources.pg_url import PgUrl
from .base import Sink

Mode = Literal["create", "append", "replace"]


class PostgresTableSink(Sink):
    """Write one result into `schema.table` of the database at `url`, atomically."""

    def __init__(self, url: str, table: str, *, schema: str = "public", mode: Mode = "create"):
        super().__init__()
        if mode not in ("create", "append", "replace"):
            raise ConfigError(f"mode must be create, append or replace, not {mode!r}")
        if not table or "\x00" in table or not schema or "\x00" in schema:
            raise ConfigError("give a plain table and schema name")
        self._url = PgUrl.parse(url)
        self.table_name, self.db_schema, self.mode = table, schema, mode
        self._conn = None
        self._first = True

    @property
    def info(self) -> SinkInfo:
        u = self._url
        return SinkInfo(kind="postgres", uri=f"{u.redacted}#{self.db_schema}.{self.table_name}",
                        namespace=f"postgres://{u.host}:{u.port}",
                        name=f"{u.database}.{self.db_schema}.{self.table_name}")

    def _open(self, schema: pa.Schema) -> None:
        from ..sources.postgres import _connect

        self._conn = _connect(self._url)
        try:
            guarded(lambda: self._conn.cursor().execute("BEGIN"),
                    lambda exc: from_driver_error(exc, doing="opening the sink transaction"))
        except BaseException:
            self._abort()
            raise
        self._first = True
        if self.mode != "append":
            # Create the table even for an empty result, so the target exists after commit.
            self._ingest(schema.empty_table())

    def _ingest(self, data) -> None:
        mode = self.mode if self._first else "append"
        self._first = False
        where = f"writing to {self.db_schema}.{self.table_name}"
        guarded(lambda: self._conn.cursor().adbc_ingest(self.table_name, data, mode=mode,
                                                        db_schema_name=self.db_schema),
                lambda exc: SinkError(str(from_driver_error(exc, doing=where))))

    def _write(self, batch: pa.RecordBatch) -> None:
        self._ingest(batch)
        self.bytes_written += batch.nbytes

    def _commit(self) -> None:
        guarded(lambda: self._conn.cursor().execute("COMMIT"),
                lambda exc: SinkError(str(from_driver_error(exc, doing="committing the sink transaction"))))
        self._close()

    def _abort(self) -> None:
        self._close()  # closing an open transaction rolls it back on the server

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()
