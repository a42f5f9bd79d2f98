"""Who is calling: verify the call's credential, map it to a declared identity, check the purpose.

Nothing is anonymous. A call carries `authorization: Bearer <token>`; the token is either a
hashed API token (`lgt_...`, see `tokens`) or a JWT verified against its issuer's keys (PyJWT:
signature, `iss`, exactly our one `aud`, `exp`/`nbf`, an asymmetric algorithm allow-list, so
`alg: none` and HMAC-signed-with-the-public-key tokens never verify). The verified issuer +
subject (+ named claims) map to an identity through the policy's `service.principals`; groups
come from the policy's `identities`. A header naming another identity or groups is refused, and
the purpose header must name a purpose the identity may use.

Example:
    >>> auth = Authenticator(policy, TokenStore())                              # doctest: +SKIP
    >>> identity = auth.authenticate({"authorization": ["Bearer lgt_..."]}, "ipv4:127.0.0.1:5000")  # doctest: +SKIP
    >>> auth.purpose_for(identity, {"x-lineage-guard-purpose": ["ai_training"]})                     # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from ..errors import LineageGuardError
from ..identity import Authentication, Identity
from .config import CLIENT_CERT_ISSUER, ServiceConfig
from .tokens import TokenStore, token_id

log = logging.getLogger(__name__)
PURPOSE_HEADER = "x-lineage-guard-purpose"
IDENTITY_HEADER = "x-lineage-guard-identity"
GROUPS_HEADER = "x-lineage-guard-groups"
Status = Literal["unauthenticated", "permission_denied"]


class AuthError(LineageGuardError):
    """A call was refused before the path ran. `status` is the Flight status it answers with;
    `attempt` says what was tried (never the token); `identity` is set when the caller was verified."""

    def __init__(self, status: Status, reason: str, attempt: Authentication, identity: Identity | None = None):
        self.status = status
        self.reason = reason
        self.attempt = attempt
        self.identity = identity
        super().__init__(reason)


def digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def header(headers: dict[str, list[Any]], name: str) -> str | None:
    values = headers.get(name) or headers.get(name.lower())
    if not values:
        return None
    value = values[0]
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class Verified:
    principal: str
    auth: Authentication


class Verifier(Protocol):
    """One kind of credential. `accepts` looks at the token's shape only; `verify` checks it."""

    def accepts(self, token: str) -> bool: ...

    def verify(self, token: str, client: Authentication) -> Verified: ...


class ApiTokenVerifier:
    """`lgt_<id>_<secret>` tokens checked against the hashed store."""

    def __init__(self, store: TokenStore):
        self.store = store

    def accepts(self, token: str) -> bool:
        return token_id(token) is not None

    def verify(self, token: str, client: Authentication) -> Verified:
        ident = token_id(token) or ""
        attempt = _with(client, method="api_token", token_id_digest=digest(ident))
        entry = self.store.verify(token)
        if entry is None:
            raise AuthError("unauthenticated", "the API token is unknown, revoked or expired", attempt)
        return Verified(entry.identity, _with(attempt, subject=f"api-token:{ident}",
                                                  expires_at=datetime.fromisoformat(entry.expires_at) if entry.expires_at else None))


