"""Column lineage for one query: every output column, by position, to the source columns it derives from.

`Resolver` walks a sqlglot tree scope by scope (CTEs, FROM items, lateral joins, subqueries,
set operations, views, SQL function bodies) and records, on the way, where source columns are
used outside the projection (`ColumnUse`), which values flow into casts that can fail with the
value in the error message, and every reason to refuse the statement. It never trusts names:
`*`, `t.*`, `(t).*` are expanded against the catalog and whole-row references are opaque.

Example:
    >>> from lineage_guard.sql.catalog import Catalog
    >>> cat = Catalog.from_ddl_text("CREATE TABLE t (id int, email text)")
    >>> import sqlglot
    >>> r = Resolver(cat)
    >>> [(c.name, sorted(map(str, c.lin.sources))) for c in r.query(sqlglot.parse_one("SELECT upper(email) AS e FROM t", dialect="postgres"), None)]
    [('e', ['public.t.email'])]
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlglot
from sqlglot import exp

from .allowlist import (
    CONFIG_FIRST,
    ERROR_CHANNEL_ARGS,
    FUNCTION_CASTS,
    SAFE_CAST_TARGETS,
    SYSTEM_SCHEMAS,
    TABLE_FUNCTION_COLUMNS,
    TABLE_FUNCTIONS,
    function_name,
    is_allowed_name,
    is_allowed_node,
    refusal_reason,
)
from .catalog import Catalog, Function, Relation
from .model import ColumnRef, ColumnUse, PredicateForm, TableRef, ValueUse

_MAX_DEPTH = 24  # views within views within functions: deeper than this is refused, not followed


@dataclass(frozen=True)
class Lin:
    """Lineage of one value: its source columns, whether it is one passed through unchanged, whether it is opaque."""

    sources: frozenset[ColumnRef] = frozenset()
    direct: bool = False
    opaque: bool = False
    type: str | None = None
    stored: bool = False  # one source column as stored: through projections and injective casts only
    # Columns that shaped the value only through filters already judged where they stand (the WHERE of
    # a scalar subquery): masked with the value, but not inspected again by whoever uses the value.
    influence: frozenset[ColumnRef] = frozenset()

    def __or__(self, other: Lin) -> Lin:
        return Lin(self.sources | other.sources, False, self.opaque or other.opaque, None,
                   influence=self.influence | other.influence)

    def derived(self, type_: str | None = None) -> Lin:
        return Lin(self.sources, False, self.opaque, type_, influence=self.influence)

    @property
    def reaches(self) -> frozenset[ColumnRef]:
        """Every column the value depends on: what masking must account for."""
        return self.sources | self.influence

    @property
    def constant(self) -> bool:
        return not self.sources and not self.opaque


def union(lins) -> Lin:
    out = Lin()
    for lin in lins:
        out = out | lin
    return out


@dataclass(eq=False)
class Pending:
    """What computing one output column of a FROM item (view, subquery, inlined CTE) does to values.

    PostgreSQL does not compute an output of a subquery the outer query never references: a flattened
    subquery's column is substituted where it is used, and a planned one has its unused outputs replaced
    by NULL (`remove_unused_subquery_outputs`; EXPLAIN VERBOSE shows `NULL::text` in their place). So the
    column's value uses count only once something references it (`Resolver._touch`); `children` are the
    columns its own expression references, counted with it.
    """

    value_uses: list = field(default_factory=list)
    window_sorts: list = field(default_factory=list)
    children: list = field(default_factory=list)
    seen: list = field(default_factory=list)  # what it read, for the scalar subqueries around its reference
    done: bool = False


@dataclass
class Col:
    name: str
    lin: Lin
    # In what `*` expands to: the alias of the FROM item the column comes from, `MERGED` for a column
    # USING / NATURAL merged (PostgreSQL's join column: written unqualified), None when unknown.
    origin: str | None = None
    pending: Pending | None = None  # uses counted only when the column is referenced (Pending)


MERGED = "\x00merged"  # no alias can be spelled like this


@dataclass
class Rel:
    """A FROM item as seen by the query: alias, ordered columns, and the whole-row lineage."""

    alias: str
    cols: list[Col]
    open: bool = False        # a function whose column set is not known: any name resolves to `whole`
    whole_lin: Lin | None = None

    @property
    def whole(self) -> Lin:  # callers that read the whole row touch every column (Resolver._whole)
        base = self.whole_lin or union(c.lin for c in self.cols)
        return Lin(base.sources, False, True, None)

    def find(self, name: str) -> Col | None:
        for col in self.cols:
            if col.name == name:
                return col
        return None


@dataclass
class Scope:
    parent: Scope | None = None
    rels: list[Rel] = field(default_factory=list)
    ctes: dict[str, list[Col]] = field(default_factory=dict)
    windows: dict[str, exp.Expression] = field(default_factory=dict)
    star: list[Col] | None = None  # what a bare * expands to, once USING / NATURAL joins merged columns
    merged: set[str] = field(default_factory=set)  # names USING / NATURAL merged: they stay unqualified

    def cte(self, name: str) -> list[Col] | None:
        scope: Scope | None = self
        while scope:
            if name in scope.ctes:
                return scope.ctes[name]
            scope = scope.parent
        return None


def ident(node: exp.Expression | str | None) -> str:
    """A name as PostgreSQL sees it: unquoted identifiers fold to lower case."""
    if node is None:
        return ""
    if isinstance(node, str):
        return node.lower()
    if isinstance(node, exp.Identifier):
        return node.this if node.quoted else node.this.lower()
    if isinstance(node.this, exp.Identifier):  # Column, Table, TableAlias, ColumnDef
        return ident(node.this)
    return node.name.lower()


# Source types whose casts never fail with the value in the message (overflow errors carry no value).
_NON_TEXT = {"int", "integer", "int2", "int4", "int8", "smallint", "bigint", "serial", "bigserial", "smallserial",
             "numeric", "decimal", "real", "float", "float4", "float8", "double", "double precision", "money",
             "date", "time", "timetz", "timestamp", "timestamptz", "timestamp with time zone",
             "timestamp without time zone", "time with time zone", "time without time zone", "interval",
             "boolean", "bool", "uuid", "bytea", "varbinary", "oid", "inet", "cidr", "macaddr"}


def base_type(name: str | None) -> str | None:
    """`character varying(20)` -> `character varying`; None stays None (unknown: treated as text)."""
    if name is None:
        return None
    return name.split("(")[0].strip().lower()


def may_echo(type_name: str | None) -> bool:
    """Whether a value of this type, cast or parsed as another type, can put itself in an error message."""
    base = base_type(type_name)
    return base not in _NON_TEXT or (type_name or "").endswith("[]")
_AGG_TYPES = (exp.AggFunc,)


class Resolver:
    """Walks queries against a catalog; collects lineage, uses, error-channel sources and violations."""

    def __init__(self, catalog: Catalog):
        self.catalog = catalog
        self.violations: list[str] = []
        self.uses: list[ColumnUse] = []
        self.tables_read: set[TableRef] = set()
        self.error_channel: set[ColumnRef] = set()
        self.window_sorts: list[Lin] = []  # what window ORDER BYs sort the rows by
        self.value_uses: list[ValueUse] = []
        self.top: exp.Expression | None = None  # the statement's own query (its WHERE may carry declared uses)
        self.depth = 0
        self._captures: list[set] = []
        self._aliases = 0
        # While an output column of a FROM item is resolved, what it references is collected here (its
        # Pending's children) instead of counted: it counts only if that column is referenced in turn.
        self._collect: list[list[Pending]] = []

    # -- bookkeeping --------------------------------------------------------------------------

    def refuse(self, reason: str) -> None:
        if reason not in self.violations:
            self.violations.append(reason)

    def _use(self, lin: Lin, clause: str, against_constant: bool) -> None:
        for src in sorted(lin.sources):
            self.uses.append(ColumnUse(src, clause, against_constant))  # type: ignore[arg-type]

    def _inspect(self, lin: Lin, where: str, form: PredicateForm | None = None) -> Lin:
        """The database computes on `lin`'s values here (compares, sorts, groups, calls a function on them)."""
        if lin.sources:
            self.value_uses.append(ValueUse(tuple(sorted(lin.sources)), where, "inspect", form=form))
        return lin

    def _equijoin(self, left: Lin, right: Lin, where: str) -> None:
        """`left = right`: allowed on sensitive values only when both sides are stored columns of one classification."""
        if left.sources or right.sources:
            self.value_uses.append(ValueUse(tuple(sorted(left.sources)), where, "equijoin",
                                            left.stored and right.stored, tuple(sorted(right.sources))))

    def _alias(self, item: exp.Expression, prefix: str = "_lg") -> str:
        """Give an unaliased FROM item a generated alias, so every column reference to it can be qualified."""
        self._aliases += 1
        name = f"{prefix}{self._aliases}"
        item.set("alias", exp.TableAlias(this=exp.to_identifier(name)))
        return name

    def _touch(self, col: Col | None) -> Col | None:
        """`col` is referenced: the value uses of computing it count (now, or with the column referencing it)."""
        if col is not None and col.pending is not None:
            self._counts(col.pending)
        return col

    def _counts(self, pending: Pending) -> None:
        if pending.done:
            return
        if self._collect:
            self._collect[-1].append(pending)
        else:
            self._commit(pending)

    def _commit(self, first: Pending) -> None:
        stack = [first]
        while stack:
            p = stack.pop()
            if p.done:
                continue
            p.done = True
            self.value_uses.extend(p.value_uses)
            self.window_sorts.extend(p.window_sorts)
            for lin in p.seen:
                self._seen(lin)
            stack.extend(p.children)

    def _whole(self, rel: Rel) -> Lin:
        """The whole row of `rel` (`t`, `row_to_json(t)`): every column of it is referenced."""
        for col in rel.cols:
            self._touch(col)
        return rel.whole

    def _prunable(self, e: exp.Expression) -> bool:
        """Whether PostgreSQL leaves this output expression of a subquery uncomputed when nothing uses it.

        It keeps (computes) an unused output that returns a set (it changes the row count) or calls a
        volatile function (`remove_unused_subquery_outputs`); a user-defined function may be either. A
        window function is kept here too: where its WindowAgg runs, the rows leave in its ORDER BY's order
        (`SELECT id FROM (SELECT id, rank() OVER (ORDER BY ssn) ...) s`), whatever the outer query reads.
        """
        if any(True for _ in e.find_all(exp.Window)):
            return False
        for fn in e.find_all(exp.Func):
            name = function_name(fn)
            if name in VOLATILE_FUNCTIONS or name in TABLE_FUNCTIONS or isinstance(fn, exp.Explode) \
                    or self.catalog.user_functions(name) or not (is_allowed_node(fn) or name in FUNCTION_CASTS):
                return False
        return True

    def _seen(self, lin: Lin) -> Lin:
        for cap in self._captures:
            cap.add(lin)
        return lin

    # -- queries ------------------------------------------------------------------------------

    def query(self, node: exp.Expression, scope: Scope | None, defer: bool = False) -> list[Col]:
        """Output columns of a query node (SELECT, set operation, VALUES, subquery), in order.

        `defer`: the node is a FROM item (view body, FROM subquery, inlined CTE) whose output columns
        PostgreSQL computes only when referenced (Pending); a set operation's branches are computed whole.
        """
        self.depth += 1
        try:
            if self.depth > _MAX_DEPTH:
                self.refuse("the query nests views, functions or subqueries too deeply to check; simplify it")
                return []
            if isinstance(node, exp.Subquery):
                cols = self.query(node.this, scope, defer)
                return self._suffix(node, cols, scope)
            if isinstance(node, exp.SetOperation):
                return self._set_operation(node, scope)
            if isinstance(node, exp.Values):
                return self._values(node, scope)
            if isinstance(node, exp.Select):
                return self._select(node, scope, defer)
            if isinstance(node, exp.Paren):
                return self.query(node.this, scope, defer)
            self.refuse(f"unsupported query form {type(node).__name__}; rewrite it as a plain SELECT")
            return []
        finally:
            self.depth -= 1

    def _with(self, node: exp.Expression, scope: Scope) -> None:
        with_ = node.args.get("with_") or node.args.get("with")
        if not with_:
            return
        for cte in with_.expressions:
            name = ident(cte.alias_or_name)
            alias_cols = [ident(c) for c in (cte.args.get("alias").columns if cte.args.get("alias") else [])]
            body = cte.this
            if not isinstance(body, (exp.Select, exp.SetOperation, exp.Values, exp.Subquery)):
                self.refuse(f"CTE {name} is a data-modifying statement ({type(body).__name__.upper()}); "
                            "a read may not write: remove it")
                scope.ctes[name] = []
                continue
            recursive = bool(with_.args.get("recursive"))
            if not recursive:  # a plain CTE does not see itself: `WITH customers AS (... FROM customers)`
                scope.ctes[name] = _rename(self.query(body, scope, defer=self._inlined(cte, name)), alias_cols)
                continue
            # Recursive CTEs see themselves: seed with the non-recursive branch, iterate until lineage stops growing.
            if alias_cols:
                scope.ctes[name] = [Col(n, Lin()) for n in alias_cols]
            else:
                anchor = body.this if isinstance(body, exp.SetOperation) else body
                scope.ctes[name] = [Col(c.name, c.lin) for c in self.query(anchor, scope)]
            previous = None
            for _ in range(4):
                cols = self.query(body, scope)
                if alias_cols:
                    cols = _rename(cols, alias_cols)
                signature = [(c.name, c.lin) for c in cols]
                scope.ctes[name] = cols
                if signature == previous:
                    break
                previous = signature

    def _inlined(self, cte: exp.CTE, name: str) -> bool:
        """Whether PostgreSQL (12+) plans this CTE as a subquery of its one reference, pruning unused outputs.

        It does for a non-recursive SELECT referenced once, not MATERIALIZED, calling nothing volatile;
        otherwise it computes every column of it. Every table reference spelled like the CTE anywhere in
        the statement counts as one (a shadowing name only makes this more cautious).
        """
        if cte.args.get("materialized") is True:
            return False
        refs = sum(1 for t in cte.root().find_all(exp.Table)
                   if not t.args.get("db") and isinstance(t.this, exp.Identifier) and ident(t.this) == name)
        return refs <= 1 and self._prunable(cte.this)

    def _suffix(self, node: exp.Expression, cols: list[Col], scope: Scope | None) -> list[Col]:
        # ORDER BY / LIMIT on a set operation or parenthesized query.
        local = Scope(scope, [Rel("", cols)])
        self._order_limit(node, local, cols)
        return cols

    def _set_operation(self, node: exp.SetOperation, scope: Scope | None) -> list[Col]:
        local = Scope(scope)
        self._with(node, local)
        left = self.query(node.this, local)
        right = self.query(node.expression, local)
        if len(left) != len(right):
            self.refuse("the branches of a set operation return different numbers of columns; fix the query")
        out = []
        for i, col in enumerate(left):
            other = right[i].lin if i < len(right) else Lin()
            both = col.lin | other
            out.append(Col(col.name, Lin(both.sources, col.lin.direct and other.direct, both.opaque, col.lin.type,
                                         col.lin.stored and other.stored, both.influence)))
            if isinstance(node, exp.Union) and node.args.get("distinct"):
                self._use(both, "group", False)  # UNION removes duplicates: it groups by every column
                self._inspect(both, "UNION (removing duplicates compares values; UNION ALL does not)")
            if isinstance(node, (exp.Except, exp.Intersect)):
                # Membership of one side in the other tests each value against the other side's.
                self._use(both, "where", col.lin.constant or other.constant)
                self._inspect(both, f"{type(node).__name__.upper()} (membership compares values)")
        self._order_limit(node, Scope(local, [Rel("", out)]), out)
        return out

    def _values(self, node: exp.Values, scope: Scope | None) -> list[Col]:
        rows = [r.expressions if isinstance(r, exp.Tuple) else [r] for r in node.expressions]
        width = max((len(r) for r in rows), default=0)
        cols = [Col(f"column{i + 1}", Lin()) for i in range(width)]
        for row in rows:
            for i, e in enumerate(row):
                lin = self.expr(e, scope or Scope())
                cols[i].lin = Lin(cols[i].lin.sources | lin.sources, False, cols[i].lin.opaque or lin.opaque,
                                  cols[i].lin.type or lin.type)
        return cols

    def _select(self, node: exp.Select, parent: Scope | None, defer: bool = False) -> list[Col]:
        scope = Scope(parent)
        self._with(node, scope)
        if node.args.get("into"):
            self.refuse("SELECT ... INTO creates a table; a read may not write: remove INTO")
        if node.args.get("locks"):
            self.refuse("FOR UPDATE / FOR SHARE takes row locks; a read may not lock: remove the locking clause")
        from_ = node.args.get("from_") or node.args.get("from")
        if from_:
            scope.star = self._joined(from_.this, node.args.get("joins") or [], scope)
        for named in node.args.get("windows") or []:
            scope.windows[ident(named.this)] = named
        for named in node.args.get("windows") or []:
            # PostgreSQL evaluates a named window even when no function uses it (`WINDOW w AS
            # (PARTITION BY ssn::int)` errors with the value): check it like any expression.
            spec = self._window_spec(named, scope)
            self._use(spec, "window", False)
            self._inspect(spec, "a named window's PARTITION BY / ORDER BY")
        if node.args.get("where"):
            self.filter(node.args["where"].this, scope, "where", top=node is self.top)

        out: list[Col] = []
        items: list[exp.Expression] = []
        distinct = node.args.get("distinct")
        defer = defer and not (distinct and not distinct.args.get("on"))  # SELECT DISTINCT computes every column
        for e in node.expressions:
            if defer and _is_star(e):
                out.extend(self.projection(e, scope, forward=True))  # each column keeps its own Pending
            elif defer and self._prunable(e):
                out.extend(self._deferred(e, scope))
            else:
                out.extend(self.projection(e, scope))
            items.extend(self._expansion(e, scope) or [e])
        if items != list(node.expressions):  # `*` expanded: the database returns exactly the columns judged
            node.set("expressions", items)

        group = node.args.get("group")
        if group:
            for g in group.expressions:  # by alias, position or expression
                # `GROUP BY ssn LIKE '97%'` splits rows by a test against constants, like a filter would.
                target = _projected(g, node)
                tested = _has_literal(target) or self._constant_side(target, scope)
                key = self._inspect(self._by_alias(g, scope, out), "GROUP BY")
                self._use(key, "group", tested)
            for key in ("rollup", "cube", "grouping_sets"):
                for g in group.args.get(key) or []:
                    self._use(self._inspect(self.expr(g, scope), "GROUP BY"), "group", False)
        if node.args.get("having"):
            self._inspect(self.predicate(node.args["having"].this, scope, "having"), "HAVING")
        if distinct and not distinct.args.get("on"):
            for col in out:  # SELECT DISTINCT groups by every output column
                self._use(col.lin, "group", False)
                self._inspect(col.lin, "SELECT DISTINCT")
        if distinct and distinct.args.get("on"):
            for e in distinct.args["on"].expressions if isinstance(distinct.args["on"], exp.Tuple) else [distinct.args["on"]]:
                lin = self._inspect(self._by_alias(e, scope, out, output_first=True), "DISTINCT ON")
                self._use(lin, "distinct_on", False)
        self._order_limit(node, scope, out)
        return out

    def _deferred(self, e: exp.Expression, scope: Scope) -> list[Col]:
        """An output column of a FROM item whose value uses count only when it is referenced (Pending)."""
        values, sorts = len(self.value_uses), len(self.window_sorts)
        self._collect.append([])
        outer, seen = self._captures, set()
        self._captures = [seen]  # what it reads shapes a surrounding subquery's value only once referenced
        try:
            cols = self.projection(e, scope)
        finally:
            children = self._collect.pop()
            self._captures = outer
        pending = Pending(self.value_uses[values:], self.window_sorts[sorts:], children, list(seen))
        del self.value_uses[values:], self.window_sorts[sorts:]
        for col in cols:
            col.pending = pending
        return cols

    def _joined(self, first: exp.Expression, joins: list[exp.Expression], scope: Scope) -> list[Col]:
        """Add a FROM item and its joins to `scope`; return what `*` over them expands to."""
        star = self._join_tree(first, scope)
        for join in joins:
            right = self._join_tree(join.this, scope)
            merged = [ident(u) for u in join.args.get("using") or []]
            if str(join.args.get("method") or "").upper() == "NATURAL":
                # PostgreSQL lists NATURAL's common columns in the order of the LEFT side.
                right_names = {c.name for c in right}
                merged = list(dict.fromkeys(c.name for c in star if c.name in right_names))
            for name in merged:  # USING (ssn) / NATURAL is `l.ssn = r.ssn`: an oracle when one side is chosen
                sides = [self._touch(c).lin for c in (_find(star, name), _find(right, name)) if c is not None]
                constant = len(sides) == 2 and any(lin.constant for lin in sides)
                self._use(union(sides), "join", constant or _steered(sides))
                if len(sides) == 2:
                    self._equijoin(sides[0], sides[1], "JOIN USING / NATURAL JOIN")
                else:
                    self._inspect(union(sides), "JOIN USING / NATURAL JOIN")
            scope.merged |= set(merged)
            star = _merge_using(star, right, merged)
            if join.args.get("on"):
                self.filter(join.args["on"], scope, "join")
            for name in merged:
                for rel in scope.rels:
                    col = rel.find(name)
                    if col:
                        self._use(col.lin, "join", False)
        return star

    def _join_tree(self, item: exp.Expression, scope: Scope) -> list[Col]:
        # `(a JOIN b ON ...)`: sqlglot nests the joins under the first table, inside a Subquery.
        if isinstance(item, exp.Subquery) and isinstance(item.this, exp.Table) and item.this.args.get("joins"):
            inner = item.this  # resolved in place (not a copy): its columns get qualified in the executed SQL
            joins = inner.args.get("joins") or []
            inner.set("joins", None)
            try:
                alias_node = item.args.get("alias")
                if not alias_node:
                    return self._joined(inner, joins, scope)
                local = Scope(scope)  # an aliased join hides the names inside it
                star = self._joined(inner, joins, local)
                rel = Rel(ident(alias_node.this), _rename(star, [ident(c) for c in alias_node.columns]))
                scope.rels.append(rel)
                return [Col(c.name, c.lin, rel.alias, c.pending) for c in rel.cols]
            finally:
                inner.set("joins", joins)
        rel = self.from_item(item, scope)
        scope.rels.append(rel)
        return [Col(c.name, c.lin, rel.alias, c.pending) for c in rel.cols]

    def _by_alias(self, e: exp.Expression, scope: Scope, out: list[Col], output_first: bool = False) -> Lin:
        """ORDER BY / DISTINCT ON / GROUP BY may name an output column by position or by name.

        PostgreSQL resolves a bare name in ORDER BY and DISTINCT ON to an output column first
        (`SELECT ssn AS id ... ORDER BY id` orders by ssn), in GROUP BY to an input column first.
        """
        if isinstance(e, exp.Literal) and e.is_int:
            idx = int(e.this) - 1
            return self._touch(out[idx]).lin if 0 <= idx < len(out) else Lin()
        if isinstance(e, exp.Column) and not e.table:
            name = ident(e.this)
            named = [col for col in out if col.name == name]
            outputs = [col.lin for col in named]
            if outputs and (output_first or self._lookup(name, scope) is None):
                for col in named:  # sorted or grouped by: computed
                    self._touch(col)
                return union(outputs) if len(outputs) > 1 else outputs[0]
        return self.expr(e, scope)

    def _order_limit(self, node: exp.Expression, scope: Scope, out: list[Col]) -> None:
        order = node.args.get("order")
        if order:
            for o in order.expressions:
                target = o.this if isinstance(o, exp.Ordered) else o
                lin = self._inspect(self._by_alias(target, scope, out, output_first=True), "ORDER BY")
                self._use(lin, "order", False)
        for key in ("limit", "offset"):
            part = node.args.get(key)
            if part is not None:
                value = part.expression if isinstance(part, (exp.Limit, exp.Offset)) else part
                if value is not None:  # a row count computed from a value reveals the value
                    self._use(self._inspect(self.expr(value, scope), "LIMIT / OFFSET"), "limit", True)

    # -- FROM items ---------------------------------------------------------------------------

    def from_item(self, item: exp.Expression, scope: Scope, lateral: bool = False) -> Rel:
        alias_node = item.args.get("alias")
        alias = ident(alias_node.this) if isinstance(alias_node, exp.TableAlias) and alias_node.this else ""
        alias_cols = [ident(c) for c in alias_node.columns] if isinstance(alias_node, exp.TableAlias) else []
        if isinstance(item, exp.Lateral):
            inner = item.this
            rel = self.from_item(inner, scope, lateral=True)
            if not alias:
                alias = rel.alias or self._alias(item)
            return _realias(rel, alias, alias_cols)
        # A FROM subquery or VALUES list that is not LATERAL does not see its sibling FROM items: a name in
        # it binds to the enclosing query's row (PostgreSQL), never to a sibling (what sqlglot would assume).
        inner_scope = scope if lateral else Scope(scope.parent, ctes=scope.ctes)
        if isinstance(item, exp.Subquery):
            cols = self.query(item.this, inner_scope, defer=True)
            cols = self._suffix(item, cols, inner_scope)
            # Under LATERAL the alias belongs to the LATERAL node (the caller names it there).
            return Rel(alias or ("" if lateral else self._alias(item)), _rename(cols, alias_cols))
        if isinstance(item, exp.Values):
            return Rel(alias or ("" if lateral else self._alias(item)),
                       _rename(self._values(item, inner_scope), alias_cols))
        if isinstance(item, exp.Unnest):
            lins = [self._inspect(self.expr(a, scope), "an argument of unnest() in FROM").derived()
                    for a in item.expressions]
            self._row_count_use("unnest", item, scope)  # `unnest(string_to_array(ssn, '9'))`: rows count the 9s
            names = alias_cols or ([alias or "unnest"] if len(lins) == 1 else [f"unnest{i}" for i in range(len(lins))])
            if len(names) != len(lins):
                self.refuse("unnest(...) has a different number of arguments than alias columns; name one per argument")
            cols = [Col(n, lins[i] if i < len(lins) else union(lins)) for i, n in enumerate(names)]
            if item.args.get("offset"):
                off = item.args["offset"]
                cols.append(Col(ident(off) if isinstance(off, exp.Identifier) else "ordinality", Lin()))
            return Rel(alias or "unnest", cols)
        if isinstance(item, exp.Table):
            sample = item.args.get("sample")
            if isinstance(sample, exp.TableSample):  # the share of rows returned is a row count, like LIMIT
                for key, value in sample.args.items():
                    if isinstance(value, exp.Expression) and key != "method":
                        self._use(self._inspect(self.expr(value, scope), "TABLESAMPLE"), "limit", True)
            if item.args.get("rows_from"):
                parts = [self.table_function(f, scope) for f in item.args["rows_from"]]
                cols = [Col(n, lin) for names, lin, _ in parts for n in names]
                fixed = all(f for _, _, f in parts)
                lin = union(c.lin for c in cols)
                if item.args.get("ordinality"):
                    cols.append(Col("ordinality", Lin()))
                if alias_cols and len(alias_cols) > len(cols):
                    fixed = False
                return Rel(alias or "rows_from", _rename(cols, alias_cols), open=not fixed, whole_lin=lin)
            if isinstance(item.this, (exp.Func, exp.Dot)):
                names, lin, fixed = self.table_function(item.this, scope, alias_node)
                cols = [Col(n, lin) for n in names]
                if item.args.get("ordinality"):
                    cols.append(Col("ordinality", Lin()))
                if len(names) == 1 and not isinstance(item.this, exp.Dot) and fixed and not alias_cols and alias:
                    cols[0].name = alias  # a scalar function in FROM names its column after the alias
                if alias_cols and len(alias_cols) > len(cols):
                    fixed = False
                return Rel(alias or _default_alias(item.this), _rename(cols, alias_cols), open=not fixed,
                           whole_lin=lin)
            return self.table(item, scope, alias, alias_cols)
        if isinstance(item, exp.Func):
            names, lin, fixed = self.table_function(item, scope, alias_node)
            return Rel(alias or _default_alias(item), _rename([Col(n, lin) for n in names], alias_cols),
                       open=not fixed, whole_lin=lin)
        self.refuse(f"unsupported FROM item {type(item).__name__}; rewrite it with tables, subqueries or VALUES")
        return Rel(alias, [], open=True, whole_lin=Lin(opaque=True))

    def table(self, item: exp.Table, scope: Scope, alias: str, alias_cols: list[str]) -> Rel:
        name = ident(item.this)
        schema = ident(item.args.get("db")) if item.args.get("db") else None
        if schema is None:
            cte = scope.cte(name)
            if cte is not None:
                return Rel(alias or name, _rename([Col(c.name, c.lin, pending=c.pending) for c in cte], alias_cols))
        # Reads run with search_path = pg_catalog, <schema>, pg_temp: an unqualified pg_* name is a system
        # catalog there even if a user table of that name exists.
        rel = None if schema is None and name.startswith("pg_") else self.catalog.relation(name, schema)
        label = f"{schema}.{name}" if schema else name
        if rel is None:
            if (schema in SYSTEM_SCHEMAS) or (schema is None and name.startswith("pg_")) or name.startswith("pg_"):
                self.refuse(f"system catalog {label} is not readable through lineage_guard (it can hold password "
                            "hashes, statistics or large objects); read your own tables")
            elif schema is not None and (schema.startswith(("pg_temp", "pg_toast"))):
                self.refuse(f"unknown table {label}: temporary and internal relations have no lineage; "
                            "read a catalogued table")
            else:
                self.refuse(f"unknown table {label}; check the name or the --schema-file")
            return Rel(alias or name, [], open=True, whole_lin=Lin(opaque=True))
        ref = TableRef(rel.schema, rel.name)
        self.tables_read.add(ref)
        if rel.definition is not None and rel.kind in ("view", "matview") or (rel.definition and not rel.columns):
            cols = _rename(self.view(rel), alias_cols)
            # A view the server plans apart (security_barrier) is a subquery scan in EXPLAIN: the binding
            # check follows its columns by position (explain.scan_names).
            item.meta["lg_view_columns"] = [c.name for c in cols]
            return Rel(alias or name, cols)
        cols = [Col(c, lin) for c, lin in _stored(rel)]
        return Rel(alias or name, _rename(cols, alias_cols))

    def view(self, rel: Relation) -> list[Col]:
        label = f"{rel.schema}.{rel.name}"
        try:
            node = sqlglot.parse_one(rel.definition or "", dialect="postgres")
        except sqlglot.errors.SqlglotError:
            self.refuse(f"the definition of view {label} could not be parsed, so its lineage is unknown; "
                        "ask an admin to simplify the view or read its base tables")
            return [Col(n, Lin(opaque=True)) for n in rel.column_names]
        # A view's own filters count like the caller's: a view filtering on a sensitive column is an oracle too.
        cols = self.query(node, None, defer=True)
        if rel.column_names:
            if len(rel.column_names) != len(cols):
                self.refuse(f"view {label}: its definition and its column list disagree; refresh the catalog")
            cols = _rename(cols, list(rel.column_names))
        return cols

    def table_function(self, node: exp.Expression, scope: Scope,
                       alias_node: exp.Expression | None = None) -> tuple[list[str], Lin, bool]:
        """(column names, lineage of every column, whether the column set is known) of a function in FROM."""
        func, schema = _unqualify(node)
        if not isinstance(func, exp.Func):
            self.refuse(f"unsupported function call in FROM ({type(node).__name__})")
            return [], Lin(opaque=True), False
        name = function_name(func)
        args = self._inspect(union(self.expr(a, scope) for a in _args(func)), f"an argument of {name}() in FROM"
                             ).derived()
        udfs = self.catalog.user_functions(name, schema)
        if udfs:
            lin = self.udf(udfs, args)
            outs = list(udfs[0].out_columns)
            # Without declared OUT columns it may return a composite row: its width is unknown.
            return (outs or [name]), lin, bool(outs)
        if schema not in (None, "pg_catalog") or name not in TABLE_FUNCTIONS or not is_allowed_node(func):
            self.refuse(refusal_reason(name) if not is_allowed_name(name) or schema not in (None, "pg_catalog")
                        else f"function {name} cannot be used in FROM through lineage_guard; use it in the select list")
            return [name], Lin(args.sources, False, True), False
        self._row_count_use(name, func, scope)
        self._json_parse_errors(name, func, scope)
        if name in TABLE_FUNCTION_COLUMNS:
            return list(TABLE_FUNCTION_COLUMNS[name]), args, True
        if name in ("json_to_record", "jsonb_to_record", "json_to_recordset", "jsonb_to_recordset"):
            # PostgreSQL requires a full column definition list for these: it is their exact width.
            defs = alias_node.columns if isinstance(alias_node, exp.TableAlias) else []
            # Each JSON value is parsed as its declared type: `AS r(a int)` over an ssn fails with the ssn.
            typed = [_type_name(d.args.get("kind")) for d in defs if isinstance(d, exp.ColumnDef)]
            if args.sources and any(base_type(t) not in SAFE_CAST_TARGETS | _JSON_TYPES for t in typed):
                self.error_channel |= args.sources
            if defs and all(isinstance(d, exp.ColumnDef) for d in defs):
                return [ident(d.this) for d in defs], args, True
            return [name], args, False
        if name == "unnest":
            width = len(_args(func))
            return ([name] if width == 1 else [f"{name}{i}" for i in range(width)]), args, True
        return [name], args, name in ("generate_series", "generate_subscripts", "regexp_split_to_table",
                                      "string_to_table", "jsonb_object_keys", "json_object_keys",
                                      "regexp_matches", "jsonb_path_query")

    def udf(self, udfs: list[Function], args: Lin) -> Lin:
        """A user-defined function is opaque: its value depends on its arguments and on what its body reads."""
        fn = udfs[0]
        label = f"{fn.schema}.{fn.name}"
        if len(udfs) > 1 or fn.kind == "procedure":
            self.refuse(f"function {label} is overloaded or a procedure; its lineage cannot be pinned down")
            return Lin(args.sources, False, True)
        if (fn.language or "").lower() != "sql" or not fn.body:
            self.refuse(f"user-defined function {label} (language {fn.language or 'unknown'}) cannot be analyzed; "
                        "only LANGUAGE sql bodies can; read its base tables instead or ask an admin to allow it")
            return Lin(args.sources, False, True)
        from .catalog import split_statements

        try:
            bodies = [sqlglot.parse_one(s, dialect="postgres") for s in split_statements(fn.body)]
        except sqlglot.errors.SqlglotError:
            self.refuse(f"the body of function {label} could not be parsed; read its base tables instead")
            return Lin(args.sources, False, True)
        sources = set(args.sources)
        captured: set[Lin] = set()
        self._captures.append(captured)
        try:
            params = Rel(fn.name, [Col(a, args) for a in fn.arg_names], open=False, whole_lin=args)
            for body in bodies:
                if not isinstance(body, (exp.Select, exp.SetOperation, exp.Values, exp.Subquery)):
                    self.refuse(f"function {label} runs {type(body).__name__.upper()}, not a plain query; "
                                "a read may not call it")
                    continue
                for col in self.query(body, Scope(None, [params])):
                    sources |= col.lin.sources
        finally:
            self._captures.pop()
        for lin in captured:
            sources |= lin.sources
        return Lin(frozenset(sources), False, True)

    # -- projections and expressions ----------------------------------------------------------

    def projection(self, e: exp.Expression, scope: Scope, forward: bool = False) -> list[Col]:
        """The output columns of one select-list item. `forward`: a `*` of a FROM item passes each column's
        Pending on (counted if the outer query references it); otherwise the columns are referenced here."""
        def listed(cols: list[Col]) -> list[Col]:
            if forward:
                return [Col(c.name, c.lin, pending=c.pending) for c in cols]
            return [Col(c.name, self._touch(c).lin) for c in cols]

        if isinstance(e, exp.Star):
            for rel in scope.rels:
                self._expand(rel)
            return listed(scope.star or [])
        if isinstance(e, exp.Column) and isinstance(e.this, exp.Star):
            rel = self._rel(ident(e.args.get("table")), scope)
            if rel is None:
                self.refuse(f"unknown table {ident(e.args.get('table'))} in {e.sql('postgres')}")
                return []
            return listed(self._expand(rel))
        if isinstance(e, exp.Dot) and isinstance(e.expression, exp.Star):
            base = e.this.unnest() if isinstance(e.this, exp.Paren) else e.this
            if isinstance(base, exp.Column) and not base.table:
                rel = self._rel(ident(base.this), scope)
                if rel is not None and self._lookup(ident(base.this), scope) is None:
                    return listed(self._expand(rel))
            self.refuse(f"cannot expand {e.sql('postgres')}: its columns are unknown; name the fields instead")
            return [Col("?column?", Lin(self.expr(e.this, scope).sources, False, True))]
        name = _output_name(e)
        inner = e.this if isinstance(e, exp.Alias) else e
        return [Col(name, self.expr(inner, scope))]

    def _expansion(self, e: exp.Expression, scope: Scope) -> list[exp.Expression] | None:
        """`*` / `t.*` as the qualified columns the plan judged (None: leave the item as written)."""
        if isinstance(e, exp.Star):
            if any(rel.open for rel in scope.rels):
                return None  # a function of unknown width: left to PostgreSQL, the column count is checked at read
            if scope.merged:
                # Over USING / NATURAL, `*` is the merged columns first (unqualified: PostgreSQL's join
                # columns), then each side's others: written out as the plan judged them.
                star = scope.star or []
                refs = [(c.origin, c.name) for c in star]
                if not star or any(not origin for origin, _ in refs) or len(set(refs)) < len(refs):
                    return None  # a name PostgreSQL would find ambiguous written out: left as `*`
                return [_unqualified(c.name) if c.origin == MERGED else _qualified(c.origin, c.name) for c in star]
            refs = [(rel.alias, c.name) for rel in scope.rels for c in rel.cols]
            if len(set(refs)) < len(refs):
                return None  # an aliased join with a repeated name: `j.name` would be ambiguous
            return [_qualified(alias, name) for alias, name in refs]
        if isinstance(e, exp.Column) and isinstance(e.this, exp.Star):
            rel = self._rel(ident(e.args.get("table")), scope)
            if rel is None or rel.open or len({c.name for c in rel.cols}) < len(rel.cols):
                return None  # `j.*` over a join with a repeated name: `j.name` would be ambiguous
            return [_qualified(rel.alias, c.name) for c in rel.cols]
        return None

    def _expand(self, rel: Rel) -> list[Col]:
        if rel.open:
            self.refuse(f"cannot expand * over {rel.alias or 'a function'}: its columns are unknown, so output "
                        "positions could not be checked; name the columns")
        return rel.cols

    def _rel(self, alias: str, scope: Scope | None) -> Rel | None:
        while scope:
            for rel in reversed(scope.rels):
                if rel.alias == alias:
                    return rel
            scope = scope.parent
        return None

    def _lookup(self, name: str, scope: Scope | None) -> Lin | None:
        found = self._binding(name, scope)
        return found[0] if found else None

    def _binding(self, name: str, scope: Scope | None) -> tuple[Lin, str | None] | None:
        """(lineage, alias of the FROM item it binds to, or None when it must stay unqualified) of a bare name."""
        while scope:
            hits = [(self._touch(c).lin, rel.alias) for rel in scope.rels for c in rel.cols if c.name == name]
            if hits:
                if len(hits) == 1:
                    return hits[0]
                # Two FROM items have the column: PostgreSQL binds a USING / NATURAL merged name to the
                # join's own column; any other repeat is an ambiguity error there, and stays one here.
                return union(h[0] for h in hits), None
            opens = [rel for rel in scope.rels if rel.open]
            if opens:
                return union(self._whole(rel) for rel in opens), (opens[0].alias if len(opens) == 1 else None)
            scope = scope.parent
        return None

    def column(self, node: exp.Column, scope: Scope) -> Lin:
        name = ident(node.this)
        table = ident(node.args.get("table")) if node.args.get("table") else None
        if table:
            rel = self._rel(table, scope)
            if rel is None and node.args.get("db"):
                rel = self._rel(table, scope)
            if rel is None:
                self.refuse(f"unknown table or alias {table} in {table}.{name}; check the FROM clause")
                return Lin(opaque=True)
            col = self._touch(rel.find(name))
            if col:
                return self._seen(col.lin)
            if rel.open:
                return self._seen(self._whole(rel))
            self.refuse(f"unknown column {table}.{name}; check the name")
            return Lin(opaque=True)
        found = self._binding(name, scope)
        if found is not None:
            lin, alias = found
            if alias:  # the executed SQL names the FROM item the plan resolved it to
                node.set("table", exp.to_identifier(alias, quoted=True))
            return self._seen(lin)
        rel = self._rel(name, scope)
        if rel is not None:
            return self._seen(self._whole(rel))  # a bare table alias is the whole row: opaque
        self.refuse(f"unknown column {name}; check the name (quoted names are case-sensitive)")
        return Lin(opaque=True)

    def expr(self, e: exp.Expression | None, scope: Scope) -> Lin:
        """Lineage of a value expression; records violations and error-channel casts on the way."""
        if e is None:
            return Lin()
        self.depth += 1
        try:
            if self.depth > 200:
                self.refuse("the expression nests too deeply to check; simplify it")
                return Lin(opaque=True)
            return self._expr(e, scope)
        finally:
            self.depth -= 1

    def _expr(self, e: exp.Expression, scope: Scope) -> Lin:
        if isinstance(e, exp.Column):
            if isinstance(e.this, exp.Star):  # t.* inside an expression (ROW(t.*)): the whole row, opaque
                rel = self._rel(ident(e.args.get("table")), scope)
                if rel is None:
                    self.refuse(f"unknown table {ident(e.args.get('table'))} in {e.sql('postgres')}")
                    return Lin(opaque=True)
                return self._seen(self._whole(rel))
            return self.column(e, scope)
        if isinstance(e, exp.Star):
            if isinstance(e.parent, exp.Count):
                return Lin()
            return self._seen(union(self._whole(rel) for rel in scope.rels) if scope.rels else Lin())
        if isinstance(e, exp.Var):
            # sqlglot reads `date_trunc(ssn, x)` / `date_part(ssn, x)` with a keyword where PostgreSQL has a
            # column: its value becomes the unit, and an unknown unit is repeated in the error message.
            lin = self._lookup(e.name, scope) or self._lookup(e.name.lower(), scope)
            if lin is not None and (lin.sources or lin.opaque):
                self.error_channel |= lin.sources
                return self._inspect(self._seen(lin), "a keyword position (date_part / date_trunc unit)").derived()
            return Lin()
        if isinstance(e, (exp.Literal, exp.Null, exp.Boolean, exp.DataType,
                          exp.Identifier, exp.Placeholder, exp.Parameter)):
            return Lin(type=_literal_type(e))
        if isinstance(e, (exp.Paren, exp.Alias)):
            return self.expr(e.this, scope)
        if isinstance(e, (exp.Select, exp.SetOperation, exp.Subquery, exp.Values)):
            return self.subquery(e, scope)
        if isinstance(e, exp.Dot):
            return self._dot(e, scope)
        if isinstance(e, exp.Operator):
            op = str(e.args.get("operator") or "")
            if "." in op and not op.lower().startswith("pg_catalog."):
                self.refuse(f"operator {op} is not a built-in (pg_catalog) operator; use the built-in one")
            return self._inspect(union([self.expr(e.this, scope), self.expr(e.expression, scope)]),
                                 f"an operand of OPERATOR({op})").derived()
        if isinstance(e, exp.Window):
            return self._window(e, scope)
        if isinstance(e, exp.Filter):  # agg(...) FILTER (WHERE ...): a row filter like any WHERE
            cond = e.expression.this if isinstance(e.expression, exp.Where) else e.expression
            return (self.expr(e.this, scope) | self._inspect(self.predicate(cond, scope, "where"),
                                                              "an aggregate's FILTER (WHERE ...)")).derived()
        if isinstance(e, (exp.Div, exp.Mod, exp.IntDiv)):
            divisor = self.expr(e.expression, scope)
            if divisor.sources:  # division by zero on chosen rows is a one-bit error oracle
                self.error_channel |= divisor.sources
            return self._inspect(self.expr(e.this, scope) | divisor, f"an operand of {_words(e)}").derived("numeric")
        if isinstance(e, exp.AtTimeZone):  # an unknown zone name is repeated in the error message
            zone = self.expr(e.args.get("zone"), scope)
            if zone.sources and may_echo(zone.type):
                self.error_channel |= zone.sources
            return self._inspect(self.expr(e.this, scope) | zone, "AT TIME ZONE").derived()
        if isinstance(e, exp.Exists):  # existence only: the subquery's filters are judged where they stand
            sub = self.subquery(e.this, scope)
            return Lin(opaque=sub.opaque, type="boolean", influence=sub.reaches)
        if isinstance(e, (exp.Cast, exp.TryCast)):
            inner = self.expr(e.this, scope)
            target = _type_name(e.args.get("to"))
            if base_type(target) not in SAFE_CAST_TARGETS and may_echo(inner.type) and inner.sources:
                self.error_channel |= inner.sources
            carried = isinstance(e, exp.Cast) and _injective_cast(e.args.get("to"))
            if not carried:
                self._inspect(inner, f"a cast to {target} (it can fail or change the value)")
            return Lin(inner.sources, False, inner.opaque, target, carried and inner.stored, inner.influence)
        if isinstance(e, exp.Case):
            return self._case(e, scope)
        if isinstance(e, exp.Coalesce):  # picks the first non-null argument without computing on it
            return union(self.expr(a, scope) for a in _args(e)).derived()
        if isinstance(e, exp.Func):
            return self._func(e, scope)
        if isinstance(e, (exp.Predicate, exp.Connector, exp.Not, exp.Is)):
            return self._inspect(union(self.expr(c, scope) for c in _children(e)),
                                 f"a comparison or test ({_words(e)})").derived("boolean")
        if isinstance(e, (exp.Insert, exp.Update, exp.Delete, exp.Merge, exp.Create, exp.Drop, exp.Command)):
            self.refuse(f"a {type(e).__name__.upper()} statement inside a query is not a read; remove it")
            return Lin(opaque=True)
        return self._inspect(union(self.expr(c, scope) for c in _children(e)), f"an operand of {_words(e)}").derived()

    def _case(self, e: exp.Case, scope: Scope) -> Lin:
        """CASE: its conditions inspect values; its THEN / ELSE results are only carried (derived)."""
        operand = e.args.get("this")
        tested = self.expr(operand, scope) if operand is not None else Lin()
        results = []
        for branch in e.args.get("ifs") or []:
            cond = self.predicate(branch.this, scope, "where") if operand is None else self.expr(branch.this, scope)
            self._inspect(cond | tested, "a CASE condition")
            results.append(self.expr(branch.args.get("true"), scope))
        results.append(self.expr(e.args.get("default"), scope))
        return union(results).derived()

    def _dot(self, e: exp.Dot, scope: Scope) -> Lin:
        # pg_catalog.upper(x): a schema-qualified function call.
        if isinstance(e.this, exp.Identifier) and isinstance(e.expression, exp.Func):
            return self._func(e.expression, scope, schema=ident(e.this))
        base = e.this.unnest() if isinstance(e.this, exp.Paren) else e.this
        if isinstance(base, exp.Column) and not base.table and isinstance(e.expression, exp.Identifier):
            name = ident(base.this)
            if self._lookup(name, scope) is None:
                rel = self._rel(name, scope)
                if rel is not None:  # (c).email: a field of a whole-row reference
                    col = self._touch(rel.find(ident(e.expression)))
                    if col:
                        return self._seen(col.lin)
        return union(self.expr(c, scope) for c in _children(e)).derived()

    def _window(self, e: exp.Window, scope: Scope) -> Lin:
        lin = self.expr(e.this, scope)
        specs = [e]
        alias = e.args.get("alias")
        if alias is not None and ident(alias) in _all_windows(scope):
            specs.append(_all_windows(scope)[ident(alias)])
        for spec in specs:
            for part in spec.args.get("partition_by") or []:
                p = self._inspect(self.expr(part, scope), "a window's PARTITION BY")
                self._use(p, "window", False)
                lin = lin | p
            order = spec.args.get("order")
            if order:
                for o in order.expressions:
                    p = self._inspect(self.expr(o.this if isinstance(o, exp.Ordered) else o, scope),
                                      "a window's ORDER BY")
                    self.window_sorts.append(p)
                    self._use(p, "window", False)
                    lin = lin | p
        return lin.derived()

    def _window_spec(self, spec: exp.Window, scope: Scope) -> Lin:
        parts = list(spec.args.get("partition_by") or [])
        order = spec.args.get("order")
        parts += [o.this if isinstance(o, exp.Ordered) else o for o in (order.expressions if order else [])]
        frame = spec.args.get("spec")
        if isinstance(frame, exp.WindowSpec):
            parts += [v for k, v in frame.args.items() if isinstance(v, exp.Expression) and k in ("start", "end")]
        return union(self.expr(p, scope) for p in parts)

    def _func(self, e: exp.Func, scope: Scope, schema: str | None = None) -> Lin:
        name = function_name(e)
        if isinstance(e, exp.Count) and schema is None:
            return self._count(e, scope)
        args = [self.expr(a, scope) for a in _args(e)]
        lin = union(args)
        if not (name in FUNCTION_CASTS and len(args) == 1 and name == "text"):  # text(x) is x::text
            self._inspect(lin, f"an argument of {name}()")
        udfs = self.catalog.user_functions(name, None if schema in (None, "pg_catalog") else schema)
        if udfs and schema != "pg_catalog":
            return self.udf(udfs, lin)
        if schema not in (None, "pg_catalog"):
            self.refuse(f"function {schema}.{name} is not in the catalog; check the name or the --schema-file")
            return Lin(lin.sources, False, True)
        if name in FUNCTION_CASTS and len(args) == 1:
            if base_type(name) not in SAFE_CAST_TARGETS and may_echo(args[0].type) and args[0].sources:
                self.error_channel |= args[0].sources
            return Lin(lin.sources, False, lin.opaque, name, name == "text" and args[0].stored, lin.influence)
        if not is_allowed_node(e):
            self.refuse(refusal_reason(name))
            return Lin(lin.sources, False, True)
        if name in TABLE_FUNCTIONS:  # a set-returning function in the select list multiplies rows too
            self._row_count_use(name, e, scope)
        self._error_args(name, e, scope)
        self._json_parse_errors(name, e, scope)
        if name in ("row_to_json", "to_json", "to_jsonb", "array_to_json", "row", "format") and any(a.opaque for a in args):
            return Lin(lin.sources, False, True)
        return lin.derived(_func_type(name))

    def _count(self, e: exp.Count, scope: Scope) -> Lin:
        """count(x) / count(DISTINCT x) only asks whether x is null (and, distinct, equal to another x)."""
        arg = e.this
        parts = list(arg.expressions) if isinstance(arg, exp.Distinct) else [arg] if arg is not None else []
        where = "count(DISTINCT ...)" if isinstance(arg, exp.Distinct) else "count(...)"
        lin = Lin()
        for part in parts:
            got = self.expr(part, scope)
            if got.sources:
                self.value_uses.append(ValueUse(tuple(sorted(got.sources)), where, "count"))
            lin = lin | got
        return lin.derived("numeric")

    def _error_args(self, name: str, e: exp.Func, scope: Scope) -> None:
        """Arguments whose value an error message would repeat go to the error channel."""
        key = "unixtotime" if isinstance(e, exp.UnixToTime) else name
        if key not in ERROR_CHANNEL_ARGS:
            return
        where, any_type = ERROR_CHANNEL_ARGS[key]
        if isinstance(e, (exp.Anonymous, exp.AnonymousAggFunc)):
            plain = list(e.expressions)
            if name in CONFIG_FIRST and len(plain) < 2:
                return
            picked = [plain[i] for i in where if isinstance(i, int) and i < len(plain)]
        else:
            picked = []
            for k in where:
                if isinstance(k, str):
                    value = e.args.get(k)
                    picked += value if isinstance(value, list) else [value] if value is not None else []
        for arg in picked:
            lin = self.expr(arg, scope)
            if lin.sources and (any_type or may_echo(lin.type)):
                self.error_channel |= lin.sources

    def _json_parse_errors(self, name: str, func: exp.Func, scope: Scope) -> None:
        """JSON functions that parse a value as another type fail with the value in the message.

        `jsonb_populate_record(null::customers, jsonb_build_object('birth_date', ssn))` parses the ssn
        as a date; `jsonb_path_query(j, '$.a.datetime()')` parses it as a timestamp. A row turned into
        JSON and back into its own table's type (`to_jsonb(c)` into `null::customers`) cannot fail.
        """
        args = _args(func)
        if name in _POPULATE and len(args) >= 2:
            if not self._same_row_type(args[0], args[1], scope):
                lin = self._quiet(args[1], scope)
                self.error_channel |= lin.sources
        elif name in _JSON_PATH and len(args) >= 2:
            path = args[1]
            risky = not isinstance(path, exp.Literal) or any(m in path.this.lower() for m in _PARSING_METHODS)
            if risky:
                self.error_channel |= self._quiet(args[0], scope).sources | self._quiet(path, scope).sources

    def _quiet(self, e: exp.Expression, scope: Scope) -> Lin:
        """Lineage of an expression already resolved once (no second use, no second refusal)."""
        uses, violations, values = len(self.uses), len(self.violations), len(self.value_uses)
        self._collect.append([])  # nothing counted in here may be deleted below
        try:
            lin = self.expr(e, scope)
        finally:
            touched = self._collect.pop()
        del self.uses[uses:], self.violations[violations:], self.value_uses[values:]
        for pending in touched:  # what it referenced still counts
            self._counts(pending)
        return lin

    def _same_row_type(self, base: exp.Expression, value: exp.Expression, scope: Scope) -> bool:
        if not (isinstance(base, exp.Cast) and isinstance(base.this, exp.Null)):
            return False
        to = base.args.get("to")
        kind = to.args.get("kind") if isinstance(to, exp.DataType) else None
        if not isinstance(value, exp.Func) or function_name(value) not in ("to_json", "to_jsonb", "row_to_json"):
            return False
        inner = _args(value)
        if len(inner) != 1 or not isinstance(inner[0], exp.Column) or inner[0].table or kind is None:
            return False
        rel = self._rel(ident(inner[0].this), scope)
        target = ident(kind)
        return rel is not None and bool(rel.cols) and all(
            c.lin.direct and len(c.lin.sources) == 1 and next(iter(c.lin.sources)).table == target
            and next(iter(c.lin.sources)).column == c.name for c in rel.cols)

    def _row_count_use(self, name: str, func: exp.Func, scope: Scope) -> None:
        """A set-returning function whose row count depends on a value reveals it (`generate_series(1, length(ssn))`).

        Exempt: `unnest(ARRAY[...])` (as many rows as listed), one-row record functions, and
        `json_each(to_json(row))` (one row per column of the row).
        """
        if name in ("json_to_record", "jsonb_to_record", "json_populate_record", "jsonb_populate_record"):
            return
        args = _args(func)
        if name == "jsonb_path_query" and len(args) >= 2 and isinstance(args[1], exp.Literal) and "?" not in args[1].this:
            return  # a structural path ($.email) matches once per document; a filter (? (...)) is a predicate
        counted = []
        for arg in args:
            if isinstance(arg, exp.Array) or (isinstance(arg, exp.Func) and function_name(arg) in _FIXED_WIDTH):
                continue  # as many elements as written
            if (name in ("json_each", "json_each_text", "jsonb_each", "jsonb_each_text", "json_object_keys",
                         "jsonb_object_keys") and isinstance(arg, exp.Func)
                    and function_name(arg) in ("to_json", "to_jsonb", "row_to_json")):
                continue
            counted.append(arg)
        before = len(self.violations)
        lin = union(self.expr(a, scope) for a in counted)
        del self.violations[before:]  # already reported where the arguments were resolved
        self._use(lin, "where", True)

    def subquery(self, e: exp.Expression, scope: Scope) -> Lin:
        """A scalar / EXISTS / IN / ARRAY subquery: its value depends on everything it reads."""
        captured: set[Lin] = set()
        self._captures.append(captured)
        try:
            node = e.this if isinstance(e, exp.Subquery) else e
            cols = self.query(node, scope)
        finally:
            self._captures.pop()
        out = union(c.lin for c in cols)
        seen = union(captured)
        # Its value is what it selects; what it only filtered on shapes the value (masked with it) and was
        # judged where it stands.
        return Lin(out.sources, False, out.opaque or seen.opaque, None,
                   influence=(seen.reaches | out.influence) - out.sources)

    # -- predicates ---------------------------------------------------------------------------

    def filter(self, e: exp.Expression, scope: Scope, clause: str, top: bool = False) -> None:
        """A WHERE or JOIN ON: each AND-ed atom is an equi-join (`a = b`, `a IN (SELECT b ...)`) or an inspection.

        `top`: the statement's own WHERE, whose atoms of a declarable form (`range`, `equals`, `in_list`,
        `is_null` against constants) a policy may allow for a classification (`sensitive_uses`).
        """
        words = "WHERE" if clause == "where" else "JOIN ON"
        for atom in _conjuncts(e):
            if isinstance(atom, exp.EQ):
                left, right = self.expr(atom.this, scope), self.expr(atom.expression, scope)
                self._use(left | right, clause, _has_literal(atom) or _steered([left, right]))
                form = _form(atom) if top else None
                if form:  # `col = constant`: a test of a declarable form, not a join
                    self._inspect(left | right, words, form)
                else:
                    self._equijoin(left, right, f"{words} (an equality)")
                continue
            semi = _semi_join(atom)
            if semi is not None:
                left = self.expr(atom.this, scope)
                captured: set[Lin] = set()
                self._captures.append(captured)
                try:
                    cols = self.query(semi, scope)
                finally:
                    self._captures.pop()
                self._use(left | union(c.lin for c in cols), clause, True)
                if len(cols) == 1:
                    self._equijoin(left, cols[0].lin, f"{words} (IN a subquery)")
                else:
                    self._inspect(left | union(c.lin for c in cols), f"{words} (IN a subquery)")
                continue
            lin = self.predicate(atom, scope, clause)
            self._inspect(lin, words, _form(atom) if top else None)

    def predicate(self, e: exp.Expression, scope: Scope, clause: str) -> Lin:
        """Lineage of a filter, recording each atom's columns as uses (against constants or not)."""
        if isinstance(e, (exp.And, exp.Or)):
            return self.predicate(e.this, scope, clause) | self.predicate(e.expression, scope, clause)
        if isinstance(e, (exp.Not, exp.Paren)):
            return self.predicate(e.this, scope, clause)
        if isinstance(e, exp.Func) and not isinstance(e, (exp.Binary, exp.Predicate, exp.Connector, exp.Unary)):
            lin = self.expr(e, scope)  # a function call as the test (`starts_with(x, 'a')`, a UDF): resolved whole
            self._use(lin, clause, True)
            return lin
        operands = _operands(e)
        lins = [self.expr(o, scope) for o in operands]
        whole = union(lins)
        if isinstance(e, exp.AtTimeZone):  # an unknown zone name is repeated in the error message
            zone = self.expr(e.args.get("zone"), scope)
            if zone.sources and may_echo(zone.type):
                self.error_channel |= zone.sources
            return (self.expr(e.this, scope) | zone).derived()
        if isinstance(e, exp.Exists):  # the subquery's own filters are recorded where they stand
            self._use(whole, clause, False)
            return whole
        constant = (len(lins) > 1 and any(lin.constant for lin in lins)) or isinstance(e, exp.Is) \
            or _has_literal(e) or self._constant_side(e, scope)
        # A scalar subquery is one row's value: `g <= (SELECT length(email) ... LIMIT 1)` counts up to it.
        scalar = not isinstance(e, exp.In) and any(
            isinstance(o, exp.Subquery) and lin.sources for o, lin in zip(operands, lins))
        against = constant or scalar or _steered(lins) \
            or (len(operands) == 1 and isinstance(operands[0], (exp.Subquery, exp.Select)))
        self._use(whole, clause, against)
        return whole

    def _constant_side(self, e: exp.Expression, scope: Scope) -> bool:
        """Whether a comparison inside `e` tests something against a value with no source (VALUES, CTE literal)."""
        for node in _walk_local(e):
            if isinstance(node, _COMPARISONS):
                sides = [node.this, node.expression] if not isinstance(node, exp.In) else [node.this, *node.expressions]
                quiet_uses = len(self.uses)
                lins = [self.expr(side, scope) for side in sides if side is not None]
                del self.uses[quiet_uses:]
                if len(lins) > 1 and any(lin.constant for lin in lins):
                    return True
        return False


