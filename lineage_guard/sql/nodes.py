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

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

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


_WRITES = (exp.Insert, exp.Update, exp.Delete, exp.Merge, exp.Create, exp.Drop, exp.Alter, exp.TruncateTable,
           exp.Command, exp.Copy, exp.Grant, exp.Revoke)
_POSITIONS = frozenset({"line", "col", "start", "end"})
# node class -> (not on the allow-list, is a function, is a write, is an Identifier, is a Var, is a Select)
_KINDS: dict[type, tuple[bool, bool, bool, bool, bool, bool]] = {}


@dataclass
class Scan:
    """What one walk over a tree found (see `scan`)."""

    unknown: str | None = None                            # refusal for the first construct off the allow-list
    names: Counter = field(default_factory=Counter)       # Identifier / Var names, folded as PostgreSQL does
    functions: list[exp.Func] = field(default_factory=list)
    writes: list[exp.Expression] = field(default_factory=list)
    locking: bool = False                                 # a SELECT ... INTO or FOR UPDATE / SHARE


def scan(nodes: Iterable[exp.Expression]) -> Scan:
    """Every per-node check of a statement in one pass over its nodes (the tree is walked once).

    It also forgets the parser's source positions (nothing reads them): each tree copy sqlglot makes
    to generate SQL deep-copies them, and that was most of the cost of generating the statement.
    """
    out = Scan()
    names = out.names
    for node in nodes:
        cls = type(node)
        kind = _KINDS.get(cls)
        if kind is None:
            func = issubclass(cls, exp.Func)
            kind = _KINDS[cls] = (not (func and not issubclass(cls, _OPERATORS)) and cls.__name__ not in ALLOWED_NODES,
                                  func, issubclass(cls, _WRITES), issubclass(cls, exp.Identifier),
                                  issubclass(cls, exp.Var), issubclass(cls, exp.Select))
        unknown, func, write, identifier, var, select = kind
        meta = node._meta
        if meta is not None and meta.keys() <= _POSITIONS:
            node._meta = None
        if unknown and out.unknown is None:
            out.unknown = (f"SQL construct {cls.__name__} is not on the allow-list of constructs lineage_guard "
                           "analyzes; rewrite the query without it")
        if func:
            out.functions.append(node)
        if write:
            out.writes.append(node)
        if identifier:
            names[node.this if node.quoted else node.this.lower()] += 1
        elif var:
            names[node.name.lower()] += 1
            names[node.name] += 1
        elif select and (node.args.get("into") or node.args.get("locks")):
            out.locking = True
    return out
