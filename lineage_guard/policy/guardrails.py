"""Write guardrails: who may write at all, which dangerous statements are refused, which need a human.

The planner calls `check_write` for every statement that is not a plain read. Nobody may
write unless the policy names them (`writes.allowed_identities` / `writes.allowed_groups`).
DROP, TRUNCATE, ALTER, GRANT/REVOKE, `COPY ... PROGRAM` and DELETE/UPDATE without WHERE are
denied by default; a policy relaxes one of them only explicitly, for named source
environments (`relax`), optionally still behind an approval. `approvals` rules send writes
that touch listed tables, or any sensitive table, to a human first.

Example:
    >>> writes = WritesPolicy.model_validate({
    ...     "allowed_groups": ["data-eng"],
    ...     "relax": [{"allow": ["truncate"], "environments": ["staging"]}],
    ...     "approvals": [{"environments": ["production"], "sensitive": True}],
    ... })
    >>> from lineage_guard.sql.model import Analysis, TableRef
    >>> truncate = Analysis("TRUNCATE public.orders", "ddl", False,
    ...                     tables_written=(TableRef("public", "orders"),), flags=frozenset({"truncate"}))
    >>> me = Identity("svc-etl", "service", frozenset({"data-eng"}))
    >>> check_write(truncate, writes, identity=me, environment="staging", sensitive_tables=set()).action
    'allow'
    >>> check_write(truncate, writes, identity=me, environment="production", sensitive_tables=set()).action
    'deny'
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..identity import Identity
from ..sql.model import Analysis, TableRef

Danger = Literal[
    "drop", "truncate", "alter", "grant", "revoke", "copy_program", "delete_without_where", "update_without_where",
]
DANGERS: tuple[str, ...] = Danger.__args__  # type: ignore[attr-defined]

# What each refused operation is, and what a person can do instead (reasons must be actionable).
_DESCRIBE: dict[str, tuple[str, str]] = {
    "drop": ("DROP", "drop it by hand through your change process, or relax 'drop' for this environment"),
    "truncate": ("TRUNCATE", "use DELETE ... WHERE for the rows you mean, or relax 'truncate' for this environment"),
    "alter": ("ALTER", "run schema migrations through your migration tool, or relax 'alter' for this environment"),
    "grant": ("GRANT", "manage privileges outside pipelines, or relax 'grant' for this environment"),
    "revoke": ("REVOKE", "manage privileges outside pipelines, or relax 'revoke' for this environment"),
    "copy_program": ("COPY ... PROGRAM", ("it runs a shell command on the database server; use COPY ... FROM STDIN "
                     "or an insert instead")),
    "delete_without_where": ("DELETE without WHERE", ("add a WHERE clause naming the rows to delete, "
                             "or relax 'delete_without_where' for this environment")),
    "update_without_where": ("UPDATE without WHERE", ("add a WHERE clause naming the rows to update, "
                             "or relax 'update_without_where' for this environment")),
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _nonempty(values: list[str], what: str) -> list[str]:
    if not values or any(not v.strip() for v in values):
        raise ValueError(f"{what} must list at least one non-empty name ('*' for all, if you mean it)")
    return values


class Relaxation(_Strict):
    """Allow some refused operations in some source environments, e.g. TRUNCATE in staging."""

    allow: list[Danger]
    environments: list[str]
    approval: bool = False  # allowed, but only once a human approves

    @field_validator("allow")
    @classmethod
    def _some(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError(f"allow must name at least one of: {', '.join(DANGERS)}")
        return v

    @field_validator("environments")
    @classmethod
    def _envs(cls, v: list[str]) -> list[str]:
        return _nonempty(v, "environments")


class WriteApprovalRule(_Strict):
    """Writes in these environments that touch these tables (or any sensitive table) need an approval."""

    environments: list[str]
    tables: list[str] = Field(default_factory=list)  # schema.table patterns, e.g. public.orders, billing.*
    sensitive: bool = False

    @field_validator("environments")
    @classmethod
    def _envs(cls, v: list[str]) -> list[str]:
        return _nonempty(v, "environments")

    @field_validator("tables")
    @classmethod
    def _qualified(cls, v: list[str]) -> list[str]:
        for pattern in v:
            if len(pattern.split(".")) != 2 or not all(pattern.split(".")):
                raise ValueError(f"table pattern {pattern!r} must be schema.table (e.g. public.orders or billing.*)")
        return v

    @model_validator(mode="after")
    def _selects_something(self) -> WriteApprovalRule:
        if not self.tables and not self.sensitive:
            raise ValueError("an approval rule needs 'tables: [...]' and/or 'sensitive: true'")
        return self


class WritesPolicy(_Strict):
    """The `writes:` section of a policy. The default lets nobody write anything."""

    allowed_identities: list[str] = Field(default_factory=list)
    allowed_groups: list[str] = Field(default_factory=list)
    relax: list[Relaxation] = Field(default_factory=list)
    approvals: list[WriteApprovalRule] = Field(default_factory=list)


@dataclass(frozen=True)
class GuardrailResult:
    """`action` is allow | deny | needs_approval; `reasons` say what to do about it."""

    action: Literal["allow", "deny", "needs_approval"]
    reasons: list[str] = field(default_factory=list)


def _matches(patterns: Iterable[str], value: str) -> bool:
    return any(fnmatchcase(value, p) for p in patterns)


def dangers(analysis: Analysis) -> list[str]:
    """The refused-by-default operations a statement performs, in a stable order."""
    found = set(analysis.flags) & set(DANGERS)
    # The analysis flags `WHERE 1 = 1` (a WHERE testing no column) as `delete_all`/`update_all`.
    found |= {f"{f.removesuffix('_all')}_without_where" for f in analysis.flags & {"delete_all", "update_all"}}
    if analysis.kind == "dcl" and not found & {"grant", "revoke"}:
        found.add("grant")  # a privilege statement the analysis could not name is treated as the stronger one
    if analysis.kind == "delete" and not analysis.has_where:
        found.add("delete_without_where")
    if analysis.kind == "update" and not analysis.has_where:
        found.add("update_without_where")
    return [d for d in DANGERS if d in found]


def _tables(refs: Iterable[TableRef]) -> str:
    names = sorted({str(r) for r in refs})
    return ", ".join(names) if names else "an unnamed table"


def may_write(writes: WritesPolicy, identity: Identity) -> bool:
    """Whether the policy lets `identity` write at all (writes.allowed_identities / allowed_groups)."""
    return (_matches(writes.allowed_identities, identity.principal)
            or any(_matches(writes.allowed_groups, g) for g in identity.groups))


def check_write(
    analysis: Analysis,
    writes: WritesPolicy,
    *,
    identity: Identity,
    environment: str,
    sensitive_tables: set[TableRef],
) -> GuardrailResult:
    """Decide a statement that is not a plain read: allow, deny, or send it to a human.

    Deny reasons win over approval reasons (an approval cannot lift a denial).
    """
    if not environment or not environment.strip():
        return GuardrailResult("deny", ["the source has no environment name; set one (e.g. production, staging)"])
    denied: list[str] = [f"the SQL analysis refused this statement: {v}" for v in analysis.violations]
    approval: list[str] = []
    written = _tables(analysis.tables_written)

    if analysis.kind == "other":
        denied.append("this statement's kind could not be determined, so its effects cannot be checked; "
                      "rewrite it as a plain INSERT/UPDATE/DELETE/MERGE")
    if not may_write(writes, identity):
        denied.append(f"identity {identity.principal!r} may not write: add it to writes.allowed_identities "
                      f"or one of its groups to writes.allowed_groups in the policy")

    relaxations = [r for r in writes.relax if _matches(r.environments, environment)]
    for danger in dangers(analysis):
        what, fix = _DESCRIBE[danger]
        grants = [r for r in relaxations if danger in r.allow]
        if not grants:
            denied.append(f"{what} on {written} is denied by default in environment {environment!r}; {fix}")
        elif all(r.approval for r in grants):
            approval.append(f"{what} on {written} in environment {environment!r} is allowed only with an approval")

    touched = set(analysis.tables_written) | set(analysis.tables_read)
    for rule in writes.approvals:
        if not _matches(rule.environments, environment):
            continue
        listed = sorted(str(t) for t in touched if _matches(rule.tables, str(t)))
        if listed:
            approval.append(f"writes touching {', '.join(listed)} in environment {environment!r} need an approval")
        if rule.sensitive:
            hits = sorted(str(t) for t in touched & set(sensitive_tables))
            if hits:
                approval.append(f"writes touching sensitive table(s) {', '.join(hits)} in environment "
                                f"{environment!r} need an approval")

    if denied:
        return GuardrailResult("deny", denied)
    if approval:
        return GuardrailResult("needs_approval", list(dict.fromkeys(approval)))
    return GuardrailResult("allow", [])