def _is_star(e: exp.Expression) -> bool:
    return isinstance(e, exp.Star) or (isinstance(e, exp.Column) and isinstance(e.this, exp.Star)) or (
        isinstance(e, exp.Dot) and isinstance(e.expression, exp.Star))


# Allowed built-ins PostgreSQL marks volatile (pg_proc.provolatile = 'v'; tests/test_utility_views.py checks
# this against the server): an unused subquery output calling one is still computed.
VOLATILE_FUNCTIONS = frozenset({"random", "random_normal", "clock_timestamp", "timeofday", "gen_random_uuid",
                                "array_sample", "array_shuffle", "setseed"})


def _conjuncts(e: exp.Expression) -> list[exp.Expression]:
    while isinstance(e, exp.Paren):
        e = e.this
    if isinstance(e, exp.And):
        return _conjuncts(e.this) + _conjuncts(e.expression)
    return [e]


def _semi_join(atom: exp.Expression) -> exp.Expression | None:
    """The query of `x IN (SELECT ...)`, else None."""
    if isinstance(atom, exp.In) and not atom.expressions and atom.args.get("query") is not None:
        query = atom.args["query"]
        return query.this if isinstance(query, exp.Subquery) else query
    return None


def _constant(e: exp.Expression | None) -> bool:
    """A caller-written constant: a literal, a signed literal, or a literal cast to a type (`'1950-01-01'::date`)."""
    while isinstance(e, (exp.Cast, exp.Paren, exp.Neg)):
        e = e.this
    return isinstance(e, (exp.Literal, exp.Boolean))


