"""Step 2: what a SQL statement reads, writes and returns, learned from the SQL and the catalog only.

Example:
    >>> from lineage_guard.sql.catalog import Catalog
    >>> cat = Catalog.from_ddl_text("CREATE TABLE customers (id int PRIMARY KEY, email text)")
    >>> a = analyze("SELECT id, lower(email) AS e FROM customers", cat)
    >>> [(c.name, [str(s) for s in c.sources], c.direct) for c in a.columns]
    [('id', ['public.customers.id'], True), ('e', ['public.customers.email'], False)]
    >>> analyze("SELECT 1; DROP TABLE customers", cat).violations[0]
    'more than one statement (2); lineage_guard runs exactly one statement per request: split them'
"""

from __future__ import annotations

from sqlglot import exp

from .catalog import Catalog
from .model import Analysis, ColumnRef, ColumnUse, OutputColumn, TableRef, ValueUse

__all__ = ["Analysis", "Catalog", "ColumnRef", "ColumnUse", "OutputColumn", "TableRef", "ValueUse", "analyze"]

_QUERY = (exp.Select, exp.SetOperation, exp.Values, exp.Subquery)


def analyze(sql: str, catalog: Catalog) -> Analysis:
    """Parse one PostgreSQL statement and resolve it against `catalog`. Never raises on hostile input."""
    try:
        return _analyze(sql, catalog)
    except RecursionError:
        return _refused(sql, "could not analyze: the statement nests too deeply; simplify it")
    except Exception as err:  # noqa: BLE001 - fail closed: an analysis bug must never let a statement through
        return _refused(sql, f"could not analyze: {type(err).__name__}")


def _refused(sql: str, reason: str, kind="other") -> Analysis:
    return Analysis(str(sql), kind, False, violations=(reason,))


def _analyze(sql: str, catalog: Catalog) -> Analysis:
    import sqlglot

    from .allowlist import FUNCTION_CASTS, _silence_sqlglot, function_name, is_allowed_node, refusal_reason
    from .cohort import cohort_blocker
    from .guards import checked_tokens, dropped_names, parse_tokens
    from .lineage import Resolver, ident
    from .nodes import scan
    from .statements import describe

    _silence_sqlglot()
    if not isinstance(sql, str) or not sql.strip():
        return _refused(str(sql or ""), "empty statement; give one SQL statement")
    original = sql
    # Tokenized once: the token checks, the parser and the dropped-names check all read these tokens.
    sql, early, tokens = checked_tokens(sql)
    if early:
        return _refused(original, early)
    try:
        parsed = [p for p in parse_tokens(tokens, sql) if p is not None and not isinstance(p, exp.Semicolon)]
    except sqlglot.errors.ParseError as err:
        where = ""
        if err.errors:
            first = err.errors[0]
            where = f" near line {first.get('line')}, column {first.get('col')}"
        return _refused(sql, f"could not parse the SQL{where} as PostgreSQL; fix the syntax (psql meta-commands "
                             "such as \\copy are not SQL)")
    except sqlglot.errors.SqlglotError:
        return _refused(sql, "could not parse the SQL as PostgreSQL (tokenizer error); fix quoting and syntax")
    if not parsed:
        return _refused(sql, "empty statement; give one SQL statement")
    if len(parsed) > 1:
        return _refused(original,
                        f"more than one statement ({len(parsed)}); lineage_guard runs exactly one statement per "
                        "request: split them")
    node = parsed[0]
    found = scan(node.walk())  # the tree walked once: every per-node check below reads this
    statement = _normalized(node, sql)
    lost = dropped_names(tokens, found.names, catalog.column_names())
    if lost:
        return _refused(original, f"the SQL parser dropped part of the statement (around {', '.join(lost)}); "
                                  "lineage cannot be checked: rewrite the expression (wrong number of arguments?)")
    default_schema = catalog.search_path[0] if catalog.search_path else "public"
    resolver = Resolver(catalog)

    if isinstance(node, _QUERY):
        if found.unknown:
            resolver.refuse(found.unknown)
        writes = found.writes
        for w in writes:
            resolver.refuse(f"a data-modifying {type(w).__name__.upper()} inside the query (writable CTE) "
                            "runs even if never referenced; a read may not write: remove it")
        resolver.top = node
        cols = resolver.query(node, None)
        # Every function anywhere in the statement passes the allow-list, even in a clause the resolver
        # does not follow (a clause PostgreSQL evaluates is a clause a side effect can hide in).
        for fn in found.functions:  # found before resolving: the resolver qualifies columns, adds no function
            name = function_name(fn)
            if not (is_allowed_node(fn) or name in FUNCTION_CASTS or catalog.user_functions(name)):
                resolver.refuse(refusal_reason(name))
        is_read = not writes and not found.locking
        uses = tuple(resolver.uses)
        if not _ordered(node):
            # Rows come back in the order a window sorted them (`rank() OVER (ORDER BY ssn)` returns ids
            # in ssn order): without an ORDER BY of its own, the query is ordered by the window's ORDER BY.
            uses += tuple(ColumnUse(src, "order", False) for lin in resolver.window_sorts for src in sorted(lin.sources))
        return Analysis(
            statement=statement, kind="select", is_read=is_read,
            tables_read=tuple(sorted(resolver.tables_read)),
            columns=tuple(
                OutputColumn(i, c.name, tuple(sorted(c.lin.reaches)), c.lin.direct, c.lin.opaque, c.lin.type,
                             stored=c.lin.stored and not c.lin.influence)
                for i, c in enumerate(cols)
            ),
            uses=uses, violations=tuple(resolver.violations),
            error_channel=tuple(sorted(resolver.error_channel)),
            value_uses=tuple(dict.fromkeys(resolver.value_uses)),
            tree=node,
            # Only a statement with a declarable predicate needs the shape check.
            **({"cohort_blocker": cohort_blocker(node, _identifying(node, catalog))}
               if any(u.form for u in resolver.value_uses) else {}),
        )

    kind, written, has_where, flags = describe(node, default_schema)
    if isinstance(node, exp.Command) or kind in ("other", "session", "transaction", "call", "explain"):
        word = str(node.this).upper() if isinstance(node, exp.Command) else type(node).__name__.upper()
        resolver.refuse(_command_reason(word, kind))
    if "copy_program" in flags:
        resolver.refuse("COPY ... PROGRAM runs a shell command on the database server; use a governed read instead")
    if flags & {"copy_to_file", "copy_from_file"}:
        resolver.refuse("COPY to or from a server file bypasses masking; use a governed read and a sink instead")
    if "copy_to" in flags:
        resolver.refuse("COPY ... TO exports raw rows past masking; send the SELECT itself through lineage_guard")
    if "returning" in flags:
        resolver.refuse("RETURNING sends rows back from a write without masking; remove RETURNING and read "
                        "the rows with a governed SELECT")
    # Reads inside a write (INSERT ... SELECT, COPY (SELECT ...), CREATE ... AS SELECT) still count.
    for sub in _inner_queries(node):
        resolver.query(sub, None)
    if kind in ("insert", "update", "delete", "merge", "copy"):
        # SET / WHERE / VALUES may call functions too: a write must not smuggle a side effect either.
        for fn in found.functions:
            name = function_name(fn)
            if not (is_allowed_node(fn) or name in FUNCTION_CASTS or catalog.user_functions(name)):
                resolver.refuse(refusal_reason(name))
    for t in node.find_all(exp.Table):
        if not isinstance(t.this, exp.Identifier):
            continue
        rel = catalog.relation(ident(t.this), ident(t.args["db"]) if t.args.get("db") else None)
        if rel is not None and TableRef(rel.schema, rel.name) not in written:
            resolver.tables_read.add(TableRef(rel.schema, rel.name))
    return Analysis(
        statement=statement, kind=kind, is_read=False,
        tables_read=tuple(sorted(resolver.tables_read)), tables_written=tuple(written),
        violations=tuple(resolver.violations), has_where=has_where, flags=frozenset(flags),
        error_channel=tuple(sorted(resolver.error_channel)),
        value_uses=tuple(dict.fromkeys(resolver.value_uses)),
        tree=node,
    )


