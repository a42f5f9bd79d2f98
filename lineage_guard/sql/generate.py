"""The SQL the database runs: generated from the AST the planner judged, never the caller's text.

Example:
    >>> import sqlglot
    >>> executable(sqlglot.parse_one("SELECT count(*) FROM t WHERE d < '1950-01-01'", dialect="postgres"), 10)
    "SELECT COUNT(*) FROM t WHERE d < '1950-01-01' HAVING COUNT(*) >= 10"
"""

from __future__ import annotations

from sqlglot import exp
from sqlglot.errors import ErrorLevel

from .cohort import with_group_floor


def executable(tree: exp.Expression, group_floor: int | None = None) -> str:
    """`tree` as PostgreSQL text, with the group-size floor when given; "" when it cannot be generated."""
    try:
        sql = tree.sql(dialect="postgres", unsupported_level=ErrorLevel.RAISE)
        return with_group_floor(sql, group_floor) if group_floor else sql
    except Exception:  # noqa: BLE001 - no SQL to run means nothing runs (the session refuses)
        return ""
