"""Leaks through the query's shape rather than its output: predicates, joins, ordering, error messages.

Masking the output cannot stop `SELECT id FROM customers WHERE ssn = '975-45-1106'`: the
row that comes back *is* the answer. `inference_findings` returns deny reasons for such uses
of sensitive columns, by mode:

- `lenient`: none for predicates (output masking only);
- `default`: a sensitive column tested against caller-chosen constants (WHERE, JOIN, HAVING,
  EXCEPT/INTERSECT, FILTER) or ordering the result (ORDER BY, DISTINCT ON), in a query that can
  single out individuals (rows, point tests such as `=`/`IN`, groups keyed by an identifying or a
  sensitive column); population-level aggregates stay allowed;
- `strict`: any use of a sensitive column outside the projection, aggregates included.

In every mode, a sensitive value reaching a cast or parse function that can fail with the value
in its error message (`ssn::int`) is denied: the error leaves the database before masking runs.

Example:
    >>> from lineage_guard.sql import analyze
    >>> from lineage_guard.sql.catalog import Catalog
    >>> cat = Catalog.from_ddl_text("CREATE TABLE customers (id int PRIMARY KEY, ssn text, plan text)")
    >>> ssn = {ColumnRef("public", "customers", "ssn")}
    >>> inference_findings(analyze("SELECT id FROM customers WHERE ssn = '1'", cat), ssn, "default")
    ['public.customers.ssn is tested against chosen constants in WHERE of a query that can single out individuals (inference oracle); remove the predicate or aggregate the result']
    >>> inference_findings(analyze("SELECT plan, count(*) FROM customers WHERE ssn < '5' GROUP BY plan", cat), ssn, "default")
    []
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from .model import Analysis, ColumnRef

Mode = Literal["lenient", "default", "strict"]
_CLAUSE = {"where": "WHERE", "join": "JOIN", "having": "HAVING",
           "order": "ORDER BY (or a window's ORDER BY, the order rows come back in when the query has none)", "group": "GROUP BY",
           "distinct_on": "DISTINCT ON", "window": "a window (OVER)", "limit": "LIMIT/OFFSET"}


def inference_findings(analysis: Analysis, sensitive: Iterable[ColumnRef], mode: Mode = "default") -> list[str]:
    """Deny reasons (empty when none) for leaks through predicates, ordering and the error channel."""
    if mode not in ("lenient", "default", "strict"):
        return [f"unknown inference mode {mode!r}; use lenient, default or strict"]
    sensitive = set(sensitive)
    reasons: list[str] = []
    for col in sorted(set(analysis.error_channel) & sensitive):
        reasons.append(f"{col} reaches a cast or function whose error message would repeat the value (error "
                       "channel: it leaks before masking runs); cast or parse only non-sensitive columns, or cast to text")
    if mode == "lenient":
        return reasons
    # Grouping by a sensitive column (ssn, zip...) makes each group a handful of people, or one.
    grouped_by_sensitive = any(u.clause == "group" and u.column in sensitive for u in analysis.uses)
    seen: set[tuple[ColumnRef, str]] = set()
    for use in analysis.uses:
        if use.column not in sensitive or (use.column, use.clause) in seen:
            continue
        where = _CLAUSE.get(use.clause, use.clause)
        if mode == "strict":
            reason = (f"{use.column} is used in {where} (strict inference mode: sensitive columns may only be "
                      "projected, and then masked); remove it from the clause")
        elif use.against_constant and ((use.singles_out or grouped_by_sensitive) and use.clause not in ("group", "window")
                                       or use.singles_out and use.clause == "group"):
            reason = (f"{use.column} is tested against chosen constants in {where} of a query that can single "
                      "out individuals (inference oracle); remove the predicate or aggregate the result")
        elif use.singles_out and use.clause in ("order", "distinct_on"):
            reason = (f"{use.column} orders the rows in {where} of a query that can single out individuals, "
                      "so row order reveals it; order by a non-sensitive column")
        else:
            continue
        seen.add((use.column, use.clause))
        reasons.append(reason)
    return reasons