def _bare(e: exp.Expression | None) -> bool:
    while isinstance(e, exp.Paren):
        e = e.this
    return isinstance(e, exp.Column) and not isinstance(e.this, exp.Star)


def _form(atom: exp.Expression) -> PredicateForm | None:
    """The declarable form of a WHERE atom over one bare column, or None."""
    if isinstance(atom, (exp.EQ, exp.GT, exp.GTE, exp.LT, exp.LTE)):
        sides = (atom.this, atom.expression)
        if not ((_bare(sides[0]) and _constant(sides[1])) or (_bare(sides[1]) and _constant(sides[0]))):
            return None
        return "equals" if isinstance(atom, exp.EQ) else "range"
    if isinstance(atom, exp.Between):
        return "range" if _bare(atom.this) and _constant(atom.args.get("low")) and _constant(atom.args.get("high")) else None
    if isinstance(atom, exp.In) and not atom.args.get("query") and not atom.args.get("unnest"):
        return "in_list" if _bare(atom.this) and atom.expressions and all(_constant(x) for x in atom.expressions) else None
    inner = atom.this if isinstance(atom, exp.Not) else atom
    if isinstance(inner, exp.Is) and isinstance(inner.expression, exp.Null):
        return "is_null" if _bare(inner.this) else None
    return None


