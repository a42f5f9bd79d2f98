"""The opaque-values rule: what a query may do with sensitive values (DESIGN.md, "Sensitive values are opaque").

Masking the output cannot stop `SELECT id FROM customers WHERE ssn = '975-45-1106'`: the row that
comes back *is* the answer, and no detector of such oracles is ever complete. So in the `default`
mode a sensitive value may only be

1. returned (then masked: as stored, with the policy's mask; derived, with a non-linkable one);
2. one side of an equi-join whose other side is a stored column of the same classification, where the
   reader's mask shows equality anyway (a token; not under redact, generalize, partial, ...);
3. the argument of count(...);
4. carried by CASE THEN / ELSE or COALESCE into an output column (derived: non-linkable mask).

Anything else the database would compute on it (WHERE, HAVING, JOIN ON, ORDER BY, GROUP BY, DISTINCT,
set-operation deduplication, windows, CASE conditions, FILTER, LIMIT, any function or operator
argument) is a *sensitive use* and is denied, unless the policy declares that predicate form for the
classification (`sensitive_uses`) and the statement is a top-level aggregate over one table, filtering
on one classification and aggregating a key only by counting it: then the group-size floor is added to
the executed statement. Error and timing channels close with it: the database never computes on a
sensitive value beyond moving it.

`strict` also refuses rules 2-4; `lenient` (UNSAFE: predicates, joins and sorts leak values) only
refuses casts and functions whose error message would repeat a sensitive value.

Example:
    >>> from lineage_guard.sql import analyze
    >>> from lineage_guard.sql.catalog import Catalog
    >>> cat = Catalog.from_ddl_text("CREATE TABLE customers (id int PRIMARY KEY, ssn text, plan text)")
    >>> ssn = {ColumnRef("public", "customers", "ssn"): "national_id"}
    >>> judge_uses(analyze("SELECT id FROM customers WHERE ssn = '1'", cat), ssn).denials
    ['public.customers.ssn (national_id) is used in WHERE; a sensitive value may only be returned (masked), equi-joined to a stored column of its classification, or counted: remove that use, or have the policy declare it (sensitive_uses)']
    >>> judge_uses(analyze("SELECT plan, count(*) FROM customers GROUP BY plan", cat), ssn).denials
    []
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from .model import Analysis, ColumnRef, PredicateForm

Mode = Literal["lenient", "default", "strict"]
# (classification, predicate form) -> "allow" | "needs_approval" | None (not declared)
Declared = Callable[[str, PredicateForm], str | None]
_NOTHING_DECLARED: Declared = lambda label, form: None

_ALLOWED_USES = ("a sensitive value may only be returned (masked), equi-joined to a stored column of its "
                 "classification, or counted")


@dataclass
class UseVerdict:
    """What the rule found: deny reasons, approval reasons, and whether a declared predicate needs the group floor."""

    denials: list[str] = field(default_factory=list)
    approvals: list[str] = field(default_factory=list)
    declared: list[str] = field(default_factory=list)  # declared uses honoured (for the decision's reasons)
    group_floor: bool = False  # a declared predicate was honoured: execute with the group-size floor


def judge_uses(analysis: Analysis, sensitive: Mapping[ColumnRef, str], mode: Mode = "default",
               declared: Declared = _NOTHING_DECLARED, approval: frozenset[ColumnRef] = frozenset(),
               unlinkable: frozenset[ColumnRef] = frozenset(),
               collated: Mapping[ColumnRef, str] | None = None) -> UseVerdict:
    """Judge every value use of `analysis` against the sensitive columns (`column -> classification`).

    `approval`: sensitive columns the caller may see in the clear after a human approval; a use of
    one asks for that approval instead of being denied. `unlinkable`: sensitive columns whose mask
    for this caller does not show which rows are equal (redact, generalize, partial, ...): an
    equi-join on one would reveal exactly what the mask hides, so it is a sensitive use. `collated`:
    sensitive columns under a nondeterministic collation (column -> collation), whose equality is not byte
    equality: an equi-join or count(DISTINCT) on one matches values whose tokens differ, so it is refused.
    """
    collated = collated or {}
    verdict = UseVerdict()
    if mode not in ("lenient", "default", "strict"):
        verdict.denials.append(f"unknown inference mode {mode!r}; use lenient, default or strict")
        return verdict
    for col in sorted(set(analysis.error_channel) & set(sensitive)):
        verdict.denials.append(f"{col} reaches a cast or function whose error message would repeat the value "
                               "(error channel: it leaks before masking runs); cast or parse only non-sensitive "
                               "columns, or cast to text")
    if mode == "lenient":
        return verdict
    seen: set[tuple[ColumnRef, str]] = set()

    def refuse(col: ColumnRef, where: str, why: str) -> None:
        if (col, where) in seen:
            return
        seen.add((col, where))
        if col in approval:
            verdict.approvals.append(f"{col} ({sensitive[col]}) is used in {where}; clear access to it requires approval")
        else:
            verdict.denials.append(f"{col} ({sensitive[col]}) is used in {where}; {why}")

    generic = f"{_ALLOWED_USES}: remove that use, or have the policy declare it (sensitive_uses)"
    for use in analysis.value_uses:
        hit = [c for c in (*use.sources, *use.other) if c in sensitive]
        if not hit:
            continue
        if mode == "strict":
            for col in hit:
                refuse(col, use.where, "strict inference mode: sensitive values may only be returned, masked")
            continue
        if use.rule in ("count", "equijoin") and (use.rule == "equijoin" or use.where == "count(DISTINCT ...)"):
            under = [c for c in (*use.sources, *use.other) if c in collated and c in sensitive]
            for col in under:
                refuse(col, use.where, f"it is under the nondeterministic collation {collated[col]}, whose equality "
                                       "is not byte equality: it matches values whose masks differ, so it shows "
                                       "what the mask hides; join, or count distinct, on a column with a "
                                       "deterministic collation (ALTER TABLE ... ALTER COLUMN ... TYPE text "
                                       "COLLATE \"default\"), or remove that use")
            if under:
                continue
        if use.rule == "count":
            continue
        if use.rule == "equijoin":
            labels = {sensitive.get(c) for c in (*use.sources, *use.other)}
            hidden_equality = [c for c in hit if c in unlinkable]
            if use.stored and use.sources and use.other and len(labels) == 1 and not hidden_equality:
                continue
            if use.stored and use.sources and use.other and len(labels) == 1:
                for col in hidden_equality:
                    refuse(col, use.where, "its mask for this reader does not show which values are equal, so an "
                                           "equality on it would; join on a column masked with a token "
                                           f"(tokenize, pseudonymize, hash, format_preserving); {generic}")
                continue
            for col in hit:
                refuse(col, use.where, "an equality joins a sensitive value only to a stored column of the same "
                                       f"classification; {generic}")
            continue
        if use.form is not None:
            actions = {sensitive[c]: declared(sensitive[c], use.form) for c in hit}
            if all(actions.values()):
                if analysis.cohort_blocker is None:
                    verdict.group_floor = True
                    for label, action in sorted(actions.items()):
                        note = f"declared {use.form} predicate on {label} in WHERE"
                        if action == "needs_approval":
                            verdict.approvals.append(f"{note} requires approval (sensitive_uses)")
                        elif note not in verdict.declared:
                            verdict.declared.append(note)
                    continue
                for col in hit:
                    refuse(col, use.where, f"the policy declares this {use.form} predicate, but it is honoured only in "
                                           "a top-level aggregate over one table (with the group-size floor); here: "
                                           f"{analysis.cohort_blocker}")
                continue
        for col in hit:
            refuse(col, use.where, generic)
    if verdict.group_floor:
        _no_trackers(analysis, sensitive, declared, verdict)
    if verdict.group_floor:
        _one_classification(analysis, sensitive, verdict)
    if mode == "strict":
        for c in analysis.columns:
            hit = [s for s in c.sources if s in sensitive]
            if hit and not c.stored:
                for col in hit:
                    refuse(col, f"the computed output column {c.name!r}",
                           "strict inference mode: only stored sensitive columns may be returned, masked")
    return verdict


def _no_trackers(analysis: Analysis, sensitive: Mapping[ColumnRef, str], declared: Declared,
                 verdict: UseVerdict) -> None:
    """A declared cohort predicate stands alone in its WHERE: any other condition is a tracker.

    `count(cohort)` minus `count(cohort AND id <> k)` is patient k's membership although both groups
    pass the floor; so does any other atom that can exclude one person. Honoured cohorts filter on
    declared sensitive atoms only.
    """
    for use in analysis.value_uses:
        if not use.where.startswith("WHERE"):
            continue
        declared_atom = use.form is not None and use.sources and all(
            c in sensitive and declared(sensitive[c], use.form) for c in use.sources)
        if not declared_atom:
            verdict.denials.append(
                "a declared sensitive predicate is honoured only when the WHERE holds nothing but declared "
                "predicates: another condition (here on " + ", ".join(map(str, use.sources or use.other))
                + ") can single a person out by differencing two cohorts; remove it or group by it instead")
            verdict.group_floor = False
            return


def _one_classification(analysis: Analysis, sensitive: Mapping[ColumnRef, str], verdict: UseVerdict) -> None:
    """A cohort filters on declared atoms of ONE classification.

    Counts of cohorts above the floor still difference exactly: `diagnosis IN (B20, X) AND born >= d`
    minus the same with `born >= d + 1`, minus the same without B20, is whether the patient born on d
    has B20. With atoms of two classifications the counts give their joint distribution, so a quasi-
    identifier the attacker knows (a birth date) reads the other (a diagnosis). With one, only that
    classification's own distribution comes back.
    """
    labels = sorted({sensitive[c] for use in analysis.value_uses if use.where.startswith("WHERE") and use.form
                     for c in use.sources if c in sensitive})
    if len(labels) > 1:
        verdict.denials.append(
            "a declared sensitive predicate is honoured on one classification at a time: this WHERE filters on "
            + " and ".join(labels) + ", and differencing such cohorts gives the two classifications' joint "
            "distribution (one person's birth date then reads that person's other value); filter on one of them")
        verdict.group_floor = False


def inference_findings(analysis: Analysis, sensitive, mode: Mode = "default") -> list[str]:
    """Deny reasons (empty when none) with nothing declared; `sensitive` maps or lists the sensitive columns."""
    labels = dict(sensitive) if isinstance(sensitive, Mapping) else {c: "sensitive" for c in sensitive}
    return judge_uses(analysis, labels, mode).denials
