"""Row filters: rewrite every reference to a filtered table in the judged AST, before the SQL is generated.

A policy row filter is a predicate over one table's columns (`tenant_id = :identity.tenant`). The
database runs exactly the SQL generated from `Analysis.tree` (sql/generate.py), so filtering is a
rewrite of that tree: each FROM reference to the table, wherever it stands (joins, subqueries,
CTEs, set-operation branches, LATERAL, scalar subqueries, the body of a view it expands), becomes

    (SELECT <its columns> FROM <table> AS _lg_rfN WHERE <predicate> OFFSET 0) AS <the reference's alias>

so the reference keeps its alias and columns and every outer clause sees only the filtered rows
(outer joins included: the filter applies before the join, not after it). `OFFSET 0` fences it: no
caller qual runs on a row the filter rejects, except the caller's WHERE terms that call only
LEAKPROOF comparisons on this table's columns (sql/pushdown.py), which are also copied inside next
to the filter so an index can serve them. UPDATE and DELETE get the
predicate ANDed to their WHERE, scoped to the target's alias. Identity attributes become `$n`
parameters numbered after the caller's own; their values travel with the execution's parameters and
never appear in the statement text.

What cannot be rewritten is refused (`RowFilterDenied` reasons): a user function whose body reads a
filtered table (it runs unfiltered on the server), a materialized view over one (its rows are
stored), a parent read without ONLY when a child has its own filter, a write the predicate cannot
scope (MERGE, INSERT ... ON CONFLICT DO UPDATE, TRUNCATE, writes through a view). Inheritance: a
filter on a parent applies to the parent's rows wherever they are read, so also to a child (or
partition) read directly.

Example:
    >>> from lineage_guard.sql import analyze
    >>> from lineage_guard.sql.catalog import Catalog
    >>> cat = Catalog.from_ddl_text("CREATE TABLE t (id int, tenant text)")
    >>> f = FilterRule("own-tenant", TableRef("public", "t"), "tenant = :identity.tenant")
    >>> out = apply_row_filters(analyze("SELECT id FROM t", cat), cat, [f], {"tenant": "acme"})
    >>> out.executed_sql, out.row_filter_values
    ('SELECT "t".id FROM (SELECT _lg_rf1."id", _lg_rf1."tenant" FROM t AS _lg_rf1 WHERE (_lg_rf1.tenant = $1) OFFSET 0) AS t', ('acme',))
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import sqlglot
from sqlglot import exp

from .catalog import Catalog, Relation
from .model import Analysis, ColumnRef, TableRef

Combine = Literal["all", "any"]
_MAX_DEPTH = 16  # views within views: deeper than this is refused, not followed


@dataclass(frozen=True)
class FilterRule:
    """One policy row filter that matched the identity and purpose: a predicate over `table`'s columns."""

    name: str
    table: TableRef
    predicate: str


@dataclass(frozen=True)
class AppliedFilter:
    """Which filters a relation's references got: names, digest of the combined predicate, attribute names."""

    table: TableRef
    filters: tuple[str, ...]
    combine: Combine
    digest: str
    attributes: tuple[str, ...]        # identity attribute names bound (never their values)
    columns: tuple[ColumnRef, ...]     # the columns of `table` the predicate reads
    references: int                    # how many references in the statement were rewritten

    def to_json(self) -> dict:
        return {"table": str(self.table), "filters": list(self.filters), "combine": self.combine,
                "digest": self.digest, "attributes": list(self.attributes),
                "columns": [str(c) for c in self.columns], "references": self.references}


class RowFilterDenied(Exception):
    """The statement reads a filtered table somewhere the filter cannot be applied."""

    def __init__(self, reasons: Sequence[str]):
        super().__init__("; ".join(reasons))
        self.reasons = list(reasons)


# -- predicates -------------------------------------------------------------------------------------

