"""Signed-in people, kept server-side in the approvals store's database (SQLite or PostgreSQL).

The cookie carries only a random session id (256 bits). The store keeps the id's SHA-256, never
the id, so a copy of the database signs nobody in. A session ends at its expiry (set at sign-in
from `console.session_minutes`, checked on every request), at sign-out, or when an administrator
ends an identity's sessions (`lineage-guard console --end-sessions IDENTITY`); it survives a
console restart, and every console process over the same store sees the same sessions.

What a session may do is read from the policy on every request (`grants`), so a role taken out
of `console.roles` is gone at the next click, not at the next sign-in. The CSRF token and the key
that seals the provider's ID token (kept for the sign-out hint) are both derived from the session
id with HMAC, so the database holds neither a usable token nor a readable ID token.

Example:
    >>> registry = SessionRegistry(store, minutes=60, grants=lambda identity: [])   # doctest: +SKIP
    >>> me = registry.create(identity="dana", subject="dana@example.org", issuer="https://login.example")  # doctest: +SKIP
    >>> registry.get(me.sid).identity                                                # doctest: +SKIP
    'dana'
    >>> registry.end(me.sid); registry.get(me.sid) is None                           # doctest: +SKIP
    True
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Protocol

from ..approvals.store import normalize_principal
from .config import Role, RoleGrant

TABLE = "console_sessions"
_MAX_SESSIONS = 10_000
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    sid_sha256 TEXT PRIMARY KEY, identity TEXT NOT NULL, subject TEXT NOT NULL, issuer TEXT NOT NULL,
    signed_in_at DOUBLE PRECISION NOT NULL, expires_at DOUBLE PRECISION NOT NULL, id_token_sealed TEXT
);
CREATE INDEX IF NOT EXISTS {TABLE}_by_identity ON {TABLE} (identity);
CREATE INDEX IF NOT EXISTS {TABLE}_by_expiry ON {TABLE} (expires_at)
"""


class Cursor(Protocol):
    def execute(self, sql: str, params: tuple = ()) -> int: ...
    def fetchall(self, sql: str, params: tuple = ()) -> list[tuple]: ...
    def executescript(self, script: str) -> None: ...


class Transactions(Protocol):
    """What the registry needs from a store: one transaction per call, `?` placeholders (the approvals store)."""

    def transaction(self) -> AbstractContextManager[Cursor]: ...


@dataclass(frozen=True)
class SignedIn:
    """A person signed in through the OpenID provider, with the roles the policy gives their identity now."""

    sid: str = field(repr=False)  # the bearer secret of the cookie: never in a repr, a log or a failed assert
    identity: str
    subject: str
    issuer: str
    grants: tuple[RoleGrant, ...]
    signed_in_at: float
    expires_at: float

    @property
    def csrf(self) -> str:
        """This session's CSRF token: derived from the session id, so it is never stored."""
        return _derive(self.sid, "csrf")

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


def _derive(sid: str, purpose: str) -> str:
    return base64.urlsafe_b64encode(hmac.new(sid.encode(), purpose.encode(), hashlib.sha256).digest()).decode().rstrip("=")


def _hash(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


def _seal(sid: str, text: str) -> str:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = secrets.token_bytes(12)
    key = hmac.new(sid.encode(), b"id_token", hashlib.sha256).digest()
    return base64.b64encode(nonce + AESGCM(key).encrypt(nonce, text.encode(), b"lineage-guard console")).decode()


def _open(sid: str, sealed: str) -> str | None:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    raw = base64.b64decode(sealed)
    key = hmac.new(sid.encode(), b"id_token", hashlib.sha256).digest()
    try:
        return AESGCM(key).decrypt(raw[:12], raw[12:], b"lineage-guard console").decode()
    except InvalidTag:
        return None


class SessionRegistry:
    """Sessions in `store`'s database (one transaction per call: safe across threads and processes)."""

    def __init__(self, store: Transactions, minutes: int, grants: Callable[[str], Sequence[RoleGrant]],
                 clock: Callable[[], float] = time.time):
        self.store = store
        self.seconds = minutes * 60
        self._grants = grants
        self._clock = clock
        with store.transaction() as cur:
            cur.executescript(_SCHEMA)

    def _signed_in(self, sid: str, row: tuple) -> SignedIn:
        identity, subject, issuer, at, expires = row
        return SignedIn(sid, identity, subject, issuer, tuple(self._grants(identity)), float(at), float(expires))

    def create(self, *, identity: str, subject: str, issuer: str, id_token: str | None = None) -> SignedIn:
        """A new session (a fresh id: nothing from before sign-in is carried over)."""
        now = self._clock()
        sid = secrets.token_urlsafe(32)
        with self.store.transaction() as cur:
            cur.execute(f"DELETE FROM {TABLE} WHERE expires_at <= ?", (now,))
            (count,), = cur.fetchall(f"SELECT count(*) FROM {TABLE}")
            if count >= _MAX_SESSIONS:  # bounded: the oldest session makes room
                cur.execute(f"DELETE FROM {TABLE} WHERE sid_sha256 IN (SELECT sid_sha256 FROM {TABLE} "
                            "ORDER BY signed_in_at LIMIT ?)", (count - _MAX_SESSIONS + 1,))
            cur.execute(f"INSERT INTO {TABLE} (sid_sha256, identity, subject, issuer, signed_in_at, expires_at, "
                        "id_token_sealed) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (_hash(sid), identity, subject, issuer, now, now + self.seconds,
                         _seal(sid, id_token) if id_token else None))
        return self._signed_in(sid, (identity, subject, issuer, now, now + self.seconds))

    def get(self, sid: str | None) -> SignedIn | None:
        """The live session with this id, or None (unknown, ended, or expired: an expired one is deleted)."""
        if not sid or len(sid) > 128:
            return None
        sid = str(sid)
        now = self._clock()
        with self.store.transaction() as cur:
            rows = cur.fetchall(f"SELECT identity, subject, issuer, signed_in_at, expires_at FROM {TABLE} "
                                "WHERE sid_sha256 = ?", (_hash(sid),))
            if rows and float(rows[0][4]) <= now:
                cur.execute(f"DELETE FROM {TABLE} WHERE sid_sha256 = ?", (_hash(sid),))
                return None
        return self._signed_in(sid, rows[0]) if rows else None

    def id_token(self, sid: str) -> str | None:
        """The provider's ID token of this session, for the sign-out hint (None if not kept)."""
        with self.store.transaction() as cur:
            rows = cur.fetchall(f"SELECT id_token_sealed FROM {TABLE} WHERE sid_sha256 = ?", (_hash(sid),))
        return _open(sid, rows[0][0]) if rows and rows[0][0] else None

    def end(self, sid: str | None) -> None:
        if not sid:
            return
        with self.store.transaction() as cur:
            cur.execute(f"DELETE FROM {TABLE} WHERE sid_sha256 = ?", (_hash(str(sid)),))

    def end_all(self, identity: str) -> int:
        """End every session of `identity` (e.g. a lost laptop); returns how many there were."""
        with self.store.transaction() as cur:
            return cur.execute(f"DELETE FROM {TABLE} WHERE identity = ?", (identity,))

    def live(self) -> Iterator[tuple[str, float, float]]:
        """(identity, signed in at, expires at) of each live session; no ids."""
        with self.store.transaction() as cur:
            rows = cur.fetchall(f"SELECT identity, signed_in_at, expires_at FROM {TABLE} WHERE expires_at > ? "
                                "ORDER BY signed_in_at", (self._clock(),))
        yield from ((str(i), float(a), float(e)) for i, a, e in rows)
