"""Checks of a policy beyond its schema: typos that would otherwise make a rule silently never match.

The pydantic model checks each field alone; these check the names fields refer to, and the YAML
itself. Each returns a list of problems, one `file:line: field: what is wrong; valid: ...` each,
and `load_policy` refuses a policy with any (nothing runs on it):

- `duplicate_keys`: a key twice in one mapping (YAML keeps the last silently: eight `rules:`
  would become one);
- `reference_problems`: rule groups, purposes, classifications (labels) and identities that name
  nothing the policy declares, and mask parameters a method does not take;
- `catalog_problems`: classified columns whose table or column is not in a catalog (offline DDL or
  the live database), which would otherwise plan as clear.

Example:
    >>> import yaml
    >>> duplicate_keys(yaml.compose("rules: []\\nrules: []\\n"), "p.yaml")
    ['p.yaml:2: rules: duplicate key (first at line 1); YAML keeps only the last, so merge them']
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from fnmatch import fnmatchcase
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import yaml

from ..errors import ConfigError, PolicyError

if TYPE_CHECKING:
    from .model import MaskDecl, Policy


class RelationLike(Protocol):
    @property
    def column_names(self) -> tuple[str, ...]: ...


class CatalogLike(Protocol):
    """What `catalog_problems` needs of `lineage_guard.sql.catalog.Catalog`."""

    def relation(self, name: str, schema: str | None = None) -> RelationLike | None: ...


Lines = dict[tuple, int]


def duplicate_keys(node: yaml.Node | None, source: str, path: tuple = ()) -> list[str]:
    """Every key that appears twice in one mapping, anywhere in the document."""
    problems: list[str] = []
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else str(key.start_mark)
            line = key.start_mark.line + 1
            field = ".".join(str(p) for p in (*path, name))
            if name in first:
                problems.append(f"{source}:{line}: {field}: duplicate key (first at line {first[name]}); "
                                "YAML keeps only the last, so merge them")
            else:
                first[name] = line
            problems += duplicate_keys(value, source, (*path, name))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            problems += duplicate_keys(item, source, (*path, i))
    return problems


def _line(lines: Lines, *loc) -> int:
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return 1


def _unknown(patterns: Iterable[str], known: set[str]) -> list[str]:
    """Patterns (names or fnmatch globs) that match none of `known`; "*" always matches."""
    return [p for p in patterns if p != "*" and not any(fnmatchcase(k, p) for k in known)]


def _valid(known: set[str], wrong: str) -> str:
    close = difflib.get_close_matches(wrong, sorted(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"{hint}; valid: {', '.join(sorted(known)) or '(none declared)'}"


def _mask_problem(decl: MaskDecl) -> str | None:
    from ..mask.params import checked
    from ..mask.spec import MaskSpec

    try:
        checked(MaskSpec(decl.method, dict(decl.params)))  # type: ignore[arg-type]
    except ConfigError as exc:
        return str(exc)
    return None


def reference_problems(policy: Policy, lines: Lines, source: str) -> list[str]:
    """Names in rules that the policy does not declare, and mask parameters their method does not take."""
    from ..classify.labels import LABELS

    problems: list[str] = []
    purposes = set(policy.purposes)
    labels = set(policy.classifications.values()) | set(LABELS)   # declared, or what detection can give
    declared_groups = set(policy.groups) | {g for d in policy.identities.values() for g in d.groups}
    # Undeclared identities may bring their own groups (`--group`), so group names can only be
    # checked when the policy fixes them: a `groups:` list, or only declared identities allowed.
    check_groups = bool(policy.groups) or policy.require_declared_identities
    for i, rule in enumerate(policy.rules):
        where = f"rules.{i}" + (f" ({rule.name})" if rule.name else "")
        checks = [("purposes", rule.purposes, purposes, "purpose"),
                  ("classifications", rule.classifications, labels, "classification label")]
        if check_groups:
            checks.append(("groups", rule.groups, declared_groups, "group"))
        if policy.require_declared_identities:
            checks.append(("identities", rule.identities, set(policy.identities), "identity"))
        for field, patterns, known, what in checks:
            for j, wrong in enumerate(patterns):
                if wrong in _unknown([wrong], known):
                    problems.append(f"{source}:{_line(lines, 'rules', i, field, j)}: {where}.{field}: "
                                    f"unknown {what} {wrong!r}{_valid(known, wrong)}")
        if rule.mask is not None:
            wrong_mask = _mask_problem(rule.mask)
            if wrong_mask:
                problems.append(f"{source}:{_line(lines, 'rules', i, 'mask', 'params')}: {where}.mask: {wrong_mask}")
    wrong_mask = _mask_problem(policy.default_mask)
    if wrong_mask:
        problems.append(f"{source}:{_line(lines, 'default_mask', 'params')}: default_mask: {wrong_mask}")
    from .row_filters import reference_problems as row_filter_problems

    problems += row_filter_problems(policy, lines, source)
    problems += _requirement_problems(policy, labels, lines, source)
    if check_groups:
        for j, wrong in enumerate(policy.writes.allowed_groups):
            if wrong in _unknown([wrong], declared_groups):
                problems.append(f"{source}:{_line(lines, 'writes', 'allowed_groups', j)}: writes.allowed_groups: "
                                f"unknown group {wrong!r}{_valid(declared_groups, wrong)}")
    return problems


def _requirement_problems(policy: Policy, labels: set[str], lines: Lines, source: str) -> list[str]:
    """quasi_identifiers and purpose_requirements naming labels or purposes the policy does not declare."""
    problems: list[str] = []
    for j, label in enumerate(policy.quasi_identifiers):
        if label not in labels:
            problems.append(f"{source}:{_line(lines, 'quasi_identifiers', j)}: quasi_identifiers: unknown "
                            f"classification label {label!r}{_valid(labels, label)}")
    purposes = set(policy.purposes)
    for name, req in policy.purpose_requirements.items():
        if purposes and name not in purposes:
            problems.append(f"{source}:{_line(lines, 'purpose_requirements', name)}: purpose_requirements.{name}: "
                            f"unknown purpose {name!r}{_valid(purposes, name)}")
        named = [(("l_diversity", "attribute"), req.l_diversity.attribute if req.l_diversity else None),
                 (("subject",), req.subject)]
        for path, label in named:
            if label is not None and label not in labels:
                problems.append(f"{source}:{_line(lines, 'purpose_requirements', name, *path)}: "
                                f"purpose_requirements.{name}.{'.'.join(path)}: unknown classification label "
                                f"{label!r}{_valid(labels, label)}")
    return problems


def catalog_problems(policy: Policy, catalog: CatalogLike, where: str, lines: Lines, source: str) -> list[str]:
    """Classified columns whose table or column `catalog` (named `where` in messages) does not have."""
    problems: list[str] = []
    for key in policy.classifications:
        schema, table, column = key.split(".")
        relation = catalog.relation(table, schema)
        line = _line(lines, "classifications", key)
        if relation is None:
            problems.append(f"{source}:{line}: classifications: {key}: there is no table {schema}.{table} in "
                            f"{where}; the label would protect nothing (check the schema and table name)")
        elif relation.column_names and column not in relation.column_names:
            problems.append(f"{source}:{line}: classifications: {key}: {schema}.{table} has no column "
                            f"{column!r}{_valid(set(relation.column_names), column)}")
    from .row_filters import catalog_problems as row_filter_problems

    return problems + row_filter_problems(policy, catalog, where, lines, source)


def line_index(text: str) -> Lines:
    """Key paths of a policy's YAML to their 1-based lines (empty if the text does not parse)."""
    from .loader import _line_index

    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return {}
    return _line_index(node) if node is not None else {}


def check_against_catalog(policy: Policy, path: str | Path, catalog: CatalogLike, where: str) -> None:
    """Raise `PolicyError` if the policy at `path` classifies columns `catalog` does not have."""
    try:
        lines = line_index(Path(path).read_text())
    except OSError:
        lines = {}
    problems = catalog_problems(policy, catalog, where, lines, str(path))
    if problems:
        raise PolicyError(f"the policy does not match {where}:\n  " + "\n  ".join(problems))
