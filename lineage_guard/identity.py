"""Who is asking: the principal every governed request runs as.

Example:
    >>> Identity.parse("svc-training").principal
    'svc-training'
    >>> Identity("svc-etl", "service", auth=Authentication("jwt", issuer="https://idp.example")).auth.method
    'jwt'
    >>> Identity.parse('{"principal": "dr-ho", "kind": "human", "groups": ["clinicians"]}').groups
    frozenset({'clinicians'})
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from .errors import ConfigError

Kind = Literal["human", "service", "agent"]
KINDS: tuple[str, ...] = ("human", "service", "agent")
ENV_VAR = "LINEAGE_GUARD_IDENTITY"
AuthMethod = Literal["asserted", "jwt", "api_token", "mtls"]
AUTH_METHODS: tuple[str, ...] = ("asserted", "jwt", "api_token", "mtls")


@dataclass(frozen=True)
class Authentication:
    """How an identity was established: what the ledger records beside who it was.

    `asserted` means the caller named itself (embedded mode: the process is trusted to say
    who it runs as). A service that checked a credential fills in the rest. Never a token
    or secret: `token_id_digest` is a digest of the token's id (e.g. sha256 of the JWT `jti`).
    """

    method: AuthMethod = "asserted"
    issuer: str | None = None            # JWT `iss`, the API token's issuer, the client CA
    subject: str | None = None           # JWT `sub`, the certificate subject
    token_id_digest: str | None = None
    expires_at: datetime | None = None   # when the credential expires (timezone-aware)
    client_address: str | None = None    # the peer address the request came from
    tls_peer: str | None = None          # the verified TLS client certificate's subject or fingerprint

    def __post_init__(self) -> None:
        if self.method not in AUTH_METHODS:
            raise ConfigError(f"authentication method must be one of {', '.join(AUTH_METHODS)}, got {self.method!r}")

    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "issuer": self.issuer,
            "subject": self.subject,
            "token_id_digest": self.token_id_digest,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "client_address": self.client_address,
            "tls_peer": self.tls_peer,
        }


@dataclass(frozen=True)
class Identity:
    """A principal (human, service or agent) with its groups and attributes.

    `auth` says how the identity was established (None: asserted by the embedding process).
    """

    principal: str
    kind: Kind = "human"
    groups: frozenset[str] = field(default_factory=frozenset)
    attributes: Mapping[str, str] = field(default_factory=dict)
    auth: Authentication | None = None

    def __post_init__(self) -> None:
        if not self.principal or not isinstance(self.principal, str):
            raise ConfigError("identity: principal must be a non-empty string")
        if self.kind not in KINDS:
            raise ConfigError(f"identity {self.principal!r}: kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        object.__setattr__(self, "groups", frozenset(self.groups))
        object.__setattr__(self, "attributes", dict(self.attributes))
        if self.auth is not None and not isinstance(self.auth, Authentication):
            raise ConfigError(f"identity {self.principal!r}: auth must be an Authentication, not {type(self.auth).__name__}")

    def __hash__(self) -> int:  # attributes is a dict; identity is keyed by principal+kind+groups
        return hash((self.principal, self.kind, self.groups))

    @classmethod
    def parse(cls, text: str) -> Identity:
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
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Identity:
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
