"""GetDbSchemas and GetTables for one caller: exactly the tables it may read, in every schema.

A table of any schema the catalog holds is listed when `Visibility` says the caller may read it
(the plan of `SELECT * FROM schema.table` for its identity and purpose is not denied); a schema is
listed when it holds at least one such table. A table or schema the caller may not read is not
named at all, and what is listed can be read under the name given (schema-qualified).

Example:
    >>> from types import SimpleNamespace
    >>> msg = SimpleNamespace(HasField=lambda f: False)
    >>> _pattern(msg, "db_schema_filter_pattern") is None
    True
"""

from __future__ import annotations

from typing import Any, Protocol

import pyarrow as pa

from . import metadata


class _Listed(Protocol):
    """What listing needs of a `GovernedSession` (through `Visibility`)."""

    @property
    def catalog(self) -> Any: ...

    def plan(self, sql: str) -> Any: ...


class _Visibility(Protocol):
    def visible(self, session: Any, schema: str, name: str) -> bool: ...


def _pattern(msg, field: str) -> str | None:
    return getattr(msg, field) if msg.HasField(field) else None


def readable(session: _Listed, visibility: _Visibility, msg, database: str) -> list[tuple[str, str, Any]]:
    """`(schema, name, relation)` the caller may read, sorted, narrowed by the request's catalog/schema filters."""
    if msg.HasField("catalog") and msg.catalog not in ("", database):
        return []
    schema_ok = metadata.like(_pattern(msg, "db_schema_filter_pattern"))
    return [(schema, name, relation) for (schema, name), relation in sorted(session.catalog.relations.items())
            if schema_ok(schema) and visibility.visible(session, schema, name)]


def db_schemas(session: _Listed, visibility: _Visibility, msg, database: str) -> pa.Table:
    """GetDbSchemas: the schemas holding at least one table the caller may read."""
    names = sorted({schema for schema, _name, _rel in readable(session, visibility, msg, database)})
    return pa.table({"catalog_name": [database] * len(names), "db_schema_name": names},
                    schema=metadata.DB_SCHEMAS_SCHEMA)


def tables(session: _Listed, visibility: _Visibility, msg, database: str, keyring) -> pa.Table:
    """GetTables: the caller's readable tables; with `include_schema`, each column marked clear or masked."""
    match = metadata.like(_pattern(msg, "table_name_filter_pattern"))
    wanted = set(msg.table_types)
    rows = []
    for schema, name, relation in readable(session, visibility, msg, database):
        kind = metadata.TABLE_TYPES.get(relation.kind, "TABLE")
        if not match(name) or (wanted and kind not in wanted):
            continue
        blob = None
        if msg.include_schema:
            quoted = '"' + schema.replace('"', '""') + '"."' + name.replace('"', '""') + '"'
            decision = session.plan(f"SELECT * FROM {quoted}")
            blob = metadata.table_schema(relation, decision, keyring).serialize().to_pybytes()
        rows.append((database, schema, name, kind, blob))
    if not msg.include_schema:
        rows = [r[:4] for r in rows]
    return metadata.tables_table(rows, msg.include_schema)
