"""Which of a caller's WHERE conjuncts may run inside a row filter's fence: the leakproof ones, by construction.

A row filter fences its subquery (`OFFSET 0`, sql/rowfilter.py) so no caller qual sees a row the filter
has not passed: a qual that can raise an error (`1 / (id - k)`) would otherwise tell hidden rows apart.
The fence also keeps an index from serving `WHERE id = 42`. PostgreSQL's security_barrier views and row
level security solve the same problem the same way this module does: a qual may be evaluated below the
barrier, next to the filter and on rows the filter rejects, only when every function it calls is
LEAKPROOF (it has no side effect and raises no error that depends on its arguments, so evaluating it on
a hidden row tells nothing). Neither mechanism is open to a rewritten statement: a subquery in FROM
cannot be marked security_barrier, and a view or policy means DDL per filter and identity on the
reader's database, with the identity's attribute values in its text.

So a conjunct of the WHERE is copied into the fence only when it is, in full, built from:
- columns of the fenced table (qualified by its name in the query, or unqualified when it is the only
  source), constants (string, integer, decimal, NULL, TRUE/FALSE; never a cast, `$n`, or a function);
- `=`, `<>`, `<`, `<=`, `>`, `>=` (also via BETWEEN and IN lists) whose operand types have an exact
  operator in pg_catalog that the server marks LEAKPROOF (`Catalog.leakproof`, read from pg_operator /
  pg_proc.proleakproof of that server);
- IS [NOT] NULL, IS [NOT] TRUE/FALSE, a boolean column, AND, OR, NOT, parentheses (no function runs).

Why exact types: reads run with `search_path = pg_catalog, <schema>, pg_temp`, and PostgreSQL takes an
exact argument-type match as is, the first on the path: pg_catalog's. Any other pair of types goes
through implicit casts (not leakproof, or leakproof only by accident of the catalog) or may resolve to
an operator another role created in the schema; both are left outside the fence. A string literal is
of unknown type and takes the other side's type at parse time: its conversion happens once, before any
row is read, so an error there is the same for every row. Anything unknown (an offline catalog, an
unread column type) pushes nothing: the fence alone is what it was.

The conjunct stays in the outer WHERE too: the copy only narrows what the fence returns to rows the
outer WHERE would keep, so the result is the same, and the planner may use an index for it.

Example:
    >>> import sqlglot
    >>> ops = frozenset({("=", "integer", "integer")})
    >>> where = sqlglot.parse_one("SELECT 1 FROM t WHERE t.id = 42 AND 1 / (t.id - 7) > 0", read="postgres")
    >>> [c.sql("postgres") for c in pushable(where.args["where"].this, {"id": "integer"}, "t", False,
    ...                                       lambda o, a, b: (o, a, b) in ops)]
    ['t.id = 42']
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from sqlglot import exp

Leakproof = Callable[[str, str, str], bool]   # (operator, left type, right type) -> LEAKPROOF in pg_catalog?

_UNKNOWN = "unknown"  # a string literal or NULL: takes the other operand's type
_COMPARISONS: dict[type[exp.Expression], str] = {exp.EQ: "=", exp.NEQ: "<>", exp.LT: "<", exp.LTE: "<=",
                                                 exp.GT: ">", exp.GTE: ">="}
_INT = re.compile(r"\d+")
_DECIMAL = re.compile(r"\d+\.\d*|\.\d+")


def conjuncts(node: exp.Expression) -> list[exp.Expression]:
    """The top-level AND terms of `node` (parentheses around an AND are looked through)."""
    if isinstance(node, exp.Paren):
        return conjuncts(node.this)
    if isinstance(node, exp.And):
        return conjuncts(node.left) + conjuncts(node.right)
    return [node]


def pushable(where: exp.Expression, columns: Mapping[str, str], name: str, unqualified: bool,
             leakproof: Leakproof) -> list[exp.Expression]:
    """The conjuncts of `where` that may run inside the fence of table `name` (the nodes themselves).

    `columns`: the table's column names and base types (`Relation.base_types`); `name`: what the query
    calls it (its alias); `unqualified`: whether an unqualified column means this table (it is the only
    source of its SELECT).
    """
    judge = _Judge(columns, name, unqualified, leakproof)
    return [c for c in conjuncts(where) if judge.boolean(c)]


def retarget(node: exp.Expression, inner: exp.Identifier) -> exp.Expression:
    """A copy of a pushable conjunct whose columns name the fence's inner alias."""
    copy = node.copy()
    for col in copy.find_all(exp.Column):
        col.set("table", inner.copy())
    # Parenthesized whatever it is: ANDed next to the filter, an OR must never bind to the filter's terms.
    return copy if isinstance(copy, exp.Paren) else exp.paren(copy, copy=False)


