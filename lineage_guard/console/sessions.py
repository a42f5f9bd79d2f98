"""Signed-in people, kept server-side: the cookie carries only a random session id.

A session ends at its expiry (set at sign-in from `console.session_minutes`, checked on every
request), at sign-out, or when the console restarts; a copied cookie dies with it. Each session
has its own CSRF token, which every form posts back (`check_csrf`).

Example:
    >>> registry = SessionRegistry(minutes=60)
    >>> me = registry.create(identity="dana", subject="dana@example.org", issuer="https://login.example", grants=())
    >>> registry.get(me.sid).identity
    'dana'
    >>> registry.end(me.sid); registry.get(me.sid) is None
    True
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..approvals.store import normalize_principal
from .config import Role, RoleGrant

_MAX_SESSIONS = 10_000


@dataclass(frozen=True)
class SignedIn:
    """A person signed in through the OpenID provider, with the roles the policy gives their identity."""

    sid: str
    identity: str
    subject: str
    issuer: str
    grants: tuple[RoleGrant, ...]
    csrf: str
    signed_in_at: float
    expires_at: float

    def has(self, *roles: Role) -> bool:
        return any(g.role in roles for g in self.grants)

    def may_decide(self, requester: str, environment: str, tables: list[str] | None) -> str | None:
        """Why this person may not decide a request (None: they may). Self-approval is refused
        with the approvals store's own normalisation, whatever the name's spelling."""
        if normalize_principal(requester) in (normalize_principal(self.identity), normalize_principal(self.subject)):
            return "you asked for this request; another person must decide it"
        if not any(g.role == "approver" and g.covers(environment, tables) for g in self.grants):
            what = ", ".join(tables) if tables else "tables that could not be read from the statement"
            return f"your approver role does not cover environment {environment!r} and {what}"
        return None

    def check_csrf(self, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(str(token), self.csrf)


class SessionRegistry:
    """Live sessions by id; thread-safe (the console may run beside the Flight server's threads)."""

    def __init__(self, minutes: int, clock: Callable[[], float] = time.time):
        self.seconds = minutes * 60
        self._clock = clock
        self._lock = threading.Lock()
        self._live: dict[str, SignedIn] = {}

    def create(self, *, identity: str, subject: str, issuer: str, grants: Sequence[RoleGrant]) -> SignedIn:
        now = self._clock()
        me = SignedIn(secrets.token_urlsafe(32), identity, subject, issuer, tuple(grants),
                      secrets.token_urlsafe(32), now, now + self.seconds)
        with self._lock:
            self._live = {k: v for k, v in self._live.items() if v.expires_at > now}
            if len(self._live) >= _MAX_SESSIONS:  # bounded memory: the oldest session makes room
                del self._live[min(self._live, key=lambda k: self._live[k].signed_in_at)]
            self._live[me.sid] = me
        return me

    def get(self, sid: str | None) -> SignedIn | None:
        if not sid:
            return None
        with self._lock:
            me = self._live.get(str(sid))
            if me is not None and me.expires_at <= self._clock():
                del self._live[me.sid]
                return None
            return me

    def end(self, sid: str | None) -> None:
        with self._lock:
            self._live.pop(str(sid), None)
