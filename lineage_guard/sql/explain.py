"""Ask the server how it bound the statement, and deny when that disagrees with the plan's lineage.

The planner resolved names with its own reading of the SQL. Before a live read, the session asks
PostgreSQL for its own: `EXPLAIN (VERBOSE, FORMAT JSON)` of the executed statement lists, per plan
node, the columns behind every output expression (`c.ssn`, `count(c.zip)`, `(SubPlan 1)`). Two
checks, over the sensitive columns the reader may not see in the clear:

1. every such column the server reads anywhere in the plan is one the planner knew the statement
   reads (as a source of an output, or in a use it judged);
2. for each top-level output column, the ones the server computes it from are among the sources
   the planner attributed to that column (so the mask applied is the mask it needs).

References the server names through aliases that are not table scans (subquery scans, CTEs,
`"*SELECT* 1"`) are followed where the plan says how (`(SubPlan N)`), otherwise left to check 1.

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
from collections.abc import Iterable, Iterator

from .model import Analysis, ColumnRef

_NAME = r'(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)'
_REF = re.compile(rf"({_NAME})\.({_NAME})")
_BARE = re.compile(rf"(?<![\w.$])({_NAME})(?![\w(.])")
_LITERAL = re.compile(r"'(?:[^']|'')*'")
_SUBPLAN = re.compile(r"\((?:hashed )?(SubPlan \d+)\)|\$\d+|(InitPlan \d+)")
# Plan fields that name things rather than compute on columns.
_NOT_EXPRESSIONS = {"Node Type", "Relation Name", "Schema", "Alias", "Subplan Name", "Parent Relationship",
                    "CTE Name", "Function Name", "Strategy", "Partial Mode", "Join Type", "Scan Direction",
                    "Index Name", "Command", "Operation"}


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


class _Plan:
    def __init__(self, explained: list | dict):
        root = explained[0] if isinstance(explained, list) else explained
        self.root: dict = root["Plan"]
        self.relations: dict[str, set[ColumnRef | tuple[str, str]]] = {}
        self.subplans: dict[str, dict] = {}
        for node in _nodes(self.root):
            if node.get("Relation Name") and node.get("Alias"):
                self.relations.setdefault(node["Alias"], set()).add((node.get("Schema") or "public",
                                                                     node["Relation Name"]))
            if node.get("Subplan Name"):
                self.subplans[node["Subplan Name"].split(" (")[0]] = node

    def refs(self, text: str) -> set[ColumnRef]:
        text = _LITERAL.sub("''", text)  # a column name inside a string constant is no reference
        out: set[ColumnRef] = set()
        for alias, column in _REF.findall(text):
            for schema, table in self.relations.get(_unquote(alias), ()):
                out.add(ColumnRef(schema, table, _unquote(column)))
        if len(self.relations) == 1 and len(next(iter(self.relations.values()))) == 1:
            # With one table in the plan, EXPLAIN leaves column names unqualified: `ssn`, not `c.ssn`.
            ((schema, table),) = next(iter(self.relations.values()))
            for name in _BARE.findall(_REF.sub(" ", text)):
                out.add(ColumnRef(schema, table, _unquote(name)))
        return out

    def output_refs(self, text: str, depth: int = 0) -> set[ColumnRef]:
        """Columns behind one output expression, following `(SubPlan N)` into that subplan's outputs."""
        out = self.refs(text)
        if depth > 16:
            return out
        for match in _SUBPLAN.finditer(text):
            name = match.group(1) or match.group(2)
            sub = self.subplans.get(name) if name else None
            if sub is not None:
                for expr in sub.get("Output") or []:
                    out |= self.output_refs(expr, depth + 1)
        return out

    def every_ref(self) -> set[ColumnRef]:
        # Below the root, a table scan may emit every column of the row ("physical tlist") whatever the
        # query uses: what is used shows in the conditions and in the outputs of the nodes above.
        return {ref for node in _nodes(self.root)
                for text in _strings(node, skip_output=node is not self.root and "Relation Name" in node)
                for ref in self.refs(text)}


def binding_disagreements(explained: list | dict, *, known: set[ColumnRef], outputs: list[set[ColumnRef]],
                          sensitive: Iterable[ColumnRef]) -> list[str]:
    """Reasons (empty when none) the server's binding disagrees with the plan's lineage."""
    plan = _Plan(explained)
    sensitive = set(sensitive)
    reasons = [f"the server reads {ref}, which the plan did not see the statement read; the read was refused"
               for ref in sorted((plan.every_ref() & sensitive) - known)]
    for i, expr in enumerate((plan.root.get("Output") or [])[:len(outputs)]):
        for ref in sorted((plan.output_refs(expr) & sensitive) - outputs[i]):
            reasons.append(f"the server computes output column {i + 1} from {ref}, which the plan did not "
                           "attribute to it; the read was refused")
    return reasons


def planned(analysis: Analysis) -> tuple[set[ColumnRef], list[set[ColumnRef]]]:
    """(every column the analysis saw the statement read, the sources of each output column)."""
    known = set(analysis.source_columns) | set(analysis.error_channel) | {u.column for u in analysis.uses}
    for use in analysis.value_uses:
        known |= set(use.sources) | set(use.other)
    return known, [set(c.sources) for c in analysis.columns]
