"""What a write reads and where the values it writes go: the read twin the opaque-values rule judges.

A write computes on data as much as a read does, and it has outputs of its own: the values it
stores (readable later, maybe in a column nobody classified), the number of rows it touched, and
whether it failed. `UPDATE customers SET plan = ssn` copies a masked value into a clear column;
`UPDATE ... WHERE ssn LIKE '9%'` returns a count; `INSERT INTO customers (zip) VALUES ('99901')`
writes a chosen plaintext whose token then matches a real row's. So every write is judged as the
SELECT that reads and computes exactly what it does (`read_twin`), with one output column per value
written, each paired with the column it is written to (`WriteFlow.targets`; None for a new relation
or a row test). The planner judges the twin with the read rule and the pairs with the write rule
(`planner._write_flow_reasons`).

Example:
    >>> import sqlglot
    >>> from lineage_guard.sql.catalog import Catalog
    >>> cat = Catalog.from_ddl_text("CREATE TABLE customers (id int PRIMARY KEY, ssn text, plan text)")
    >>> flow = read_twin(sqlglot.parse_one("UPDATE customers SET plan = ssn WHERE id = 1", dialect="postgres"), cat)
    >>> flow.reads, [str(t) for t in flow.targets]
    ('SELECT ssn AS w0 FROM customers WHERE id = 1', ['public.customers.plan'])
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlglot import exp

from .catalog import Catalog
from .lineage import ident
from .model import ColumnRef


@dataclass(frozen=True)
class WriteFlow:
    """The twin SELECTs of one write, each with the column every output is written to.

    `twins[i] = (select sql, targets, nulls)`: output j of that SELECT is stored into `targets[j]` (None:
    a new relation nobody classified; missing: the same), and `nulls[j]` says it is always NULL or DEFAULT.
    `refusal`: the write has a shape whose reads cannot be modelled (then it is denied).
    """

    twins: tuple[tuple[str, tuple[ColumnRef | None, ...], tuple[bool, ...]], ...] = ()
    refusal: str | None = None

    @property
    def reads(self) -> str | None:
        return self.twins[0][0] if self.twins else None

    @property
    def targets(self) -> tuple[ColumnRef | None, ...]:
        return self.twins[0][1] if self.twins else ()


# Statements that define code: the body is SQL (or another language) in a string, run later by
# whoever triggers it; what it reads cannot be judged here.
_CODE_KINDS = frozenset({"FUNCTION", "PROCEDURE", "TRIGGER", "RULE", "POLICY", "EVENT", "AGGREGATE", "OPERATOR",
                         "CAST", "TRANSFORM", "LANGUAGE", "EXTENSION", "DOMAIN", "TYPE"})


def read_twin(node: exp.Expression, catalog: Catalog) -> WriteFlow:
    """The read twin of write `node` (INSERT, UPDATE, DELETE, MERGE, CREATE ... AS, CREATE INDEX, COPY)."""
    try:
        if isinstance(node, exp.Update):
            return _update(node, catalog)
        if isinstance(node, exp.Delete):
            return _delete(node)
        if isinstance(node, exp.Insert):
            return _insert(node, catalog)
        if isinstance(node, exp.Merge):
            return _merge(node, catalog)
        if isinstance(node, exp.Create):
            return _create(node)
        if isinstance(node, exp.Copy):
            return _copy(node, catalog)
    except _Unmodelled as why:
        return WriteFlow(refusal=str(why))
    return WriteFlow()


class _Unmodelled(Exception):
    pass


def _target(table: exp.Expression, catalog: Catalog) -> tuple[exp.Table, tuple[str, ...], str, str]:
    """(target table node, its columns in order, schema, name); unknown tables have no columns."""
    if isinstance(table, exp.Schema):
        table = table.this
    if not isinstance(table, exp.Table) or not isinstance(table.this, exp.Identifier):
        raise _Unmodelled("the table a write names could not be resolved; name a plain table")
    schema = ident(table.args["db"]) if table.args.get("db") else None
    rel = catalog.relation(ident(table.this), schema)
    if rel is None:
        default = catalog.search_path[0] if catalog.search_path else "public"
        return table, (), schema or default, ident(table.this)
    return table, rel.column_names, rel.schema, rel.name


def _ref(schema: str, table: str, column: str) -> ColumnRef:
    return ColumnRef(schema, table, column)


def _defaults_to_null(e: exp.Expression) -> exp.Expression:
    """`SET x = DEFAULT` / `VALUES (DEFAULT)` store the column default, not a value the statement read."""
    return e.copy().transform(lambda n: exp.Null() if _is_default(n) else n)


def _is_default(n: exp.Expression) -> bool:
    if isinstance(n, exp.Var):
        return n.name.upper() == "DEFAULT"
    return isinstance(n, exp.Column) and not n.table and not n.this.quoted and n.name.upper() == "DEFAULT"


def _is_null(e: exp.Expression) -> bool:
    return isinstance(_defaults_to_null(e), exp.Null)


def _nulls(outputs: list[exp.Expression]) -> tuple[bool, ...]:
    return tuple(_is_null(e) for e in outputs)


def _select(outputs: list[exp.Expression], from_: list[exp.Expression], joins: list[exp.Expression] | None = None,
            where: exp.Expression | None = None, with_: exp.Expression | None = None) -> str:
    items = [exp.alias_(_defaults_to_null(e), f"w{i}") for i, e in enumerate(outputs)] or [exp.Literal.number(1)]
    select = exp.Select(expressions=items)
    if from_:
        select.set("from_", exp.From(this=from_[0].copy()))
        extra = [exp.Join(this=f.copy()) for f in from_[1:]] + [j.copy() for j in joins or []]
        if extra:
            select.set("joins", extra)
    if where is not None:
        select.set("where", exp.Where(this=where.copy()))
    if with_ is not None:
        select.set("with_", with_.copy())
    return select.sql(dialect="postgres")


def _assignments(pairs: list[exp.Expression], schema: str, table: str) -> tuple[list[exp.Expression], list]:
    outputs, targets = [], []
    for eq in pairs:
        if not isinstance(eq, exp.EQ):
            raise _Unmodelled("an assignment that is not column = value; write SET column = value")
        left, right = eq.this, eq.expression
        if isinstance(left, exp.Column):
            outputs.append(right)
            targets.append(_ref(schema, table, left.name))
        elif isinstance(left, exp.Tuple) and isinstance(right, exp.Tuple) \
                and len(left.expressions) == len(right.expressions):
            for col, value in zip(left.expressions, right.expressions):
                outputs.append(value)
                targets.append(_ref(schema, table, col.name))
        else:
            raise _Unmodelled("SET (a, b) = (SELECT ...) is not modelled; write one SET column = value per column")
    return outputs, targets


def _update(node: exp.Update, catalog: Catalog) -> WriteFlow:
    table, _, schema, name = _target(node.this, catalog)
    outputs, targets = _assignments(list(node.expressions), schema, name)
    from_ = [table] + ([node.args["from_"].this] if node.args.get("from_") else [])
    joins = node.args["from_"].args.get("joins") if node.args.get("from_") else None
    where = node.args["where"].this if node.args.get("where") else None
    # The WHERE decides the affected-row count (an output): it is judged as the twin's WHERE.
    return WriteFlow(((_select(outputs, from_, joins or node.args.get("joins"), where, node.args.get("with_")),
                       tuple(targets), _nulls(outputs)),))


def _delete(node: exp.Delete) -> WriteFlow:
    table = node.this
    from_ = [table, *(node.args.get("using") or [])]
    where = node.args["where"].this if node.args.get("where") else None
    return WriteFlow(((_select([], from_, None, where, node.args.get("with_")), (), ()),))


def _insert(node: exp.Insert, catalog: Catalog) -> WriteFlow:
    table, columns, schema, name = _target(node.this, catalog)
    named = [c.name for c in node.this.expressions] if isinstance(node.this, exp.Schema) else list(columns)
    source = node.expression
    twins: list[tuple[str, tuple[ColumnRef | None, ...], tuple[bool, ...]]] = []
    targets = tuple(_ref(schema, name, c) for c in named)
    if isinstance(source, exp.Values):
        rows = []
        for row in source.expressions:
            values = row.expressions if isinstance(row, exp.Tuple) else [row]
            rows.append(exp.Tuple(expressions=[_defaults_to_null(v) for v in values]))
        values = exp.Values(expressions=rows, alias=exp.TableAlias(this=exp.to_identifier("v")))
        twin = exp.Select(expressions=[exp.Star()]).from_(values)
        if node.args.get("with_"):
            twin.set("with_", node.args["with_"].copy())
        nulls = tuple(all(_is_null(r.expressions[i]) for r in rows if i < len(r.expressions))
                      for i in range(len(targets)))
        twins.append((twin.sql(dialect="postgres"), targets, nulls))
    elif isinstance(source, (exp.Select, exp.SetOperation, exp.Subquery)):
        twin = source.copy()
        if node.args.get("with_"):
            twin.set("with_", node.args["with_"].copy())
        items = twin.expressions if isinstance(twin, exp.Select) else []
        twins.append((twin.sql(dialect="postgres"), targets, tuple(_is_null(_unalias(e)) for e in items)))
    elif source is not None:
        raise _Unmodelled("an INSERT source that is not VALUES or a query; write INSERT ... VALUES or ... SELECT")
    conflict = node.args.get("conflict")
    if conflict is not None and conflict.expressions:
        # ON CONFLICT DO UPDATE reads the stored row and `excluded` (the proposed row): judged as a
        # SELECT over the table twice, the second under the name `excluded` (conservative: the
        # proposed row gets the stored row's lineage).
        outputs, set_targets = _assignments(list(conflict.expressions), schema, name)
        excluded = exp.Table(this=table.this.copy(), db=table.args.get("db"),
                             alias=exp.TableAlias(this=exp.to_identifier("excluded")))
        where = conflict.args["where"].this if conflict.args.get("where") else None
        twins.append((_select(outputs, [table, excluded], None, where), tuple(set_targets), _nulls(outputs)))
    return WriteFlow(tuple(twins))


def _merge(node: exp.Merge, catalog: Catalog) -> WriteFlow:
    table, columns, schema, name = _target(node.this, catalog)
    outputs: list[exp.Expression] = []
    targets: list[ColumnRef | None] = []
    conditions: list[exp.Expression] = []
    for when in node.args["whens"].expressions:
        if when.args.get("condition") is not None:
            conditions.append(when.args["condition"])
        then = when.args.get("then")
        if isinstance(then, exp.Update):
            o, t = _assignments(list(then.expressions), schema, name)
            outputs += o
            targets += t
        elif isinstance(then, exp.Insert):
            cols = [c.name for c in then.this.expressions] if isinstance(then.this, exp.Tuple) else list(columns)
            values = then.expression.expressions if isinstance(then.expression, exp.Tuple) else []
            if len(cols) != len(values):
                raise _Unmodelled("a MERGE INSERT whose columns and values do not pair up; name the columns")
            outputs += values
            targets += [_ref(schema, name, c) for c in cols]
    on = node.args.get("on")
    join = exp.Join(this=node.args["using"].copy(), on=on.copy() if on is not None else exp.true())
    where = exp.and_(*[exp.paren(c.copy()) for c in conditions]) if conditions else None
    return WriteFlow(((_select(outputs, [table], [join], where, node.args.get("with_")), tuple(targets),
                       _nulls(outputs)),))


def _create(node: exp.Create) -> WriteFlow:
    kind = str(node.args.get("kind") or "").upper()
    if kind in _CODE_KINDS or isinstance(node.this, exp.UserDefinedFunction):
        raise _Unmodelled(f"CREATE {kind or 'of code'} defines code whose reads run later and cannot be judged "
                          "here; have an administrator create it")
    query = node.expression
    if isinstance(query, (exp.Select, exp.SetOperation, exp.Subquery)):
        # CREATE TABLE / VIEW / MATERIALIZED VIEW ... AS: every output lands in a relation nobody classified.
        return WriteFlow(((query.sql(dialect="postgres"), (), ()),))
    if isinstance(node.this, exp.Index):
        index = node.this
        params = index.args.get("params")
        exprs = [o.this if isinstance(o, exp.Ordered) else o for o in (params.args.get("columns") or [])] \
            if params else []
        where = params.args["where"].this if params is not None and params.args.get("where") else None
        table = index.args.get("table")
        if not isinstance(table, exp.Table):
            raise _Unmodelled("CREATE INDEX without a table")
        # A unique or partial index tests the values it covers (it fails on duplicates, its predicate runs).
        return WriteFlow(((_select(exprs, [table], None, where), (), ()),))
    return WriteFlow()


def _copy(node: exp.Copy, catalog: Catalog) -> WriteFlow:
    if not node.args.get("kind"):
        return WriteFlow()  # COPY ... TO is refused by the analysis already
    table, columns, schema, name = _target(node.this, catalog)
    named = [c.name for c in node.this.expressions] if isinstance(node.this, exp.Schema) else list(columns)
    # COPY FROM stores values the caller sends: constants, as far as lineage goes.
    outputs = [exp.Literal.string("") for _ in named]
    return WriteFlow(((_select(outputs, [table]), tuple(_ref(schema, name, c) for c in named),
                       tuple(False for _ in named)),))


def _unalias(e: exp.Expression) -> exp.Expression:
    return e.this if isinstance(e, exp.Alias) else e
