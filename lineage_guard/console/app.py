"""Build the console: a Starlette app over the policy, the approval store and the ledger.

    >>> app = build_app(policy, approvals=ApprovalStore.open(), ledger=Ledger.open(create=False))  # doctest: +SKIP
    >>> uvicorn.run(app, host="127.0.0.1", port=8710)                                           # doctest: +SKIP

Cookies are `Secure` unless `secure_cookies=False` (plain HTTP on loopback, for development and
tests); `SameSite=Lax` lets the provider's redirect back in and keeps cross-site form posts out
(the CSRF token is the second wall). Every response forbids framing, caching and referrers, and its
content security policy allows only the console's own styles and no script at all.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from ..approvals.store import ApprovalStore
from ..audit.index import LedgerIndex
from ..audit.ledger import Ledger
from ..policy.model import Policy
from .auth import COOKIE, SIGNIN_COOKIE, OidcSignIn
from .models import AttestationSource, FolderAttestations
from .pages import Console, Refused
from .sessions import SessionRegistry

HERE = Path(__file__).parent
__all__ = ["COOKIE", "build_app"]
HEADERS = [
    (b"content-security-policy", (b"default-src 'none'; style-src 'self'; img-src 'self' data:; "
                                  b"form-action 'self'{provider}; frame-ancestors 'none'; base-uri 'none'")),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]


def _origin(url: str | None) -> bytes:
    """The provider's origin, for form-action: the Sign out form's redirect goes on to its end_session_endpoint
    (browsers apply form-action to a form's redirects too). Only scheme://host[:port], nothing else."""
    from urllib.parse import urlsplit

    parts = urlsplit(url or "")
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c in parts.netloc for c in " ;,'\"@"):
        return b""
    return f" {parts.scheme}://{parts.netloc}".encode()


def security_headers(provider: str | None) -> list[tuple[bytes, bytes]]:
    """HEADERS with the provider's origin filled into form-action."""
    origin = _origin(provider)
    return [(k, v.replace(b"{provider}", origin)) for k, v in HEADERS]


class SecurityHeaders:
    """Pure ASGI middleware: the headers above on every HTTP response (form-action also allows `provider`)."""

    def __init__(self, app, provider: str | None = None):
        self.app = app
        self.headers = security_headers(provider)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def sending(message):
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []), *(h for h in self.headers if h[0] not in names)]
            await send(message)

        return await self.app(scope, receive, sending)


def build_app(policy: Policy, *, approvals: ApprovalStore, ledger: Ledger, secure_cookies: bool = True,
              public_url: str | None = None, public_keys: tuple[str, ...] = (),
              models: AttestationSource | None = None, attestations: Path | None = None,
              session_secret: str | None = None, clock: Callable[[], float] = time.time) -> Starlette:
    """The console as an ASGI app. Sessions live in the approval store's database (they survive a restart);
    `session_secret` signs only the short sign-in transaction cookie (random per process by default: a restart
    in the middle of a sign-in makes that one sign-in start again); `clock` is what session expiry is measured by.
    The Models page reads `models`, else the attestations folder `attestations` (default: the state
    folder's `attestations/`, where `lineage-guard attest` keeps every envelope it signs)."""
    if models is None:
        from .. import paths
        from ..attest.attestation import FOLDER

        models = FolderAttestations(attestations or paths.home_path() / FOLDER, ledger, public_keys)
    registry = SessionRegistry(approvals, policy.console.session_minutes, policy.console.grants, clock)
    signin = OidcSignIn(policy.console, registry, public_url, secure_cookies)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    console = Console(policy=policy, approvals=approvals, ledger=ledger, index=LedgerIndex(ledger),
                      templates=templates, signin=signin, public_keys=tuple(public_keys), models=models)

    async def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Refused)
        return console.refused(request, exc)

    crash_headers = {k.decode(): v.decode() for k, v in security_headers(policy.console.issuer)}

    async def crashed(request: Request, exc: Exception) -> Response:
        # Starlette answers an unexpected exception from ServerErrorMiddleware, the outermost layer, outside
        # SecurityHeaders: without this handler a crash's 500 went out with no CSP, X-Frame-Options or no-store.
        # So the rule "every response carries the headers" is kept here too (the exception is still raised
        # on to the server's log after this answer; the page says nothing about it).
        return PlainTextResponse("Internal Server Error", status_code=500, headers=crash_headers)

    async def home(request: Request) -> Response:
        return RedirectResponse("/approvals", status_code=303)

    async def health(request: Request) -> Response:
        return Response("ok\n", media_type="text/plain")

    routes = [
        Route("/", home),
        Route("/healthz", health),
        Route("/signin", signin.signin),
        Route("/auth/callback", signin.callback, name="callback"),
        Route("/signout", console.signout, methods=["POST"]),
        Route("/signed-out", console.signed_out, name="signed_out"),
        Route("/approvals", console.inbox),
        Route("/approvals/{request_id}", console.request_page),
        Route("/approvals/{request_id}/decide", console.decide, methods=["POST"]),
        Route("/timeline", console.timeline),
        Route("/timeline/export.{fmt:str}", console.export),
        Route("/receipts/{receipt_id}", console.receipt),
        Route("/columns/{column}", console.column),
        Route("/models", console.models_page),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    middleware = [
        Middleware(SecurityHeaders, provider=policy.console.issuer),
        Middleware(SessionMiddleware, secret_key=session_secret or secrets.token_urlsafe(48),
                   session_cookie=SIGNIN_COOKIE, max_age=600, same_site="lax", https_only=secure_cookies),
    ]
    app = Starlette(routes=routes, middleware=middleware, exception_handlers={Refused: refused, Exception: crashed})
    app.state.sessions = registry
    app.state.console = console
    return app
