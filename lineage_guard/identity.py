"""Who is asking: the principal every governed request runs as.

Example:
    >>> Identity.parse("svc-training").principal
    'svc-training'
    >>> Identity.parse('{"principal": "dr-ho", "kind": "human", "groups": ["clinicians"]}').groups
    frozenset({'clinicians'})
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Literal, Mapping

from .errors import ConfigError

Kind = Literal["human", "service", "agent"]
KINDS: tuple[str, ...] = ("human", "service", "agent")
ENV_VAR = "LINEAGE_GUARD_IDENTITY"


@dataclass(frozen=True)
class Identity:
    """A principal (human, service or agent) with its groups and attributes."""

    principal: str
    kind: Kind = "human"
    groups: frozenset[str] = field(default_factory=frozenset)
    attributes: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.principal or not isinstance(self.principal, str):
            raise ConfigError("identity: principal must be a non-empty string")
        if self.kind not in KINDS:
            raise ConfigError(f"identity {self.principal!r}: kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        object.__setattr__(self, "groups", frozenset(self.groups))
        object.__setattr__(self, "attributes", dict(self.attributes))

    def __hash__(self) -> int:  # attributes is a dict; identity is keyed by principal+kind+groups
        return hash((self.principal, self.kind, self.groups))

    @classmethod
    def parse(cls, text: str) -> "Identity":
        """Parse `name`, `kind:name` or a JSON object with principal/kind/groups/attributes."""
        text = text.strip()
        if text.startswith("{"):
            try:
                raw = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"identity: not valid JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(raw, dict) or "principal" not in raw:
                raise ConfigError('identity: JSON form needs at least {"principal": "..."}')
            unknown = set(raw) - {"principal", "kind", "groups", "attributes"}
            if unknown:
                raise ConfigError(f"identity: unknown field(s) {sorted(unknown)}; valid: principal, kind, groups, attributes")
            return cls(
                principal=raw["principal"],
                kind=raw.get("kind", "human"),
                groups=frozenset(raw.get("groups", ())),
                attributes={str(k): str(v) for k, v in raw.get("attributes", {}).items()},
            )
        kind, sep, name = text.partition(":")
        if sep and kind in KINDS:
            return cls(principal=name, kind=kind)  # type: ignore[arg-type]
        return cls(principal=text)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Identity":
        """The identity named by `LINEAGE_GUARD_IDENTITY`; a clear error if unset."""
        value = (environ if environ is not None else os.environ).get(ENV_VAR, "").strip()
        if not value:
            raise ConfigError(f"no identity given: pass one explicitly or set {ENV_VAR}")
        return cls.parse(value)

    def to_dict(self) -> dict:
        return {
            "principal": self.principal,
            "kind": self.kind,
            "groups": sorted(self.groups),
            "attributes": dict(self.attributes),
        }
