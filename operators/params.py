"""Translate psycopg-style parameters (`%s`, `%(name)s`) to the `$1, $2` form the governed source binds.

DAGs written for `SQLExecuteQueryOperator` pass `parameters` the psycopg way; the governed
source (ADBC) binds numbered `$n` placeholders. The SQL is rewritten by sqlglot (so `%s`
inside a string literal is left alone) and the values are never put into the text.

psycopg requires `%%` for a literal `%` whenever parameters are passed; string literals are
unescaped the same way, so `LIKE 'a%%'` still means `LIKE 'a%'`.

Example:
    >>> numbered("SELECT * FROM t WHERE a = %(x)s AND b = %(y)s OR c = %(x)s", {"x": 1, "y": 2})
    ('SELECT * FROM t WHERE a = $1 AND b = $2 OR c = $1', [1, 2])
    >>> numbered("SELECT * FROM t WHERE a = %s AND b = '%s'", [7])
    ("SELECT * FROM t WHERE a = $1 AND b = '%s'", [7])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lineage_guard.errors import ConfigError


def numbered(sql: str, parameters: Mapping[str, Any] | list | tuple | None) -> tuple[str, list | None]:
    """`(sql, values)` with `%s` / `%(name)s` replaced by `$n`; unchanged when there is nothing to bind."""
    if parameters is None:
        return sql, None
    # sqlglot loads only when there is something to bind: a service-mode task without parameters never
    # needs the SQL parser (the server parses), and it is a good part of a fresh task process's imports.
    import sqlglot
    from sqlglot import exp

    try:
        tree = sqlglot.parse_one(sql, read="postgres")
    except sqlglot.errors.ParseError:
        # The session refuses unparseable SQL with its own, value-free reason.
        return sql, list(parameters.values()) if isinstance(parameters, Mapping) else list(parameters)
    for literal in [n for n in tree.walk() if isinstance(n, exp.Literal) and n.is_string and "%%" in n.this]:
        literal.replace(exp.Literal.string(literal.this.replace("%%", "%")))
    holders = [n for n in tree.walk(bfs=False) if isinstance(n, exp.Placeholder)]
    names = [n.this.name if isinstance(n.this, exp.Expression) else "" for n in holders]
    if not holders:
        if isinstance(parameters, Mapping):
            raise ConfigError("parameters is a mapping but the SQL has no %(name)s placeholders")
        return tree.sql(dialect="postgres"), list(parameters)  # already $n-numbered (or none needed)
    values: list[Any] = []
    if isinstance(parameters, Mapping):
        slots: dict[str, int] = {}
        for node, name in zip(holders, names):
            if not name:
                raise ConfigError("parameters is a mapping: use %(name)s placeholders, not %s")
            if name not in parameters:
                raise ConfigError(f"the SQL uses %({name})s but parameters has no key {name!r}")
            if name not in slots:
                values.append(parameters[name])
                slots[name] = len(values)
            node.replace(exp.Parameter(this=exp.Literal.number(slots[name])))
    else:
        given = list(parameters)
        if any(names):
            raise ConfigError("parameters is a sequence: use %s placeholders, not %(name)s")
        if len(holders) != len(given):
            raise ConfigError(f"the SQL has {len(holders)} %s placeholder(s) but {len(given)} parameter(s) "
                              f"were given")
        for i, node in enumerate(holders, 1):
            node.replace(exp.Parameter(this=exp.Literal.number(i)))
        values = given
    return tree.sql(dialect="postgres"), values
