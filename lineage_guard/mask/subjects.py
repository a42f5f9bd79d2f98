"""Bind each `shift_date` subject to a real source column through lineage, never through an output name.

A policy names the subject as a source column: `subject: id` (a column of the masked date's
own table) or `subject: schema.table.column`. The subject is bound to the output position
whose lineage is exactly that stored column, passed through unchanged. When it cannot be
bound (not in the output, only derived, another table's column, or the table read more than
once so the subject's row need not be the date's row), the date gets `null` with a reason:
one shared offset (`SELECT 1 AS id, birth_date ...`, or a self-join pairing every date with one
patient's id) would let a single known date reveal every other.

    >>> from lineage_guard.decision import ColumnDecision
    >>> from lineage_guard.sql.model import Analysis, ColumnRef, OutputColumn
    >>> pid, born = ColumnRef("public", "p", "id"), ColumnRef("public", "p", "born")
    >>> spec = MaskSpec("shift_date", {"subject": "id"})
    >>> analysis = Analysis("SELECT id, born FROM p", "select", True,
    ...                     columns=(OutputColumn(0, "id", (pid,), True), OutputColumn(1, "born", (born,), True)))
    >>> cols = (ColumnDecision(0, "id", (pid,), None, True), ColumnDecision(1, "born", (born,), spec, True))
    >>> bound, reasons = bind_shift_date_subjects(cols, analysis)
    >>> bound[1].mask.subject, reasons
    (0, [])
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from .params import checked
from .spec import MaskSpec

if TYPE_CHECKING:
    from ..decision import ColumnDecision
    from ..sql.model import Analysis, OutputColumn, TableRef


def bind_shift_date_subjects(columns: tuple[ColumnDecision, ...], analysis: Analysis,
                             ) -> tuple[tuple[ColumnDecision, ...], list[str]]:
    """`columns` with every `shift_date` subject bound to an output position, or the date masked null.

    Returns the columns and one reason per date masked null (for the decision's reasons).
    """
    reasons: list[str] = []
    out = []
    for col in columns:
        spec = col.mask
        if spec is None or spec.method != "shift_date" or checked(spec)["subject"] is None:
            out.append(col)
            continue
        position, problem = _subject_position(col, spec, analysis)
        if problem is None:
            out.append(replace(col, mask=replace(spec, subject=position)))
        else:
            reasons.append(f"column {col.name!r} (position {col.position}) is masked null, not date-shifted: "
                           f"{problem}; a shared offset would let one known date reveal the others")
            out.append(replace(col, mask=MaskSpec("null", scope=spec.scope, classification=spec.classification)))
    return tuple(out), reasons


def _subject_position(col: ColumnDecision, spec: MaskSpec, analysis: Analysis) -> tuple[int | None, str | None]:
    from ..sql.model import ColumnRef

    by_position = {c.position: c for c in analysis.columns}
    date = by_position.get(col.position)
    if date is None or not _as_stored(date):
        return None, "the date is not a stored column passed through unchanged"
    (date_ref,) = date.sources
    named = checked(spec)["subject"]
    subject = (ColumnRef.parse(named) if "." in named
               else ColumnRef(date_ref.schema, date_ref.table, named))
    if subject.table_ref != date_ref.table_ref:
        return None, (f"its subject {subject} is not a column of the date's table {date_ref.table_ref}, "
                      f"so nothing ties a subject to its own row's date")
    found = [c.position for c in analysis.columns if _as_stored(c) and c.sources == (subject,)]
    if not found:
        return None, (f"its subject {subject} is not in the output as stored (select {subject.column} "
                      f"unchanged to keep intervals)")
    reads = _reads_of(subject.table_ref, analysis)
    if reads != 1:
        return None, (f"{subject.table_ref} is read {'more than once' if reads else 'through a view or function'}"
                      f", so the subject's row need not be the date's row")
    return found[0], None


def _as_stored(col: OutputColumn) -> bool:
    return col.direct and not col.opaque and len(col.sources) == 1


def _reads_of(table: TableRef, analysis: Analysis) -> int:
    """How many times the statement reads `table` (CTE references expanded); 0 when it cannot tell.

    Conservative: a statement that reads anything through a view or function (a relation read
    that the statement does not name) counts as 0, since what the view reads is not visible here.
    """
    import sqlglot
    from sqlglot import exp

    try:
        tree = sqlglot.parse_one(analysis.statement, dialect="postgres")
    except (sqlglot.errors.ParseError, sqlglot.errors.TokenError, ValueError):
        return 0
    ctes = {cte.alias_or_name: cte.this for cte in tree.find_all(exp.CTE)}
    named = {t.name for t in tree.find_all(exp.Table) if t.name not in ctes}
    if named != {t.table for t in analysis.tables_read}:
        return 0  # something is read that the statement does not name (a view's or a function's tables)

    def count(node: exp.Expression, depth: int = 0) -> int:
        if depth > 8:
            return 2  # CTEs nested (or recursive) too deep to follow: treat as read more than once
        return sum(count(ctes[t.name], depth + 1) if t.name in ctes else int(t.name == table.table)
                   for t in node.find_all(exp.Table))

    body = tree.copy()
    for with_ in list(body.find_all(exp.With)):
        with_.pop()  # a CTE's body counts once per reference to it, through `count`
    return count(body)
