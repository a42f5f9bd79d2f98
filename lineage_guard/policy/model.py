"""The policy, as validated data: who may see which classified columns, for which purpose, how masked.

A policy is YAML (see `examples/policy.yaml`); `lineage_guard.policy.load_policy` turns it
into a `Policy` and reports errors with file, line and field. Rules are ordered: the first
rule that matches a column's classification, the identity and the purpose decides it. A
sensitive column that no rule covers gets `default_mask` (the strongest mask).
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from ..approvals.config import ApprovalsConfig
from ..classify.config import DetectionConfig
from ..console.config import ConsoleConfig
from ..errors import ConfigError
from ..identity import Identity
from ..mask.params import checked
from ..mask.spec import METHODS, MaskSpec
from ..service.config import ServiceConfig
from ..sql.model import ColumnRef
from .guardrails import WritesPolicy
from .purposes import PurposeRequirement
from .row_filters import RowFilterDecl


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IdentityDecl(_Strict):
    kind: Literal["human", "service", "agent"] = "human"
    groups: list[str] = Field(default_factory=list)
    attributes: dict[str, str] = Field(default_factory=dict)


class MaskDecl(_Strict):
    """A mask method with its parameters and, optionally, a key scope overriding `keys.scope`."""

    method: str
    params: dict[str, Any] = Field(default_factory=dict)
    scope: Literal["global", "tenant", "purpose", "identity", "group"] | None = None

    @field_validator("method")
    @classmethod
    def _known_method(cls, v: str) -> str:
        if v not in METHODS:
            raise ValueError(f"unknown mask method {v!r}; valid: {', '.join(METHODS)}")
        return v

    @model_validator(mode="after")
    def _valid_params(self) -> MaskDecl:
        # The kernels' own checks, at load time: a bad parameter (or keyless hash without
        # allow_keyless) is a file:line error, not a failed run.
        try:
            checked(MaskSpec(self.method, dict(self.params)))  # type: ignore[arg-type]
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return self


class Rule(_Strict):
    """Clear or mask columns of some classifications, for some identities/groups and purposes.

    `"*"` matches anything. `columns` (optional) narrows the rule to column patterns
    (`public.patients.*`). `approval: true` on a clear rule makes such a read wait for a
    human approval.
    """

    name: str | None = None
    classifications: list[str] = Field(default_factory=lambda: ["*"])
    columns: list[str] = Field(default_factory=list)
    identities: list[str] = Field(default_factory=lambda: ["*"])
    groups: list[str] = Field(default_factory=lambda: ["*"])
    purposes: list[str] = Field(default_factory=lambda: ["*"])
    action: Literal["clear", "mask"]
    mask: MaskDecl | None = None
    approval: bool = False

    @model_validator(mode="after")
    def _mask_iff_masking(self) -> Rule:
        if self.action == "mask" and self.mask is None:
            raise ValueError("a rule with action 'mask' needs a 'mask: {method: ...}'")
        if self.action == "clear" and self.mask is not None:
            raise ValueError("a rule with action 'clear' must not have a 'mask'")
        return self

    def matches(self, label: str, column: ColumnRef, identity: Identity, purpose: str) -> bool:
        def any_of(patterns: list[str], values) -> bool:
            return any(fnmatchcase(v, p) for p in patterns for v in values)

        return (
            any_of(self.classifications, [label])
            and (not self.columns or any_of(self.columns, [str(column)]))
            and any_of(self.identities, [identity.principal])
            and ("*" in self.groups or any_of(self.groups, identity.groups))
            and any_of(self.purposes, [purpose])
        )


class SensitiveUse(_Strict):
    """A predicate form the policy lets a query apply to a classification (opaque-values rule, part C).

    Honoured only in the WHERE (AND-ed atoms) of a top-level aggregate over one table; the executed
    statement then keeps only groups of at least `min_group_size` rows. Example (YAML):
        sensitive_uses:
          - {name: cohort-by-birth-date, classifications: [date_of_birth], purposes: [ai_training],
             predicates: [range], action: allow}
    """

    name: str | None = None
    classifications: list[str] = Field(min_length=1)
    identities: list[str] = Field(default_factory=lambda: ["*"])
    groups: list[str] = Field(default_factory=lambda: ["*"])
    purposes: list[str] = Field(default_factory=lambda: ["*"])
    # range: <, <=, >, >=, BETWEEN against constants; equals: = constant; in_list: IN (constants);
    # is_null: IS [NOT] NULL.
    predicates: list[Literal["range", "equals", "in_list", "is_null"]] = Field(min_length=1)
    action: Literal["allow", "needs_approval"] = "allow"

    def matches(self, label: str, form: str, identity: Identity, purpose: str) -> bool:
        def any_of(patterns: list[str], values) -> bool:
            return any(fnmatchcase(v, p) for p in patterns for v in values)

        return (form in self.predicates and any_of(self.classifications, [label])
                and any_of(self.identities, [identity.principal])
                and ("*" in self.groups or any_of(self.groups, identity.groups))
                and any_of(self.purposes, [purpose]))


class KeysConfig(_Strict):
    """Key scope: the same value gives the same token within a scope, unlinkable tokens across scopes."""

    scope: Literal["global", "tenant", "purpose", "identity", "group"] = "purpose"
    tenant: str | None = None

    @model_validator(mode="after")
    def _tenant_named(self) -> KeysConfig:
        if self.scope == "tenant" and not self.tenant:
            raise ValueError("keys.scope 'tenant' needs keys.tenant")
        return self


class ValidationConfig(_Strict):
    """Prove masking before the sink is committed: a Great Expectations suite on a sample of the output.

    Needs the [gx] extra. Off by default (the first run in a process pays GX's import, ~7 s).
    """

    enabled: bool = False
    sample_rows: int = Field(10_000, ge=1, le=10_000_000)


class Policy(_Strict):
    """The whole policy. Build with `load_policy(path)`; construct directly in tests."""

    version: Literal[1] = 1
    identities: dict[str, IdentityDecl] = Field(default_factory=dict)
    # Embedded mode trusts no caller-supplied identity detail: an identity must be declared here,
    # and kind and groups come from here. `false` lets undeclared identities in, with no groups.
    require_declared_identities: bool = True
    groups: list[str] = Field(default_factory=list)
    purposes: list[str] = Field(default_factory=list)
    classifications: dict[str, str] = Field(default_factory=dict)
    quasi_identifiers: list[str] = Field(
        default_factory=list,
        description="classification labels that identify a person only in combination (e.g. postal_code, "
                    "date_of_birth, sex); a purpose's `k_anonymity` is measured over the output columns carrying "
                    "them (clear, generalized or deterministically masked: a token partitions rows as its value does)")
    purpose_requirements: dict[str, PurposeRequirement] = Field(
        default_factory=dict,
        description="per purpose: `no_sensitive_clear`, a re-identification floor (`k_anonymity`, `l_diversity`) "
                    "measured on the masked output before it is committed")
    rules: list[Rule] = Field(default_factory=list)
    default_mask: MaskDecl = Field(default_factory=lambda: MaskDecl(method="redact"))
    keys: KeysConfig = Field(default_factory=KeysConfig)
    # default: the opaque-values rule (lineage_guard.sql.inference); strict: sensitive values may only be
    # returned, masked; lenient: UNSAFE, predicates / joins / sorts on sensitive values are not judged.
    inference: Literal["lenient", "default", "strict"] = "default"
    sensitive_uses: list[SensitiveUse] = Field(default_factory=list)
    min_group_size: int = Field(10, ge=2)  # the smallest group a declared sensitive predicate may return
    # The schema unqualified names resolve in; reads pin it (`SET LOCAL search_path`), plans use it too.
    search_path: list[str] = Field(default_factory=lambda: ["public"], min_length=1)
    writes: WritesPolicy = Field(default_factory=WritesPolicy)
    approvals: ApprovalsConfig = Field(default_factory=ApprovalsConfig)
    detection: DetectionConfig = Field(default_factory=DetectionConfig)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    service: ServiceConfig = Field(default_factory=ServiceConfig)   # who may call `lineage-guard serve`
    # Which rows of a table an identity may read, per group and purpose (policy/row_filters.py).
    row_filters: list[RowFilterDecl] = Field(default_factory=list)
    row_filters_combine: Literal["all", "any"] = "all"   # several filters matching one table: all / any must hold
    console: ConsoleConfig = Field(default_factory=ConsoleConfig)   # who may sign in to `lineage-guard console`
    # Where the policy was read from (set by `load_policy`), so errors can name the file to edit.
    _source: str | None = PrivateAttr(default=None)
    _labels: tuple[dict[str, str], dict[ColumnRef, str]] | None = PrivateAttr(default=None)

    @field_validator("classifications")
    @classmethod
    def _qualified(cls, v: dict[str, str]) -> dict[str, str]:
        for key in v:
            if len(key.split(".")) != 3 or not all(key.split(".")):
                raise ValueError(f"classification key {key!r} must be schema.table.column (e.g. public.customers.email)")
        return v

    @model_validator(mode="after")
    def _floors_have_quasi_identifiers(self) -> Policy:
        for name, req in self.purpose_requirements.items():
            if req.has_floor and not self.quasi_identifiers:
                raise ValueError(f"purpose_requirements.{name} sets a re-identification floor but no classification "
                                 "is a quasi-identifier: list labels under `quasi_identifiers:` (e.g. [postal_code, "
                                 "date_of_birth])")
            if req.l_diversity is not None and req.l_diversity.attribute in self.quasi_identifiers:
                raise ValueError(f"purpose_requirements.{name}.l_diversity.attribute {req.l_diversity.attribute!r} is "
                                 "also a quasi-identifier; the sensitive attribute must be another classification")
        return self

    @model_validator(mode="after")
    def _groups_declared(self) -> Policy:
        if self.groups:
            declared = set(self.groups)
            for name, decl in self.identities.items():
                unknown = set(decl.groups) - declared
                if unknown:
                    raise ValueError(f"identity {name!r} names undeclared group(s) {sorted(unknown)}; declared: {sorted(declared)}")
        return self

    # -- lookups used by the planner -------------------------------------------------------

    def labels(self) -> dict[ColumnRef, str]:
        # Parsed once per policy (every plan asks), handed out as a copy; re-parsed if the dict changed.
        cached = self._labels
        if cached is None or cached[0] != self.classifications:
            cached = self._labels = (dict(self.classifications),
                                     {ColumnRef.parse(k): v for k, v in self.classifications.items()})
        return dict(cached[1])

    @property
    def source(self) -> str:
        """The file this policy was loaded from, or a description when it was built in code."""
        return self._source or "the policy (built in code)"

    def resolve_identity(self, identity: Identity) -> Identity:
        """Step 1: kind, groups and attributes come from the policy; a caller cannot add groups to itself.

        An identity the policy does not declare keeps its principal and kind but gets no groups
        (so no group rule can match it); with `require_declared_identities` (the default) the
        plan then denies it, see `identity_problem`.

            >>> p = Policy(identities={"svc-x": {"kind": "service", "groups": ["etl"]}})
            >>> sorted(p.resolve_identity(Identity("svc-x", groups=frozenset({"admins"}))).groups)
            ['etl']
            >>> p.resolve_identity(Identity("eve", groups=frozenset({"admins"}))).groups
            frozenset()
        """
        decl = self.identities.get(identity.principal)
        if decl is None:
            return Identity(principal=identity.principal, kind=identity.kind, groups=frozenset(),
                            attributes=dict(identity.attributes), auth=identity.auth)
        return Identity(
            principal=identity.principal,
            kind=decl.kind,
            groups=frozenset(decl.groups),
            attributes={**identity.attributes, **decl.attributes},  # the policy's attributes win
            auth=identity.auth,
        )

    def identity_problem(self, identity: Identity) -> str | None:
        """Why `identity` may not read under this policy (a deny reason naming the file to edit), or None."""
        if not self.require_declared_identities or identity.principal in self.identities:
            return None
        return (f"identity {identity.principal!r} is not declared in {self.source}: add it under `identities:` "
                f"with its kind and groups, e.g. `identities: {{{identity.principal}: {{kind: {identity.kind}, "
                f"groups: [...]}}}}` (groups come only from the policy, never from the caller)")

    def scope_for(self, identity: Identity, purpose: str, override: str | None = None) -> str:
        kind = override or self.keys.scope
        if kind == "global":
            return "global"
        if kind == "tenant":
            return f"tenant:{self.keys.tenant}"
        if kind == "purpose":
            return f"purpose:{purpose}"
        if kind == "identity":
            return f"identity:{identity.principal}"
        # group: a stable choice among the identity's groups, so members share tokens
        return f"group:{min(identity.groups)}" if identity.groups else f"identity:{identity.principal}"

    def mask_spec(self, decl: MaskDecl, identity: Identity, purpose: str, *, classification: str | None = None,
                  subject: int | None = None) -> MaskSpec:
        """The MaskSpec `decl` gives for `identity` and `purpose`: keyed per (scope, `classification`).

        The planner passes each column's classification, so keyed masks of different
        classifications never share a key; `subject` is a bound `shift_date` subject position.
        """
        return MaskSpec(decl.method, dict(decl.params), self.scope_for(identity, purpose, decl.scope),  # type: ignore[arg-type]
                        classification=classification, subject=subject)

    def declared_use(self, label: str, form: str, identity: Identity, purpose: str) -> SensitiveUse | None:
        """The first `sensitive_uses` entry allowing predicate `form` on `label` for this identity and purpose."""
        return next((u for u in self.sensitive_uses if u.matches(label, form, identity, purpose)), None)

    def row_filters_for(self, identity: Identity, purpose: str) -> list:
        """The row filters (`sql.rowfilter.FilterRule`) that hold for this resolved identity and purpose."""
        return [d.rule() for d in self.row_filters if d.matches(identity, purpose)]

    def requirement(self, purpose: str) -> PurposeRequirement | None:
        """What `purpose_requirements` asks of reads for `purpose`, or None."""
        return self.purpose_requirements.get(purpose)

    def first_rule(self, label: str, column: ColumnRef, identity: Identity, purpose: str) -> Rule | None:
        return next((r for r in self.rules if r.matches(label, column, identity, purpose)), None)
