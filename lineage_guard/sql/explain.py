"""Ask the server how it bound the statement, and deny when that disagrees with the plan's lineage.

The planner resolved names with its own reading of the SQL. Before a live read, the session asks
PostgreSQL for its own: `EXPLAIN (VERBOSE, FORMAT JSON)` of the executed statement lists, per plan
node, the columns behind every output expression (`c.ssn`, `count(c.zip)`, `(SubPlan 1)`). Two
checks, over the sensitive columns the reader may not see in the clear:

1. every such column the server reads anywhere in the plan is one the planner knew the statement
   reads (as a source of an output, or in a use it judged);
2. for each top-level output column, the ones the server computes it from are among the sources
   the planner attributed to that column (so the mask applied is the mask it needs).

Check 2 follows the plan through what sits between the output and the table scans: `(SubPlan N)`
into that subplan's outputs; a CTE scan (`x.col`) into the CTE's plan and a subquery scan (`s.col`,
`"*SELECT* 2".col`) into its child, by the position of `col` among that CTE's or subquery's columns
(`names`, from the executed tree: `scan_names`; without them, every column of it); a set
operation (Append, MergeAppend, SetOp, Recursive Union, and the Sort / Unique / Aggregate / Limit
passing its rows up) by position through every branch; a function scan to the columns its call
reads. A reference to any other alias cannot be mapped, and the read is refused (fail closed).
A VALUES list's contents are not in EXPLAIN's output: its columns map to nothing.

Example:
    >>> plan = [{"Plan": {"Node Type": "Seq Scan", "Relation Name": "t", "Schema": "public", "Alias": "t",
    ...                   "Output": ["t.id", "t.ssn"]}}]
    >>> ssn = ColumnRef("public", "t", "ssn")
    >>> binding_disagreements(plan, known={ssn}, outputs=[set(), {ssn}], sensitive={ssn})
    []
    >>> binding_disagreements(plan, known={ssn}, outputs=[{ssn}, set()], sensitive={ssn})[0]
    'the server computes output column 2 from public.t.ssn, which the plan did not attribute to it; the read was refused'
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence

from .model import Analysis, ColumnRef

_NAME = r'(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)'
# alias.column, not a schema-qualified call (`pg_catalog.upper(`) and not inside a longer name
_REF = re.compile(rf"(?<![\w.$\"])({_NAME})\.({_NAME})(?![\w$]*\s*\()")
_BARE = re.compile(rf"(?<![\w.$])({_NAME})(?![\w(.])")
_PLAIN = re.compile(rf"(?:{_NAME}\.)?{_NAME}")
_LITERAL = re.compile(r"'(?:[^']|'')*'")
_SUBPLAN = re.compile(r"\((?:hashed )?(SubPlan \d+)\)|\$\d+|(InitPlan \d+)")
# Plan fields that name things rather than compute on columns.
_NOT_EXPRESSIONS = {"Node Type", "Relation Name", "Schema", "Alias", "Subplan Name", "Parent Relationship",
                    "CTE Name", "Function Name", "Strategy", "Partial Mode", "Join Type", "Scan Direction",
                    "Index Name", "Command", "Operation"}
# Nodes that stack their children's rows: output i is every child's output i.
_SET_OPERATIONS = {"Append", "MergeAppend", "Merge Append", "SetOp", "HashSetOp", "Recursive Union"}
# Nodes that pass their child's rows up unchanged in shape (when their outputs are the child's columns).
_PASS_THROUGH = {"Sort", "Incremental Sort", "Unique", "Aggregate", "Limit", "Materialize", "Memoize", "Gather",
                 "Gather Merge", "Hash", "Result", "WindowAgg", "SetOp", "HashSetOp"}
_MAX_DEPTH = 32


def _unquote(name: str) -> str:
    return name[1:-1].replace('""', '"') if name.startswith('"') else name


def _nodes(node: dict) -> Iterator[dict]:
    yield node
    for child in node.get("Plans") or []:
        yield from _nodes(child)


def _strings(node: dict, skip_output: bool = False) -> Iterator[str]:
    for key, value in node.items():
        if key in _NOT_EXPRESSIONS or key == "Plans" or (skip_output and key == "Output"):
            continue
        if isinstance(value, str):
            yield value
        elif isinstance(value, list):
            yield from (v for v in value if isinstance(v, str))


def _row_children(node: dict) -> list[dict]:
    """The children whose rows the node consumes (not its InitPlans / SubPlans)."""
    return [c for c in node.get("Plans") or [] if c.get("Parent Relationship") not in ("InitPlan", "SubPlan")]


class _Plan:
    def __init__(self, explained: list | dict, names: Mapping[str, Sequence[str]] | None = None):
        root = explained[0] if isinstance(explained, list) else explained
        self.root: dict = root["Plan"]
        self.names = dict(names or {})
        self.relations: dict[str, set[tuple[str, str]]] = {}
        self.scans: dict[str, list[dict]] = {}     # alias -> CTE / subquery / function / VALUES scans
        self.subplans: dict[str, dict] = {}
        self.ctes: dict[str, dict] = {}
        self.unmapped: set[str] = set()
        self._cte_columns: dict[str, list[set[ColumnRef]]] = {}
        for node in _nodes(self.root):
            alias = node.get("Alias")
            if node.get("Relation Name") and alias:
                self.relations.setdefault(alias, set()).add((node.get("Schema") or "public", node["Relation Name"]))
            elif alias:
                self.scans.setdefault(alias, []).append(node)
            if node.get("Subplan Name"):
                name = node["Subplan Name"]
                self.subplans[name.split(" (")[0]] = node
                if name.startswith("CTE "):
                    self.ctes[name[4:]] = node

    # -- one expression ------------------------------------------------------------------------

    def refs(self, text: str, depth: int = 0) -> set[ColumnRef]:
        """Source columns of one expression: table columns, and what CTE / subquery / function scan columns
        stand for. Aliases it cannot map go to `unmapped`."""
        text = _LITERAL.sub("''", text)  # a column name inside a string constant is no reference
        out: set[ColumnRef] = set()
        for alias, column in _REF.findall(text):
            alias, column = _unquote(alias), _unquote(column)
            if alias in self.relations:
                for schema, table in self.relations[alias]:
                    out.add(ColumnRef(schema, table, column))
            elif alias in self.scans:
                for scan in self.scans[alias]:
                    out |= self._scan_column(scan, alias, column, depth)
            # Any other alias names no scan in the plan: the server pruned it (`WHERE false`) and reads nothing.
        if len(self.relations) == 1 and len(next(iter(self.relations.values()))) == 1 and not self.scans:
            # With one table in the plan, EXPLAIN leaves column names unqualified: `ssn`, not `c.ssn`.
            ((schema, table),) = next(iter(self.relations.values()))
            for name in _BARE.findall(_REF.sub(" ", text)):
                out.add(ColumnRef(schema, table, _unquote(name)))
        return out

    def output_refs(self, text: str, depth: int = 0) -> set[ColumnRef]:
        """Columns behind one output expression, following `(SubPlan N)` into that subplan's outputs."""
        out = self.refs(text, depth)
        if depth > _MAX_DEPTH:
            self.unmapped.add("(plan nested too deeply)")
            return out
        for match in _SUBPLAN.finditer(text):
            name = match.group(1) or match.group(2)
            sub = self.subplans.get(name) if name else None
            if sub is not None:
                for position in self.outputs(sub, depth + 1):
                    out |= position
        return out

    # -- what a node returns, by position ------------------------------------------------------

    def outputs(self, node: dict, depth: int = 0) -> list[set[ColumnRef]]:
        """The source columns of each output column of `node`."""
        if depth > _MAX_DEPTH:
            self.unmapped.add("(plan nested too deeply)")
            return []
        texts = node.get("Output")
        stacked = self._stacked(node, depth)
        if texts is None:
            return stacked or []
        out = [self.output_refs(t, depth + 1) for t in texts]
        if stacked is not None:
            # Above a set operation EXPLAIN names the columns after the first branch only: add every branch's.
            for i in range(min(len(out), len(stacked))):
                if _PLAIN.fullmatch(texts[i]):  # a column passed up, not an expression over the rows
                    out[i] |= stacked[i]
        return out

    def _stacked(self, node: dict, depth: int) -> list[set[ColumnRef]] | None:
        """For a set operation, or a node passing one's rows up: each position's columns over every branch."""
        kind = node.get("Node Type")
        children = _row_children(node)
        if kind in _SET_OPERATIONS:
            branches = []
            for child in children:
                nested = self._stacked(child, depth + 1) if child.get("Node Type") in _SET_OPERATIONS else None
                branches.append(nested if nested is not None else self.outputs(child, depth + 1))
            width = max((len(b) for b in branches), default=0)
            return [set().union(*(b[i] for b in branches if i < len(b))) for i in range(width)]
        if kind in _PASS_THROUGH and len(children) == 1:
            return self._stacked(children[0], depth + 1)
        return None

    def _scan_column(self, scan: dict, alias: str, column: str, depth: int) -> set[ColumnRef]:
        kind = scan.get("Node Type")
        if depth > _MAX_DEPTH:
            self.unmapped.add(alias)
            return set()
        if kind in ("CTE Scan", "WorkTable Scan"):
            target, key = self.ctes.get(scan.get("CTE Name", "")), scan.get("CTE Name", "")
        elif kind == "Subquery Scan":
            children = _row_children(scan)
            target, key = (children[0] if children else None), alias
        elif kind in ("Function Scan", "Table Function Scan"):
            # Every column of a function in FROM comes from what its call reads (not its filter: that reads it).
            calls = [v for k, v in scan.items() if k.endswith("Function Call") and isinstance(v, str)]
            if not calls:
                self.unmapped.add(alias)
            return {ref for text in calls for ref in self.refs(text, depth + 1)}
        elif kind == "Values Scan":
            return set()  # EXPLAIN does not print the lists; see the module docstring
        else:
            self.unmapped.add(alias)
            return set()
        if target is None:
            self.unmapped.add(alias)
            return set()
        columns = self._cte(key, target, depth) if kind != "Subquery Scan" else self.outputs(target, depth + 1)
        names = self.names.get(key)
        if names is not None and column in names and len(names) == len(columns):
            return columns[list(names).index(column)]
        return set().union(*columns) if columns else set()  # which one is unknown: all of them

    def _cte(self, name: str, target: dict, depth: int) -> list[set[ColumnRef]]:
        """A CTE's columns, computed once; a recursive one (its WorkTable Scan reads itself) to a fixpoint."""
        if name in self._cte_columns:
            return self._cte_columns[name]  # known, or being computed: the rows of the iteration so far
        self._cte_columns[name] = []
        for _ in range(8):
            columns = self.outputs(target, depth + 1)
            if columns == self._cte_columns[name]:
                return columns
            self._cte_columns[name] = columns
        self.unmapped.add(name)  # lineage still growing after 8 rounds: refuse rather than guess
        return self._cte_columns[name]

    def every_ref(self) -> set[ColumnRef]:
        # Below the root, a table scan may emit every column of the row ("physical tlist") whatever the
        # query uses: what is used shows in the conditions and in the outputs of the nodes above.
        return {ref for node in _nodes(self.root)
                for text in _strings(node, skip_output=node is not self.root and "Relation Name" in node)
                for ref in self.refs(text)}