class JwtVerifier:
    """JWTs from the issuers in `service.issuers`, keys from each issuer's JWKS (URL or file)."""

    def __init__(self, config: ServiceConfig):
        import jwt

        self._jwt = jwt
        self.config = config
        self._clients = {i.issuer: jwt.PyJWKClient(i.jwks_url, cache_keys=True, lifespan=300, timeout=10)
                         for i in config.issuers if i.jwks_url}
        self._files: dict[str, tuple[int, Any]] = {}
        self._lock = threading.Lock()

    def accepts(self, token: str) -> bool:
        return token.count(".") == 2

    def verify(self, token: str, client: Authentication) -> Verified:
        jwt = self._jwt
        attempt = _with(client, method="jwt")
        try:
            head = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise AuthError("unauthenticated", "the bearer token is not a well-formed JWT", attempt) from None
        alg = str(head.get("alg", ""))
        iss = str(unverified.get("iss", ""))
        jti = unverified.get("jti")
        # `iss` and `alg` are the caller's text until the issuer is trusted: bounded before they reach
        # the ledger or a message (a refusal needs no credential, so its size is the caller's choice).
        attempt = _with(attempt, issuer=_bounded(iss) or None, token_id_digest=digest(str(jti) if jti else token))
        if alg.lower() == "none" or not alg:
            raise AuthError("unauthenticated", "unsigned JWT (alg none) refused", attempt)
        issuer = self.config.issuer(iss)
        if issuer is None:
            raise AuthError("unauthenticated", f"JWT issuer {_bounded(iss)!r} is not trusted by this service", attempt)
        if alg not in issuer.algorithms:
            raise AuthError("unauthenticated", f"JWT algorithm {_bounded(alg)} is not allowed for issuer {iss!r} "
                            f"(allowed: {', '.join(issuer.algorithms)})", attempt)
        try:
            key = self._key(issuer, token, head)
            claims = jwt.decode(token, key, algorithms=[alg], audience=self.config.audience, issuer=iss,
                                leeway=issuer.leeway_seconds,
                                options={"require": ["exp", "iss", "aud", "sub"], "verify_nbf": True})
        except jwt.ExpiredSignatureError:
            raise AuthError("unauthenticated", "the JWT has expired", attempt) from None
        except jwt.ImmatureSignatureError:
            raise AuthError("unauthenticated", "the JWT is not valid yet (nbf/iat in the future)", attempt) from None
        except jwt.InvalidAudienceError:
            raise AuthError("unauthenticated", f"the JWT is not for this service (audience must be "
                            f"{self.config.audience!r})", attempt) from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError("unauthenticated", f"the JWT lacks the {exc.claim!r} claim", attempt) from None
        except jwt.PyJWKClientError:
            raise AuthError("unauthenticated", f"no signing key of issuer {iss!r} matches the JWT's key id", attempt) from None
        except jwt.PyJWTError as exc:  # bad signature, wrong key type, ...
            raise AuthError("unauthenticated", f"the JWT does not verify ({type(exc).__name__})", attempt) from None
        aud = claims.get("aud")
        if not (aud == self.config.audience or aud == [self.config.audience]):
            # A token minted for several audiences can be replayed by each of them: one audience only.
            raise AuthError("unauthenticated", f"the JWT must name exactly one audience, {self.config.audience!r}", attempt)
        subject = str(claims["sub"])
        try:
            expires_at = datetime.fromtimestamp(int(claims["exp"]), UTC)
        except (OverflowError, OSError, ValueError):   # past year 9999: PyJWT accepts it, datetime cannot hold it
            raise AuthError("unauthenticated", "the JWT's exp is out of range (past year 9999)", attempt) from None
        verified = _with(attempt, subject=subject, expires_at=expires_at)
        principal = self.config.principal_for(iss, subject, claims)
        if principal is None:
            raise AuthError("permission_denied", f"no identity is mapped to subject {subject!r} of issuer {iss!r} "
                            "(add one under service.principals)", verified)
        return Verified(principal, verified)

    def _key(self, issuer, token: str, head: dict):
        if issuer.jwks_url:
            return self._clients[issuer.issuer].get_signing_key_from_jwt(token)
        path = Path(issuer.jwks_file)
        mtime = path.stat().st_mtime_ns
        with self._lock:
            cached = self._files.get(issuer.issuer)
            if cached is None or cached[0] != mtime:
                cached = (mtime, self._jwt.PyJWKSet.from_json(path.read_text()))
                self._files[issuer.issuer] = cached
        kid = head.get("kid")
        keys = [k for k in cached[1].keys if kid is None or k.key_id == kid]
        if len(keys) != 1:
            raise self._jwt.PyJWKClientError("no unique key for this kid")
        return keys[0]


