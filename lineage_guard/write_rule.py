"""The opaque-values rule for writes: a write may do with a hidden value only what a read may, and store it nowhere new.

A writer whose reads of a column are masked could otherwise recover its values by making the
database move them (`UPDATE customers SET plan = ssn`, then read `plan` in the clear), by testing
them where the affected-row count or an error answers (`DELETE ... WHERE ssn LIKE '9%'`), or by
writing chosen plaintexts into the column and matching the tokens its reads return
(`INSERT INTO customers (zip) VALUES ('99901')`). So every write is judged through its read twin
(`sql/write_flow.py`), by the same rule as a read, and then each stored value by where it goes:

- a value derived from a column hidden from this writer is never stored: not even unchanged into
  a column of its classification, since a copy multiplies a person's record (nine copies and the
  person's group passes a group-size floor or a k-anonymity measure);
- a column hidden from this writer may receive only NULL / DEFAULT: any other value is one the
  writer chose or can see, and its token (or a unique index's verdict) would name stored values;
- a statement that defines code (function, trigger, rule, ...) or whose reads cannot be modelled is
  refused while anything is hidden from the writer.

A writer that sees every column in the clear is not affected.

Example:
    >>> from lineage_guard.sql.model import ColumnRef
    >>> stored_where_hidden(ColumnRef("public", "customers", "ssn"), "national_id")
    'public.customers.ssn (national_id) is masked for you: a write may store only NULL or DEFAULT there (any other value is one you chose, and its token would match the stored ones); have an identity that reads it in the clear write it'
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from .sql import analyze
from .sql.catalog import Catalog, OnWrite
from .sql.inference import UseVerdict
from .sql.model import Analysis, ColumnRef, TableRef
from .sql.write_flow import read_twin


@dataclass
class WriteVerdict:
    """Deny and approval reasons for one write (both empty: the rule has nothing against it)."""

    denials: list[str] = field(default_factory=list)
    approvals: list[str] = field(default_factory=list)


def stored_where_hidden(target: ColumnRef, label: str) -> str:
    """The reason a write may not store a chosen value into a column masked for the writer."""
    return (f"{target} ({label}) is masked for you: a write may store only NULL or DEFAULT there (any other value "
            "is one you chose, and its token would match the stored ones); have an identity that reads it in the "
            "clear write it")


def judge_write(analysis: Analysis, catalog: Catalog, hidden: Mapping[ColumnRef, str],
                approval: frozenset[ColumnRef], judge: Callable[[Analysis], UseVerdict]) -> WriteVerdict:
    """Judge write `analysis` for a writer from whom `hidden` (column -> classification) is masked.

    `judge` is the read rule for this writer (planner._judge_uses bound to it).
    """
    verdict = WriteVerdict()
    if not hidden or analysis.tree is None:
        return verdict
    flow = read_twin(analysis.tree, catalog)
    if flow.refusal:
        verdict.denials.append(f"{flow.refusal} (some sensitive columns are masked for you, and this write's reads "
                               "could not be judged)")
        return verdict
    for sql, targets, nulls in flow.twins:
        twin = analyze(sql, catalog)
        if twin.violations:
            verdict.denials += [f"this write's reads: {v}" for v in twin.violations]
            continue
        uses = judge(twin)
        verdict.denials += [f"in this write, {d}" for d in uses.denials]
        verdict.approvals += uses.approvals
        if uses.declared or uses.group_floor:  # a declared cohort is honoured only in an aggregate read
            verdict.denials.append("a declared sensitive predicate is honoured only in a top-level aggregate read, "
                                   "never in a write (its affected-row count has no group-size floor)")
        for col in twin.columns:
            target = targets[col.position] if col.position < len(targets) else None
            always_null = nulls[col.position] if col.position < len(nulls) else False
            lands = _lands_in(target, catalog)
            if lands is None:
                verdict.denials.append(f"this write stores into {target}, a view column whose base column could not "
                                       "be resolved; write to the table itself")
                continue
            _judge_stored(col, target, lands, always_null, hidden, approval, verdict)
    verdict.denials += attached_code(analysis, flow.twins, catalog, hidden)
    verdict.denials = list(dict.fromkeys(verdict.denials))
    verdict.approvals = list(dict.fromkeys(verdict.approvals))
    return verdict


def attached_code(analysis: Analysis, twins, catalog: Catalog, hidden: Mapping[ColumnRef, str]) -> list[str]:
    """Deny reasons for what the server runs on a written row besides the statement, over values hidden from the writer.

    The twin judges the statement; the table has code of its own. A trigger or rule runs a body nobody
    judged (an audit trigger copying `row_to_json(OLD)` into a log table is a copy of every masked
    column), so a table with one is not written while anything is hidden. A CHECK constraint, an index
    expression or predicate, or a generated column that reads a hidden column and a column the write
    sets is an oracle on the hidden one (`CHECK (created_at > birth_date)`: `UPDATE ... SET created_at
    = d WHERE id = k` fails exactly when k was born on or after d, a binary search), so is a unique or
    exclusion index (its conflict compares with other rows, for INSERT too), and a NOT VALID check whatever
    is set (old rows may fail it). A row-local check on INSERT sees only the new row, whose hidden
    columns hold NULL or DEFAULT: nothing hidden, so it is not refused.
    """
    out: list[str] = []
    updates = _updates(analysis.tree)
    for table in analysis.tables_written:
        rel = catalog.relation(table.table, table.schema)
        if rel is None:
            continue
        secret = {c.column for c in hidden if c.schema == rel.schema and c.table == rel.name}
        for name in rel.triggers:
            out.append(f"{rel.schema}.{rel.name} has {name}, which runs code lineage_guard cannot judge on every row "
                       "written; with sensitive columns masked for you it could copy or test them: have an identity "
                       "that reads them in the clear write this table")
        if not secret:
            continue
        sets = {t.column for _, targets, _ in twins for t in targets
                if t is not None and (t.schema, t.table) == (rel.schema, rel.name)}
        attached = list(rel.on_write) + [OnWrite("check", f"generated column {g}", rel.generated_from(g))
                                         for g, _ in rel.generated]
        for code in attached:
            if code.kind in ("check", "index", "unvalidated") and not updates:
                continue  # row-local on INSERT: the new row's hidden columns are NULL or DEFAULT
            reads = code.columns
            if reads is not None and not reads & secret:
                continue
            if reads is not None and code.kind != "unvalidated" and not reads & sets:
                continue
            hid = ", ".join(sorted(reads & secret)) if reads is not None else "columns it cannot name"
            out.append(f"{rel.schema}.{rel.name}'s {code.name} reads {hid} (masked for you) and is evaluated on the "
                       "rows this write changes: whether it fails (or conflicts) answers a question about the masked "
                       "value; write only columns it does not read, or have an identity that reads them in the "
                       "clear write it")
    return out


def key_probes(analysis: Analysis, catalog: Catalog, filtered: frozenset[TableRef]) -> list[str]:
    """Deny reasons for a write whose key checks read rows this writer's row filter hides.

    A unique index and a foreign key are checked against every row of the table, not the filtered
    ones: `INSERT INTO customers (id, ...) VALUES (k, ...)` fails (or, under ON CONFLICT DO NOTHING,
    inserts nothing) exactly when a customer k exists outside the filter; `INSERT INTO orders
    (customer_id, ...) VALUES (k, ...)` fails exactly when none does. So into a unique column of a
    filtered table, and into a column referencing a filtered table, a write may store only NULL / DEFAULT
    or that very column as the write read it (a filtered read: it names only visible keys).

    >>> import dataclasses
    >>> from lineage_guard.sql import analyze
    >>> cat = Catalog.from_ddl_text("CREATE TABLE t (id int PRIMARY KEY, plan text)")
    >>> cat.add(dataclasses.replace(cat.relation("t"), on_write=(OnWrite("unique", "index t_pkey", frozenset({"id"})),)))
    >>> key_probes(analyze("INSERT INTO t (id, plan) VALUES (7, 'x')", cat), cat, frozenset({TableRef("public", "t")}))[0][:40]
    'public.t.id is compared by index t_pkey '
    """
    if not filtered or analysis.tree is None:
        return []
    flow = read_twin(analysis.tree, catalog)
    if flow.refusal:
        return [f"{flow.refusal} (a row filter holds for you, and this write's key checks could not be judged)"]
    out: list[str] = []
    for sql, targets, nulls in flow.twins:
        twin = analyze(sql, catalog)
        for col in twin.columns:
            target = targets[col.position] if col.position < len(targets) else None
            if target is None or (col.position < len(nulls) and nulls[col.position]):
                continue
            rel = catalog.relation(target.table, target.schema)
            if rel is None:
                continue
            checks = []
            if TableRef(rel.schema, rel.name) in filtered:
                checks += [(code.name, target) for code in rel.on_write
                           if code.kind == "unique" and (code.columns is None or target.column in code.columns)]
            checks += [(f"foreign key to {schema}.{table}", ColumnRef(schema, table, column))
                       for own, schema, table, column in rel.references
                       if own == target.column and TableRef(schema, table) in filtered]
            for name, allowed in checks:
                if col.stored and set(col.sources) == {allowed} and not col.opaque:
                    continue  # the key as a filtered read gave it: it can only name visible rows
                out.append(f"{target} is compared by {name} against rows your row filter hides: a conflict or a "
                           "missing key would say whether such a row exists; store NULL or DEFAULT there, or a key "
                           "read from the filtered table itself")
    return list(dict.fromkeys(out))


def parent_key_checks(analysis: Analysis, catalog: Catalog, filtered: frozenset[TableRef],
                      hidden: Mapping[ColumnRef, str]) -> list[str]:
    """Deny reasons for a DELETE, or a change of a referenced key, under which a foreign key acts on hidden rows.

    Deleting customer k, or changing its id, runs every foreign key that references customers.id over
    all the referencing rows, not the ones the writer sees: NO ACTION / RESTRICT fails exactly when a
    row the writer's row filter hides (or whose referencing value is masked for it) names k, and
    CASCADE / SET NULL / SET DEFAULT change such rows. So while a referencing table is row-filtered,
    or its referencing column masked, for this writer, the referenced table's rows are not deleted and
    its referenced columns not changed.

    >>> cat = Catalog.from_ddl_text("CREATE TABLE c (id int PRIMARY KEY, plan text); "
    ...                             "CREATE TABLE o (id int, cid int REFERENCES c (id))")
    >>> parent_key_checks(analyze("DELETE FROM c WHERE id = 7", cat), cat, frozenset({TableRef("public", "o")}), {})[0][:46]
    'deleting rows of public.c runs the foreign key'
    >>> parent_key_checks(analyze("UPDATE c SET plan = 'x' WHERE id = 7", cat), cat, frozenset({TableRef("public", "o")}), {})
    []
    """
    if analysis.tree is None or not analysis.tables_written or (not filtered and not hidden):
        return []
    named = _keys_changed(analysis.tree)
    if named is not None and not named:
        return []
    out: list[str] = []
    for written, changed in _base_writes(analysis.tables_written, named, catalog):
        for rel in catalog.relations.values():
            for own, schema, table, col in rel.references:
                if (schema, table) != (written.schema, written.table) or (changed is not None and col not in changed):
                    continue
                child = ColumnRef(rel.schema, rel.name, own)
                if TableRef(rel.schema, rel.name) not in filtered and child not in hidden:
                    continue
                why = "your row filter hides rows of it" if child not in hidden else "its values are masked for you"
                doing = "deleting rows of" if changed is None else f"changing {col} of"
                out.append(f"{doing} {written} runs the foreign key {child} -> {written}.{col} over every row of "
                           f"{rel.schema}.{rel.name}, and {why}: its error would say whether such a row names the "
                           "key, and a cascade would change rows you cannot see")
    return list(dict.fromkeys(out))


def _base_writes(tables, named: set[str] | None, catalog: Catalog) -> list[tuple[TableRef, set[str] | None]]:
    """The stored tables a write lands in, each with the columns it changes there (None: it may delete rows).

    Through an updatable view (`DELETE FROM v_customer_plans`, `UPDATE v_customer_plans SET id = ...`) the
    base table's rows are deleted or re-keyed, and its foreign keys run: every table the view reads counts,
    and a view column set maps to the base columns it comes from (`_lands_in`); one that cannot be resolved
    counts as every column.
    """
    out: list[tuple[TableRef, set[str] | None]] = []
    for written in tables:
        rel = catalog.relation(written.table, written.schema)
        if rel is None or rel.kind == "table":
            out.append((written, named))
            continue
        lands: set[ColumnRef] | None = set()
        for col in named or ():
            got = _lands_in(ColumnRef(written.schema, written.table, col), catalog)
            if got is None:
                lands = None
                break
            lands |= set(got)
        below = analyze(rel.definition or "SELECT 1", catalog).tables_read if rel.definition else ()
        if not below:
            out.append((written, None))   # a view whose rows cannot be traced: every key is in play
        for base in below:
            cols = None if named is None or lands is None else {
                c.column for c in lands if (c.schema, c.table) == (base.schema, base.table)}
            out.extend(_base_writes((base,), cols, catalog) if cols != set() else [])
    return out


def _keys_changed(node) -> set[str] | None:
    """Columns a write sets in existing rows ({} for a plain INSERT); None when it may delete rows (or is not modelled)."""
    from sqlglot import exp

    if isinstance(node, exp.Insert):
        conflict = node.args.get("conflict")
        if conflict is None or "UPDATE" not in str(conflict.args.get("action") or "").upper():
            return set()
        sets = conflict.args.get("expressions") or []
    elif isinstance(node, exp.Update):
        sets = node.expressions
    else:
        return None   # DELETE, MERGE (may delete), anything else: every referenced key is in play
    out: set[str] = set()
    for eq in sets:
        left = eq.this if isinstance(eq, exp.EQ) else None
        if not isinstance(left, exp.Column):
            return None
        out.add(left.name)
    return out


def _updates(node) -> bool:
    """Whether a write changes existing rows (so row-local checks run on their stored, hidden values)."""
    from sqlglot import exp

    if isinstance(node, (exp.Update, exp.Merge)):
        return True
    conflict = node.args.get("conflict") if isinstance(node, exp.Insert) else None
    return conflict is not None and "UPDATE" in str(conflict.args.get("action") or "").upper()


def _lands_in(target: ColumnRef | None, catalog: Catalog) -> frozenset[ColumnRef] | None:
    """The stored columns a write to `target` ends up in: itself, or through an updatable view its base column.

    `UPDATE v_customer_contact SET contact = 'guess'` writes customers.email: judged as written there.
    None when a view column cannot be resolved.
    """
    if target is None:
        return frozenset()
    rel = catalog.relation(target.table, target.schema)
    if rel is None or rel.kind == "table":
        return frozenset({target})
    from sqlglot import exp

    sql = exp.select(exp.column(target.column, quoted=True)).from_(
        exp.table_(target.table, db=target.schema, quoted=True)).sql(dialect="postgres")
    read = analyze(sql, catalog)
    if read.violations or len(read.columns) != 1:
        return None
    return frozenset(read.columns[0].sources) | {target}


def _judge_stored(col, target: ColumnRef | None, lands: frozenset[ColumnRef], always_null: bool,
                  hidden: Mapping[ColumnRef, str], approval: frozenset[ColumnRef], verdict: WriteVerdict) -> None:
    where = str(target) if target is not None else "a relation nobody classified"
    masked_at = sorted(c for c in lands if c in hidden)
    secret = sorted(s for s in col.sources if s in hidden)
    if col.opaque and hidden:
        verdict.denials.append(f"the value written to {where} has a lineage that cannot be resolved while "
                               "sensitive columns are masked for you; write values whose sources are plain columns")
        return
    if secret:
        if all(s in approval for s in secret) and all(c in approval for c in masked_at):
            verdict.approvals.append(f"writing {', '.join(map(str, secret))} into {where} requires the approval "
                                     "that would let you read it in the clear")
            return
        verdict.denials.append(
            f"{', '.join(f'{s} ({hidden[s]})' for s in secret)} is masked for you, and this write would store a value "
            f"derived from it into {where}; a write never stores a value masked for you (a copy would read back "
            "clear, or multiply a person's record past a group-size floor): have an identity that reads it in the "
            "clear write it")
        return
    if masked_at and not always_null:
        if all(c in approval for c in masked_at):
            verdict.approvals.append(f"writing into {target} ({hidden[masked_at[0]]}) requires the approval that "
                                     "would let you read it in the clear")
        else:
            verdict.denials.append(stored_where_hidden(masked_at[0], hidden[masked_at[0]])
                                   + (f" (written through {target})" if target not in hidden else ""))