def binding_disagreements(explained: list | dict, *, known: set[ColumnRef], outputs: list[set[ColumnRef]],
                          sensitive: Iterable[ColumnRef], names: Mapping[str, Sequence[str]] | None = None,
                          ) -> list[str]:
    """Reasons (empty when none) the server's binding disagrees with the plan's lineage.

    `names`: the columns of each CTE and FROM subquery by alias (`scan_names`), to follow them by position.
    """
    plan = _Plan(explained, names)
    sensitive = set(sensitive)
    reasons = [f"the server reads {ref}, which the plan did not see the statement read; the read was refused"
               for ref in sorted((plan.every_ref() & sensitive) - known)]
    for i, refs in enumerate(plan.outputs(plan.root)[:len(outputs)]):
        for ref in sorted((refs & sensitive) - outputs[i]):
            reasons.append(f"the server computes output column {i + 1} from {ref}, which the plan did not "
                           "attribute to it; the read was refused")
    if plan.unmapped and sensitive:
        reasons.append(f"the server's plan reads through {len(plan.unmapped)} scan(s) the binding check cannot map "
                       "to their sources; the read was refused")
    return reasons


def planned(analysis: Analysis) -> tuple[set[ColumnRef], list[set[ColumnRef]]]:
    """(every column the analysis saw the statement read, the sources of each output column)."""
    known = set(analysis.source_columns) | set(analysis.error_channel) | {u.column for u in analysis.uses}
    for use in analysis.value_uses:
        known |= set(use.sources) | set(use.other)
    outputs = [set(c.sources) for c in analysis.columns]
    family = dict(analysis.descendants)
    if family:
        # Reading a parent without ONLY, the server scans its partitions / children by their own names: their
        # column is the parent's column as planned (it carries the parent's label: planner._through_inheritance).
        def widen(refs: set[ColumnRef]) -> set[ColumnRef]:
            return refs | {ColumnRef(d.schema, d.table, r.column) for r in refs for d in family.get(r.table_ref, ())}

        known, outputs = widen(known), [widen(o) for o in outputs]
    return known, outputs


