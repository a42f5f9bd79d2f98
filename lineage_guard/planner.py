"""Steps 1-4 with no data touched: identity, SQL analysis, catalog labels, policy decision.

`plan` is what `lineage-guard plan` and every session call run first, so SQL can be
checked before a DAG is deployed.

Example:
    >>> decision = plan("SELECT id, email FROM customers", catalog=catalog, policy=policy,
    ...                 identity=Identity("svc-training", "service"), purpose="ai_training")  # doctest: +SKIP
    >>> decision.to_json()["columns"][1]["masked"]                                            # doctest: +SKIP
    True
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

from .decision import ColumnDecision, Decision
from .identity import Identity
from .mask.spec import MaskSpec
from .mask.subjects import bind_shift_date_subjects
from .policy.model import Policy
from .sql import analyze
from .sql.catalog import Catalog
from .sql.inference import UseVerdict, judge_uses
from .sql.model import Analysis, ColumnRef, OutputColumn, TableRef

# Methods that make sense on any derived value (a computed column's type is not the source's).
_TYPE_AGNOSTIC = {"tokenize", "hash", "redact", "null", "drop", "format_preserving"}
# Masks that link nothing: no key, no value-dependent output. The only masks a computed value may get
# (a caller could otherwise push chosen plaintext through a deterministic mask and read the codebook).
_NON_LINKABLE = {"redact", "null", "drop"}
# Masks under which equal stored values come back equal (one key per scope and classification): the only
# ones an equi-join on the column may run under, since the join then shows nothing the output does not.
# That holds for byte equality only: a column under a nondeterministic collation (`_collated`) matches `Cd5`
# with `cd5`, whose tokens differ, so an equality on it shows what the tokens do not (refused).
_SHOWS_EQUALITY = {"tokenize", "pseudonymize", "hash", "format_preserving"}


def sensitive_labels(policy: Policy, detected: Mapping[ColumnRef, str] | None = None,
                     catalog: Catalog | None = None) -> dict[ColumnRef, str]:
    """Step 3: labels declared in the policy win; detection fills in the rest.

    With `catalog`, a label also holds across table inheritance (`_through_inheritance`); a label
    declared on a relative wins over one detection gave the column itself.
    """
    labels = dict(detected or {})
    declared = policy.labels()
    if catalog is not None:
        labels = _through_inheritance(labels, catalog)
        declared = _through_inheritance(declared, catalog)
    labels.update(declared)
    return labels


def _through_inheritance(labels: Mapping[ColumnRef, str], catalog: Catalog) -> dict[ColumnRef, str]:
    """`labels` plus, for a column of an inheritance child or partition (or of its parent) that has no label of
    its own, the label of the same-named column of its ancestors (or descendants).

    Round 7 of the red team (tests/test_redteam_partitions.py): `classifications: public.staff.band` masked
    `SELECT band FROM staff`, but `SELECT band FROM staff_temp` (INHERITS (staff)) or a partition of a
    partitioned table returned the child's values in the clear, because labels are keyed by the table named.
    A child's rows are the parent's rows (the parent reads them without ONLY), so the parent's label holds
    for them read directly; and a label on a child holds for the parent's column, which returns the child's
    rows (masked under ONLY too: a column carries one label, whichever way it is read, so this fails closed).
    Only the lineage of inheritance, never siblings: a sibling partition shares no row with the child.
    """
    out = dict(labels)
    if not out:
        return out
    parents, children = _inheritance(catalog)
    if not parents:
        return out
    for ref, label in sorted(labels.items(), key=lambda kv: str(kv[0])):
        table = TableRef(ref.schema, ref.table)
        for relative in _walk(table, children) + _walk(table, parents):
            rel = catalog.relation(relative.table, relative.schema)
            if rel is not None and rel.columns and ref.column not in rel.column_names:
                continue  # a column the relative does not have (a child's own column, read through the parent)
            out.setdefault(ColumnRef(relative.schema, relative.table, ref.column), label)
    return out


def plan(
    sql: str,
    *,
    catalog: Catalog,
    policy: Policy,
    identity: Identity,
    purpose: str,
    environment: str = "default",
    detected: Mapping[ColumnRef, str] | None = None,
    detect: Callable[[Sequence[TableRef]], Mapping[ColumnRef, str]] | None = None,
) -> Decision:
    """Decide `allow | deny | needs_approval` for one statement, per output column clear or masked.

    `detected` gives labels found by detection; or `detect(tables_read)` is called to find them
    for just the tables the statement reads (policy-declared labels always win).
    """
    identity = policy.resolve_identity(identity)
    analysis = _with_descendants(analyze(sql, catalog), catalog)
    # The tables written are judged with their detected labels as much as the tables read: a write into a
    # detected column is a chosen plaintext under its classification's key (INSERT ... VALUES reads nothing).
    # The tables their foreign keys reference too, whose labels the keys carry (_through_foreign_keys).
    touched = _with_referenced((*analysis.tables_read, *analysis.tables_written), catalog)
    if detect is not None and touched and not analysis.violations:
        detected = {**(detected or {}), **detect(touched)}
    return decide(analysis, policy=policy, identity=identity, purpose=purpose, environment=environment,
                  labels=_through_foreign_keys(sensitive_labels(policy, detected, catalog), catalog),
                  catalog=catalog)


def _inheritance(catalog: Catalog) -> tuple[dict[TableRef, tuple[TableRef, ...]], dict[TableRef, list[TableRef]]]:
    """(each inheritance child or partition -> its parents, each parent -> its children), from the catalog.

    Computed once per catalog (a catalog is not changed after loading; every plan asks several times).
    """
    cached = catalog.__dict__.get("_lg_inheritance")
    if cached is not None and cached[0] == len(catalog.relations):
        return cached[1], cached[2]
    parents: dict[TableRef, tuple[TableRef, ...]] = {}
    children: dict[TableRef, list[TableRef]] = {}
    for rel in catalog.relations.values():
        if rel.parents:
            child = TableRef(rel.schema, rel.name)
            parents[child] = tuple(TableRef(s, n) for s, n in rel.parents)
            for up in parents[child]:
                children.setdefault(up, []).append(child)
    catalog.__dict__["_lg_inheritance"] = (len(catalog.relations), parents, children)
    return parents, children


def _walk(start: TableRef, edges: Mapping[TableRef, Sequence[TableRef]]) -> list[TableRef]:
    """Every table reachable from `start` along `edges` (parents, or children), `start` excluded."""
    seen: list[TableRef] = []
    todo = list(edges.get(start, ()))
    while todo:
        t = todo.pop()
        if t not in seen and t != start:
            seen.append(t)
            todo.extend(edges.get(t, ()))
    return seen


def _with_descendants(analysis: Analysis, catalog: Catalog) -> Analysis:
    """`analysis` knowing the partitions / inheritance children of each table it reads (`Analysis.descendants`)."""
    _, children = _inheritance(catalog)
    found = tuple((t, tuple(down)) for t in analysis.tables_read if (down := _walk(t, children)))
    return dataclasses.replace(analysis, descendants=found) if found else analysis


def _treatment(policy: Policy, label: str, ref: ColumnRef, identity: Identity, purpose: str) -> tuple:
    rule = policy.first_rule(label, ref, identity, purpose)
    return ("mask", policy.default_mask, False) if rule is None else (rule.action, rule.mask, rule.approval)


def _family_disagreements(analysis: Analysis, labels: Mapping[ColumnRef, str], policy: Policy, identity: Identity,
                          purpose: str, catalog: Catalog) -> list[str]:
    """Reasons to deny: a labelled column of a table the statement reads or writes that the policy's rules treat
    differently under the name of one of its inheritance relatives (a partition, a child, a parent).

    A rule's `columns:` pattern names tables; a partition is read under its own name and its parent returns its
    rows under the parent's. With `{columns: [public.people.*], action: mask}` before a clear rule for the
    label, `SELECT secret FROM people_eu` took the clear rule and returned the rows `FROM people` masks (round 7,
    tests/test_redteam_partitions.py); the reverse, a mask rule naming the partition, left its rows clear through
    the parent. Which treatment the policy means for rows that are both is not the guard's to guess: refuse.
    """
    from .sql.explain import planned

    parents, children = _inheritance(catalog)
    if not parents:
        return []
    read, _ = planned(analysis)   # the columns the statement reads; every column of a table it writes
    written = set(analysis.tables_written)
    reasons: list[str] = []
    for table in dict.fromkeys((*analysis.tables_read, *analysis.tables_written)):
        relatives = _walk(table, parents) + _walk(table, children)
        if not relatives:
            continue
        for ref, label in sorted(labels.items(), key=lambda kv: str(kv[0])):
            if ref.table_ref != table or (ref not in read and table not in written):
                continue
            mine = _treatment(policy, label, ref, identity, purpose)
            for relative in relatives:
                other = ColumnRef(relative.schema, relative.table, ref.column)
                if other in labels and _treatment(policy, labels[other], other, identity, purpose) != mine:
                    reasons.append(f"the policy's rules treat {ref} and {other} differently for {identity.principal} "
                                   f"({purpose}), but one table's rows are read under the other's name (inheritance "
                                   "or partitioning): give every table of the family the same rule for this column")
                    break
    return reasons


def _with_referenced(tables: Sequence[TableRef], catalog: Catalog) -> tuple[TableRef, ...]:
    """`tables` and the tables their foreign keys reference (one level: what `_through_foreign_keys` reads)."""
    out = dict.fromkeys(tables)
    for t in tables:
        rel = catalog.relation(t.table, t.schema)
        for _own, schema, table, _col in (rel.references if rel is not None else ()):
            out.setdefault(TableRef(schema, table))
    return tuple(out)


def _through_foreign_keys(labels: Mapping[ColumnRef, str], catalog: Catalog) -> dict[ColumnRef, str]:
    """`labels` plus, for a column that references a labelled one by a foreign key and has no label of its own,
    the referenced column's label.

    A referencing column holds only values of the referenced one (the key guarantees it), so it is that
    data: read in the clear it shows them, and written with a chosen value its check says whether that
    value exists (`tax_forms.filer REFERENCES customers (ssn)` confirms a guessed SSN). Declared and
    detected labels win; chains of keys are followed to a fixed point.
    """
    out = dict(labels)
    if not out:
        return out
    edges = [(ColumnRef(rel.schema, rel.name, own), ColumnRef(schema, table, col))
             for rel in catalog.relations.values() for own, schema, table, col in rel.references]
    changed = bool(edges)
    while changed:
        changed = False
        for own, ref in edges:
            if own not in out and ref in out:
                out[own] = out[ref]
                changed = True
    return out


def decide(
    analysis: Analysis,
    *,
    policy: Policy,
    identity: Identity,
    purpose: str,
    labels: Mapping[ColumnRef, str],
    environment: str = "default",
    mask_opaque: bool = False,
    catalog: Catalog | None = None,
) -> Decision:
    """Step 4 on an `Analysis` already made (by `analyze`, or by an integration for in-memory data).

    `identity` must already be resolved against the policy. `mask_opaque` masks every opaque column
    even when no sensitive table is known to be read: data that did not come from a query shows
    nothing of what it read. `catalog` resolves the tables a row filter rewrites (plan() passes it).
    """
    gate = _gate(policy, identity, purpose)
    if gate:
        return _deny(analysis, gate, labels, policy, identity, purpose)
    if analysis.violations:
        return _deny(analysis, list(analysis.violations), labels, policy, identity, purpose)
    family = _family_disagreements(analysis, labels, policy, identity, purpose, catalog) if catalog else []
    if family:
        return _deny(analysis, family, labels, policy, identity, purpose)
    if not analysis.is_read:
        # Judged before the row filters are added: the policy's own predicate is not the writer's use.
        flow = _write_flow(analysis, policy, identity, purpose, labels, catalog)
        if flow.denials:
            return _deny(analysis, flow.denials, labels, policy, identity, purpose)
        probes = _key_probes(analysis, labels, policy, identity, purpose, catalog)
        analysis, denied = _row_filtered(analysis, policy, identity, purpose, catalog)
        if denied or probes:
            return _deny(analysis, denied + probes, labels, policy, identity, purpose)
        return _write_decision(analysis, policy, identity, environment, labels, flow.approvals)

    hidden, approval = _hidden(labels, policy, identity, purpose)
    verdict = _judge_uses(analysis, hidden, approval, policy, identity, purpose, catalog)
    if verdict.group_floor and _writer(policy, identity):
        verdict.denials.append(_WRITER_COHORT)
    if verdict.denials:
        return _deny(analysis, verdict.denials, labels, policy, identity, purpose)
    analysis = _with_floor(analysis, verdict, policy)
    # After judging: the policy's own predicate is not a caller's use of the columns it tests.
    analysis, denied = _row_filtered(analysis, policy, identity, purpose, catalog)
    if denied:
        return _deny(analysis, denied, labels, policy, identity, purpose)

    columns, approvals = _column_decisions(analysis, labels, policy, identity, purpose, mask_opaque)
    approvals = verdict.approvals + approvals
    sensitive = tuple(sorted(hidden))
    columns, unbound = bind_shift_date_subjects(columns, analysis)
    if policy.purpose_requirements:  # what the purpose itself requires (an approval cannot lift it)
        from .attest.floor import plan_problems

        required = plan_problems(columns, policy, purpose)
        if required:
            return _deny(analysis, required, labels, policy, identity, purpose)
    if approvals:
        return Decision("needs_approval", tuple(approvals), analysis.statement, columns, analysis, sensitive, labels)
    masked = [c for c in columns if c.masked]
    reasons = [f"{len(masked)} of {len(columns)} output column(s) masked for {identity.principal} ({purpose})", *unbound]
    reasons += [f"{note} (sensitive_uses): groups under {policy.min_group_size} rows are not returned"
                for note in verdict.declared]
    declared = sensitive_labels(policy, None, catalog) if catalog is not None else policy.labels()
    found = sorted({f"{s} ({labels[s]})" for c in columns for s in c.sources if s in labels and s not in declared})
    if found:
        reasons.append("detected as sensitive (not declared in the policy): " + ", ".join(found))
    return Decision("allow", tuple(reasons), analysis.statement, columns, analysis, sensitive, labels)


# The group-size floor assumes the reader cannot shape the rows it counts. A writer can: nine copies of
# one person's record, or every other row re-keyed to one GROUP BY value and then that person's too,
# and two counts above the floor differ by exactly that person (tests/test_redteam_writes.py).
_WRITER_COHORT = ("a declared sensitive predicate is not honoured for an identity that may write: it can add or "
                  "re-key rows until one person's group passes the group-size floor; read the cohort as an "
                  "identity without write access")


def _writer(policy: Policy, identity: Identity) -> bool:
    from .policy.guardrails import may_write

    return may_write(policy.writes, identity)


def _hidden(labels: Mapping[ColumnRef, str], policy: Policy, identity: Identity,
            purpose: str) -> tuple[dict[ColumnRef, str], frozenset[ColumnRef]]:
    """(sensitive columns this reader may not see in the clear, those of them a human approval would clear)."""
    key = (id(policy), identity.principal, frozenset(identity.groups), purpose, frozenset(labels.items()))
    cached = _HIDDEN.get(key)
    if cached is not None and cached[0] is policy:
        return cached[1], cached[2]
    hidden: dict[ColumnRef, str] = {}
    approval: set[ColumnRef] = set()
    for ref, label in labels.items():
        rule = policy.first_rule(label, ref, identity, purpose)
        if rule is not None and rule.action == "clear":
            if not rule.approval:
                continue
            approval.add(ref)
        hidden[ref] = label
    if len(_HIDDEN) > 256:  # one entry per (policy, identity, purpose, labels) a process plans for
        _HIDDEN.clear()
    _HIDDEN[key] = (policy, hidden, frozenset(approval))
    return hidden, frozenset(approval)


_HIDDEN: dict[tuple, tuple[Policy, dict[ColumnRef, str], frozenset[ColumnRef]]] = {}


def _judge_uses(analysis: Analysis, hidden: Mapping[ColumnRef, str], approval: frozenset[ColumnRef], policy: Policy,
                identity: Identity, purpose: str, catalog: Catalog | None = None) -> UseVerdict:
    """The opaque-values rule (sql/inference.py) for this identity: columns it sees in the clear are not sensitive here."""

    def declared(label: str, form: str) -> str | None:
        use = policy.declared_use(label, form, identity, purpose)
        return use.action if use else None

    return judge_uses(analysis, hidden, policy.inference, declared, approval,
                      _hides_equality(hidden, approval, policy, identity, purpose), _collated(hidden, catalog))


def _collated(hidden: Mapping[ColumnRef, str], catalog: Catalog | None) -> dict[ColumnRef, str]:
    """Hidden columns whose equality is not byte equality (a nondeterministic collation), with that collation.

    Their tokens are of the bytes; an equality under the collation (`'Cd5' = 'cd5'` under ICU `und-u-ks-level2`,
    `deterministic = false`) pairs values whose tokens differ, so an equi-join, IN (subquery) or count(DISTINCT)
    on one shows what its mask hides (tests/test_redteam_collations.py). Without a catalog nothing is known
    to be collated: plan() always passes one, and a governed read's is the live server's.
    """
    if catalog is None:
        return {}
    out = {}
    for ref in hidden:
        rel = catalog.relation(ref.table, ref.schema)
        found = rel.collation(ref.column) if rel is not None else None
        if found is not None:
            out[ref] = found[0]
    return out


def _hides_equality(hidden: Mapping[ColumnRef, str], approval: frozenset[ColumnRef], policy: Policy,
                    identity: Identity, purpose: str) -> frozenset[ColumnRef]:
    """Hidden columns whose mask for this reader does not show which stored values are equal."""
    out = set()
    for ref, label in hidden.items():
        if ref in approval:
            continue  # cleared by an approval: its uses ask for that approval
        rule = policy.first_rule(label, ref, identity, purpose)
        decl = rule.mask if rule is not None and rule.action == "mask" else policy.default_mask
        if decl is None or decl.method not in _SHOWS_EQUALITY:
            out.add(ref)
    return frozenset(out)


def _key_probes(analysis: Analysis, labels: Mapping[ColumnRef, str], policy: Policy, identity: Identity, purpose: str,
                catalog: Catalog | None) -> list[str]:
    """A write's unique and foreign-key checks over rows this identity's row filters hide or values it may not
    see (write_rule.key_probes, write_rule.parent_key_checks)."""
    from .write_rule import key_probes, parent_key_checks

    catalog = catalog or Catalog()
    filtered = frozenset(f.table for f in policy.row_filters_for(identity, purpose)) if policy.row_filters else frozenset()
    hidden, _ = _hidden(labels, policy, identity, purpose)
    return (key_probes(analysis, catalog, filtered) if filtered else []) + parent_key_checks(
        analysis, catalog, filtered, hidden)


def _row_filtered(analysis: Analysis, policy: Policy, identity: Identity, purpose: str,
                  catalog: Catalog | None) -> tuple[Analysis, list[str]]:
    """`analysis` with this identity's row filters applied to every reference (sql/rowfilter.py), or deny reasons."""
    if not policy.row_filters:
        return analysis, []
    from .sql.rowfilter import RowFilterDenied, apply_row_filters

    try:
        return apply_row_filters(analysis, catalog or Catalog(), policy.row_filters_for(identity, purpose),
                                 identity.attributes, policy.row_filters_combine), []
    except RowFilterDenied as err:
        return analysis, err.reasons


