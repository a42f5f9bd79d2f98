"""The SQL constructs a governed read may contain: an explicit allow-list of sqlglot node types.

The resolver judges what it understands. A node type it was not written for (a new sqlglot
version, a construct the PostgreSQL dialect maps oddly) must not pass unjudged, so every node of a
read is checked here. Functions are judged by the function allow-list (`allowlist.py`); operators
and clauses by this one.

Example:
    >>> import sqlglot
    >>> unknown_node(sqlglot.parse_one("SELECT a + 1 FROM t WHERE b = 2", dialect="postgres"))
    >>> unknown_node(sqlglot.parse_one("SELECT a <-> b FROM t", dialect="postgres"))
    'SQL construct Distance is not on the allow-list of constructs lineage_guard analyzes; rewrite the query without it'
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlglot import exp

_NAMES = """
Select Subquery Union Intersect Except Values With CTE From Join Lateral Table TableAlias Where Group Having
Order Ordered Limit Offset Fetch LimitOptions Distinct Window WindowSpec Filter WithinGroup Rollup Cube
GroupingSets TableSample Column Star Identifier Alias Paren Dot Bracket Slice Tuple Literal Null Boolean
Placeholder Parameter Var DataType DataTypeParam ColumnDef Interval Collate ByteString BitString HexString
UnicodeString RawString National
Add Sub Mul Div Mod IntDiv Pow Neg BitwiseAnd BitwiseOr BitwiseXor BitwiseNot BitwiseLeftShift
BitwiseRightShift DPipe EQ NEQ LT LTE GT GTE Is NullSafeEQ NullSafeNEQ Like ILike SimilarTo RegexpLike
RegexpILike Between In Any All Not And Or Exists AtTimeZone Operator
ArrayContainsAll ArrayContainedBy ArrayOverlaps JSONBContainsTopKey JSONBContainsAnyTopKeys
JSONBContainsAllTopKeys JSONExtract JSONExtractScalar JSONBExtract JSONBExtractScalar JSONBDeleteAtPath
JSONBPathExists JSONPath JSONPathKey JSONPathRoot JSONPathSubscript MatchAgainst Overlaps
Semicolon Into Lock
"""
ALLOWED_NODES: frozenset[str] = frozenset(_NAMES.split())
# Into / Lock are refused by the resolver with their own reason (SELECT ... INTO, FOR UPDATE).

_OPERATORS = (exp.Binary, exp.Unary, exp.Connector, exp.Predicate)


def unknown_node(tree: exp.Expression | Iterable[exp.Expression]) -> str | None:
    """A refusal naming the first construct not on the allow-list, else None (`tree`: a tree or its nodes)."""
    for node in tree.walk() if isinstance(tree, exp.Expression) else tree:
        if isinstance(node, exp.Func) and not isinstance(node, _OPERATORS):
            continue  # judged by the function allow-list
        name = type(node).__name__
        if name not in ALLOWED_NODES:
            return (f"SQL construct {name} is not on the allow-list of constructs lineage_guard analyzes; "
                    "rewrite the query without it")
    return None
