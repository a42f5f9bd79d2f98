"""What step 2 (sql) learns about a statement, with no data touched.

`analyze(sql, catalog)` in `lineage_guard.sql` returns an `Analysis`; the policy
step turns it into a `Decision`. The analysis never raises on hostile input: a
statement it cannot understand comes back with `violations` (deny) or with
`opaque` output columns (mask), never silently clear.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True, order=True)
class TableRef:
    """A table or view, fully qualified: `schema.table` (database is the source's)."""

    schema: str
    table: str

    def __str__(self) -> str:
        return f"{self.schema}.{self.table}"


@dataclass(frozen=True, order=True)
class ColumnRef:
    """A source column: `schema.table.column`."""

    schema: str
    table: str
    column: str

    @property
    def table_ref(self) -> TableRef:
        return TableRef(self.schema, self.table)

    def __str__(self) -> str:
        return f"{self.schema}.{self.table}.{self.column}"

    @classmethod
    def parse(cls, text: str) -> ColumnRef:
        parts = text.split(".")
        if len(parts) != 3 or not all(parts):
            raise ValueError(f"column reference must be schema.table.column, got {text!r}")
        return cls(*parts)


@dataclass(frozen=True)
class OutputColumn:
    """One output column, by position (names repeat), and the source columns it derives from.

    `direct` means the value is a source value passed through unchanged (identity),
    so column lineage says IDENTITY; otherwise it is computed from `sources`.
    `opaque` means lineage could not be fully resolved (whole-row reference, unknown
    function, dynamic SQL...): the policy masks it with the default if the statement
    reads anything sensitive, whatever `sources` says.
    """

    position: int
    name: str
    sources: tuple[ColumnRef, ...] = ()
    direct: bool = False
    opaque: bool = False
    type: str | None = None  # the Postgres type name when known (e.g. "text", "date")
    notes: tuple[str, ...] = ()
    # The value as stored: exactly one source column (or UNION ALL branches of stored columns) passed
    # through projections and injective casts (`::text`) only. Deterministic masks apply only then.
    # (`direct` implies it: data handed over in memory marks passthrough columns direct.)
    stored: bool = False


Clause = Literal["where", "join", "having", "order", "group", "distinct_on", "window", "limit"]


@dataclass(frozen=True)
class ColumnUse:
    """A source column used outside the projection, where it can leak by inference.

    `against_constant`: tested against caller-chosen constants (`ssn = '123...'`,
    `LIKE 'A%'`); `orders`: the result is ordered by it; `singles_out`: the query
    can return individual rows (not only population-level aggregates).
    """

    column: ColumnRef
    clause: Clause
    against_constant: bool = False
    singles_out: bool = True


UseRule = Literal["inspect", "equijoin", "count"]
PredicateForm = Literal["range", "equals", "in_list", "is_null"]


@dataclass(frozen=True)
class ValueUse:
    """A place where the database does more with values of `sources` than move them (DESIGN.md, opaque values).

    `rule`: `inspect` (a predicate, a sort, a grouping, a function or operator argument...), `equijoin`
    (`sources` = `other`, both sides columns; allowed when both are stored columns of one classification),
    `count` (the argument of count(...)). `where` says where, in words a person can act on. `form` is
    set on an atom of the top-level WHERE conjunction that a policy may declare (`sensitive_uses`).
    """

    sources: tuple[ColumnRef, ...]
    where: str
    rule: UseRule = "inspect"
    stored: bool = False                 # equijoin: both sides are single stored columns
    other: tuple[ColumnRef, ...] = ()    # equijoin: the other side
    form: PredicateForm | None = None


StatementKind = Literal[
    "select", "insert", "update", "delete", "merge", "copy", "ddl", "dcl", "call",
    "explain", "session", "transaction", "maintenance", "lock", "other",
]


@dataclass(frozen=True)
class Analysis:
    """Everything the plan needs to decide, learned from the SQL and the catalog only."""

    statement: str                      # the statement as normalized by sqlglot (postgres dialect)
    kind: StatementKind
    is_read: bool                       # true only for a plain read with no side effect
    tables_read: tuple[TableRef, ...] = ()
    tables_written: tuple[TableRef, ...] = ()
    columns: tuple[OutputColumn, ...] = ()
    uses: tuple[ColumnUse, ...] = ()
    violations: tuple[str, ...] = ()    # non-empty => deny, whatever the policy (reasons a person can act on)
    has_where: bool = True              # for UPDATE/DELETE: false => whole-table change
    flags: frozenset[str] = field(default_factory=frozenset)  # e.g. {"copy_program", "truncate", "drop", "grant"}
    # Source columns whose values reach a cast or parse function that can fail with the value in its
    # error message (`ssn::int`): masking the output cannot help, the error leaks first.
    error_channel: tuple[ColumnRef, ...] = ()
    # Every computation on values beyond moving them (the opaque-values rule judges these).
    value_uses: tuple[ValueUse, ...] = ()
    # The AST that was judged (sqlglot), every column qualified with the FROM item it was resolved to,
    # `*` expanded: `executed_sql` is generated from it when a read or write runs (plans do not pay).
    tree: Any = field(default=None, compare=False, repr=False)
    group_floor: int | None = None      # a declared sensitive predicate: groups under this many rows withheld
    # Why a declared sensitive predicate could not be honoured in this statement (None: it can, as a
    # top-level aggregate over one table, with the group-size floor added at execution).
    cohort_blocker: str | None = "not a top-level aggregate SELECT"
    # Row filters the planner applied to `tree` (sql/rowfilter.py), and the identity attribute values their
    # `$n` parameters take, after the caller's own parameters (never part of any statement text).
    row_filters: tuple[Any, ...] = ()
    row_filter_values: tuple[str, ...] = field(default=(), compare=False, repr=False)
    # Each table read that has inheritance children or partitions, with all of them (planner.plan): the server
    # scans them under their own names when the parent is read, and the live binding check counts those scans
    # as the parent's (sql/explain.planned).
    descendants: tuple[tuple[TableRef, tuple[TableRef, ...]], ...] = field(default=(), compare=False, repr=False)

    @property
    def executed_sql(self) -> str | None:
        """What the database runs, generated from `tree` (a binding difference is then an error, not a
        leak), with `HAVING count(*) >= group_floor` when set; None when there is nothing to run."""
        if self.tree is None or self.violations:
            return None
        cached = self.__dict__.get("_executed")
        if cached is None:
            from .generate import executable

            cached = executable(self.tree, self.group_floor)
            object.__setattr__(self, "_executed", cached)  # frozen: computed once, like a cached property
        return cached or None

    @property
    def source_columns(self) -> tuple[ColumnRef, ...]:
        """Every source column any output derives from, sorted and unique."""
        return tuple(sorted({c for col in self.columns for c in col.sources}))
