"""docs/policy-reference.md, generated from the pydantic policy model (`Policy`) and the mask parameters.

Every section, field, type, default and bound comes from the model itself, and each field's
description from its `Field(description=...)` or else the `#` comment above (or beside) it in
the source, so a new field shows up the next time this runs. Regenerate with `make docs`, i.e.

    python -m lineage_guard.policy.reference --output docs/policy-reference.md

Example:
    >>> from lineage_guard.policy.reference import render
    >>> "| `rules` |" in render()
    True
"""

from __future__ import annotations

import argparse
import inspect
import io
import json
import re
import sys
import tokenize
import types
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from ..mask.params import PARAMS
from .model import Policy

COMMAND = "make docs"
TOP = "policy (top level)"
# Fields whose source carries neither `Field(description=...)` nor a comment. A field added
# without either still gets its row (type, default, bounds); say what it means at its definition.
DESCRIPTIONS = {
    "Policy.version": "the policy format version",
    "Policy.identities": "every principal that may ask, with its kind and groups (callers cannot add groups to themselves)",
    "Policy.groups": "the group names identities may belong to (when set, an identity naming another group is an error)",
    "Policy.purposes": "the purposes a request may name; any other purpose is refused",
    "Policy.classifications": "`schema.table.column` -> classification label; labels declared here always win over detection",
    "Policy.rules": "ordered: the first rule matching the column's classification, the identity and the purpose decides",
    "Policy.default_mask": "the mask of a sensitive column no rule covers",
    "Policy.keys": "how mask keys are scoped (one key per scope and classification)",
    "Policy.sensitive_uses": "predicate forms a query may apply to a sensitive value (cohort selection)",
    "Policy.writes": "who may write, and the guardrails on DDL and unbounded writes",
    "Policy.approvals": "how long approval requests live, where they are stored, who is notified",
    "Policy.detection": "detection of sensitive columns the policy does not classify",
    "Policy.validation": "a Great Expectations proof of the masked output before it is committed",
    "IdentityDecl.kind": "what the principal is",
    "IdentityDecl.groups": "the groups rules match on",
    "IdentityDecl.attributes": "free-form attributes recorded with the identity (the policy's win over the caller's)",
    "Rule.name": "a name shown in reasons and the ledger",
    "Rule.classifications": "classification labels (globs) the rule covers",
    "Rule.columns": "optional column patterns (`public.patients.*`) narrowing the rule",
    "Rule.identities": "principals (globs) the rule applies to",
    "Rule.groups": "groups (globs) the rule applies to; `*` also matches an identity with no group",
    "Rule.purposes": "purposes (globs) the rule applies to",
    "Rule.action": "`clear` returns the value as stored; `mask` applies `mask`",
    "Rule.mask": "the mask, required with `action: mask`, refused with `action: clear`",
    "Rule.approval": "with `action: clear`: such a read waits for a human approval",
    "MaskDecl.method": "one of the mask methods below",
    "MaskDecl.params": "the method's parameters (below); unknown ones are errors",
    "MaskDecl.scope": "overrides `keys.scope` for this mask",
    "KeysConfig.scope": "the same value gives the same token within a scope, unlinkable tokens across scopes",
    "KeysConfig.tenant": "the tenant name, required with `scope: tenant`",
    "SensitiveUse.name": "a name shown in reasons",
    "SensitiveUse.classifications": "classification labels (globs) the predicate may be applied to",
    "SensitiveUse.identities": "principals (globs) it applies to",
    "SensitiveUse.groups": "groups (globs) it applies to",
    "SensitiveUse.purposes": "purposes (globs) it applies to",
    "SensitiveUse.action": "`needs_approval`: such a query waits for a human approval",
    "ValidationConfig.enabled": "run the suite (needs the `[gx]` extra)",
    "ValidationConfig.sample_rows": "rows of the masked output checked",
    "ServiceConfig.audience": "the one `aud` a JWT must carry",
    "ServiceConfig.issuers": "OIDC/JWT issuers whose signing keys the service trusts",
    "ServiceConfig.principals": "verified claims -> a declared identity (first match wins)",
    "ServiceConfig.purposes": "identity -> the purposes it may request per call (`x-lineage-guard-purpose`)",
    "ServiceConfig.api_tokens": "accept API tokens made with `lineage-guard tokens create`",
    "ServiceConfig.limits": "limits for every identity",
    "ServiceConfig.identity_limits": "identity -> limits replacing `limits` for it",
    "ServiceConfig.client_ca_file": "mTLS: require client certificates signed by this CA (PEM; or `serve --client-ca`)",
    "IssuerConfig.issuer": "the `iss` claim, exactly",
    "IssuerConfig.jwks_url": "where the issuer publishes its keys (exactly one of jwks_url, jwks_file)",
    "IssuerConfig.jwks_file": "a JWKS file on the server",
    "IssuerConfig.algorithms": "accepted signature algorithms; asymmetric only (HS* and none are refused)",
    "IssuerConfig.leeway_seconds": "clock skew allowed on `exp` and `nbf`",
    "PrincipalMap.identity": "the declared identity these claims become",
    "PrincipalMap.issuer": "one of `service.issuers`, or `client-certificate` (an mTLS client certificate)",
    "PrincipalMap.subject": "the exact `sub`, or the certificate's first SAN (else CN) (exactly one of subject, subject_pattern)",
    "PrincipalMap.subject_pattern": "a glob over `sub`",
    "PrincipalMap.claims": "further claims that must equal these values (booleans as `true`/`false`)",
    "LimitsConfig.concurrent_streams": "open streams at once",
    "LimitsConfig.max_rows": "rows one stream may return",
    "LimitsConfig.max_bytes": "bytes one stream may return",
    "LimitsConfig.statement_timeout_s": "statement timeout of each read (and of a prepared write's whole batch)",
    "LimitsConfig.open_handles": "prepared statements and unfetched tickets held at once",
    "LimitsConfig.max_parameter_rows": "parameter rows one prepared write may bind (and at most `max_rows`)",
}
HEADER = f"""# Policy reference

<!-- Generated from lineage_guard/policy (the pydantic model) by `python -m lineage_guard.policy.reference
--output docs/policy-reference.md` (`{COMMAND}`). Do not edit by hand: tests/test_policy_reference.py fails
when this file is stale. -->

A policy is one YAML file (`lineage-guard check-policy FILE` validates it, with `file:line`
errors). Unknown keys are errors everywhere. Beyond the types below, `check-policy` also refuses
duplicate keys, names a rule uses that the policy does not declare (groups, purposes,
classification labels, identities), and mask parameters a method does not take.
[`examples/policy.yaml`](../examples/policy.yaml) shows every section.
"""