def _with_floor(analysis: Analysis, verdict: UseVerdict, policy: Policy) -> Analysis:
    """A declared sensitive predicate was honoured: the executed statement keeps only groups of min_group_size rows."""
    if not verdict.group_floor:
        return analysis
    return dataclasses.replace(analysis, group_floor=policy.min_group_size)


def _gate(policy: Policy, identity: Identity, purpose: str) -> list[str]:
    reasons = []
    if policy.purposes and purpose not in policy.purposes:
        reasons.append(f"purpose {purpose!r} is not declared in the policy; declared: {', '.join(policy.purposes)}")
    if problem := policy.identity_problem(identity):
        reasons.append(problem)
    return reasons


def _deny(analysis: Analysis, reasons, labels, policy, identity, purpose) -> Decision:
    # Columns are still reported (fully masked) so a person sees what the statement would have read.
    columns = tuple(
        ColumnDecision(c.position, c.name, c.sources, policy.mask_spec(policy.default_mask, identity, purpose),
                       c.direct, _labels_of(c, labels))
        for c in analysis.columns
    )
    return Decision("deny", tuple(reasons), analysis.statement, columns, analysis, labels=labels)


def _labels_of(col: OutputColumn, labels: Mapping[ColumnRef, str]) -> tuple[str, ...]:
    return tuple(sorted({labels[s] for s in col.sources if s in labels}))