def _unqualified(name: str) -> exp.Column:
    return exp.Column(this=exp.to_identifier(name, quoted=True))


def _qualified(alias: str, name: str) -> exp.Column:
    return exp.Column(this=exp.to_identifier(name, quoted=True), table=exp.to_identifier(alias, quoted=True))


# Casts that keep the value as stored: injective and never failing (text output of any type). Not
# varchar(n) / char(n): they truncate.
def _injective_cast(to: exp.Expression | None) -> bool:
    if not isinstance(to, exp.DataType) or to.expressions:
        return False
    return to.this in (exp.DataType.Type.TEXT, exp.DataType.Type.VARCHAR)


def _words(e: exp.Expression) -> str:
    """A node's SQL kind in words for a reason (`NEQ` -> `<>`), never its text (that may hold a value)."""
    return _OPERATOR_WORDS.get(type(e).__name__, type(e).__name__.upper())


_OPERATOR_WORDS = {"EQ": "=", "NEQ": "<>", "GT": ">", "GTE": ">=", "LT": "<", "LTE": "<=", "Like": "LIKE",
                   "ILike": "ILIKE", "Is": "IS", "In": "IN", "Between": "BETWEEN", "Not": "NOT", "And": "AND",
                   "Or": "OR", "Add": "+", "Sub": "-", "Mul": "*", "Div": "/", "Mod": "%", "DPipe": "||",
                   "Neg": "unary -", "NullSafeEQ": "IS NOT DISTINCT FROM", "NullSafeNEQ": "IS DISTINCT FROM",
                   "RegexpLike": "~", "RegexpILike": "~*", "SimilarTo": "SIMILAR TO", "Bracket": "[...] subscript",
                   "Array": "ARRAY[...]", "Tuple": "a row constructor", "IntDiv": "div"}