class _Judge:
    def __init__(self, columns: Mapping[str, str], name: str, unqualified: bool, leakproof: Leakproof):
        self.columns = columns
        self.name = name
        self.unqualified = unqualified
        self.leakproof = leakproof

    def boolean(self, node: exp.Expression) -> bool:
        """Whether `node`, a boolean expression, calls nothing that is not LEAKPROOF and reads only this table."""
        if isinstance(node, exp.Paren):
            return self.boolean(node.this)
        if isinstance(node, (exp.And, exp.Or)):
            return self.boolean(node.left) and self.boolean(node.right)
        if isinstance(node, exp.Not):
            return self.boolean(node.this)
        op = _COMPARISONS.get(type(node))
        if op is not None:
            return self._compare(op, node.left, node.right)
        if isinstance(node, exp.Between):
            return self._compare(">=", node.this, node.args.get("low")) and \
                self._compare("<=", node.this, node.args.get("high"))
        if isinstance(node, exp.In):
            return self._in(node)
        if isinstance(node, exp.Is):   # IS NULL / IS TRUE / IS FALSE: a NullTest or BooleanTest, no function
            return self._type(node.this) not in (None, _UNKNOWN) and isinstance(node.expression, (exp.Null, exp.Boolean))
        if isinstance(node, exp.Column):
            return self._type(node) == "boolean"
        return False

    def _compare(self, op: str, left: exp.Expression | None, right: exp.Expression | None) -> bool:
        lt, rt = self._type(left), self._type(right)
        if lt is None or rt is None or (lt == _UNKNOWN and rt == _UNKNOWN):
            return False
        if not (isinstance(left, exp.Column) or isinstance(right, exp.Column)):
            return False  # no column: nothing to gain, and nothing to judge
        lt, rt = (rt if lt == _UNKNOWN else lt), (lt if rt == _UNKNOWN else rt)
        return self.leakproof(op, lt, rt)

    def _in(self, node: exp.In) -> bool:
        # `col IN (a, b)` is `col = ANY (ARRAY[a, b])` over the list's common type with the column: with every
        # item of the column's type or unknown, that type; integer items in a bigint column: bigint.
        if node.args.get("query") or node.args.get("unnest") or node.args.get("field") or not node.expressions:
            return False
        col = self._type(node.this)
        if col is None or col == _UNKNOWN or not isinstance(node.this, exp.Column):
            return False
        allowed = {col, _UNKNOWN} | ({"integer"} if col == "bigint" else set())
        if not all(self._type(e) in allowed and not isinstance(e, exp.Column) for e in node.expressions):
            return False
        return self.leakproof("=", col, col)

    def _type(self, node: exp.Expression | None) -> str | None:
        """The operand's type as operator lookup sees it, `unknown` for an untyped literal, None: not allowed."""
        if isinstance(node, exp.Column):
            return self._column(node)
        if isinstance(node, exp.Null):
            return _UNKNOWN
        if isinstance(node, exp.Boolean):
            return "boolean"
        negative = False
        if isinstance(node, exp.Neg):   # PostgreSQL's grammar folds `- 5` into the constant -5
            node, negative = node.this, True
        if not isinstance(node, exp.Literal):
            return None
        if node.is_string:
            return None if negative else _UNKNOWN
        text = node.this
        if _INT.fullmatch(text):
            value = -int(text) if negative else int(text)
            # PostgreSQL's make_const: digits that fit int4 are an integer constant, else bigint when they
            # fit int8 (the negated 2147483648 fits int4 again), else numeric.
            if -(2**31) <= value <= 2**31 - 1:
                return "integer"
            return "bigint" if -(2**63) <= value <= 2**63 - 1 else "numeric"
        return "numeric" if _DECIMAL.fullmatch(text) else None

    def _column(self, col: exp.Column) -> str | None:
        if col.args.get("db") or col.args.get("catalog") or not isinstance(col.this, exp.Identifier):
            return None
        table = col.args.get("table")
        if table is None and not self.unqualified:
            return None
        if table is not None and _ident(table) != self.name:
            return None
        return self.columns.get(_ident(col.this))


def _ident(node: exp.Expression) -> str:
    from .lineage import ident

    return ident(node)
