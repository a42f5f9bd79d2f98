"""Sign-in with OpenID Connect (authorization code + PKCE, Authlib), sign-out, and the access guards.

The callback accepts a person only when Authlib has verified the ID token (signature against the
issuer's keys, `iss`, `aud`, expiry, nonce) and the policy's `console.users` maps its subject to an
identity. The session cookie `lg_console` holds only a random session id; the session itself, with its
expiry, lives in `SessionRegistry` (the approvals store's database). Starlette's signed SessionMiddleware
cookie carries only the sign-in transaction (state, PKCE verifier, nonce, where to go next).

Sign-out ends the console session and then the provider's (OpenID RP-initiated logout): the browser
is sent to the provider's `end_session_endpoint` (from discovery) with `id_token_hint`, `client_id`
and `post_logout_redirect_uri` = `{console}/signed-out`, so the next sign-in asks for credentials
again. A provider without an `end_session_endpoint` keeps its session; the signed-out page says so.

Guards: `signed_in(request)` for pages (None: send to sign-in), `allowed(me, *roles)`.
"""

from __future__ import annotations

import logging
import os
from typing import Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from .config import ConsoleConfig
from .sessions import SessionRegistry, SignedIn

log = logging.getLogger("lineage_guard.console")
COOKIE = "lg_console"           # the session id, nothing else
SIGNIN_COOKIE = "lg_console_signin"   # the sign-in transaction (SessionMiddleware), minutes long


class OidcSignIn:
    """The console's OpenID client; `None` issuer means sign-in is not configured (every page refuses)."""

    def __init__(self, config: ConsoleConfig, registry: SessionRegistry, public_url: str | None = None,
                 secure_cookies: bool = True):
        self.config = config
        self.secure_cookies = secure_cookies
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

    def _signed_out_uri(self, request: Request) -> str:
        if self.public_url:
            return f"{self.public_url}/signed-out"
        return str(request.url_for("signed_out"))

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
        me = await run_in_threadpool(lambda: self.registry.create(
            identity=identity, subject=subject, issuer=str(claims.get("iss")), id_token=token.get("id_token")))
        # Signing in again ends the session this browser held: a copy of its cookie must not stay valid
        # until it expires (and a session planted in the browser ends at the victim's sign-in).
        presented = request.cookies.get(COOKIE)
        if presented and presented != me.sid:
            await run_in_threadpool(self.registry.end, presented)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(COOKIE, me.sid, max_age=self.registry.seconds, path="/", httponly=True,
                            secure=self.secure_cookies, samesite="lax")
        return response

    async def signout(self, request: Request, me: SignedIn) -> Response:
        """End the console session, then send the browser to the provider to end its session too."""
        id_token = await run_in_threadpool(self.registry.id_token, me.sid)
        await run_in_threadpool(self.registry.end, me.sid)
        request.session.clear()
        target = "/signed-out?provider=kept"
        if self.client is not None:
            try:
                metadata = await self.client.load_server_metadata()
            except Exception as exc:  # noqa: BLE001 - the console session is ended either way; say the provider's is not
                log.info("console sign-out: provider discovery failed: %s", type(exc).__name__)
                metadata = {}
            endpoint = metadata.get("end_session_endpoint")
            if isinstance(endpoint, str) and endpoint.startswith(("https://", "http://")):
                query = {"client_id": self.config.client_id, "post_logout_redirect_uri": self._signed_out_uri(request)}
                if id_token:
                    query["id_token_hint"] = id_token
                target = f"{endpoint}{'&' if '?' in endpoint else '?'}{urlencode(query)}"
        response = RedirectResponse(target, status_code=303)
        response.delete_cookie(COOKIE, path="/", httponly=True, secure=self.secure_cookies, samesite="lax")
        return response


def signed_in(request: Request) -> SignedIn | None:
    registry: SessionRegistry = request.app.state.sessions
    return registry.get(request.cookies.get(COOKIE))


def _plain(status: int, message: str) -> Response:
    from html import escape

    return Response(f"<!doctype html><title>lineage-guard console</title><p>{escape(message)}</p>"
                    '<p><a href="/signin">Sign in</a></p>', status_code=status, media_type="text/html")