def _default_alias(func: exp.Expression) -> str:
    """PostgreSQL names an unaliased function in FROM after the function."""
    func, _ = _unqualify(func)
    return function_name(func) if isinstance(func, exp.Func) else "f"


def _all_windows(scope: Scope | None) -> dict[str, exp.Expression]:
    out: dict[str, exp.Expression] = {}
    while scope:
        for k, v in scope.windows.items():
            out.setdefault(k, v)
        scope = scope.parent
    return out


def _operands(e: exp.Expression) -> list[exp.Expression]:
    if isinstance(e, exp.In):
        ops = [e.this] + list(e.expressions)
        if e.args.get("query"):
            ops.append(e.args["query"])
        if e.args.get("unnest"):
            ops.append(e.args["unnest"])
        return ops
    if isinstance(e, exp.Between):
        return [e.this, e.args.get("low"), e.args.get("high")]
    if isinstance(e, (exp.Binary,)):
        return [e.this, e.expression]
    if isinstance(e, exp.Func):
        return list(_args(e)) or [e]
    return [e]


_JSON_TYPES = frozenset({"json", "jsonb"})
_POPULATE = {"json_populate_record", "jsonb_populate_record", "json_populate_recordset", "jsonb_populate_recordset"}
_JSON_PATH = {"jsonb_path_query", "jsonb_path_query_array", "jsonb_path_query_first", "jsonb_path_exists",
              "jsonb_path_match", "jsonb_path_query_tz", "jsonb_path_query_array_tz", "jsonb_path_query_first_tz",
              "jsonb_path_exists_tz", "jsonb_path_match_tz"}