def _inner_queries(node: exp.Expression) -> list[exp.Expression]:
    out = []
    for key in ("expression", "this"):
        sub = node.args.get(key)
        if isinstance(sub, _QUERY):
            out.append(sub)
    return out


def _command_reason(word: str, kind: str) -> str:
    if word == "EXPLAIN":
        return ("EXPLAIN is refused: plans expose row estimates from column statistics (and EXPLAIN ANALYZE "
                "runs the query), an oracle on sensitive values; run the query itself through lineage_guard")
    if kind == "session" or word in ("SET", "RESET"):
        return (f"{word} changes session state (role, search_path, read-only, timeouts) that lineage_guard "
                "pins for every read; remove it")
    if kind == "transaction":
        return f"{word}: transaction control is lineage_guard's job; send the statement alone"
    if kind == "call":
        return (f"{word} runs code or a prepared statement whose lineage cannot be checked; "
                "send the statement itself")
    return (f"{word} ... is a statement lineage_guard cannot analyze (sqlglot keeps it opaque); "
            "send one plain SELECT, or a write the guardrails can check")


def _normalized(node: exp.Expression, sql: str) -> str:
    try:
        return node.sql(dialect="postgres")
    except Exception:  # noqa: BLE001 - the text is only for display; the original will do
        return sql


def _ordered(node: exp.Expression) -> bool:
    while isinstance(node, exp.Subquery) and not node.args.get("order"):
        node = node.this
    return bool(node.args.get("order"))


def _identifying(node: exp.Expression, catalog: Catalog) -> frozenset[str]:
    from_ = node.args.get("from_") or node.args.get("from") if isinstance(node, exp.Select) else None
    table = from_.this if from_ is not None else None
    if not isinstance(table, exp.Table) or not isinstance(table.this, exp.Identifier):
        return frozenset()
    from .lineage import ident

    rel = catalog.relation(ident(table.this), ident(table.args["db"]) if table.args.get("db") else None)
    return rel.identifying if rel is not None else frozenset()