def _attribute(node: exp.Expression) -> str | None:
    """`:identity.<name>` parses as Dot(Placeholder(identity), name): the attribute name, else None."""
    if isinstance(node, exp.Dot) and isinstance(node.this, exp.Placeholder) and node.this.name == "identity":
        return node.expression.name if isinstance(node.expression, exp.Identifier) else None
    return None


@lru_cache(maxsize=512)
def compile_predicate(text: str) -> exp.Expression:
    """The predicate's AST (shared: callers copy it). Raises ValueError saying what to fix.

        >>> predicate_attributes("tenant = :identity.tenant AND consent IS TRUE")
        ('tenant',)
        >>> compile_predicate("id IN (SELECT id FROM other)")
        Traceback (most recent call last):
        ...
        ValueError: a row filter may not contain a subquery or name another table; use only this table's columns
    """
    from .allowlist import FUNCTION_CASTS, _silence_sqlglot, function_name, is_allowed_node
    from .nodes import unknown_node

    _silence_sqlglot()
    if not isinstance(text, str) or not text.strip() or ";" in text:
        raise ValueError("the predicate must be one PostgreSQL boolean expression (no `;`)")
    try:
        node = sqlglot.parse_one(text, dialect="postgres", into=exp.Condition)
    except sqlglot.errors.SqlglotError:
        raise ValueError("the predicate does not parse as one PostgreSQL boolean expression") from None
    if isinstance(node, (exp.Query, exp.DDL, exp.DML, exp.Command)):
        raise ValueError("the predicate must be a boolean expression, not a statement")  # noqa: TRY004 - pydantic reports ValueError as a field error
    for sub in node.walk():
        if isinstance(sub, (exp.Query, exp.Subquery, exp.Table, exp.Exists, exp.Star)):
            raise ValueError("a row filter may not contain a subquery or name another table; use only this "  # noqa: TRY004
                             "table's columns")
        if isinstance(sub, (exp.AggFunc, exp.Window)):
            raise ValueError("a row filter may not aggregate or use a window; test each row's own columns")  # noqa: TRY004
        if isinstance(sub, exp.Column) and (sub.table or not isinstance(sub.this, exp.Identifier)):
            raise ValueError(f"column {sub.sql('postgres')} is qualified; name this table's columns unqualified")
        if isinstance(sub, exp.Parameter):
            raise ValueError("positional parameters ($1) are not allowed; use :identity.<attribute>")  # noqa: TRY004
        if isinstance(sub, exp.Placeholder) and _attribute(sub.parent) is None:
            raise ValueError(f"unknown placeholder {sub.sql('postgres')}; identity attributes are written "
                             ":identity.<attribute>")
        if isinstance(sub, exp.Func) and not isinstance(sub, (exp.Binary, exp.Unary, exp.Connector, exp.Predicate)):
            name = function_name(sub)
            if not (is_allowed_node(sub) or name in FUNCTION_CASTS):
                raise ValueError(f"function {name} is not on the allow-list of pure built-ins")
    construct = unknown_node(node)
    if construct:
        raise ValueError(construct)
    return node


def predicate_columns(text: str) -> tuple[str, ...]:
    """Column names the predicate reads, in first-use order."""
    return tuple(dict.fromkeys(_ident(c.this) for c in compile_predicate(text).find_all(exp.Column)))


def predicate_attributes(text: str) -> tuple[str, ...]:
    """Identity attribute names the predicate binds, in first-use order."""
    return tuple(dict.fromkeys(a for d in compile_predicate(text).find_all(exp.Dot) if (a := _attribute(d))))


def _ident(node) -> str:
    from .lineage import ident

    return ident(node)


# -- the rewrite ------------------------------------------------------------------------------------