# jsonpath item methods that parse a string as another type (and name the string when they cannot).
_PARSING_METHODS = (".datetime", ".double", ".number", ".integer", ".bigint", ".decimal", ".boolean", ".date",
                    ".time", ".timestamp", ".string")

_FIXED_WIDTH = {"json_build_array", "jsonb_build_array", "json_build_object", "jsonb_build_object", "array"}

_COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.NullSafeEQ, exp.NullSafeNEQ, exp.Like,
                exp.ILike, exp.SimilarTo, exp.RegexpLike, exp.RegexpILike, exp.In, exp.Is)


def _walk_local(e: exp.Expression):
    """Nodes of an expression, not descending into subqueries (they are analyzed where they stand)."""
    stack = [e]
    while stack:
        node = stack.pop()
        yield node
        for child in node.iter_expressions():
            if not isinstance(child, (exp.Select, exp.SetOperation, exp.Subquery)):
                stack.append(child)


def _find(cols: list[Col], name: str) -> Col | None:
    return next((c for c in cols if c.name == name), None)


def _projected(g: exp.Expression, select: exp.Select) -> exp.Expression:
    """The expression a GROUP BY item stands for: itself, or the select-list item it names by position."""
    if isinstance(g, exp.Literal) and g.is_int:
        idx = int(g.this) - 1
        if 0 <= idx < len(select.expressions):
            item = select.expressions[idx]
            return item.this if isinstance(item, exp.Alias) else item
    return g


