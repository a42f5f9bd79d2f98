"""Where a declared sensitive predicate may be honoured: a top-level aggregate over one table.

A policy may allow a predicate form on a classification (`sensitive_uses`, e.g. a date-of-birth range
for cohort selection). It is honoured only in a statement whose result is population-level by
construction, and then the executed statement gets `HAVING count(*) >= min_group_size`, so no group
smaller than the floor comes back whatever the predicate picked. `cohort_blocker` says why a
statement is not of that shape (None: it is); `with_group_floor` adds the floor.

Example:
    >>> import sqlglot
    >>> cohort_blocker(sqlglot.parse_one("SELECT plan, count(*) FROM t WHERE d < '1950-01-01' GROUP BY plan"), frozenset())
    >>> cohort_blocker(sqlglot.parse_one("SELECT max(d) FROM t WHERE d < '1950-01-01'"), frozenset())
    'max() returns a row value, not a population figure'
    >>> with_group_floor("SELECT count(*) FROM t WHERE d < '1950-01-01'", 10)
    "SELECT COUNT(*) FROM t WHERE d < '1950-01-01' HAVING COUNT(*) >= 10"
"""

from __future__ import annotations

import sqlglot
from sqlglot import exp

# Aggregates over a population whose argument cannot come back as one row's value.
POPULATION_AGGREGATES = frozenset({"Count", "Sum", "Avg", "Stddev", "StddevPop", "StddevSamp", "Variance",
                                   "VariancePop"})
# Only counting may touch an identifying column: every other aggregate of a key is a moment of the id set
# (sum(id) over a cohort of one is the id; var_samp(id) over a cohort and its complement gives sum(id) and
# sum(id^2), so two nested cohorts above the floor that differ by one or two patients name them).
_OF_IDENTIFIERS = POPULATION_AGGREGATES - {"Count"}


def cohort_blocker(node: exp.Expression, identifying: frozenset[str]) -> str | None:
    """Why `node` is not a top-level aggregate over one table (None when it is).

    `identifying` holds the names of the FROM table's identifying columns (keys, foreign keys).
    """
    if not isinstance(node, exp.Select):
        return "not a plain SELECT (set operations and VALUES cannot carry a declared predicate)"
    if node.args.get("with_") or node.args.get("with"):
        return "a WITH clause; select from the table directly"
    if node.args.get("distinct"):
        return "SELECT DISTINCT"
    from_ = node.args.get("from_") or node.args.get("from")
    if not from_ or not isinstance(from_.this, exp.Table) or not isinstance(from_.this.this, exp.Identifier) \
            or node.args.get("joins"):
        return "it must read exactly one table, with no join (a join can repeat rows past the group-size floor)"
    if any(isinstance(n, exp.Window) for n in node.walk()):
        return "a window function"
    if any(isinstance(n, (exp.Select, exp.Subquery)) for n in node.walk() if n is not node):
        return "a subquery"
    if node.args.get("having"):
        # The floor is one more HAVING condition; the statement's own runs on every group, the withheld
        # ones too (`GROUP BY id HAVING 1 / (id - k) > 0` fails exactly when patient k is in the cohort).
        return "a HAVING clause of its own (it runs on the groups the floor withholds too); filter in WHERE"
    group = node.args.get("group")
    keys: set[str] = set()
    if group:
        if any(group.args.get(k) for k in ("rollup", "cube", "grouping_sets")):
            return "ROLLUP / CUBE / GROUPING SETS"
        for g in group.expressions:
            g = _positional(g, node)
            if not isinstance(g, exp.Column):
                return "a GROUP BY key that is not a bare column"
            keys.add(g.name)
    aggregated = False
    for item in node.expressions:
        for n in item.walk():
            if isinstance(n, exp.AggFunc):
                aggregated = True
                why = _aggregate_blocker(n, identifying)
                if why:
                    return why
            elif isinstance(n, (exp.Case, exp.Filter)):
                return "CASE or FILTER in the select list"
            elif isinstance(n, exp.Column) and not n.find_ancestor(exp.AggFunc) and n.name not in keys:
                return "a select-list column that is not a GROUP BY key"
            elif isinstance(n, exp.Star) and not isinstance(n.parent, exp.Count):
                return "SELECT *"
    if not aggregated and not group:
        return "no aggregate: rows would come back"
    return None


def _aggregate_blocker(agg: exp.AggFunc, identifying: frozenset[str]) -> str | None:
    kind = type(agg).__name__
    if kind not in POPULATION_AGGREGATES:
        name = agg.name if isinstance(agg, exp.Anonymous) else kind.lower()
        return f"{name}() returns a row value, not a population figure"
    arg = agg.this
    if isinstance(arg, exp.Distinct):
        if len(arg.expressions) != 1:
            return "an aggregate over several columns"
        arg = arg.expressions[0]
    if isinstance(arg, exp.Star) and kind == "Count":
        return None
    if not isinstance(arg, exp.Column):
        return f"{kind.lower()}() of an expression; aggregate a bare column"
    if kind in _OF_IDENTIFIERS and arg.name in identifying:
        return f"{kind.lower()}() of the identifying column {arg.name}"
    if len([a for a in agg.args.values() if isinstance(a, exp.Expression)]) > 1:
        return f"{kind.lower()}() with more than one argument"
    return None


def _positional(g: exp.Expression, select: exp.Select) -> exp.Expression:
    if isinstance(g, exp.Literal) and g.is_int and 0 < int(g.this) <= len(select.expressions):
        item = select.expressions[int(g.this) - 1]
        return item.this if isinstance(item, exp.Alias) else item
    return g


def with_group_floor(executed_sql: str, floor: int) -> str:
    """`executed_sql` with `HAVING count(*) >= floor` ANDed to its HAVING (the statement is a cohort aggregate)."""
    node = sqlglot.parse_one(executed_sql, dialect="postgres")
    test = exp.GTE(this=exp.Count(this=exp.Star()), expression=exp.Literal.number(int(floor)))
    having = node.args.get("having")
    node.set("having", exp.Having(this=exp.and_(exp.paren(having.this), test) if having else test))
    return node.sql(dialect="postgres")
