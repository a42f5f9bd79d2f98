"""Row filters in the policy: which rows of a table an identity may read, per group and purpose.

    row_filters:
      - name: own-tenant
        table: public.orders
        groups: [analysts]
        purposes: [reporting]
        predicate: "tenant_id = :identity.tenant"      # the identity's `attributes: {tenant: ...}`
    row_filters_combine: all                            # several matching filters: all must hold (or `any`)

The predicate is checked when the policy loads (parses, no subquery or other table, allow-listed
functions only, `:identity.<attribute>` the only placeholders) and against a catalog by
`check-policy --schema-file/--source` (`catalog_problems`: the table exists and has the columns).
The planner applies the matching filters by rewriting the statement (lineage_guard/sql/rowfilter.py).

Example:
    >>> d = RowFilterDecl(name="eu", table="public.orders", predicate="region = 'eu'")
    >>> d.matches(Identity("ana", groups=frozenset({"x"})), "reporting"), d.rule().table
    (True, TableRef(schema='public', table='orders'))
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..identity import Identity
from ..sql.model import TableRef
from ..sql.rowfilter import FilterRule, compile_predicate, predicate_attributes, predicate_columns

if TYPE_CHECKING:
    from .model import Policy


class RowFilterDecl(BaseModel):
    """One row filter: `predicate` over `table`'s columns for matching identities, groups and purposes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)  # what plan --json, the ledger and OpenLineage call it
    table: str  # schema.table the predicate filters (a table; filter the tables a view reads)
    identities: list[str] = Field(default_factory=lambda: ["*"])  # principals (fnmatch patterns)
    groups: list[str] = Field(default_factory=lambda: ["*"])  # groups (from the policy's identities)
    purposes: list[str] = Field(default_factory=lambda: ["*"])  # purposes the filter holds for
    # A SQL boolean over the table's own columns; `:identity.<attribute>` binds an identity attribute.
    predicate: str

    @field_validator("table")
    @classmethod
    def _qualified(cls, v: str) -> str:
        if len(v.split(".")) != 2 or not all(v.split(".")):
            raise ValueError(f"table {v!r} must be schema.table (e.g. public.orders)")
        return v

    @field_validator("predicate")
    @classmethod
    def _valid(cls, v: str) -> str:
        compile_predicate(v)  # ValueError names what to fix
        return v

    def matches(self, identity: Identity, purpose: str) -> bool:
        def any_of(patterns: list[str], values) -> bool:
            return any(fnmatchcase(v, p) for p in patterns for v in values)

        return (any_of(self.identities, [identity.principal])
                and ("*" in self.groups or any_of(self.groups, identity.groups))
                and any_of(self.purposes, [purpose]))

    def rule(self) -> FilterRule:
        schema, table = self.table.split(".")
        return FilterRule(self.name, TableRef(schema, table), self.predicate)


class _Relation(Protocol):
    @property
    def column_names(self) -> tuple[str, ...]: ...

    @property
    def kind(self) -> str: ...


class _Catalog(Protocol):
    def relation(self, name: str, schema: str | None = None) -> _Relation | None: ...


def reference_problems(policy: Policy, lines: dict, source: str) -> list[str]:
    """Unknown names (purposes, groups, identities), duplicate filter names, attributes identities lack."""
    from .validate import _line, _unknown, _valid

    problems: list[str] = []
    seen: dict[str, int] = {}
    purposes = set(policy.purposes)
    groups = set(policy.groups) | {g for d in policy.identities.values() for g in d.groups}
    for i, decl in enumerate(policy.row_filters):
        where = f"row_filters.{i} ({decl.name})"
        if decl.name in seen:
            problems.append(f"{source}:{_line(lines, 'row_filters', i, 'name')}: {where}.name: duplicate row filter "
                            f"name (first is row_filters.{seen[decl.name]}); names are what the ledger records")
        seen.setdefault(decl.name, i)
        checks = [("purposes", decl.purposes, purposes, "purpose")]
        if policy.groups or policy.require_declared_identities:
            checks.append(("groups", decl.groups, groups, "group"))
        if policy.require_declared_identities:
            checks.append(("identities", decl.identities, set(policy.identities), "identity"))
        for field, patterns, known, what in checks:
            for j, wrong in enumerate(patterns):
                if wrong in _unknown([wrong], known):
                    problems.append(f"{source}:{_line(lines, 'row_filters', i, field, j)}: {where}.{field}: "
                                    f"unknown {what} {wrong!r}{_valid(known, wrong)}")
        needed = predicate_attributes(decl.predicate)
        for name, ident in policy.identities.items():
            candidate = Identity(name, ident.kind, frozenset(ident.groups), dict(ident.attributes))
            missing = [a for a in needed if a not in ident.attributes]
            if missing and any(decl.matches(candidate, p) for p in (policy.purposes or ["*"])):
                problems.append(f"{source}:{_line(lines, 'row_filters', i, 'predicate')}: {where}.predicate: "
                                f"identity {name!r} matches this filter but has no attribute(s) "
                                f"{', '.join(missing)}; add them under identities.{name}.attributes")
    return problems


def catalog_problems(policy: Policy, catalog: _Catalog, where: str, lines: dict, source: str) -> list[str]:
    """Row filters naming a table that `catalog` lacks (or that is not a table), or columns it does not have."""
    from .validate import _line, _valid

    problems: list[str] = []
    for i, decl in enumerate(policy.row_filters):
        schema, table = decl.table.split(".")
        relation = catalog.relation(table, schema)
        line = _line(lines, "row_filters", i, "table")
        if relation is None:
            problems.append(f"{source}:{line}: row_filters.{i} ({decl.name}).table: there is no table {decl.table} in "
                            f"{where}; the filter would limit nothing (check the schema and table name)")
            continue
        if relation.kind != "table":
            problems.append(f"{source}:{line}: row_filters.{i} ({decl.name}).table: {decl.table} is a "
                            f"{relation.kind}, not a table; filter the table(s) it reads")
            continue
        for column in predicate_columns(decl.predicate):
            if relation.column_names and column not in relation.column_names:
                problems.append(f"{source}:{_line(lines, 'row_filters', i, 'predicate')}: row_filters.{i} "
                                f"({decl.name}).predicate: {decl.table} has no column "
                                f"{column!r}{_valid(set(relation.column_names), column)}")
    return problems