def _has_literal(e: exp.Expression) -> bool:
    return any(isinstance(n, (exp.Literal, exp.Boolean, exp.Null, exp.Placeholder, exp.Parameter))
               for n in _walk_local(e))


def _steered(lins: list[Lin]) -> bool:
    """Whether a comparison tests values against other columns: `o.id = length(c.email)` is a constant list.

    A column of another table (ids, amounts, a generated series) is as good as caller-chosen constants,
    and the matching row then repeats the value in the clear. Both sides from the same columns
    (`c1.zip = c2.zip`, equality classes) are not.
    """
    sourced = [lin for lin in lins if lin.sources]
    if len(sourced) < 2:
        return False
    # An opaque value (a function's output, a whole row) hides which column it is: `e.cid = length(e.handle)`.
    return any(lin.opaque for lin in sourced) or any(lin.sources != sourced[0].sources for lin in sourced[1:])


def _merge_using(left: list[Col], right: list[Col], names: list[str]) -> list[Col]:
    """What `*` returns after `JOIN ... USING (names)`: merged columns first, then the rest of each side."""
    if not names:
        return left + right
    merged = []
    for name in names:
        lins = [c.lin for c in left + right if c.name == name]
        merged.append(Col(name, union(lins) if len(lins) > 1 else (lins[0] if lins else Lin(opaque=True)), MERGED))
    return merged + [c for c in left if c.name not in names] + [c for c in right if c.name not in names]


