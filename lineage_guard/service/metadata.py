"""The Flight SQL metadata answers: SqlInfo, catalogs, schemas, tables, table types.

A caller sees only what it may read: a table is listed when the plan of `SELECT * FROM it`, made
for the caller's identity and purpose, is not denied. With `include_schema`, each column's field
metadata says whether the caller gets it masked (`lineage_guard.masked`, `lineage_guard.method`,
`lineage_guard.classification`) next to Flight SQL's own `ARROW:FLIGHT:SQL:*` keys.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import pyarrow as pa

from .. import __version__
from . import flightsql as fs

TABLE_TYPES = {"table": "TABLE", "view": "VIEW", "matview": "MATERIALIZED VIEW", "materialized_view": "MATERIALIZED VIEW"}

_SQL_INFO_VALUE = pa.dense_union([
    pa.field("string_value", pa.utf8()),
    pa.field("bool_value", pa.bool_()),
    pa.field("bigint_value", pa.int64()),
    pa.field("int32_bitmask", pa.int32()),
    pa.field("string_list", pa.list_(pa.utf8())),
    pa.field("int32_to_int32_list_map", pa.map_(pa.int32(), pa.list_(pa.int32()))),
])
SQL_INFO_SCHEMA = pa.schema([pa.field("info_name", pa.uint32(), nullable=False), pa.field("value", _SQL_INFO_VALUE)])
CATALOGS_SCHEMA = pa.schema([pa.field("catalog_name", pa.utf8(), nullable=False)])
DB_SCHEMAS_SCHEMA = pa.schema([pa.field("catalog_name", pa.utf8()), pa.field("db_schema_name", pa.utf8(), nullable=False)])
TABLES_SCHEMA = pa.schema([
    pa.field("catalog_name", pa.utf8()), pa.field("db_schema_name", pa.utf8()),
    pa.field("table_name", pa.utf8(), nullable=False), pa.field("table_type", pa.utf8(), nullable=False),
])
TABLES_WITH_SCHEMA = TABLES_SCHEMA.append(pa.field("table_schema", pa.binary(), nullable=False))
TABLE_TYPES_SCHEMA = pa.schema([pa.field("table_type", pa.utf8(), nullable=False)])

# PostgreSQL type names -> the Arrow type the source returns (others come back as text here).
_PG_ARROW = {
    "smallint": pa.int16(), "integer": pa.int32(), "bigint": pa.int64(), "real": pa.float32(),
    "double precision": pa.float64(), "boolean": pa.bool_(), "text": pa.utf8(), "date": pa.date32(),
    "bytea": pa.binary(), "timestamp without time zone": pa.timestamp("us"),
    "timestamp with time zone": pa.timestamp("us", "UTC"), "json": pa.utf8(), "jsonb": pa.utf8(), "uuid": pa.utf8(),
}


def sql_info(requested: Iterable[int], read_only: bool) -> pa.Table:
    """The SqlInfo rows: (id, dense-union value), for the ids asked (all known ones if none)."""
    values: dict[int, tuple[int, object]] = {   # id -> (union type code, value)
        fs.FLIGHT_SQL_SERVER_NAME: (0, "lineage_guard"),
        fs.FLIGHT_SQL_SERVER_VERSION: (0, __version__),
        fs.FLIGHT_SQL_SERVER_ARROW_VERSION: (0, pa.__version__),
        fs.FLIGHT_SQL_SERVER_READ_ONLY: (1, read_only),
        fs.FLIGHT_SQL_SERVER_SQL: (1, True),
        fs.FLIGHT_SQL_SERVER_SUBSTRAIT: (1, False),
        fs.FLIGHT_SQL_SERVER_TRANSACTION: (3, 0),   # no Flight SQL transactions: every call is its own
        fs.FLIGHT_SQL_SERVER_CANCEL: (1, False),
        fs.SQL_DDL_CATALOG: (1, False), fs.SQL_DDL_SCHEMA: (1, False), fs.SQL_DDL_TABLE: (1, False),
        fs.SQL_IDENTIFIER_QUOTE_CHAR: (0, '"'),
        fs.SQL_ALL_TABLES_ARE_SELECTABLE: (1, False),
    }
    ids = [i for i in (list(requested) or sorted(values)) if i in values]
    children: list[list] = [[] for _ in range(6)]
    types, offsets = [], []
    for i in ids:
        code, value = values[i]
        types.append(code)
        offsets.append(len(children[code]))
        children[code].append(value)
    arrays = [pa.array(children[n], type=_SQL_INFO_VALUE.field(n).type) for n in range(6)]
    union = pa.UnionArray.from_dense(pa.array(types, pa.int8()), pa.array(offsets, pa.int32()), arrays,
                                     [f.name for f in _SQL_INFO_VALUE], list(range(6)))
    return pa.Table.from_arrays([pa.array(ids, pa.uint32()), union], schema=SQL_INFO_SCHEMA)


def like(pattern: str | None):
    """A matcher for a Flight SQL filter pattern (`%` any run, `_` one character); None matches all."""
    if pattern is None:
        return lambda name: True
    regex = re.compile("".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern), re.DOTALL)
    return lambda name: regex.fullmatch(name) is not None


def table_schema(relation, decision, keyring) -> pa.Schema:
    """The Arrow schema the caller would get from `SELECT *`, each field marked clear or masked."""
    from ..mask import mask_batch

    base = pa.schema([pa.field(name, _PG_ARROW.get((pg or "").lower(), pa.utf8())) for name, pg in relation.columns])
    specs = {c.position: c.mask for c in decision.columns if c.mask is not None}
    masked = mask_batch(base.empty_table(), specs, keyring).schema
    fields = []
    for column, field in zip(decision.columns, masked, strict=False):
        meta = {
            "ARROW:FLIGHT:SQL:CATALOG_NAME": "", "ARROW:FLIGHT:SQL:DB_SCHEMA_NAME": relation.schema,
            "ARROW:FLIGHT:SQL:TABLE_NAME": relation.name,
            "ARROW:FLIGHT:SQL:TYPE_NAME": relation.column_type(column.name) or "",
            "ARROW:FLIGHT:SQL:IS_READ_ONLY": "1",
            "lineage_guard.masked": "true" if column.masked else "false",
            "lineage_guard.method": column.mask.method if column.mask else "",
            "lineage_guard.classification": ",".join(column.labels),
        }
        fields.append(field.with_metadata(meta))
    return pa.schema(fields)


def tables_table(rows: list[tuple[str, str, str, str, bytes | None]], include_schema: bool) -> pa.Table:
    schema = TABLES_WITH_SCHEMA if include_schema else TABLES_SCHEMA
    columns = list(zip(*rows, strict=True)) if rows else [[] for _ in range(5)]
    arrays = [pa.array(list(columns[i]), schema.field(i).type) for i in range(len(schema))]
    return pa.Table.from_arrays(arrays, schema=schema)
