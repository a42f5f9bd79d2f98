"""The catalog: which tables, views and functions exist, so SQL can be resolved to base columns.

Two constructors:
- `Catalog.from_postgres(url)` reads pg_catalog live, in a read-only transaction;
- `Catalog.from_ddl(*paths)` parses CREATE TABLE / VIEW / MATERIALIZED VIEW / FUNCTION offline.

Names are resolved through a pinned `search_path` (default `public`), never the session's.

Example:
    >>> cat = Catalog.from_ddl_text("CREATE TABLE t (id int, email text); CREATE VIEW v AS SELECT email AS e FROM t")
    >>> cat.relation("t").column_names
    ('id', 'email')
    >>> cat.relation("v").kind, cat.relation("v").definition
    ('view', 'SELECT email AS e FROM t')
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import sqlglot
from sqlglot import exp
from sqlglot.dialects.postgres import Postgres
from sqlglot.optimizer.normalize_identifiers import normalize_identifiers
from sqlglot.tokens import TokenType

from ..errors import ConfigError
from .allowlist import _silence_sqlglot

RelationKind = Literal["table", "view", "matview", "foreign", "other"]


@dataclass(frozen=True)
class Relation:
    """A table or view: ordered columns with Postgres types; views carry their defining SELECT."""

    schema: str
    name: str
    kind: RelationKind = "table"
    columns: tuple[tuple[str, str | None], ...] = ()
    definition: str | None = None          # the SELECT of a view / materialized view / CREATE TABLE AS
    # Columns whose value names one row or one individual: PRIMARY KEY / UNIQUE, and foreign keys to them.
    identifying: frozenset[str] = frozenset()
    # Inheritance parents / the partitioned table (schema, name): a parent's row filter holds for these rows.
    parents: tuple[tuple[str, str], ...] = ()
    # Generated (GENERATED ALWAYS AS (...) STORED) columns and their expressions (None: not readable).
    # Stored, but computed from other columns: a value derived from them, like a view's column.
    generated: tuple[tuple[str, str | None], ...] = ()
    # What the server evaluates when a row is written, beyond the statement: CHECK constraints, indexes
    # (expressions, predicates, unique keys). Each `OnWrite`; and the user triggers and rules that fire.
    on_write: tuple[OnWrite, ...] = ()
    triggers: tuple[str, ...] = ()
    # Foreign keys, one entry per column pair: (column, referenced schema, referenced table, referenced column).
    # A key over (customer_id, filer) REFERENCES customers (id, ssn) gives two: each column holds values of its
    # referenced column, and each is checked against the referenced rows.
    references: tuple[tuple[str, str, str, str], ...] = ()
    # Each column's type without its modifier, as format_type(atttypid, NULL) names it with only pg_catalog
    # on the search_path ("integer", "text", a user type schema-qualified): what operator lookup matches
    # (sql/pushdown.py). Empty for an offline catalog: then no caller qual is pushed into a row filter.
    base_types: tuple[tuple[str, str], ...] = ()
    # Columns whose equality is not byte equality: (column, collation, collatable). The column's collation is
    # nondeterministic (pg_collation.collisdeterministic false: ICU `deterministic = false`, where `'acme' =
    # 'ACME'` can hold), its own or its domain's (collatable: `col COLLATE "C"` compares its bytes); or a field
    # of its composite type, an element of its array or range type is, or it is a citext (not collatable). Two stored values
    # that compare equal here may have different bytes, so different tokens. Every other column compares its
    # bytes: the database default collation is always deterministic (PostgreSQL 15 has no nondeterministic
    # database default: created with ICU_LOCALE 'und-u-ks-level2', 'acme' = 'ACME' is still false there, and
    # pg_collation's `default` row is collisdeterministic). Offline: `Catalog._collation_of`.
    nondeterministic: tuple[tuple[str, str, bool], ...] = ()

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)

    def column_type(self, name: str) -> str | None:
        return dict(self.columns).get(name)

    def collation(self, name: str) -> tuple[str, bool] | None:
        """(nondeterministic collation, collatable) when column `name`'s equality is not byte equality, else None.

        >>> Relation("public", "t", columns=(("a", "text"),), nondeterministic=(("a", "public.ci", True),)).collation("a")
        ('public.ci', True)
        """
        for column, collation, collatable in self.nondeterministic:
            if column == name:
                return collation, collatable
        return None

    def generated_from(self, name: str) -> frozenset[str] | None:
        """The columns generated column `name` is computed from; None when its expression cannot be read.

        Not a generated column: the empty set.

        >>> Relation("public", "t", columns=(("d", "date"), ("a", "int")),
        ...          generated=(("a", "date '2025-01-01' - d"),)).generated_from("a")
        frozenset({'d'})
        """
        expressions = dict(self.generated)
        if name not in expressions:
            return frozenset()
        return expression_columns(expressions[name], self.column_names)


@dataclass(frozen=True)
class OnWrite:
    """One expression the server evaluates on a written row: it can fail (or conflict) on values the writer cannot see.

    `kind`: "check" (a validated CHECK: row-local), "unvalidated" (a NOT VALID CHECK: old rows may fail it
    on any UPDATE), "index" (an index expression or predicate: row-local), "unique" (a unique or exclusion
    index: compares the row with every other row). `columns`: the columns it reads; None when unknown.
    """

    kind: Literal["check", "unvalidated", "index", "unique"]
    name: str
    columns: frozenset[str] | None


@dataclass(frozen=True)
class Function:
    """A user-defined function or procedure. Only LANGUAGE sql bodies can be analyzed."""

    schema: str
    name: str
    language: str | None = None
    body: str | None = None
    kind: Literal["function", "procedure", "aggregate", "window"] = "function"
    returns_set: bool = False
    arg_names: tuple[str, ...] = ()
    out_columns: tuple[str, ...] = ()      # RETURNS TABLE (...) / OUT parameters
    volatility: str | None = None          # i / s / v


def read_catalog(url: str, *queries: str, search_path: str | None = None, meta: Any = None) -> list[list[tuple]]:
    """Run catalog `queries` in one read-only transaction (30 s timeout); each query's rows, in order.

    `meta` (a session's `sources.meta_conn.MetaConnection`) runs them on that connection instead of a
    new one: one query with no search path as one statement (its own transaction), else a transaction.
    Errors are sanitized (`catalog_error`): never the server's text or the URL's password.
    """
    import psycopg

    try:
        if meta is not None:
            one = len(queries) == 1 and search_path is None
            with (meta.statement() if one else meta.transaction(30_000)) as conn:
                if search_path is not None:
                    conn.execute(f"SET LOCAL search_path = {search_path}")
                results = [conn.execute(query).fetchall() for query in queries]
        else:
            with psycopg.connect(url, autocommit=False) as conn:
                conn.read_only = True
                with conn.cursor() as cur:
                    cur.execute("SET LOCAL statement_timeout = '30s'")
                    if search_path is not None:
                        cur.execute(f"SET LOCAL search_path = {search_path}")
                    results = []
                    for query in queries:
                        cur.execute(query)
                        results.append(cur.fetchall())
                conn.rollback()
    except psycopg.Error as err:
        from ..sources.pg_errors import catalog_error

        failure = catalog_error(err, url)
    else:
        failure = None
    if failure is not None:
        raise failure
    return results


@dataclass
class Catalog:
    """Relations and user-defined functions, looked up through a pinned search_path."""

    relations: dict[tuple[str, str], Relation] = field(default_factory=dict)
    functions: dict[str, list[Function]] = field(default_factory=dict)
    search_path: tuple[str, ...] = ("public",)
    source: str = "ddl"
    # (operator name, left type, right type) of every pg_catalog comparison operator whose function the
    # server marks LEAKPROOF (pg_proc.proleakproof), types named as `Relation.base_types` names them.
    # None: not read (an offline catalog), so nothing is known to be leakproof (sql/pushdown.py).
    leakproof_operators: frozenset[tuple[str, str, str]] | None = None
    # Offline only (schema files): CREATE COLLATION name -> deterministic; CREATE DOMAIN name -> its collation's
    # (name, deterministic) or None; CREATE TYPE ... AS (...) name -> why its equality is not byte equality.
    # Keys are `schema.name`, lower case as PostgreSQL folds unquoted names.
    ddl_collations: dict[str, bool] = field(default_factory=dict)
    ddl_domains: dict[str, tuple[str, bool] | None] = field(default_factory=dict)
    ddl_types: dict[str, str] = field(default_factory=dict)

    def leakproof(self, operator: str, left: str, right: str) -> bool:
        """Whether pg_catalog's `left operator right` exists and its function is LEAKPROOF on this server."""
        return self.leakproof_operators is not None and (operator, left, right) in self.leakproof_operators

    def add(self, item: Relation | Function) -> None:
        if isinstance(item, Relation):
            self.relations[(item.schema, item.name)] = item
        else:
            self.functions.setdefault(item.name, []).append(item)

    def relation(self, name: str, schema: str | None = None) -> Relation | None:
        """The relation `schema.name`, or the first `name` along the search_path."""
        if schema:
            return self.relations.get((schema, name))
        for s in self.search_path:
            if (s, name) in self.relations:
                return self.relations[(s, name)]
        return None

    def column_names(self) -> set[str]:
        """Every column name of every relation (computed once; the catalog is not changed after loading)."""
        cached = self.__dict__.get("_column_names")
        if cached is None or cached[0] != len(self.relations):
            cached = (len(self.relations), {c for rel in self.relations.values() for c in rel.column_names})
            self.__dict__["_column_names"] = cached
        return cached[1]

    def user_functions(self, name: str, schema: str | None = None) -> list[Function]:
        """User-defined functions called `name` (in `schema`, or anywhere: any schema could shadow a built-in)."""
        found = self.functions.get(name, [])
        return [f for f in found if schema is None or f.schema == schema]

    # -- live ---------------------------------------------------------------------------------

    @classmethod
    def from_postgres(cls, url: str, search_path: Iterable[str] = ("public",), *, meta: Any = None) -> Catalog:
        """Read tables, views, materialized views and user functions from a live database, read-only.

        `meta`: a session's `MetaConnection` to read on (else a connection of its own)."""
        try:
            import psycopg  # noqa: F401 - the [postgres] extra, checked before any work
        except ImportError as err:  # pragma: no cover - the [postgres] extra
            raise ConfigError("Catalog.from_postgres needs the [postgres] extra (psycopg)") from err
        cat = cls(search_path=tuple(search_path), source="postgres")
        # pg_get_viewdef qualifies every name not on the search_path: with only pg_catalog on it,
        # view definitions name their schemas and resolve the same under any pinned path.
        rows, funcs, operators = read_catalog(url, _RELATIONS_SQL, _FUNCTIONS_SQL, _LEAKPROOF_OPERATORS_SQL,
                                              search_path="pg_catalog", meta=meta)
        cat.leakproof_operators = frozenset((o, left, right) for o, left, right in operators)
        for (schema, name, relkind, columns, definition, identifying, parents, generated, on_write, triggers,
             references, base_types, nondeterministic) in rows:
            kind = {"r": "table", "p": "table", "v": "view", "m": "matview", "f": "foreign"}.get(relkind, "other")
            cat.add(Relation(schema, name, kind, tuple((c, t) for c, t in columns or []),
                             _strip_semicolon(definition), frozenset(identifying or ()),
                             tuple((p[0], p[1]) for p in parents or []),
                             tuple((g[0], g[1]) for g in generated or []),
                             tuple(OnWrite(w[0], w[1], frozenset(w[2].split(",")) if w[2] else frozenset())
                                   for w in on_write or []),
                             tuple(triggers or ()), tuple((r[0], r[1], r[2], r[3]) for r in references or []),
                             tuple((c, t) for c, t in base_types or []),
                             _nondeterministic(nondeterministic)))
        for schema, name, lang, body, prokind, retset, argnames, argmodes, volatility in funcs:
            names, modes = list(argnames or []), list(argmodes or [])
            modes = modes or ["i"] * len(names)
            ins = tuple(n for n, m in zip(names, modes) if m in ("i", "b", "v"))
            outs = tuple(n for n, m in zip(names, modes) if m in ("o", "b", "t"))
            cat.add(Function(schema, name, lang, body,
                             {"p": "procedure", "a": "aggregate", "w": "window"}.get(prokind, "function"),
                             bool(retset), ins, outs, volatility))
        return cat

    # -- offline ------------------------------------------------------------------------------

    @classmethod
    def from_ddl(cls, *paths: str | Path, search_path: Iterable[str] = ("public",)) -> Catalog:
        """Parse DDL files (repeatable, applied in order): CREATE TABLE / VIEW / MATERIALIZED VIEW / FUNCTION."""
        if not paths:
            raise ConfigError("give at least one --schema-file with CREATE TABLE statements")
        cat = cls(search_path=tuple(search_path), source="ddl")
        for path in paths:
            p = Path(path)
            try:
                text = p.read_text()
            except OSError as err:
                raise ConfigError(f"cannot read schema file {p}: {err.strerror or type(err).__name__}") from None
            cat._load_ddl(text)
        return cat

    @classmethod
    def from_ddl_text(cls, text: str, search_path: Iterable[str] = ("public",)) -> Catalog:
        """Like `from_ddl`, from a string."""
        cat = cls(search_path=tuple(search_path), source="ddl")
        cat._load_ddl(text)
        return cat

    def _load_ddl(self, text: str) -> None:
        _silence_sqlglot()
        for chunk in split_statements(text):
            head = _strip_comments(chunk).lstrip().upper()
            if not head.startswith(("CREATE", "DROP", "ALTER")):
                continue  # INSERT/BEGIN/COMMIT/SET...: data and transaction control are not schema
            try:
                # Unquoted names fold to lower case, as PostgreSQL stores them.
                node = normalize_identifiers(sqlglot.parse_one(chunk, dialect="postgres"), dialect="postgres")
            except Exception:  # noqa: BLE001 - options sqlglot lacks fall back to the regex reader
                node = None
            try:
                self._load_statement(node, chunk)
            except Exception:  # noqa: BLE001, S112 - a statement we cannot read leaves its object unknown: refused later
                continue

    def _load_statement(self, node: exp.Expression | None, chunk: str) -> None:
        if isinstance(node, exp.Create):
            self._load_create(node, chunk)
        elif isinstance(node, exp.Alter) and str(node.args.get("kind") or "").upper() == "TABLE":
            self._load_alter(node)
        elif isinstance(node, exp.Drop) and str(node.args.get("kind") or "").upper() in ("TABLE", "VIEW"):
            for t in node.find_all(exp.Table):
                self.relations.pop((t.db or self.search_path[0], t.name), None)
        elif node is None or isinstance(node, exp.Command):
            self._load_fallback(chunk)

    def _load_create(self, node: exp.Create, chunk: str) -> None:
        kind = str(node.args.get("kind") or "").upper()
        target = node.this
        if kind in ("FUNCTION", "PROCEDURE"):
            self.add(_function_from_create(node, self.search_path[0]))
            return
        if kind in ("INDEX", "TRIGGER"):
            self._load_attached(node, kind)
            return
        table = target.this if isinstance(target, exp.Schema) else target
        if not isinstance(table, exp.Table):
            return
        schema, name = table.db or self.search_path[0], table.name
        if kind == "TABLE" and isinstance(target, exp.Schema) and node.expression is None:
            cols, identifying, generated, nondeterministic = [], set(), [], []
            checks = [_check(c, target) for c in target.find_all(exp.CheckColumnConstraint)]
            for col in target.expressions:
                if isinstance(col, exp.ColumnDef):
                    cols.append((col.name, col.args["kind"].sql("postgres").lower() if col.args.get("kind") else None))
                    if (found := self._collation_of(col)) is not None:
                        nondeterministic.append((col.name, *found))
                    if (expression := _generated(col)) is not False:
                        generated.append((col.name, expression))
                    if any(isinstance(c.args.get("kind"), _IDENTIFYING) for c in col.constraints):
                        identifying.add(col.name)
                elif isinstance(col, (exp.PrimaryKey, exp.UniqueColumnConstraint, exp.ForeignKey)):
                    keys = [e.name for e in (col.expressions or col.find_all(exp.Identifier))]
                    if isinstance(col, exp.UniqueColumnConstraint) and isinstance(col.this, exp.Schema):
                        keys = [e.name for e in col.this.expressions]
                    if len(keys) == 1:
                        identifying.add(keys[0])
            parents = _parents(node, self.search_path[0])
            inherited = [c for p in parents if (up := self.relations.get(p)) for c in up.columns]
            own = {c for c, _ in cols}
            cols = [c for c in dict.fromkeys(inherited) if c[0] not in own] + cols  # INHERITS: parents' first
            nondeterministic = [n for p in parents if (up := self.relations.get(p)) for n in up.nondeterministic
                                if n[0] not in own] + nondeterministic
            self.add(Relation(schema, name, "table", tuple(cols), None, frozenset(identifying), parents,
                              tuple(generated), tuple(checks) + _unique_keys(target),
                              references=self._references(target),
                              nondeterministic=tuple(dict.fromkeys(nondeterministic))))
        elif kind == "TABLE" and node.expression is None and (parents := _parents(node, self.search_path[0])):
            # `CREATE TABLE c PARTITION OF p ...`: the partition has its parent's columns.
            parent = self.relations.get(parents[0])
            self.add(Relation(schema, name, "table", parent.columns if parent else (), None,
                              parent.identifying if parent else frozenset(), parents,
                              nondeterministic=parent.nondeterministic if parent else ()))
        elif kind == "TYPE" and isinstance(node.expression, exp.Schema):
            # CREATE TYPE t AS (field type COLLATE c, ...): a composite's equality compares its fields.
            for field_def in node.expression.expressions:
                if isinstance(field_def, exp.ColumnDef) and (found := self._collation_of(field_def)) is not None:
                    self.ddl_types[f"{schema}.{name}"] = f"{found[0].split(' (')[0]} (a field of {schema}.{name})"
                    break
        elif kind in ("VIEW", "TABLE") and node.expression is not None:
            materialized = any(isinstance(p, exp.MaterializedProperty) for p in node.find_all(exp.MaterializedProperty))
            rel_kind: RelationKind = "view" if kind == "VIEW" and not materialized else "matview"
            names = tuple((c.name, None) for c in target.expressions) if isinstance(target, exp.Schema) else ()
            self.add(Relation(schema, name, rel_kind, names, node.expression.sql("postgres")))

    def _load_alter(self, node: exp.Alter) -> None:
        # Migrations add, rename and drop columns: star expansion must see the table as it ends up.
        table = node.this
        key = (table.db or self.search_path[0], table.name)
        rel = self.relations.get(key)
        if rel is None:
            return
        cols, identifying, name = list(rel.columns), set(rel.identifying), rel.name
        generated = dict(rel.generated)
        nondeterministic = {n[0]: n for n in rel.nondeterministic}
        for action in node.args.get("actions") or []:
            if isinstance(action, exp.AlterColumn) and (action.args.get("dtype") or action.args.get("collate")):
                # ALTER COLUMN c TYPE t [COLLATE x]: its collation is now t's or x (unknown: not provably bytes)
                found = self._collation_of(exp.ColumnDef(this=action.this.copy(), kind=action.args.get("dtype"),
                                                         constraints=[exp.ColumnConstraint(
                                                             kind=exp.CollateColumnConstraint(
                                                                 this=action.args["collate"].copy()))]
                                                         if action.args.get("collate") else []))
                nondeterministic.pop(action.this.name, None)
                if found is not None or action.args.get("dtype") is None:
                    nondeterministic[action.this.name] = (action.this.name, *(found or ("unknown", False)))
            if isinstance(action, exp.ColumnDef):
                kind = action.args.get("kind")
                cols.append((action.name, kind.sql("postgres").lower() if kind else None))
                if (found := self._collation_of(action)) is not None:
                    nondeterministic[action.name] = (action.name, *found)
                if (expression := _generated(action)) is not False:
                    generated[action.name] = expression
            elif isinstance(action, exp.RenameColumn):
                old, new = action.this.name, action.args["to"].name
                cols = [(new if c == old else c, t) for c, t in cols]
                identifying = {new if c == old else c for c in identifying}
                if old in nondeterministic:
                    nondeterministic[new] = (new, *nondeterministic.pop(old)[1:])
            elif isinstance(action, exp.Drop) and str(action.args.get("kind") or "").upper() == "COLUMN":
                gone = {c.name for c in action.args.get("tables") or []}
                cols = [(c, t) for c, t in cols if c not in gone]
                identifying -= gone
                generated = {c: e for c, e in generated.items() if c not in gone}
                nondeterministic = {c: n for c, n in nondeterministic.items() if c not in gone}
            elif isinstance(action, exp.AlterRename):
                name = action.this.name
        checks = [] if not isinstance(node, exp.Alter) else [
            dataclasses.replace(_check(c, None), kind="unvalidated" if node.args.get("not_valid") else "check")
            for action in node.args.get("actions") or [] if isinstance(action, exp.AddConstraint)
            for c in action.find_all(exp.CheckColumnConstraint)]
        added = [a for a in node.args.get("actions") or [] if isinstance(a, exp.AddConstraint)]
        uniques = tuple(u for a in added for u in _unique_keys(a))
        references = tuple(r for a in added for r in self._references(a))
        identifying |= {next(iter(u.columns)) for u in uniques if u.columns and len(u.columns) == 1}
        del self.relations[key]
        self.add(Relation(rel.schema, name, rel.kind, tuple(cols), rel.definition, frozenset(identifying),
                          rel.parents, tuple(generated.items()), rel.on_write + tuple(checks) + uniques, rel.triggers,
                          rel.references + references, rel.base_types, tuple(nondeterministic.values())))

    def _collation_of(self, col: exp.ColumnDef) -> tuple[str, bool] | None:
        """Offline: (collation, collatable) when column `col`'s equality cannot be shown to be byte equality.

        From the schema files alone: its COLLATE clause, else its domain's (CREATE DOMAIN ... COLLATE), else a
        composite type's field's. A collation the files create with `deterministic = false`, or one they do not
        create at all outside pg_catalog (`C`, `POSIX`, `default`, `ucs_basic` and pg_catalog's own are all
        deterministic), is not provably byte equality: fail closed. No clause and an ordinary type: the
        database default, which is always deterministic. A type the files do not define is taken as not
        collated (an enum, an extension's type): the live catalog, which every governed read uses, knows.
        """
        base = col.args.get("kind")
        while isinstance(base, exp.DataType) and base.this == exp.DataType.Type.ARRAY and base.expressions:
            base = base.expressions[0]
        if isinstance(base, exp.DataType) and base.this == exp.DataType.Type.USERDEFINED and \
                self._qualified(base.args.get("kind")).endswith(".citext"):
            return "citext (case-insensitive equality)", False   # whatever its collation
        for constraint in col.constraints:
            kind = constraint.args.get("kind")
            if isinstance(kind, exp.CollateColumnConstraint):
                name = self._collation_name(kind.this)
                return None if self._deterministic(name) else (name, True)
        dtype = col.args.get("kind")
        while isinstance(dtype, exp.DataType) and dtype.this == exp.DataType.Type.ARRAY and dtype.expressions:
            dtype = dtype.expressions[0]
        if not isinstance(dtype, exp.DataType) or dtype.this != exp.DataType.Type.USERDEFINED:
            return None
        key = self._qualified(dtype.args.get("kind"))
        if key in self.ddl_domains:
            found = self.ddl_domains[key]
            return None if found is None or found[1] else (found[0], True)
        if key in self.ddl_types:
            return self.ddl_types[key], False
        return None

    def _collation_name(self, node: exp.Expression | None) -> str:
        """`schema.name` of a COLLATE clause's collation; a built-in's named without a schema is pg_catalog's."""
        if isinstance(node, exp.Column) and node.args.get("table") is not None:
            return f"{_ident(node.args['table'])}.{_ident(node.this)}"
        name = _ident(node.this) if isinstance(node, exp.Column) else _ident(node) if isinstance(node, exp.Identifier) \
            else None
        if name is None:
            return "unknown"
        return f"pg_catalog.{name}" if name in _BUILTIN_COLLATIONS else f"{self.search_path[0]}.{name}"

    def _deterministic(self, name: str) -> bool:
        if name in self.ddl_collations:
            return self.ddl_collations[name]
        return name.startswith("pg_catalog.")

    def _qualified(self, node: exp.Expression | None) -> str:
        if isinstance(node, exp.Dot):
            return f"{_ident(node.this)}.{_ident(node.expression)}"
        if isinstance(node, exp.Identifier):
            return f"{self.search_path[0]}.{_ident(node)}"
        return ""

    def _references(self, node: exp.Expression) -> tuple[tuple[str, str, str, str], ...]:
        """Foreign keys declared in `node` (a CREATE TABLE's column list, an ADD CONSTRAINT), one entry per column
        pair: (column, referenced schema, table, column), as the live catalog's `references`.

        `REFERENCES t` without a column names t's primary key: taken when t is known with one identifying column.
        """
        out = []
        pairs: list[tuple[list[str], exp.Reference]] = []
        for col in node.find_all(exp.ColumnDef):
            for c in col.constraints:
                if isinstance(c.args.get("kind"), exp.Reference):
                    pairs.append(([col.name], c.args["kind"]))
        for fk in node.find_all(exp.ForeignKey):
            if isinstance(fk.args.get("reference"), exp.Reference):
                pairs.append(([e.name for e in fk.expressions], fk.args["reference"]))
        for owns, ref in pairs:
            target = ref.this
            table = target.this if isinstance(target, exp.Schema) else target
            if not isinstance(table, exp.Table):
                continue
            schema = table.db or self.search_path[0]
            cols = [e.name for e in target.expressions] if isinstance(target, exp.Schema) else []
            if not cols and (parent := self.relations.get((schema, table.name))) and len(parent.identifying) == 1:
                cols = list(parent.identifying)
            if len(cols) == len(owns):
                out.extend((own, schema, table.name, col) for own, col in zip(owns, cols))
        return tuple(dict.fromkeys(out))

    def _load_attached(self, node: exp.Create, kind: str) -> None:
        """CREATE INDEX / CREATE TRIGGER: what a write to the table also runs (a trigger body is opaque)."""
        if kind == "TRIGGER":
            props = next(node.find_all(exp.TriggerProperties), None)
            table = props.args.get("table") if props is not None else None
            self._attach(table, triggers=(f"trigger {node.this.name}",))
            return
        index = node.this
        table = index.args.get("table") if isinstance(index, exp.Index) else None
        rel = self._attached_to(table)
        params = index.args.get("params") if isinstance(index, exp.Index) else None
        if rel is None or params is None:
            return
        keys = [e for e in params.args.get("columns") or []]
        where = params.args.get("where")
        plain = all(isinstance(k.this if isinstance(k, exp.Ordered) else k, exp.Column) for k in keys) and where is None
        if plain and not node.args.get("unique"):
            return  # a plain index stores the values it is given: nothing evaluated, nothing compared
        text = ", ".join(k.sql("postgres") for k in keys) + (f", {where.this.sql('postgres')}" if where else "")
        self._attach(table, on_write=(OnWrite("unique" if node.args.get("unique") else "index",
                                              f"index {index.name}", expression_columns(text, rel.column_names)),))

    def _attached_to(self, table: exp.Expression | None) -> Relation | None:
        if not isinstance(table, exp.Table):
            return None
        return self.relations.get((table.db or self.search_path[0], table.name))

    def _attach(self, table: exp.Expression | str | None, *, on_write: tuple[OnWrite, ...] = (),
                triggers: tuple[str, ...] = ()) -> None:
        if isinstance(table, str):
            table = exp.to_table(table)
        rel = self._attached_to(table)
        if rel is not None:
            self.add(dataclasses.replace(rel, on_write=rel.on_write + on_write, triggers=rel.triggers + triggers))

    def _load_fallback(self, chunk: str) -> None:
        # sqlglot does not know every option (e.g. WITH (security_barrier)): keep what lineage needs.
        text = _strip_comments(chunk)
        m = _RULE_RE.match(text)
        if m:
            schema, name = _split_name(m.group("table"), self.search_path[0])
            self._attach(exp.table_(name, db=schema), triggers=(f"rule {m.group('name')}",))
            return
        m = _COLLATION_RE.match(text)
        if m:
            schema, name = _split_name(m.group("name"), self.search_path[0])
            options = m.group("options") or ""
            det = re.search(r"\bdeterministic\s*=\s*'?(\w+)'?", options, re.IGNORECASE)
            if m.group("source"):   # CREATE COLLATION x FROM y: y's
                src = ".".join(_split_name(m.group("source"), self.search_path[0]))
                deterministic = self._deterministic(src if src.split(".")[1] not in _BUILTIN_COLLATIONS
                                                    else f"pg_catalog.{src.split('.')[1]}")
            else:
                deterministic = not (det and det.group(1).lower() in ("false", "off", "no", "0"))
            self.ddl_collations[f"{schema}.{name}"] = deterministic
            return
        m = _DOMAIN_RE.match(text)
        if m:
            schema, name = _split_name(m.group("name"), self.search_path[0])
            found = None
            if m.group("collation"):
                coll = _split_name(m.group("collation"), self.search_path[0])
                qualified = f"pg_catalog.{coll[1]}" if coll[1] in _BUILTIN_COLLATIONS and "." not in \
                    m.group("collation") else ".".join(coll)
                found = (qualified, self._deterministic(qualified))
            else:  # a domain over a domain: the base's collation
                base = ".".join(_split_name(m.group("base"), self.search_path[0]))
                found = self.ddl_domains.get(base)
            self.ddl_domains[f"{schema}.{name}"] = found
            return
        m = _VIEW_RE.match(text)
        if m:
            schema, name = _split_name(m.group("name"), self.search_path[0])
            names = tuple((c.strip().strip('"'), None) for c in (m.group("cols") or "").split(",") if c.strip())
            kind: RelationKind = "matview" if m.group("mat") else "view"
            self.add(Relation(schema, name, kind, names, m.group("body").strip()))
            return
        m = _FUNC_RE.match(text)
        if m:
            schema, name = _split_name(m.group("name"), self.search_path[0])
            self.add(Function(schema, name, None, None))  # known to exist, body unknown: refused when called


def _nondeterministic(rows) -> tuple[tuple[str, str, bool], ...]:
    """The live catalog's rows (column, collation, 't'/'f') as `Relation.nondeterministic`; a column listed once
    (its own collation wins: collatable)."""
    out: dict[str, tuple[str, str, bool]] = {}
    for column, collation, collatable in rows or []:
        if column not in out or collatable == "t":
            out[column] = (column, collation, collatable == "t")
    return tuple(out.values())


def expression_columns(sql: str | None, columns: Iterable[str]) -> frozenset[str] | None:
    """The columns of `columns` a stored expression (generated column, CHECK, index) names; None if unreadable.

    Unreadable (no text, no parse, a name that is not one of `columns`, a subquery) is None: the caller
    fails closed.
    """
    if not sql:
        return None
    _silence_sqlglot()
    try:
        node = normalize_identifiers(sqlglot.parse_one(f"SELECT {sql}", dialect="postgres"), dialect="postgres")
    except sqlglot.errors.SqlglotError:
        return None
    known = set(columns)
    named = set()
    for col in node.find_all(exp.Column):
        if col.name not in known:
            return None
        named.add(col.name)
    if any(True for _ in node.find_all(exp.Subquery, exp.Exists)):
        return None
    return frozenset(named)


def _check(node: exp.CheckColumnConstraint, table: exp.Schema | None) -> OnWrite:
    """A CHECK constraint of CREATE / ALTER TABLE and the columns it reads (of the table being defined)."""
    names = None if table is None else [c.name for c in table.expressions if isinstance(c, exp.ColumnDef)]
    named = {c.name for c in node.find_all(exp.Column)}
    if names is not None and not named <= set(names):
        return OnWrite("check", "check", None)
    return OnWrite("check", "check", frozenset(named))


def _generated(col: exp.ColumnDef) -> str | None | bool:
    """A ColumnDef's GENERATED ALWAYS AS (expr) STORED expression; False when it is not generated."""
    for constraint in col.constraints:
        kind = constraint.args.get("kind")
        if isinstance(kind, exp.ComputedColumnConstraint):
            return kind.this.sql("postgres") if kind.this is not None else None
    return False


def _parents(node: exp.Create, default_schema: str) -> tuple[tuple[str, str], ...]:
    """INHERITS (p, ...) / PARTITION OF p: the parents, (schema, name)."""
    out = []
    for prop in node.find_all(exp.InheritsProperty, exp.PartitionedOfProperty):
        tables = prop.expressions if isinstance(prop, exp.InheritsProperty) else [prop.this]
        out += [(t.db or default_schema, t.name) for t in tables if isinstance(t, exp.Table)]
    return tuple(out)


_IDENTIFYING = (exp.PrimaryKeyColumnConstraint, exp.UniqueColumnConstraint, exp.Reference)


def _unique_keys(node: exp.Expression) -> tuple[OnWrite, ...]:
    """PRIMARY KEY / UNIQUE keys declared in `node` (a CREATE TABLE's column list, an ADD CONSTRAINT), as the
    live catalog's unique indexes: each compares a written row with every other row."""
    out = []
    for col in node.find_all(exp.ColumnDef):
        if any(isinstance(c.args.get("kind"), (exp.PrimaryKeyColumnConstraint, exp.UniqueColumnConstraint))
               for c in col.constraints):
            out.append(OnWrite("unique", f"key ({col.name})", frozenset({col.name})))
    for key in [*node.find_all(exp.PrimaryKey), *node.find_all(exp.UniqueColumnConstraint)]:
        if isinstance(key, exp.UniqueColumnConstraint) and not isinstance(key.this, exp.Schema):
            continue   # a column's own UNIQUE: above
        names = [e.name for e in (key.this.expressions if isinstance(key, exp.UniqueColumnConstraint)
                                  else key.expressions)]
        if names:
            out.append(OnWrite("unique", f"key ({', '.join(names)})", frozenset(names)))
    return tuple(dict.fromkeys(out))


def split_statements(text: str) -> list[str]:
    """Split SQL text on top-level semicolons, using sqlglot's tokenizer (quotes and $$ bodies respected)."""
    try:
        tokens = Postgres().tokenize(text)
    except Exception:  # noqa: BLE001 - unsplittable text is handed to the parser whole
        return [text]
    chunks, start = [], 0
    for tok in tokens:
        if tok.token_type == TokenType.SEMICOLON:
            chunks.append(text[start:tok.start])
            start = tok.end + 1
    chunks.append(text[start:])
    return [c for c in chunks if _strip_comments(c).strip()]


_VIEW_RE = re.compile(
    r"\s*CREATE\s+(?:OR\s+REPLACE\s+)?(?:TEMP(?:ORARY)?\s+)?(?:RECURSIVE\s+)?(?P<mat>MATERIALIZED\s+)?VIEW\s+"
    r"(?:IF\s+NOT\s+EXISTS\s+)?(?P<name>[\w.\"]+)\s*(?:\((?P<cols>[^)]*)\))?\s*(?:WITH\s*\([^)]*\)\s*)?AS\s+(?P<body>.*)",
    re.IGNORECASE | re.DOTALL,
)
_COLLATION_RE = re.compile(r"\s*CREATE\s+COLLATION\s+(?:IF\s+NOT\s+EXISTS\s+)?(?P<name>[\w.\"]+)\s*"
                           r"(?:\((?P<options>.*)\)|FROM\s+(?P<source>[\w.\"]+))", re.IGNORECASE | re.DOTALL)
_DOMAIN_RE = re.compile(r"\s*CREATE\s+DOMAIN\s+(?P<name>[\w.\"]+)\s+(?:AS\s+)?(?P<base>[\w.\"]+)"
                        r"(?:[^;]*?\bCOLLATE\s+(?P<collation>[\w.\"]+))?", re.IGNORECASE | re.DOTALL)
# Collations every cluster has, all deterministic (pg_collation), named without a schema.
_BUILTIN_COLLATIONS = frozenset({"C", "POSIX", "default", "ucs_basic", "c", "posix"})
_RULE_RE = re.compile(r"\s*CREATE\s+(?:OR\s+REPLACE\s+)?RULE\s+(?P<name>[\w\"]+)\s+AS\s+ON\s+\w+\s+TO\s+"
                      r"(?P<table>[\w.\"]+)", re.IGNORECASE)
_FUNC_RE = re.compile(r"\s*CREATE\s+(?:OR\s+REPLACE\s+)?(?:FUNCTION|PROCEDURE)\s+(?P<name>[\w.\"]+)", re.IGNORECASE)


def _strip_comments(text: str) -> str:
    return re.sub(r"--[^\n]*", "", text)


def _split_name(name: str, default_schema: str) -> tuple[str, str]:
    parts = [p.strip('"') if p.startswith('"') else p.lower() for p in name.split(".")]
    return (parts[-2], parts[-1]) if len(parts) >= 2 else (default_schema, parts[-1])


def _ident(node: exp.Expression) -> str:
    from .lineage import ident

    return ident(node)


def _strip_semicolon(sql: str | None) -> str | None:
    return sql.strip().rstrip(";").strip() if sql else sql


def _function_from_create(node: exp.Create, default_schema: str) -> Function:
    udf = node.this
    table = udf.this if isinstance(udf, exp.UserDefinedFunction) else udf
    schema = getattr(table, "db", None) or default_schema
    name = table.name if isinstance(table, exp.Table) else str(table)
    args = tuple(a.name for a in (udf.expressions if isinstance(udf, exp.UserDefinedFunction) else []))
    language = body = volatility = None
    returns_set, outs = False, ()
    for prop in node.find_all(exp.LanguageProperty):
        language = prop.name.lower()
    for prop in node.find_all(exp.StabilityProperty):
        volatility = {"IMMUTABLE": "i", "STABLE": "s", "VOLATILE": "v"}.get(prop.name.upper())
    for prop in node.find_all(exp.ReturnsProperty):
        ret = prop.this
        if isinstance(ret, exp.Schema):
            returns_set, outs = True, tuple(c.name for c in ret.expressions if isinstance(c, exp.ColumnDef))
        returns_set = returns_set or bool(prop.args.get("is_table")) or "SETOF" in prop.sql("postgres").upper()
    expression = node.expression
    if isinstance(expression, exp.Heredoc):
        body = expression.this if isinstance(expression.this, str) else expression.name
    elif isinstance(expression, exp.Literal):
        body = expression.this
    elif expression is not None:
        body = expression.sql("postgres")
    kind = "procedure" if str(node.args.get("kind")).upper() == "PROCEDURE" else "function"
    return Function(schema, name, language, body, kind, returns_set, args, outs, volatility)


_RELATIONS_SQL = """
WITH RECURSIVE nd_types(oid, coll) AS (
  -- Types whose equality is not byte equality through a component: a composite with a field, a range over a
  -- subtype, under a nondeterministic collation; then domains, arrays and composites over those.
  SELECT t.oid, format('%I.%I', cn.nspname, co.collname) || ' (a field of ' || format_type(t.oid, NULL) || ')'
    FROM pg_type t JOIN pg_attribute a ON a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped
    JOIN pg_collation co ON co.oid = a.attcollation JOIN pg_namespace cn ON cn.oid = co.collnamespace
   WHERE t.typtype = 'c' AND NOT co.collisdeterministic
  UNION ALL
  -- citext (the extension's type) compares case-insensitively whatever its collation: not collatable to bytes.
  SELECT t.oid, format_type(t.oid, NULL) || ' (case-insensitive equality)' FROM pg_type t
   WHERE t.typname = 'citext' AND t.typtype = 'b'
  UNION ALL
  SELECT t.oid, format('%I.%I', cn.nspname, co.collname) || ' (the subtype of ' || format_type(t.oid, NULL) || ')'
    FROM pg_range r JOIN pg_type t ON t.oid IN (r.rngtypid, r.rngmultitypid)
    JOIN pg_collation co ON co.oid = r.rngcollation JOIN pg_namespace cn ON cn.oid = co.collnamespace
   WHERE NOT co.collisdeterministic
  UNION
  SELECT t.oid, nd.coll FROM nd_types nd JOIN pg_type t
      ON (t.typtype = 'd' AND t.typbasetype = nd.oid)
      OR (t.typelem = nd.oid AND t.typsubscript = 'array_subscript_handler'::regproc)
      OR (t.typtype = 'c' AND EXISTS (SELECT 1 FROM pg_attribute f WHERE f.attrelid = t.typrelid
                                        AND f.atttypid = nd.oid AND f.attnum > 0 AND NOT f.attisdropped))
)
SELECT n.nspname, c.relname, c.relkind,
       (SELECT array_agg(ARRAY[a.attname::text, format_type(a.atttypid, a.atttypmod)] ORDER BY a.attnum)
          FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
       CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid) END,
       ARRAY(SELECT a.attname::text FROM pg_index i
               JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
              WHERE i.indrelid = c.oid AND i.indisunique AND i.indnkeyatts = 1 AND i.indpred IS NULL
             UNION
             SELECT a.attname::text FROM pg_constraint k
               JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = k.conkey[1]
              WHERE k.conrelid = c.oid AND k.contype = 'f' AND cardinality(k.conkey) = 1),
       ARRAY(SELECT ARRAY[pn.nspname::text, pc.relname::text] FROM pg_inherits h
               JOIN pg_class pc ON pc.oid = h.inhparent JOIN pg_namespace pn ON pn.oid = pc.relnamespace
              WHERE h.inhrelid = c.oid),
       ARRAY(SELECT ARRAY[a.attname::text, pg_get_expr(d.adbin, d.adrelid)] FROM pg_attribute a
               JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
              WHERE a.attrelid = c.oid AND a.attgenerated <> '' AND NOT a.attisdropped),
       ARRAY(SELECT ARRAY[CASE WHEN k.convalidated THEN 'check' ELSE 'unvalidated' END, 'constraint ' || k.conname,
                          (SELECT string_agg(a.attname::text, ',') FROM pg_attribute a
                            WHERE a.attrelid = k.conrelid AND a.attnum = ANY (k.conkey))]
               FROM pg_constraint k WHERE k.conrelid = c.oid AND k.contype = 'c'
             UNION ALL
             SELECT ARRAY[CASE WHEN i.indisunique OR i.indisexclusion THEN 'unique' ELSE 'index' END,
                          'index ' || ic.relname,
                          (SELECT string_agg(DISTINCT a.attname::text, ',') FROM pg_attribute a
                            WHERE a.attrelid = i.indrelid AND a.attnum > 0
                              AND (a.attnum = ANY (i.indkey::int2[]) OR EXISTS (
                                   SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                                      AND d.objid = i.indexrelid AND d.refobjid = i.indrelid
                                      AND d.refobjsubid = a.attnum)))]
               FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
              WHERE i.indrelid = c.oid
                AND (i.indisunique OR i.indisexclusion OR i.indexprs IS NOT NULL OR i.indpred IS NOT NULL)),
       ARRAY(SELECT 'trigger ' || t.tgname FROM pg_trigger t WHERE t.tgrelid = c.oid AND NOT t.tgisinternal
             UNION ALL
             SELECT 'rule ' || w.rulename FROM pg_rewrite w WHERE w.ev_class = c.oid AND w.rulename <> '_RETURN'),
       ARRAY(SELECT ARRAY[a.attname::text, rn.nspname::text, rc.relname::text, ra.attname::text]
               FROM pg_constraint k CROSS JOIN LATERAL unnest(k.conkey, k.confkey) AS pair(own, ref)
               JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = pair.own
               JOIN pg_class rc ON rc.oid = k.confrelid JOIN pg_namespace rn ON rn.oid = rc.relnamespace
               JOIN pg_attribute ra ON ra.attrelid = k.confrelid AND ra.attnum = pair.ref
              WHERE k.conrelid = c.oid AND k.contype = 'f'),
       (SELECT array_agg(ARRAY[a.attname::text, format_type(a.atttypid, NULL)] ORDER BY a.attnum)
          FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
       ARRAY(SELECT ARRAY[a.attname::text, format('%I.%I', cn.nspname, co.collname), 't'] FROM pg_attribute a
               JOIN pg_collation co ON co.oid = a.attcollation JOIN pg_namespace cn ON cn.oid = co.collnamespace
              WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND NOT co.collisdeterministic
             UNION ALL
             SELECT ARRAY[a.attname::text, min(nd.coll), 'f'] FROM pg_attribute a JOIN nd_types nd ON nd.oid = a.atttypid
              WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped GROUP BY a.attname)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
   AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
"""

# Reads run with search_path = pg_catalog, <schema>, pg_temp, so for an exact argument-type match the
# server takes pg_catalog's operator over any of the same name and types elsewhere (PostgreSQL's operator
# resolution, step 2: an exact match is used as is). Only those are listed; the one the server would take
# for other types is not worked out here, so a qual needing a cast or another schema's operator is not
# pushed. Only a superuser can mark a function LEAKPROOF or put an operator in pg_catalog.
_LEAKPROOF_OPERATORS_SQL = """
SELECT o.oprname::text, format_type(o.oprleft, NULL), format_type(o.oprright, NULL)
  FROM pg_operator o JOIN pg_proc p ON p.oid = o.oprcode
 WHERE o.oprnamespace = 'pg_catalog'::regnamespace AND o.oprkind = 'b' AND p.proleakproof
   AND o.oprname IN ('=', '<>', '<', '<=', '>', '>=')
"""

_FUNCTIONS_SQL = """
SELECT n.nspname, p.proname, l.lanname, p.prosrc, p.prokind, p.proretset,
       p.proargnames::text[], p.proargmodes::text[], p.provolatile
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace JOIN pg_language l ON l.oid = p.prolang
 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
"""
