"""What a statement that is not a plain read does: its kind, the tables it writes, its dangerous flags.

The write guardrails (`lineage_guard.policy.guardrails`) decide from these alone.

Example:
    >>> import sqlglot
    >>> describe(sqlglot.parse_one("DELETE FROM orders WHERE 1 = 1", dialect="postgres"), "public")
    ('delete', [TableRef(schema='public', table='orders')], False, {'delete_all'})
"""

from __future__ import annotations

from sqlglot import exp

from .lineage import ident
from .model import StatementKind, TableRef

# Leading keywords of statements sqlglot keeps as an opaque Command, and what kind they are.
COMMAND_KINDS: dict[str, StatementKind] = {
    "ALTER": "ddl", "CREATE": "ddl", "DROP": "ddl", "COMMENT": "ddl", "REFRESH": "maintenance", "REINDEX": "maintenance",
    "VACUUM": "maintenance", "ANALYZE": "maintenance", "CLUSTER": "maintenance", "CHECKPOINT": "maintenance",
    "LOCK": "lock", "GRANT": "dcl", "REVOKE": "dcl", "SET": "session", "RESET": "session", "SHOW": "session",
    "DISCARD": "session", "LOAD": "session", "CALL": "call", "DO": "call", "EXECUTE": "call", "PREPARE": "call",
    "DEALLOCATE": "call", "DECLARE": "call", "FETCH": "call", "MOVE": "call", "CLOSE": "call", "LISTEN": "session",
    "NOTIFY": "session", "UNLISTEN": "session", "EXPLAIN": "explain", "COPY": "copy", "BEGIN": "transaction",
    "START": "transaction", "COMMIT": "transaction", "ROLLBACK": "transaction", "SAVEPOINT": "transaction",
    "RELEASE": "transaction", "END": "transaction", "ABORT": "transaction", "SECURITY": "ddl", "IMPORT": "ddl",
    "TRUNCATE": "ddl", "REASSIGN": "dcl",
}


def _table(t: exp.Table, default_schema: str) -> TableRef:
    return TableRef(ident(t.args.get("db")) if t.args.get("db") else default_schema, ident(t.this))


def _constant_where(where: exp.Expression | None) -> bool:
    """True when a WHERE is missing or tests no column at all (`WHERE 1 = 1`, `WHERE true`)."""
    if where is None:
        return True
    cond = where.this if isinstance(where, exp.Where) else where
    return not any(True for _ in cond.find_all(exp.Column))


def _copies_data(node: exp.Expression) -> bool:
    """Whether written values are computed from columns (`SET plan = ssn`, `INSERT ... SELECT`): data moves."""
    if isinstance(node, exp.Insert):
        return isinstance(node.expression, (exp.Select, exp.SetOperation)) or any(
            True for _ in (node.expression or exp.Null()).find_all(exp.Column))
    if isinstance(node, exp.Update):
        return any(isinstance(e, exp.EQ) and any(True for _ in e.expression.find_all(exp.Column))
                   for e in node.expressions)
    return isinstance(node, exp.Merge)


def describe(node: exp.Expression, default_schema: str) -> tuple[StatementKind, list[TableRef], bool, set[str]]:
    """(kind, tables written, has_where, flags) of a statement that is not a plain read."""
    flags: set[str] = set()
    written: list[TableRef] = []
    has_where = True
    if isinstance(node, (exp.Insert, exp.Update, exp.Delete, exp.Merge)):
        kind: StatementKind = type(node).__name__.lower()  # type: ignore[assignment]
        target = node.this
        if isinstance(target, exp.Schema):
            target = target.this
        if isinstance(target, exp.Table):
            written.append(_table(target, default_schema))
        if isinstance(node, (exp.Update, exp.Delete)):
            has_where = not _constant_where(node.args.get("where"))
            if not has_where:
                flags.add(f"{kind}_all")
        if node.args.get("returning"):
            flags.add("returning")
        if _copies_data(node):
            flags.add("copies_data")
        return kind, written, has_where, flags
    if isinstance(node, exp.Copy):
        target = node.this
        if isinstance(target, exp.Table):
            (written if node.args.get("kind") else []).append(_table(target, default_schema))
        files = node.args.get("files") or []
        names = [f.name.upper() for f in files]
        if "PROGRAM" in names:
            flags.add("copy_program")
        elif any(isinstance(f, exp.Literal) for f in files):
            flags.add("copy_from_file" if node.args.get("kind") else "copy_to_file")
        flags.add("copy_from" if node.args.get("kind") else "copy_to")
        return "copy", written, True, flags
    if isinstance(node, exp.Drop):
        flags.add("drop")
        written += [_table(t, default_schema) for t in node.find_all(exp.Table)]
        return "ddl", written, True, flags
    if isinstance(node, exp.TruncateTable):
        flags.add("truncate")
        written += [_table(t, default_schema) for t in node.expressions if isinstance(t, exp.Table)]
        return "ddl", written, True, flags
    if isinstance(node, exp.Alter):
        flags.add("alter")
        if isinstance(node.this, exp.Table):
            written.append(_table(node.this, default_schema))
        return "ddl", written, True, flags
    if isinstance(node, exp.Create):
        flags.add("create")
        target = node.this.this if isinstance(node.this, exp.Schema) else node.this
        if isinstance(target, exp.Table):
            written.append(_table(target, default_schema))
        return "ddl", written, True, flags
    if isinstance(node, (exp.Grant, exp.Revoke)):
        flags.add(type(node).__name__.lower())
        written += [_table(t, default_schema) for t in node.find_all(exp.Table)]
        return "dcl", written, True, flags
    if isinstance(node, exp.Comment):
        flags.add("comment")
        return "ddl", written, True, flags
    if isinstance(node, (exp.Set, exp.SetItem)):
        flags.add("set")
        return "session", written, True, flags
    if isinstance(node, (exp.Transaction, exp.Commit, exp.Rollback)):
        return "transaction", written, True, flags
    if isinstance(node, exp.Analyze):
        flags.add("analyze")
        return "maintenance", written, True, flags
    if isinstance(node, exp.Command):
        word = str(node.this).upper()
        rest = str(node.expression.this if isinstance(node.expression, exp.Literal) else "").upper()
        kind = COMMAND_KINDS.get(word, "other")
        if word == "ALTER":
            kind = "dcl" if rest.startswith(("ROLE", "USER", "GROUP", "DEFAULT PRIVILEGES")) else "ddl"
            flags.add("alter")
        if word in ("GRANT", "REVOKE"):
            flags.add(word.lower())
        if word == "DROP":
            flags.add("drop")
        return kind, written, True, flags
    return "other", written, True, flags