def render() -> str:
    """The whole reference as Markdown: one section per model reachable from `Policy`, then the mask methods."""
    paths: dict[type[BaseModel], list[str]] = {}  # a model used in several places is one section
    queue: list[tuple[type[BaseModel], str]] = [(Policy, TOP)]
    while queue:
        model, where = queue.pop(0)
        if model in paths:
            paths[model].append(where)
            continue
        paths[model] = [where]
        for key, info in model.model_fields.items():
            for nested in _models_in(info.annotation):
                queue.append((nested, _child_path(where, info.alias or key, info.annotation)))
    out = [HEADER, *(_section(model, where) for model, where in paths.items()), _mask_methods()]
    return "\n".join(out).rstrip() + "\n"


def _section(model: type[BaseModel], where: list[str]) -> str:
    lines = [f"## {', '.join(f'`{w}`' for w in where)}", ""]
    doc = inspect.getdoc(model)
    if doc and doc != inspect.getdoc(BaseModel):
        lines += [_paragraph(doc), ""]
    # A field is described where it is defined: the model itself or a base it inherits it from.
    bases = [m for m in model.__mro__ if isinstance(m, type) and issubclass(m, BaseModel) and m is not BaseModel]
    comments = {k: v for m in reversed(bases) for k, v in _field_comments(m).items()}
    listed = {k: v for m in reversed(bases) for k, v in DESCRIPTIONS.items() if k.startswith(f"{m.__name__}.")}
    lines += ["| key | type | default | description |", "| --- | --- | --- | --- |"]
    for name, info in model.model_fields.items():
        description = info.description or comments.get(name) or next(
            (v for k, v in listed.items() if k.split(".", 1)[1] == name), ""
        )
        lines.append(
            f"| `{info.alias or name}` | {_cell(_type(info.annotation))} | {_cell(_default(info))} | "
            f"{_cell(' '.join(filter(None, [description, _bounds(info)])))} |"
        )
    return "\n".join(lines) + "\n"


def _child_path(where: str, key: str, annotation: Any) -> str:
    base = "" if where == TOP else where + "."
    if _is(annotation, list):
        return f"{base}{key}[]"
    if _is(annotation, dict):
        return f"{base}{key}.<name>"
    return f"{base}{key}"


def _is(annotation: Any, origin: type) -> bool:
    """Whether `annotation` is `origin[...]`, possibly inside `X | None`."""
    if get_origin(annotation) is origin:
        return True
    return _is_union(annotation) and any(_is(a, origin) for a in get_args(annotation))


def _is_union(annotation: Any) -> bool:
    return get_origin(annotation) in (typing.Union, types.UnionType)


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models_in(arg)]


