"""A read-only DB-API cursor over a masked Arrow table, so `SQLExecuteQueryOperator` handlers work unchanged.

`fetch_all_handler`, `fetch_one_handler` or a DAG's own handler receive this cursor and see
the same shape they would from psycopg: `description`, `rowcount`, tuples from `fetchall`.
The rows are the masked result; the raw ones never reach the handler.

Example:
    >>> import pyarrow as pa
    >>> cur = ArrowCursor(pa.table({"id": [1, 2], "city": ["Oslo", "Lima"]}))
    >>> cur.description[1][0], cur.fetchone(), cur.fetchall()
    ('city', (1, 'Oslo'), [(2, 'Lima')])
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa


class ArrowCursor:
    """DB-API 2.0 read surface over `table`; `table=None` is a statement that returned no rows (a write)."""

    def __init__(self, table: pa.Table | None, rowcount: int = -1) -> None:
        self._rows: list[tuple] = (
            list(zip(*(column.to_pylist() for column in table.columns))) if table is not None and table.num_columns
            else []
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
