"""A read-only DB-API cursor over a masked Arrow table, so `SQLExecuteQueryOperator` handlers work unchanged.

`fetch_all_handler`, `fetch_one_handler` or a DAG's own handler receive this cursor and see
the same shape they would from psycopg: `description`, `rowcount`, tuples from `fetchall`.
The rows are the masked result; the raw ones never reach the handler. Clear columns of
PostgreSQL types that Arrow carries as strings or month-day-nano intervals (json, jsonb,
uuid, interval) are converted back to what psycopg returns (dict/list, UUID, timedelta).

Example:
    >>> import pyarrow as pa
    >>> cur = ArrowCursor(pa.table({"id": [1, 2], "city": ["Oslo", "Lima"]}))
    >>> cur.description[1][0], cur.fetchone(), cur.fetchall()
    ('city', (1, 'Oslo'), [(2, 'Lima')])
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Collection
from datetime import timedelta
from typing import Any

import pyarrow as pa

PG_TYPE = b"POSTGRESQL:type"


def _interval(value: Any) -> Any:
    # psycopg counts a month as 30 days, as PostgreSQL's own interval arithmetic does.
    return timedelta(days=value.months * 30 + value.days, microseconds=value.nanoseconds // 1000)


_LOADERS: dict[bytes, Callable[[Any], Any]] = {b"json": json.loads, b"jsonb": json.loads, b"uuid": uuid.UUID,
                                               b"interval": _interval}


def _column(column: pa.ChunkedArray, field: pa.Field, clear: bool) -> list:
    values = column.to_pylist()
    loader = _LOADERS.get((field.metadata or {}).get(PG_TYPE, b"")) if clear else None
    if loader is None:
        return values
    return [None if v is None else loader(v) for v in values]


class ArrowCursor:
    """DB-API 2.0 read surface over `table`; `table=None` is a statement that returned no rows (a write).

    `masked` holds the positions of masked columns: they are returned as the masks made them.
    """

    def __init__(self, table: pa.Table | None, rowcount: int = -1, masked: Collection[int] = ()) -> None:
        self._rows: list[tuple] = (
            list(zip(*(_column(col, table.schema.field(i), i not in masked) for i, col in enumerate(table.columns))))
            if table is not None and table.num_columns else []
        )
        self.description = (
            [(f.name, None, None, None, None, None, None) for f in table.schema] if table is not None else None
        )
        self.rowcount = len(self._rows) if table is not None else rowcount
        self._at = 0

    def fetchone(self) -> tuple | None:
        if self._at >= len(self._rows):
            return None
        self._at += 1
        return self._rows[self._at - 1]

    def fetchmany(self, size: int = 1) -> list[tuple]:
        out = self._rows[self._at:self._at + size]
        self._at += len(out)
        return out

    def fetchall(self) -> list[tuple]:
        out = self._rows[self._at:]
        self._at = len(self._rows)
        return out

    def __iter__(self) -> Any:
        return iter(self.fetchall())

    def close(self) -> None:
        self._rows = []
