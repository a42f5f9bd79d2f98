"""Load a policy YAML file into a `Policy`, with errors a person can fix.

Every error names the file, the line, the field path and what would be valid; nothing
runs on an invalid policy.

Example:
    >>> policy = load_policy("examples/policy.yaml")   # doctest: +SKIP
    >>> policy.inference
    'default'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ..errors import PolicyError
from . import validate
from .model import Policy


def _line_index(node: yaml.Node, path: tuple = (), out: dict | None = None) -> dict[tuple, int]:
    """Map every key path in the YAML document to its 1-based line number."""
    out = {} if out is None else out
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            sub = path + (key.value,)
            out[sub] = key.start_mark.line + 1
            _line_index(value, sub, out)
            out[sub] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_index(item, path + (i,), out)
    return out


def _line_for(loc: tuple, lines: dict[tuple, int]) -> int:
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return 1


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    """Validate policy YAML text; `source` names it in errors."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data: Any = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark else 1
        raise PolicyError(f"{source}:{line}: not valid YAML: {exc.problem}") from None
    if data is None:
        raise PolicyError(f"{source}:1: the policy is empty; it needs at least 'purposes' and 'classifications'")
    if not isinstance(data, dict):
        raise PolicyError(f"{source}:1: the policy must be a mapping of sections (identities, purposes, rules, ...)")
    lines = _line_index(node) if node is not None else {}
    duplicates = validate.duplicate_keys(node, source)
    if duplicates:
        raise PolicyError("invalid policy:\n  " + "\n  ".join(duplicates))
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            # pydantic appends the failing union/model name to loc in some errors; keep real keys only
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
            field = ".".join(str(p) for p in loc) or "(top level)"
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                parent = _model_fields_at(loc[:-1])
                msg = f"unknown field; valid here: {', '.join(parent)}" if parent else "unknown field"
            elif err["type"] == "literal_error" and "expected" in err.get("ctx", {}):
                msg = f"must be {err['ctx']['expected']}"
            problems.append(f"{source}:{_line_for(loc, lines)}: {field}: {msg}")
        raise PolicyError("invalid policy:\n  " + "\n  ".join(problems)) from None
    unknown_names = validate.reference_problems(policy, lines, source)
    if unknown_names:
        raise PolicyError("invalid policy:\n  " + "\n  ".join(unknown_names))
    if source != "<policy>":
        policy._source = source
    return policy


def _model_fields_at(loc: tuple) -> list[str]:
    """The valid field names at a location in the Policy model (for 'unknown field' errors)."""
    from pydantic import BaseModel

    model: Any = Policy
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)) or part not in model.model_fields:
            return [] if not isinstance(model, type) or not issubclass(model, BaseModel) else list(model.model_fields)
        ann = model.model_fields[part].annotation
        model = _inner_model(ann)
        if model is None:
            return []
    return list(model.model_fields) if isinstance(model, type) and issubclass(model, BaseModel) else []


def _inner_model(ann: Any):
    from typing import get_args

    from pydantic import BaseModel

    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for arg in get_args(ann):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def load_policy(path: str | Path) -> Policy:
    """Read and validate a policy file. Raises `PolicyError` naming file, line and field."""
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise PolicyError(f"policy file not found: {p}") from None
    except OSError as exc:
        raise PolicyError(f"cannot read policy file {p}: {exc.strerror}") from None
    return parse_policy(text, str(p))
