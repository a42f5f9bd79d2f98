"""Sign-in with OpenID Connect (authorization code + PKCE, Authlib), sign-out, and the access guards.

The callback accepts a person only when Authlib has verified the ID token (signature against the
issuer's keys, `iss`, `aud`, expiry, nonce) and the policy's `console.users` maps its subject to an
identity. The cookie holds a random session id (signed by Starlette's SessionMiddleware); the
session itself, with its expiry and CSRF token, lives in `SessionRegistry`.

Guards: `signed_in(request)` for pages (None: send to sign-in), `allowed(me, *roles)`.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from .config import ConsoleConfig
from .sessions import SessionRegistry, SignedIn

log = logging.getLogger("lineage_guard.console")


class OidcSignIn:
    """The console's OpenID client; `None` issuer means sign-in is not configured (every page refuses)."""

    def __init__(self, config: ConsoleConfig, registry: SessionRegistry, public_url: str | None = None):
        self.config = config
        self.registry = registry
        self.public_url = public_url.rstrip("/") if public_url else None
        self.client = None
        if config.issuer:
            from authlib.integrations.starlette_client import OAuth

            secret = os.environ.get(config.client_secret_env) if config.client_secret_env else None
            if config.client_secret_env and not secret:
                from ..errors import ConfigError

                raise ConfigError(f"console.client_secret_env names {config.client_secret_env}, which is not set")
            oauth = OAuth()
            oauth.register(
                "oidc", client_id=config.client_id, client_secret=secret,
                server_metadata_url=f"{config.issuer.rstrip('/')}/.well-known/openid-configuration",
                client_kwargs={"scope": " ".join(config.scopes), "code_challenge_method": "S256",
                               "token_endpoint_auth_method": "client_secret_basic" if secret else "none"},
            )
            self.client = oauth.oidc

    def _redirect_uri(self, request: Request) -> str:
        if self.public_url:
            return f"{self.public_url}/auth/callback"
        return str(request.url_for("callback"))

    async def signin(self, request: Request) -> Response:
        if self.client is None:
            return _plain(503, "sign-in is not configured: set console.issuer and console.client_id in the policy")
        target = request.query_params.get("next", "/")
        request.session.clear()
        request.session["next"] = target if target.startswith("/") and not target.startswith("//") else "/"
        return await self.client.authorize_redirect(request, self._redirect_uri(request))

    async def callback(self, request: Request) -> Response:
        if self.client is None:
            return _plain(503, "sign-in is not configured")
        from authlib.integrations.base_client.errors import OAuthError

        try:
            token = await self.client.authorize_access_token(
                request, claims_options={"iss": {"essential": True, "values": [self.config.issuer]}}, leeway=30)
        except (OAuthError, ValueError, KeyError) as exc:
            log.info("console sign-in refused: %s", type(exc).__name__)  # never the token or the provider's text
            return _plain(401, "sign-in failed (the provider's answer did not verify); try again")
        claims: dict[str, Any] = dict(token.get("userinfo") or {})
        subject = str(claims.get("sub") or "")
        if not subject:
            return _plain(401, "sign-in failed: no verified ID token")
        identity = self.config.identity_for(subject, claims)
        target = request.session.get("next", "/")
        request.session.clear()
        if identity is None:
            log.info("console sign-in: subject not mapped by console.users")
            return _plain(403, "you signed in, but the policy's console.users does not map your account to an "
                               "identity; ask an administrator to add you")
        me = self.registry.create(identity=identity, subject=subject, issuer=str(claims.get("iss")),
                                  grants=self.config.grants(identity))
        request.session["sid"] = me.sid
        return RedirectResponse(target, status_code=303)

    def signout(self, request: Request, me: SignedIn) -> Response:
        self.registry.end(me.sid)
        request.session.clear()
        return RedirectResponse("/signed-out", status_code=303)


def signed_in(request: Request) -> SignedIn | None:
    registry: SessionRegistry = request.app.state.sessions
    return registry.get(request.session.get("sid"))


def _plain(status: int, message: str) -> Response:
    from html import escape

    return Response(f"<!doctype html><title>lineage-guard console</title><p>{escape(message)}</p>"
                    '<p><a href="/signin">Sign in</a></p>', status_code=status, media_type="text/html")