def _type(annotation: Any) -> str:
    origin, args = get_origin(annotation), get_args(annotation)
    if annotation is type(None):
        return "null"
    if origin is Literal:
        return " \\| ".join(f"`{json.dumps(a)}`" for a in args)
    if _is_union(annotation):
        return " or ".join(_type(a) for a in args)
    if origin is list:
        return f"list of {_type(args[0])}" if args else "list"
    if origin is dict:
        return f"map of {_type(args[0])} to {_type(args[1])}" if args else "map"
    if origin is typing.Annotated:
        return _type(args[0])
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "mapping (below)"
    if annotation is Any:
        return "any"
    names = {str: "string", int: "integer", float: "number", bool: "boolean"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "**required**"
    value = info.default_factory() if info.default_factory is not None else info.default  # type: ignore[call-arg]
    if isinstance(value, BaseModel):
        return "(defaults below)"
    return f"`{json.dumps(_plain(value), ensure_ascii=False)}`"


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


_BOUNDS = {"ge": "≥ {}", "gt": "> {}", "le": "≤ {}", "lt": "< {}", "min_length": "at least {} item(s)",
           "max_length": "at most {} item(s)", "pattern": "matches `{}`"}


def _bounds(info: FieldInfo) -> str:
    found = [text.format(getattr(m, attr)) for m in info.metadata for attr, text in _BOUNDS.items()
             if getattr(m, attr, None) is not None]
    return f"({', '.join(found)})" if found else ""


def _field_comments(model: type[BaseModel]) -> dict[str, str]:
    """Field name -> the `#` comment above it (or at the end of its line) in the class body."""
    try:
        source = inspect.getsource(model)
    except (OSError, TypeError):  # built without a source file (e.g. created at run time)
        return {}
    found: dict[str, str] = {}
    pending: list[str] = []
    fields = set(getattr(model, "__annotations__", {})) & set(model.model_fields)
    # Only the class body's own statements at its first indentation: nested defs are skipped.
    body_indent: int | None = None
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            text = tok.string.lstrip("#").strip()
            line_before = tok.line[: tok.start[1]].strip()
            if line_before:  # a trailing comment on a field line
                name = re.match(r"(\w+)\s*:", line_before)
                if name and name.group(1) in fields and name.group(1) not in found:
                    found[name.group(1)] = _strip_noqa(text)
            else:
                pending.append(text)
        elif tok.type == tokenize.NAME and tok.start[0] > 1:
            indent = tok.start[1]
            if body_indent is None and tok.line.strip() and not tok.line.lstrip().startswith("class "):
                body_indent = indent
            if indent == body_indent and tok.line[:indent].strip() == "" and tok.line.lstrip().startswith(tok.string):
                if tok.string in fields and re.match(rf"\s*{tok.string}\s*:", tok.line) and pending:
                    found.setdefault(tok.string, _strip_noqa(" ".join(pending)))
                pending = []
    return {k: v for k, v in found.items() if v}


def _strip_noqa(text: str) -> str:
    return re.sub(r"\s*(noqa|type: ignore)\b.*$", "", text).strip()


def _paragraph(doc: str) -> str:
    """A docstring as Markdown: prose lines joined into paragraphs, indented examples kept as a YAML block."""
    parts: list[str] = []
    prose: list[str] = []
    block: list[str] = []

    def flush_prose() -> None:
        if prose:
            parts.append(re.sub(r"\s*\n\s*", " ", "\n".join(prose)).strip())
            prose.clear()

    def flush_block() -> None:
        if block:
            parts.append("```yaml\n" + "\n".join(block).rstrip() + "\n```")
            block.clear()

    for line in doc.splitlines():
        if line.startswith("    ") or (block and not line.strip()):
            flush_prose()
            block.append(line[4:])
        elif line.strip():
            flush_block()
            prose.append(line)
        else:
            flush_block()
            flush_prose()
    flush_block()
    flush_prose()
    return "\n\n".join(p for p in parts if p)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\\\\|", "\\|").replace("\n", " ")


def _mask_methods() -> str:
    lines = [
        "## Mask methods (`mask.method`, `default_mask.method`) and their `params`",
        "",
        "A parameter a method does not take, or a value outside its range, fails the policy's load.",
        "",
        "| method | param | default | valid values |",
        "| --- | --- | --- | --- |",
    ]
    for method, params in PARAMS.items():
        if not params:
            lines.append(f"| `{method}` | (none) | | |")
        for name, param in params.items():
            default = "(none)" if param.default is None else f"`{json.dumps(param.default)}`"
            lines.append(f"| `{method}` | `{name}` | {default} | {_cell(param.valid)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write the reference to `--output` (or stdout); `--check` exits 1 if that file differs."""
    parser = argparse.ArgumentParser(prog="python -m lineage_guard.policy.reference", description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, help="file to write (default: stdout)")
    parser.add_argument("--check", action="store_true", help="do not write; exit 1 if --output is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if args.output is None:
            parser.error("--check needs --output")
        current = args.output.read_text() if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is stale: run `{COMMAND}` and commit it", file=sys.stderr)
            return 1
        return 0
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