def apply_row_filters(analysis: Analysis, catalog: Catalog, rules: Iterable[FilterRule],
                      attributes: Mapping[str, str], combine: Combine = "all") -> Analysis:
    """`analysis` with every reference to a filtered table rewritten (see the module doc).

    Raises `RowFilterDenied` when a reference cannot be filtered or an attribute is missing.
    Returns `analysis` itself when no filtered table (or relative) is read or written.
    """
    by_table: dict[TableRef, list[FilterRule]] = {}
    for rule in rules:
        by_table.setdefault(rule.table, []).append(rule)
    if not by_table:
        return analysis
    family = _family(catalog, by_table)
    touched = set(analysis.tables_read) | set(analysis.tables_written)
    if analysis.is_read and not any(family.relevant(t) for t in touched):  # a write may go through a view
        return analysis
    if analysis.tree is None:
        raise RowFilterDenied([(f"row filter on {', '.join(sorted(str(t) for t in touched if family.relevant(t)))}: "
                               "the data did not come from a statement the filter can be added to")])
    rewriter = _Rewriter(catalog, family, attributes, combine, _max_parameter(analysis.tree))
    tree = analysis.tree.copy()  # the caller's analysis (maybe cached) stays unfiltered
    tree = rewriter.statement(tree)
    if rewriter.reasons:
        raise RowFilterDenied(rewriter.reasons)
    return dataclasses.replace(analysis, tree=tree, row_filters=rewriter.applied(),
                               row_filter_values=tuple(attributes[a] for a in rewriter.params))


def _max_parameter(tree: exp.Expression) -> int:
    """The highest `$n` the caller's statement uses: filter parameters are numbered after it."""
    top = 0
    for p in tree.find_all(exp.Parameter):
        value = p.this
        text = value.this if isinstance(value, exp.Literal) else getattr(value, "name", "")
        if str(text).isdigit():
            top = max(top, int(text))
    return top


_FAMILIES: dict[tuple, _Family] = {}


def _family(catalog: Catalog, by_table: Mapping[TableRef, list[FilterRule]]) -> _Family:
    """One `_Family` per (catalog, filters): a process plans many statements against the same two."""
    key = (id(catalog), len(catalog.relations), tuple((t, tuple(r)) for t, r in sorted(by_table.items())))
    found = _FAMILIES.get(key)
    if found is None or found.catalog is not catalog:
        if len(_FAMILIES) > 64:
            _FAMILIES.clear()
        found = _FAMILIES[key] = _Family(catalog, by_table)
    return found


class _Family:
    """Filtered tables and their inheritance relatives (a parent's filter holds for its children's rows)."""

    def __init__(self, catalog: Catalog, by_table: Mapping[TableRef, list[FilterRule]]):
        self.catalog = catalog
        self.by_table = by_table
        self.parents: dict[TableRef, tuple[TableRef, ...]] = {}
        children: dict[TableRef, list[TableRef]] = {}
        for rel in catalog.relations.values():
            ups = tuple(TableRef(s, n) for s, n in getattr(rel, "parents", ()))
            if ups:
                self.parents[TableRef(rel.schema, rel.name)] = ups
                for up in ups:
                    children.setdefault(up, []).append(TableRef(rel.schema, rel.name))
        self.children = children
        # What each view / function body reads (bare names), through views and functions: catalog facts.
        self.reach: dict[tuple[str, str, str], frozenset[str]] = {}
        self._names: set[str] | None = None

    def ancestors(self, ref: TableRef) -> list[TableRef]:
        out, todo = [], list(self.parents.get(ref, ()))
        while todo:
            up = todo.pop()
            if up not in out:
                out.append(up)
                todo.extend(self.parents.get(up, ()))
        return out

    def descendants(self, ref: TableRef) -> list[TableRef]:
        out, todo = [], list(self.children.get(ref, ()))
        while todo:
            down = todo.pop()
            if down not in out:
                out.append(down)
                todo.extend(self.children.get(down, ()))
        return out

    def rules_for(self, ref: TableRef) -> list[FilterRule]:
        """The filters on `ref` itself and on every ancestor (its rows are theirs)."""
        out = list(self.by_table.get(ref, ()))
        for up in self.ancestors(ref):
            out += self.by_table.get(up, ())
        return out

    def filtered_below(self, ref: TableRef) -> list[TableRef]:
        """Descendants with filters of their own: reading `ref` without ONLY reads their rows unfiltered."""
        return [d for d in self.descendants(ref) if d in self.by_table]

    def relevant(self, ref: TableRef) -> bool:
        return bool(self.rules_for(ref) or self.filtered_below(ref))

    def relevant_names(self) -> set[str]:
        if self._names is not None:
            return self._names
        names = set()
        for ref in self.by_table:
            names |= {ref.table, *(d.table for d in self.descendants(ref)), *(a.table for a in self.ancestors(ref))}
        self._names = names
        return names


