"""The SQL text that may appear in an event: the statement with every literal and comment removed.

A literal in a WHERE clause (`ssn = '123-45-6789'`) or a comment can carry a raw
sensitive value, and lineage events are read by many more people than the data.
Literals become placeholders; an unparseable statement is not shown at all.

Example:
    >>> shareable_sql("SELECT name FROM public.p WHERE ssn = '123-45-6789' /* x */")
    'SELECT name FROM public.p WHERE ssn = %s'
"""

from __future__ import annotations

from functools import lru_cache

import sqlglot
from sqlglot import exp

from ..run import statement_hash

_VALUE_NODES = (exp.Literal, exp.HexString, exp.BitString, exp.ByteString, exp.RawString,
                exp.National, exp.UnicodeString)


# Positions and row counts (GROUP BY 1, ORDER BY 2, LIMIT 10) are structure, not data.
_STRUCTURAL_PARENTS = (exp.Parameter, exp.Group, exp.Ordered, exp.Order, exp.Limit, exp.Offset)


def _placeholder(node: exp.Expression) -> exp.Expression:
    if isinstance(node, _VALUE_NODES) and not (
            isinstance(node.parent, _STRUCTURAL_PARENTS) and isinstance(node, exp.Literal) and not node.is_string):
        return exp.Placeholder()
    return node


@lru_cache(maxsize=256)  # START and the terminal event show the same statement
def shareable_sql(sql: str) -> str:
    """`sql` with literals replaced by placeholders and comments dropped (postgres dialect)."""
    try:
        trees = [t for t in sqlglot.parse(sql, dialect="postgres") if t is not None]
    except sqlglot.errors.SqlglotError:
        trees = []
    if not trees:
        # Fail closed: never echo text we could not take apart.
        return f"-- statement not shown (could not be parsed); sha256 {statement_hash(sql)}"
    return ";\n".join(t.transform(_placeholder, copy=False).sql(dialect="postgres", comments=False) for t in trees)