def _bounded(text: str, limit: int = 200) -> str:
    """An unverified header or claim as the ledger and messages show it: its first `limit` characters."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _with(auth: Authentication, **changes) -> Authentication:
    from dataclasses import replace

    return replace(auth, **changes)


class Authenticator:
    """Credential -> verified `Identity` (groups from the policy), and the call's purpose.

    A bearer token, when sent, establishes the identity; a verified client certificate (mTLS,
    `client_ca`) then only has to agree with it. Without a bearer token, the client certificate
    establishes it through the `issuer: client-certificate` principal entries.
    """

    def __init__(self, policy, store: TokenStore | None = None, *, client_ca: bytes | None = None):
        self.policy = policy
        self.config: ServiceConfig = policy.service
        self.certificates = None
        if client_ca:
            from .mtls import ClientCertificates

            self.certificates = ClientCertificates(client_ca)
        self.verifiers: list[Verifier] = []
        if self.config.api_tokens:
            self.verifiers.append(ApiTokenVerifier(store or TokenStore()))
        if self.config.issuers:
            self.verifiers.append(JwtVerifier(self.config))

    def authenticate(self, headers: dict[str, list[Any]], peer: str, peer_identity: bytes | str | None = None) -> Identity:
        """`peer_identity` is what the TLS handshake verified (gRPC's name of the client certificate).

        Every failure is an `AuthError`: a credential that makes a check raise anything else (a
        signed token whose `exp` is past year 9999, a certificate the library cannot parse, an
        unreadable token store) is refused like any other, recorded, and answered without the
        exception's text. Before, such an exception left the handler as is, and Flight sent the
        caller the server's Python traceback (its paths and code), with no ledger entry.
        """
        client = Authentication("asserted", client_address=peer)
        try:
            return self._authenticate(headers, client, peer_identity)
        except AuthError:
            raise
        except Exception as exc:  # noqa: BLE001 - fail closed; the type alone says what broke
            log.error("a credential check raised %s; the call is refused", type(exc).__name__)
            raise AuthError("unauthenticated", f"the credential could not be checked ({type(exc).__name__}); "
                            "details withheld", client) from None

    def _authenticate(self, headers: dict[str, list[Any]], client: Authentication,
                      peer_identity: bytes | str | None) -> Identity:
        cert = self._certificate(headers, peer_identity, client)
        if cert is not None:
            client = _with(client, tls_peer=cert.tls_peer)
        value = header(headers, "authorization") or ""
        scheme, _, token = value.partition(" ")
        if cert is not None and not value:
            return self._checked(headers, self._by_certificate(cert, client))
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("unauthenticated", "no credential: send 'authorization: Bearer <token>' "
                            "(a JWT from a trusted issuer or a lineage-guard API token)", client)
        token = token.strip()
        verifier = next((v for v in self.verifiers if v.accepts(token)), None)
        if verifier is None:
            raise AuthError("unauthenticated", "the bearer token is neither a JWT nor a lineage-guard API token", client)
        verified = verifier.verify(token, client)
        if cert is not None:
            by_cert = self.config.principal_for(CLIENT_CERT_ISSUER, cert.name, {})
            if by_cert is not None and by_cert != verified.principal:
                raise AuthError("permission_denied", f"the client certificate is mapped to {by_cert!r} but the bearer "
                                f"token to {verified.principal!r}; one caller, one identity", verified.auth)
        return self._checked(headers, verified)

    def _certificate(self, headers, peer_identity, client: Authentication):
        if self.certificates is None:
            return None
        from .mtls import CertificateRefused

        try:
            return self.certificates.check(headers, peer_identity)
        except CertificateRefused as exc:
            raise AuthError("unauthenticated", exc.reason, _with(client, method="mtls")) from None

    def _by_certificate(self, cert, client: Authentication) -> Verified:
        auth = _with(client, method="mtls", issuer=f"client CA {cert.ca}", subject=cert.name,
                     token_id_digest=cert.sha256, expires_at=cert.not_after)
        principal = self.config.principal_for(CLIENT_CERT_ISSUER, cert.name, {})
        if principal is None:
            raise AuthError("permission_denied", f"no identity is mapped to client certificate {cert.name!r} (add one "
                            f"under service.principals with issuer: {CLIENT_CERT_ISSUER}) and no bearer token was sent",
                            auth)
        return Verified(principal, auth)

    def _checked(self, headers, verified: Verified) -> Identity:
        if verified.principal not in self.policy.identities:
            raise AuthError("permission_denied", f"identity {verified.principal!r} is not declared in the policy",
                            verified.auth)
        identity = self.policy.resolve_identity(Identity(verified.principal, auth=verified.auth))
        named = header(headers, IDENTITY_HEADER)
        if named is not None and named != identity.principal:
            raise AuthError("permission_denied", f"the identity comes from the credential ({identity.principal}), "
                            f"not from a header; refusing a call that names {named!r}", verified.auth, identity)
        if header(headers, GROUPS_HEADER) is not None:
            raise AuthError("permission_denied", "groups come from the policy, never from the request; "
                            f"remove the {GROUPS_HEADER} header", verified.auth, identity)
        return identity

    def purpose_for(self, identity: Identity, headers: dict[str, list[Any]]) -> str:
        purpose = header(headers, PURPOSE_HEADER)
        allowed = self.config.purposes.get(identity.principal, [])
        if not purpose:
            raise AuthError("permission_denied", f"say why the data is read: send the {PURPOSE_HEADER} header "
                            f"(allowed for {identity.principal}: {', '.join(allowed) or 'none'})",
                            identity.auth or Authentication(), identity)
        if purpose not in allowed or (self.policy.purposes and purpose not in self.policy.purposes):
            raise AuthError("permission_denied", f"identity {identity.principal!r} may not request purpose "
                            f"{purpose!r} (allowed: {', '.join(allowed) or 'none'})",
                            identity.auth or Authentication(), identity)
        return purpose
