"""The policy's `service:` section: who may call `lineage-guard serve`, as whom, for what, how much.

Verified claims map to a declared identity; groups then come from the policy's `identities`
(never from the request); each identity lists the purposes it may request per call.

    service:
      audience: lineage-guard                      # the one `aud` a token must carry
      issuers:
        - issuer: https://token.actions.githubusercontent.com
          jwks_url: https://token.actions.githubusercontent.com/.well-known/jwks   # or jwks_file
          algorithms: [RS256]                      # asymmetric only: HS*/none are refused
      principals:                                  # first match wins
        - {identity: svc-training, issuer: https://token.actions.githubusercontent.com,
           subject: "repo:acme/training:ref:refs/heads/main"}
        - {identity: dr-grey, issuer: https://login.example, subject_pattern: "user:grey@*",
           claims: {email_verified: "true"}}
      purposes: {svc-training: [ai_training], dr-grey: [treatment]}
      limits: {concurrent_streams: 4, max_rows: 50000000, statement_timeout_s: 600}
      identity_limits: {svc-training: {concurrent_streams: 8}}
      client_ca_file: /etc/lineage-guard/client-ca.pem   # mTLS: or `serve --client-ca`
      exchange:                                    # who may send file data to be masked (Flight DoExchange)
        - {identity: svc-training, tables: [public.people], purposes: [ai_training]}
      # a principal matched by the client certificate's first SAN (else its CN), e.g. a SPIFFE ID:
      #   - {identity: svc-training, issuer: client-certificate, subject: "spiffe://example.org/ns/ml/sa/trainer"}

API tokens (`lineage-guard tokens create --identity NAME`) name their identity in the token
store; they are on unless `api_tokens: false`.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Asymmetric JWS algorithms only: a verifier that accepts HS* can be fooled into using a public
# key as an HMAC secret, and `none` is no signature at all.
ASYMMETRIC_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IssuerConfig(_Strict):
    """An OIDC/JWT issuer whose signing keys the service trusts."""

    issuer: str
    jwks_url: str | None = None
    jwks_file: str | None = None
    algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256"], min_length=1)
    leeway_seconds: int = Field(30, ge=0, le=300)

    @field_validator("algorithms")
    @classmethod
    def _asymmetric(cls, v: list[str]) -> list[str]:
        bad = [a for a in v if a not in ASYMMETRIC_ALGORITHMS]
        if bad:
            raise ValueError(f"algorithm(s) {bad} are not allowed; use asymmetric ones: {', '.join(ASYMMETRIC_ALGORITHMS)}")
        return v

    @model_validator(mode="after")
    def _one_key_source(self) -> IssuerConfig:
        if bool(self.jwks_url) == bool(self.jwks_file):
            raise ValueError(f"issuer {self.issuer!r}: give exactly one of jwks_url or jwks_file")
        return self


CLIENT_CERT_ISSUER = "client-certificate"


class PrincipalMap(_Strict):
    """Verified claims -> a declared identity. `subject` is exact; `subject_pattern` a glob.

    `issuer: client-certificate` matches a verified mTLS client certificate by its first
    SubjectAlternativeName (else its common name); such an entry takes no `claims`.
    """

    identity: str
    issuer: str
    subject: str | None = None
    subject_pattern: str | None = None
    claims: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_subject_rule(self) -> PrincipalMap:
        if bool(self.subject) == bool(self.subject_pattern):
            raise ValueError(f"principal mapping to {self.identity!r}: give exactly one of subject or subject_pattern")
        if self.issuer == CLIENT_CERT_ISSUER and self.claims:
            raise ValueError(f"principal mapping to {self.identity!r}: a client certificate has no claims to match; "
                             "remove claims: (match the SAN with subject or subject_pattern)")
        return self

    def matches(self, issuer: str, subject: str, claims: dict[str, Any]) -> bool:
        return issuer == self.issuer and subject_and_claims_match(
            subject, claims, subject_exact=self.subject, subject_pattern=self.subject_pattern, required=self.claims)


def subject_and_claims_match(subject: str, claims: dict[str, Any], *, subject_exact: str | None,
                             subject_pattern: str | None, required: dict[str, str]) -> bool:
    """Whether a verified subject and its claims satisfy one mapping rule (service principals, console users).

    Example:
        >>> subject_and_claims_match("repo:acme/etl:ref:main", {"actor": "ci", "admin": True},
        ...                          subject_exact=None, subject_pattern="repo:acme/*",
        ...                          required={"admin": "true"})
        True
    """
    if subject_exact is not None and subject != subject_exact:
        return False
    if subject_pattern is not None and not fnmatchcase(subject, subject_pattern):
        return False
    return all(_claim_text(claims.get(k)) == v for k, v in required.items())


def _claim_text(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    return None if value is None else str(value)


class LimitsConfig(_Strict):
    """Per-identity limits. `max_rows`/`max_bytes` bound one stream; a stream past them fails.

    They hold for prepared statements as for plain ones. `open_handles` bounds the prepared
    statements and unfetched tickets an identity holds at once (each is server memory);
    `max_parameter_rows` the parameter rows one prepared write may bind (also capped by `max_rows`).
    """

    concurrent_streams: int = Field(4, ge=1, le=1024)
    max_rows: int | None = Field(None, ge=1)
    max_bytes: int | None = Field(None, ge=1)
    statement_timeout_s: float = Field(600, gt=0, le=86_400)
    open_handles: int = Field(64, ge=1, le=100_000)
    max_parameter_rows: int = Field(10_000, ge=1)


class ExchangeGrant(_Strict):
    """Who may send data that is not in PostgreSQL (e.g. lake Parquet files) to be masked as a governed
    table's columns (Flight DoExchange), for which purposes. Off unless granted: masking chosen values
    under a table's keys is a token oracle for that table (send a guess, compare its token).

        exchange:
          - {identity: svc-lake, tables: [public.people, public.orders], purposes: [ai_training]}
    """

    identity: str = Field(description="a declared identity")
    tables: list[str] = Field(min_length=1, description="schema.table names or globs (public.*)")
    purposes: list[str] = Field(default_factory=lambda: ["*"], description="purposes it may mask file data for")

    def allows(self, identity: str, table: str, purpose: str) -> bool:
        return (identity == self.identity and any(fnmatchcase(table, t) for t in self.tables)
                and any(fnmatchcase(purpose, p) for p in self.purposes))


class ServiceConfig(_Strict):
    audience: str = "lineage-guard"
    issuers: list[IssuerConfig] = Field(default_factory=list)
    principals: list[PrincipalMap] = Field(default_factory=list)
    purposes: dict[str, list[str]] = Field(default_factory=dict)
    api_tokens: bool = True
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    identity_limits: dict[str, LimitsConfig] = Field(default_factory=dict)
    client_ca_file: str | None = None
    exchange: list[ExchangeGrant] = Field(default_factory=list, description=(
        "who may mask file data as a table's columns (Flight DoExchange, `RemoteSession.mask_file`); nobody unless granted"))

    @model_validator(mode="after")
    def _issuers_known(self) -> ServiceConfig:
        known = {i.issuer for i in self.issuers}
        if CLIENT_CERT_ISSUER in known:
            raise ValueError(f"issuer name {CLIENT_CERT_ISSUER!r} is reserved for mTLS client certificates")
        for p in self.principals:
            if p.issuer not in known and p.issuer != CLIENT_CERT_ISSUER:
                raise ValueError(f"principal mapping to {p.identity!r} names issuer {p.issuer!r}, "
                                 f"which is not under service.issuers (declared: {sorted(known)})")
        return self

    def issuer(self, name: str) -> IssuerConfig | None:
        return next((i for i in self.issuers if i.issuer == name), None)

    @property
    def maps_certificates(self) -> bool:
        return any(p.issuer == CLIENT_CERT_ISSUER for p in self.principals)

    def principal_for(self, issuer: str, subject: str, claims: dict[str, Any]) -> str | None:
        return next((p.identity for p in self.principals if p.matches(issuer, subject, claims)), None)

    def exchange_allowed(self, identity: str, table: str, purpose: str) -> bool:
        """Whether `identity` may mask file data as `table`'s columns for `purpose` (service.exchange)."""
        return any(g.allows(identity, table, purpose) for g in self.exchange)

    def limits_for(self, identity: str) -> LimitsConfig:
        return self.identity_limits.get(identity, self.limits)
