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
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from ..approvals.store import ApprovalStore
from ..audit.index import LedgerIndex
from ..audit.ledger import Ledger
from ..policy.model import Policy
from .auth import OidcSignIn
from .models import AttestationSource, FolderAttestations
from .pages import Console, Refused
from .sessions import SessionRegistry

HERE = Path(__file__).parent
COOKIE = "lg_console"
HEADERS = [
    (b"content-security-policy", (b"default-src 'none'; style-src 'self'; img-src 'self' data:; "
                                  b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'")),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]


class SecurityHeaders:
    """Pure ASGI middleware: the headers above on every HTTP response."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def sending(message):
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []), *(h for h in HEADERS if h[0] not in names)]
            await send(message)

        return await self.app(scope, receive, sending)


def build_app(policy: Policy, *, approvals: ApprovalStore, ledger: Ledger, secure_cookies: bool = True,
              public_url: str | None = None, public_keys: tuple[str, ...] = (),
              models: AttestationSource | None = None, attestations: Path | None = None,
              session_secret: str | None = None, clock: Callable[[], float] = time.time) -> Starlette:
    """The console as an ASGI app. `session_secret` signs the session cookie (random per process by
    default: sessions live in this process's memory anyway); `clock` is what session expiry is measured by.
    The Models page reads `models`, else the attestations folder `attestations` (default: the state
    folder's `attestations/`, where `lineage-guard attest` keeps every envelope it signs)."""
    if models is None:
        from .. import paths
        from ..attest.attestation import FOLDER

        models = FolderAttestations(attestations or paths.home_path() / FOLDER, ledger, public_keys)
    registry = SessionRegistry(policy.console.session_minutes, clock)
    signin = OidcSignIn(policy.console, registry, public_url)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    console = Console(policy=policy, approvals=approvals, ledger=ledger, index=LedgerIndex(ledger),
                      templates=templates, signin=signin, public_keys=tuple(public_keys), models=models)

    async def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Refused)
        return console.refused(request, exc)

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
        Route("/signed-out", console.signed_out),
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
        Middleware(SecurityHeaders),
        Middleware(SessionMiddleware, secret_key=session_secret or secrets.token_urlsafe(48), session_cookie=COOKIE,
                   max_age=policy.console.session_minutes * 60, same_site="lax", https_only=secure_cookies),
    ]
    app = Starlette(routes=routes, middleware=middleware, exception_handlers={Refused: refused})
    app.state.sessions = registry
    app.state.console = console
    return app
