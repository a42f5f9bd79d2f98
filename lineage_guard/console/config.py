"""The policy's `console:` section: which OpenID provider signs people in, who they are, what they may do.

    console:
      issuer: https://login.example                 # OpenID Connect discovery at {issuer}/.well-known/...
      client_id: lineage-guard-console
      client_secret_env: LINEAGE_GUARD_CONSOLE_CLIENT_SECRET   # optional: PKCE alone for a public client
      session_minutes: 60
      users:                                        # verified subject -> identity; first match wins
        - {identity: dana, subject: "dana@example.org"}
        - {identity: sam, subject_pattern: "auditors/*", claims: {email_verified: "true"}}
      roles:
        dana: [{role: approver, environments: [production], tables: ["public.*"]}]
        sam: [{role: auditor}]

Roles: `viewer` sees the approvals inbox and the timeline; `auditor` also opens receipts, column
views and exports; `approver` sees the inbox and decides requests whose environment and every table
match its grant (a request whose tables cannot be read needs `tables: ["*"]`). A signed-in person
with no role sees nothing but a page saying so.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..service.config import subject_and_claims_match

Role = Literal["viewer", "approver", "auditor"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UserMap(_Strict):
    """A verified OpenID subject (and optionally claims) -> a policy identity."""

    identity: str
    subject: str | None = None
    subject_pattern: str | None = None
    claims: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_subject_rule(self) -> UserMap:
        if bool(self.subject) == bool(self.subject_pattern):
            raise ValueError(f"console user {self.identity!r}: give exactly one of subject or subject_pattern")
        return self

    def matches(self, subject: str, claims: dict[str, Any]) -> bool:
        return subject_and_claims_match(subject, claims, subject_exact=self.subject,
                                        subject_pattern=self.subject_pattern, required=self.claims)


class RoleGrant(_Strict):
    """One role; an approver's grant is limited to environments and tables (globs, `*` = any)."""

    role: Role
    environments: list[str] = Field(default_factory=lambda: ["*"], min_length=1)
    tables: list[str] = Field(default_factory=lambda: ["*"], min_length=1)

    def covers(self, environment: str, tables: list[str] | None) -> bool:
        """Does this grant reach a request in `environment` over `tables` (None: tables unknown)?"""
        if not any(fnmatchcase(environment, e) for e in self.environments):
            return False
        if tables is None:
            return "*" in self.tables
        return all(any(fnmatchcase(t, p) for p in self.tables) for t in tables)


class ConsoleConfig(_Strict):
    issuer: str | None = None
    client_id: str | None = None
    client_secret_env: str | None = None
    scopes: list[str] = Field(default_factory=lambda: ["openid", "profile", "email"])
    session_minutes: int = Field(60, ge=1, le=24 * 60)
    users: list[UserMap] = Field(default_factory=list)
    roles: dict[str, list[RoleGrant]] = Field(default_factory=dict)

    @field_validator("scopes")
    @classmethod
    def _openid(cls, v: list[str]) -> list[str]:
        if "openid" not in v:
            raise ValueError("console.scopes must include 'openid' (sign-in is OpenID Connect)")
        return v

    @model_validator(mode="after")
    def _complete(self) -> ConsoleConfig:
        if bool(self.issuer) != bool(self.client_id):
            raise ValueError("console: give both issuer and client_id (the OpenID provider and this console's "
                             "client registered there)")
        unknown = sorted(set(self.roles) - {u.identity for u in self.users})
        if unknown:
            raise ValueError(f"console.roles names {unknown}, who no entry of console.users signs in as")
        return self

    def identity_for(self, subject: str, claims: dict[str, Any]) -> str | None:
        """The identity a verified subject signs in as, or None (not a console user)."""
        return next((u.identity for u in self.users if u.matches(subject, claims)), None)

    def grants(self, identity: str) -> list[RoleGrant]:
        return list(self.roles.get(identity, ()))