class _Rewriter:
    def __init__(self, catalog: Catalog, family: _Family, attributes: Mapping[str, str], combine: Combine,
                 base: int):
        self.catalog = catalog
        self.family = family
        self.attributes = attributes
        self.combine = combine
        self.base = base
        self.params: list[str] = []
        self.reasons: list[str] = []
        self.counts: dict[TableRef, int] = {}
        self._aliases = 0
        self._reach = family.reach

    def refuse(self, reason: str) -> None:
        if reason not in self.reasons:
            self.reasons.append(reason)

    # -- statements -------------------------------------------------------------------------------

    def statement(self, tree: exp.Expression) -> exp.Expression:
        target = None
        if isinstance(tree, (exp.Insert, exp.Update, exp.Delete, exp.Merge)):
            target = tree.this.this if isinstance(tree.this, exp.Schema) else tree.this
            self._write_target(tree, target)
        elif not isinstance(tree, (exp.Query, exp.Subquery)):
            for t in tree.find_all(exp.Table):
                rel = self._relation(t)
                if rel is not None and self.family.relevant(TableRef(rel.schema, rel.name)):
                    self.refuse(f"{rel.schema}.{rel.name} has a row filter for this identity; only SELECT, INSERT, "
                                "UPDATE and DELETE can be filtered")
            return tree
        self._tables(tree, skip=target, depth=0)
        self._functions(tree)
        return tree

    def _write_target(self, tree: exp.Expression, target: exp.Expression) -> None:
        rel = self._relation(target) if isinstance(target, exp.Table) else None
        if rel is None:
            return
        ref = TableRef(rel.schema, rel.name)
        if rel.kind != "table":
            if self._view_reaches(rel):
                self.refuse(f"a write to {ref} reaches a table with a row filter for this identity through a view; "
                            "write to the table itself")
            return
        if not self.family.relevant(ref):
            return
        only = bool(target.args.get("only"))
        below = [] if only else self.family.filtered_below(ref)
        if below:
            self.refuse(f"{ref} is written without ONLY, which also writes {', '.join(map(str, below))} whose row "
                        f"filter would not hold; write with ONLY {ref.table} or to each table")
            return
        if isinstance(tree, exp.Insert):
            conflict = tree.args.get("conflict")
            if conflict is not None and "UPDATE" in str(conflict.args.get("action") or "").upper():
                self.refuse(f"INSERT ... ON CONFLICT DO UPDATE on {ref} may update rows outside this identity's row "
                            "filter; use an UPDATE (it is filtered) or ON CONFLICT DO NOTHING")
            return  # new rows: the filter limits what is read, not what is inserted
        if isinstance(tree, exp.Merge):
            self.refuse(f"MERGE into {ref} cannot be limited to this identity's row filter; use UPDATE / INSERT")
            return
        alias = target.args.get("alias")
        name = alias.this if isinstance(alias, exp.TableAlias) and alias.this else target.this
        predicate = self._predicate(ref, exp.to_identifier(_ident(name), quoted=True))
        if predicate is None:
            return
        where = tree.args.get("where")
        condition = predicate if where is None else exp.and_(exp.paren(where.this, copy=False), predicate, copy=False)
        tree.set("where", exp.Where(this=condition))
        self.counts[ref] = self.counts.get(ref, 0) + 1

    # -- FROM references --------------------------------------------------------------------------

    def _tables(self, tree: exp.Expression, skip: exp.Expression | None, depth: int) -> None:
        for t in list(tree.find_all(exp.Table)):  # collected first: wrappers and inlined views are new nodes
            if t is skip or isinstance(t.this, (exp.Func, exp.Dot)) or t.args.get("rows_from"):
                continue
            rel = self._relation(t)
            if rel is None:
                continue
            ref = TableRef(rel.schema, rel.name)
            if rel.kind in ("view", "matview") or (rel.definition and not rel.columns):
                if self.family.rules_for(ref):  # check-policy refuses this; a plan must not read it unfiltered
                    self.refuse(f"a row filter names {ref}, which is a {rel.kind}: filter the table(s) it reads")
                elif self._view_reaches(rel):
                    if rel.kind == "matview":
                        self.refuse(f"materialized view {ref} stores rows of a table with a row filter for this "
                                    "identity; they cannot be filtered: read the table itself")
                    else:
                        self._inline(t, rel, depth)
                continue
            if not self.family.relevant(ref):
                continue
            below = [] if t.args.get("only") else self.family.filtered_below(ref)
            if below:
                self.refuse(f"{ref} is read without ONLY, which also reads {', '.join(map(str, below))} whose row "
                            f"filter would not hold; read ONLY {ref.table}, or each table")
                continue
            self._wrap(t, ref)

    def _relation(self, t: exp.Table) -> Relation | None:
        if not isinstance(t.this, exp.Identifier):
            return None
        name = _ident(t.this)
        schema = _ident(t.args["db"]) if t.args.get("db") else None
        if schema is None and _cte_visible(t, name):
            return None
        if schema is None and name.startswith("pg_"):
            return None  # a system catalog on the pinned search_path (the analysis refuses those)
        return self.catalog.relation(name, schema)

    def _wrap(self, t: exp.Table, ref: TableRef) -> None:
        self._aliases += 1
        inner_alias = exp.to_identifier(f"_lg_rf{self._aliases}")
        predicate = self._predicate(ref, inner_alias)
        if predicate is None:
            return
        alias = t.args.get("alias")
        outer_alias = alias.copy() if isinstance(alias, exp.TableAlias) and alias.this else \
            exp.TableAlias(this=t.this.copy(), columns=[c.copy() for c in alias.columns] if alias else None)
        joins = t.args.get("joins")
        inner = t.copy()
        for key in ("alias", "joins", "pivots", "laterals"):
            inner.set(key, None)
        inner.set("alias", exp.TableAlias(this=inner_alias))
        # OFFSET 0 fences the subquery, as PostgreSQL's security_barrier views are fenced: flattened, the
        # planner may run a cheaper caller qual (`1 / (id - k)`) before the filter, on hidden rows too, and
        # its error would say that hidden row k exists (tests/test_redteam_filter_fence.py).
        # The columns by name, not `*`: a fenced subquery is a Subquery Scan in EXPLAIN, and sql/explain.py maps
        # its outputs to the table's columns by the names the executed statement gives them.
        rel = self._relation(t)
        listed = [exp.column(name, table=inner_alias.copy(), quoted=True) for name, _ in rel.columns] \
            if rel is not None and rel.columns else [exp.Star()]
        # The caller's leakproof conjuncts also run inside, next to the filter, so an index can serve them;
        # any other stays outside the fence only (sql/pushdown.py says why that is safe).
        pushed = self._pushdown(t, rel, outer_alias, inner_alias)
        condition = exp.and_(predicate, *pushed, copy=False) if pushed else predicate
        select = exp.Select(expressions=listed).from_(inner, copy=False).where(condition, copy=False).offset(0)
        wrapper = exp.Subquery(this=select, alias=outer_alias)
        if joins:
            wrapper.set("joins", joins)
        t.replace(wrapper)
        self.counts[ref] = self.counts.get(ref, 0) + 1

    def _pushdown(self, t: exp.Table, rel: Relation | None, outer_alias: exp.TableAlias,
                  inner_alias: exp.Identifier) -> list[exp.Expression]:
        """Copies of the leakproof conjuncts of the WHERE of the SELECT that reads `t`, over the inner alias.

        Only where filtering `t` first is the same as filtering after the joins: `t` is the FROM item or an
        inner join, and no later join is RIGHT or FULL (which would add NULL rows for `t`). Its columns
        must keep their names (no `AS x(a, b)`) and unqualified names must mean `t` (no joins at all).
        """
        from .pushdown import pushable, retarget

        if rel is None or not rel.base_types or self.catalog.leakproof_operators is None:
            return []  # nothing known to be leakproof: fence only (fail closed)
        holder = t.parent
        select = holder.parent if holder is not None else None
        if outer_alias.columns or t.args.get("joins") or not isinstance(select, exp.Select):
            return []
        where = select.args.get("where")
        joins = list(select.args.get("joins") or [])
        if where is None:
            return []
        if isinstance(holder, exp.From) and (select.args.get("from_") or select.args.get("from")) is holder:
            later = joins
        elif isinstance(holder, exp.Join) and any(j is holder for j in joins) and not holder.side:
            later = joins[next(i for i, j in enumerate(joins) if j is holder) + 1:]
        else:
            return []
        if any(j.side in ("RIGHT", "FULL") for j in later):
            return []
        found = pushable(where.this, dict(rel.base_types), _ident(outer_alias.this), not joins,
                         self.catalog.leakproof)
        return [retarget(c, inner_alias) for c in found]

    def _inline(self, t: exp.Table, rel: Relation, depth: int) -> None:
        label = f"{rel.schema}.{rel.name}"
        if depth >= _MAX_DEPTH:
            self.refuse(f"view {label} nests views too deeply to apply a row filter; read its base tables")
            return
        try:
            body = sqlglot.parse_one(rel.definition or "", dialect="postgres")
        except sqlglot.errors.SqlglotError:
            body = None
        if not isinstance(body, exp.Query):
            self.refuse(f"view {label} reads a table with a row filter and its definition cannot be rewritten; "
                        "read its base tables")
            return
        self._tables(body, None, depth + 1)
        alias = t.args.get("alias")
        if isinstance(alias, exp.TableAlias) and alias.this:
            outer_alias = alias.copy()
            if not outer_alias.columns and rel.column_names:
                outer_alias.set("columns", [exp.to_identifier(c, quoted=True) for c in rel.column_names])
        else:
            outer_alias = exp.TableAlias(this=t.this.copy(),
                                         columns=[exp.to_identifier(c, quoted=True) for c in rel.column_names] or None)
        wrapper = exp.Subquery(this=body, alias=outer_alias)
        if t.args.get("joins"):
            wrapper.set("joins", t.args["joins"])
        t.replace(wrapper)

    # -- predicates -------------------------------------------------------------------------------

    def _predicate(self, ref: TableRef, alias: exp.Identifier) -> exp.Expression | None:
        rules = self.family.rules_for(ref)
        rel = self.catalog.relation(ref.table, ref.schema)
        names = set(rel.column_names) if rel is not None else set()
        parts = []
        for rule in rules:
            try:
                node = compile_predicate(rule.predicate).copy()
            except ValueError as err:
                self.refuse(f"row filter {rule.name!r}: {err}")
                return None
            for col in list(node.find_all(exp.Column)):
                if names and _ident(col.this) not in names:
                    self.refuse(f"row filter {rule.name!r} names column {_ident(col.this)!r}, which {ref} does not "
                                "have; fix the policy")
                    return None
                col.set("table", alias.copy())
            if rel is not None and rel.nondeterministic and not self._byte_exact(rule, ref, rel, node):
                return None
            for dot in list(node.find_all(exp.Dot)):
                attr = _attribute(dot)
                if attr is None:
                    continue
                if attr not in self.attributes:
                    self.refuse(f"row filter {rule.name!r} needs identity attribute {attr!r}, which this identity "
                                "does not have; add it under the identity's `attributes:` in the policy")
                    return None
                if attr not in self.params:
                    self.params.append(attr)
                number = self.base + self.params.index(attr) + 1
                dot.replace(exp.Parameter(this=exp.Literal.number(number)))
            parts.append(exp.paren(node, copy=False))
        if not parts:
            return None
        return exp.and_(*parts, copy=False) if self.combine == "all" or len(parts) == 1 else \
            exp.paren(exp.or_(*parts, copy=False), copy=False)

    def _byte_exact(self, rule: FilterRule, ref: TableRef, rel: Relation, node: exp.Expression) -> bool:
        """Make the filter compare bytes on its columns under a nondeterministic collation, or refuse it.

        Under ICU `und-u-ks-level2` with `deterministic = false`, `tenant = 'acme'` holds for `ACME` too: tenant
        acme would see tenant ACME's rows. A row filter is a security boundary, so its comparisons are byte
        comparisons whatever the column's collation: a column that is an operand of `=`, `<>`, `<`, `<=`, `>`,
        `>=`, BETWEEN or IN is compared `COLLATE "C"` (byte order; equal only when the bytes are: every other
        operand takes that explicit collation, PostgreSQL's collation derivation). Anywhere else (a function
        argument: lower() maps case by the collation; LIKE; a CASE) the filter is refused, as is a filter with a
        COLLATE of its own there or a column not collatable (a composite with such a field): no rewrite is
        provably byte-exact there (tests/test_redteam_collations.py).
        """
        cols = [c for c in node.find_all(exp.Column) if rel.collation(_ident(c.this)) is not None]
        if not cols:
            return True
        fix = ("; compare the column directly with =, <>, IN, <, > or BETWEEN (the filter then compares bytes), "
               "or give it a deterministic collation")
        if any(True for _ in node.find_all(exp.Collate)):
            self.refuse(f"row filter {rule.name!r} has a COLLATE clause and reads a column of {ref} under a "
                        f"nondeterministic collation; remove the COLLATE{fix}")
            return False
        for col in cols:
            name = _ident(col.this)
            collation, collatable = rel.collation(name)  # type: ignore[misc]
            parent = col.parent
            compared = isinstance(parent, (exp.EQ, exp.NEQ, exp.LT, exp.LTE, exp.GT, exp.GTE)) or \
                (isinstance(parent, (exp.In, exp.Between)) and parent.this is col)
            if isinstance(parent, exp.Is) and parent.this is col:
                continue  # IS [NOT] NULL compares nothing
            if not collatable or not compared:
                where = "is not collatable" if not collatable else "is not a direct operand of a comparison"
                self.refuse(f"row filter {rule.name!r} compares {ref}.{name}, whose collation {collation} is "
                            f"nondeterministic (equal is not byte-equal: 'acme' may match 'ACME'), and it {where}, so "
                            f"the filter cannot be made byte-exact{fix}")
                return False
            col.replace(exp.Collate(this=col.copy(), expression=exp.to_identifier("C", quoted=True)))
        return True

    # -- what functions and views reach ------------------------------------------------------------

    def _functions(self, tree: exp.Expression) -> None:
        from .allowlist import function_name

        relevant = self.family.relevant_names()
        for fn in tree.find_all(exp.Func):
            name = function_name(fn)
            if not self.catalog.user_functions(name):
                continue
            hit = self._function_reach(name, 0) & relevant
            if hit:
                self.refuse(f"function {name} reads {', '.join(sorted(hit))}, which has a row filter for this "
                            "identity; a function body runs unfiltered on the server: read the table in the query")

    def _view_reaches(self, rel: Relation) -> bool:
        return bool(self._body_reach(("view", rel.schema, rel.name), rel.definition or "", 0)
                    & self.family.relevant_names())

    def _function_reach(self, name: str, depth: int) -> frozenset[str]:
        from .catalog import split_statements

        found: set[str] = set()
        for fn in self.catalog.user_functions(name):
            body = fn.body or ""
            if (fn.language or "").lower() != "sql" or not body:
                found |= self.family.relevant_names()  # an opaque body may read anything
                continue
            for part in split_statements(body):
                found |= self._body_reach(("function", fn.schema, f"{fn.name}:{part}"), part, depth)
        return frozenset(found)

    def _body_reach(self, key: tuple[str, str, str], sql: str, depth: int) -> frozenset[str]:
        """Bare names of every relation a view or function body reads, through views and functions (memoized)."""
        from .allowlist import function_name

        if key in self._reach:
            return self._reach[key]
        if depth > _MAX_DEPTH:
            return frozenset(self.family.relevant_names())  # too deep to know: assume the worst
        self._reach[key] = frozenset()  # a cycle adds nothing new
        try:
            node = sqlglot.parse_one(sql, dialect="postgres")
        except sqlglot.errors.SqlglotError:
            node = None
        if node is None:
            found = set(self.family.relevant_names())
        else:
            found = set()
            for t in node.find_all(exp.Table):
                if not isinstance(t.this, exp.Identifier):
                    continue
                name = _ident(t.this)
                found.add(name)
                for rel in self.catalog.relations.values():  # any schema: a function's search_path is its own
                    if rel.name == name and rel.definition:
                        found |= self._body_reach(("view", rel.schema, rel.name), rel.definition, depth + 1)
            for fn in node.find_all(exp.Func):
                fname = function_name(fn)
                if self.catalog.user_functions(fname):
                    found |= self._function_reach(fname, depth + 1)
        self._reach[key] = frozenset(found)
        return self._reach[key]

    # -- the record -------------------------------------------------------------------------------

    def applied(self) -> tuple[AppliedFilter, ...]:
        out = []
        for ref, count in sorted(self.counts.items()):
            rules = self.family.rules_for(ref)
            material = json.dumps({"combine": self.combine, "filters": sorted([r.name, str(r.table), r.predicate]
                                                                            for r in rules)}, sort_keys=True)
            attrs = tuple(dict.fromkeys(a for r in rules for a in predicate_attributes(r.predicate)))
            cols = tuple(dict.fromkeys(ColumnRef(ref.schema, ref.table, c)
                                       for r in rules for c in predicate_columns(r.predicate)))
            out.append(AppliedFilter(ref, tuple(r.name for r in rules), self.combine,
                                     "sha256:" + hashlib.sha256(material.encode()).hexdigest(), attrs, cols, count))
        return tuple(out)


def _cte_visible(node: exp.Expression, name: str) -> bool:
    """Whether an unqualified `name` at `node` binds to a CTE (PostgreSQL's scoping), not a table."""
    child, parent = node, node.parent
    while parent is not None:
        if isinstance(parent, exp.With):
            names = [_ident(c.alias_or_name) for c in parent.expressions]
            if parent.args.get("recursive"):
                visible = names
            else:  # a plain CTE sees only the CTEs before it, never itself
                index = next((i for i, c in enumerate(parent.expressions) if c is child), len(names))
                visible = names[:index]
            if name in visible:
                return True
        else:
            with_ = parent.args.get("with_") or parent.args.get("with")
            if isinstance(with_, exp.With) and with_ is not child and \
                    name in [_ident(c.alias_or_name) for c in with_.expressions]:
                return True
        child, parent = parent, parent.parent
    return False