def _args(e: exp.Func) -> list[exp.Expression]:
    out = []
    for value in e.args.values():
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, exp.Expression):
                out.append(v)
    return out


def _children(e: exp.Expression) -> list[exp.Expression]:
    return _args(e)  # type: ignore[arg-type]


def _unqualify(node: exp.Expression) -> tuple[exp.Expression, str | None]:
    if isinstance(node, exp.Dot) and isinstance(node.this, exp.Identifier):
        return node.expression, ident(node.this)
    return node, None


def _stored(rel: Relation) -> list[tuple[str, Lin]]:
    """(name, lineage) of each stored column of a table, made once per catalog relation (both are immutable)."""
    cached = rel.__dict__.get("_stored_lins")
    if cached is None:
        cached = [(c, _generated_lin(rel, c, t) if rel.generated else
                   Lin(frozenset({ColumnRef(rel.schema, rel.name, c)}), True, False, t, True))
                  for c, t in rel.columns]
        object.__setattr__(rel, "_stored_lins", cached)  # frozen dataclass: a cache, not a field
    return cached


def _generated_lin(rel: Relation, name: str, type_: str | None) -> Lin:
    """A column's lineage; a generated column's is a value derived from the columns its expression reads.

    `GENERATED ALWAYS AS (diagnosis LIKE 'B20%') STORED` is stored, but it is the owner's function of
    `diagnosis`: read as its own unclassified column it would give that value in the clear. So it has the
    lineage a view column computing the same expression has (not stored: a non-linkable mask, no equi-join);
    an expression that cannot be read is opaque (fail closed).
    """
    here = ColumnRef(rel.schema, rel.name, name)
    reads = rel.generated_from(name)
    if reads is None:
        return Lin(frozenset({here}), False, True, type_)
    if not reads:
        return Lin(frozenset({here}), True, False, type_, True)
    return Lin(frozenset({here} | {ColumnRef(rel.schema, rel.name, c) for c in reads}), False, False, type_)


def _rename(cols: list[Col], names: list[str]) -> list[Col]:
    if not names:
        return cols
    return [Col(names[i] if i < len(names) else c.name, c.lin, pending=c.pending) for i, c in enumerate(cols)]


def _realias(rel: Rel, alias: str, names: list[str]) -> Rel:
    return Rel(alias, _rename(rel.cols, names), rel.open, rel.whole_lin)


def _output_name(e: exp.Expression) -> str:
    if isinstance(e, exp.Alias):
        return ident(e.args.get("alias"))
    if isinstance(e, exp.Column):
        return ident(e.this)
    if isinstance(e, exp.Dot) and isinstance(e.expression, exp.Identifier):
        return ident(e.expression)
    if isinstance(e, exp.Cast):
        return _output_name(e.this) if isinstance(e.this, exp.Column) else (_type_name(e.args.get("to")) or "?column?")
    if isinstance(e, (exp.WithinGroup, exp.Window, exp.Filter, exp.Paren)):
        return _output_name(e.this)
    if isinstance(e, exp.Func):
        return function_name(e)
    return "?column?"


def _type_name(dt: exp.Expression | None) -> str | None:
    if dt is None:
        return None
    if isinstance(dt, exp.DataType):
        kind = dt.args.get("kind")
        if dt.this == exp.DataType.Type.USERDEFINED and kind is not None:
            return ident(kind)
        return dt.this.value.lower() if hasattr(dt.this, "value") else str(dt.this).lower()
    return dt.sql("postgres").lower()


def _literal_type(e: exp.Expression) -> str | None:
    if isinstance(e, exp.Literal):
        return "unknown" if e.is_string else "numeric"
    if isinstance(e, exp.Boolean):
        return "boolean"
    return None


_NUMERIC_FUNCS = {"length", "char_length", "character_length", "octet_length", "bit_length", "ascii", "count",
                  "strpos", "position", "array_length", "cardinality", "row_number", "rank", "dense_rank", "ntile",
                  "extract", "date_part", "abs", "round", "sum", "avg", "min_scale", "scale", "sign"}


def _func_type(name: str) -> str | None:
    if name in _NUMERIC_FUNCS:
        return "numeric"
    if name in ("starts_with", "isfinite", "bool_and", "bool_or", "every", "jsonb_path_exists", "regexp_like"):
        return "boolean"
    if name in ("age", "date_trunc", "now", "current_date", "current_timestamp", "make_date"):
        return "timestamp"
    return None