def scan_names(analysis: Analysis) -> dict[str, list[str]]:
    """The columns of each CTE and FROM subquery of the executed statement, by name / alias (as EXPLAIN
    names their scans), and of each branch of a lone set operation (`*SELECT* N`). A name given twice
    (two subqueries with one alias) is left out: the check then takes every column of it."""
    from sqlglot import exp

    from .lineage import _output_name, ident

    tree = analysis.tree
    if tree is None:
        return {}
    found: dict[str, list[str] | None] = {}

    def columns(alias_node, body) -> list[str] | None:
        listed = [ident(c) for c in (alias_node.columns if isinstance(alias_node, exp.TableAlias) else [])]
        while isinstance(body, (exp.Subquery, exp.Paren)):
            body = body.this
        while isinstance(body, exp.SetOperation):
            body = body.this
        if not isinstance(body, exp.Select):
            return listed or None
        if any(isinstance(e, exp.Star) or (isinstance(e, exp.Column) and isinstance(e.this, exp.Star))
               for e in body.expressions):
            return listed or None  # `*` left as written: its width is the server's
        own = [_output_name(e) for e in body.expressions]
        return (listed + own[len(listed):]) if listed else own

    def add(name: str, cols: list[str] | None) -> None:
        found[name] = None if name in found else cols

    for cte in tree.find_all(exp.CTE):
        add(ident(cte.alias_or_name), columns(cte.args.get("alias"), cte.this))
    for table in tree.find_all(exp.Table):  # views, as the resolver found their columns (lineage.table)
        listed = table.meta.get("lg_view_columns") if table.meta else None
        if listed is not None:
            alias = table.args.get("alias")
            add(ident(alias.this) if isinstance(alias, exp.TableAlias) and alias.this is not None
                else ident(table.this), list(listed))
    for sub in tree.find_all(exp.Subquery):
        alias = sub.args.get("alias")
        if isinstance(alias, exp.TableAlias) and alias.this is not None:
            add(ident(alias.this), columns(alias, sub.this))
    setops = [s for s in tree.find_all(exp.SetOperation) if not isinstance(s.parent, exp.SetOperation)]
    if len(setops) == 1:
        leaves: list[exp.Expression] = []

        def walk(node):
            if isinstance(node, exp.SetOperation):
                walk(node.this)
                walk(node.expression)
            else:
                leaves.append(node)
        walk(setops[0])
        for i, leaf in enumerate(leaves, 1):
            add(f"*SELECT* {i}", columns(None, leaf))
    return {k: v for k, v in found.items() if v is not None}
