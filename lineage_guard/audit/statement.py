"""The statement text a ledger entry keeps: the query's shape, with every literal replaced.

A literal in a query can be a sensitive value the caller typed (`WHERE ssn = '...'`),
so the ledger keeps the shape (`WHERE ssn = %s`) and the sha256 of the full
normalized text: whoever holds the query can prove it is the one recorded, and the
ledger never holds the value. A statement sqlglot cannot parse keeps no text at all.

Example:
    >>> redact_literals("SELECT name FROM public.patients WHERE ssn = '123-45-6789'")
    'SELECT name FROM public.patients WHERE ssn = %s'
    >>> redact_literals("SELECT name FROM patients WHERE id = $1 AND zip = '02139'")
    'SELECT name FROM patients WHERE id = $1 AND zip = %s'
    >>> redact_literals("SELEC FROM ((") is None
    True
"""

from __future__ import annotations

import sqlglot
from sqlglot import exp

_LITERALS = (
    exp.Literal,
    exp.ByteString,
    exp.RawString,
    exp.BitString,
    exp.HexString,
    exp.UnicodeString,
    exp.National,
)


def _placeholder_for_literal(node: exp.Expression) -> exp.Expression:
    # `$1` is a bind parameter (a Parameter around the number 1), not a value: keep it, or it prints `$%s`.
    if isinstance(node, _LITERALS) and not isinstance(node.parent, exp.Parameter):
        return exp.Placeholder()
    return node


def redact_literals(sql: str) -> str | None:
    """The statement(s) with literals replaced by placeholders, or None if it does not parse."""
    try:
        trees = sqlglot.parse(sql, dialect="postgres")
        parts = [
            tree.transform(_placeholder_for_literal).sql(dialect="postgres")
            for tree in trees
            if tree is not None
        ]
    except Exception:  # noqa: BLE001 - any parser or generator failure: keep no text rather than risk a value
        return None
    return "; ".join(parts) if parts else None