def _non_linkable(policy: Policy, identity: Identity, purpose: str, spec: MaskSpec | None) -> MaskSpec:
    """The mask of a computed (not stored) sensitive value: `spec` if it links nothing, else the default or redact."""
    if spec is not None and spec.method in _NON_LINKABLE:
        return spec
    default = policy.mask_spec(policy.default_mask, identity, purpose)
    return default if default.method in _NON_LINKABLE else MaskSpec("redact", {}, default.scope)


def _column_decisions(analysis, labels, policy, identity, purpose, mask_opaque=False):
    sensitive_tables = {ref.table_ref for ref in labels}
    reads_sensitive = any(t in sensitive_tables for t in analysis.tables_read)
    strongest = _non_linkable(policy, identity, purpose, None)
    approvals: list[str] = []
    out = []
    for col in analysis.columns:
        col_labels = _labels_of(col, labels)
        spec: MaskSpec | None = None
        if col.opaque and (reads_sensitive or mask_opaque):
            spec = strongest  # provenance unresolved while sensitive data is read: fail closed
        else:
            specs, wants_approval = [], []
            for src in col.sources:
                if src not in labels:
                    continue
                rule = policy.first_rule(labels[src], src, identity, purpose)
                if rule is None:  # sensitive with no rule: the strongest mask (keyed, if keyed, per classification)
                    specs.append(policy.mask_spec(policy.default_mask, identity, purpose, classification=labels[src]))
                elif rule.action == "mask":
                    specs.append(policy.mask_spec(rule.mask, identity, purpose, classification=labels[src]))
                elif rule.approval:
                    wants_approval.append(f"clear access to {src} ({labels[src]}) for {purpose} requires approval"
                                          f" (rule {rule.name or policy.rules.index(rule)})")
            if not specs:
                approvals.extend(wants_approval)  # only a column that would come back clear needs the approval
            else:
                spec = specs[0] if len(set(specs)) == 1 else strongest
                if not (col.stored or col.direct) or len(set(col_labels)) > 1:  # direct: unchanged, so stored
                    spec = _non_linkable(policy, identity, purpose, spec)  # deterministic masks: stored values only
                elif not col.direct and spec.method not in _TYPE_AGNOSTIC:
                    spec = strongest  # e.g. partial/generalize on a cast value: its type is not the source's
        out.append(ColumnDecision(col.position, col.name, col.sources, spec, col.direct, col_labels))
    return tuple(out), approvals


def _write_flow(analysis: Analysis, policy: Policy, identity: Identity, purpose: str,
                labels: Mapping[ColumnRef, str], catalog: Catalog | None):
    """The opaque-values rule for writes (write_rule.py): what the write reads and where it stores it."""
    from .write_rule import judge_write

    hidden, approval = _hidden(labels, policy, identity, purpose)
    return judge_write(analysis, catalog or Catalog(), hidden, approval,
                       lambda twin: _judge_uses(twin, hidden, approval, policy, identity, purpose, catalog))


def _write_decision(analysis, policy, identity, environment, labels, approvals=()) -> Decision:
    from .policy.guardrails import check_write

    sensitive_tables: set[TableRef] = {ref.table_ref for ref in labels}
    result = check_write(analysis, policy.writes, identity=identity, environment=environment,
                         sensitive_tables=sensitive_tables)
    if approvals and result.action == "allow":  # a use of a column an approval would clear: ask for it
        return Decision("needs_approval", tuple(approvals), analysis.statement, (), analysis)
    reasons = [*result.reasons, *approvals] if result.action == "needs_approval" else result.reasons
    return Decision(result.action, tuple(reasons), analysis.statement, (), analysis)
