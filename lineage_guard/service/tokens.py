"""Hashed API tokens: the service stores a token's sha256, never the token.

A token is `lgt_<id>_<secret>` (the id names the entry, the secret is 256 random bits, so a
plain sha256 is enough: there is nothing to brute-force). `create` returns the token once; the
store keeps `{id: {sha256, identity, created_at, expires_at, label}}` in a JSON file written
atomically (`LINEAGE_GUARD_HOME/api_tokens.json` unless a path is given).

Example:
    >>> store = TokenStore(Path(tmp) / "tokens.json")                    # doctest: +SKIP
    >>> token = store.create("svc-training", label="nightly")            # doctest: +SKIP
    >>> store.verify(token).identity                                     # doctest: +SKIP
    'svc-training'
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ..errors import ConfigError
from ..fileio import atomic_write
from ..paths import state_file

PREFIX = "lgt_"
ENV_STORE = "LINEAGE_GUARD_API_TOKENS"


@dataclass(frozen=True)
class ApiToken:
    """A stored token's entry (no secret)."""

    id: str
    identity: str
    created_at: str
    expires_at: str | None
    label: str

    @property
    def expired(self) -> bool:
        return self.expires_at is not None and datetime.fromisoformat(self.expires_at) <= datetime.now(UTC)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_id(token: str) -> str | None:
    """The id part of an API token, or None if `token` is not one."""
    if not token.startswith(PREFIX):
        return None
    ident, sep, secret = token[len(PREFIX):].partition("_")
    return ident if sep and ident and secret else None


class TokenStore:
    """The API token store (one JSON file), re-read when the file changes."""

    def __init__(self, path: Path | None = None):
        self.path = Path(path or os.environ.get(ENV_STORE) or state_file("api_tokens.json"))
        self._lock = threading.Lock()
        self._cache: tuple[float, dict] | None = None

    def _load(self) -> dict:
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return {}
        with self._lock:
            if self._cache is None or self._cache[0] != mtime:
                try:
                    self._cache = (mtime, json.loads(self.path.read_text()))
                except (OSError, ValueError):
                    raise ConfigError(f"the API token store {self.path} is unreadable; restore it or create "
                                      "new tokens with `lineage-guard tokens create`") from None
            return self._cache[1]

    def create(self, identity: str, *, label: str = "", ttl_days: float | None = None) -> str:
        """A new token for `identity`; its hash is stored, the token itself is returned once."""
        ident = secrets.token_hex(6)
        token = f"{PREFIX}{ident}_{secrets.token_urlsafe(32)}"
        now = datetime.now(UTC)
        entries = dict(self._load())
        entries[ident] = {
            "sha256": _digest(token), "identity": identity, "label": label,
            "created_at": now.isoformat(),
            "expires_at": (now + timedelta(days=ttl_days)).isoformat() if ttl_days else None,
        }
        self._write(entries)
        return token

    def revoke(self, ident: str) -> bool:
        entries = dict(self._load())
        if entries.pop(ident, None) is None:
            return False
        self._write(entries)
        return True

    def list(self) -> list[ApiToken]:
        return [ApiToken(i, e["identity"], e["created_at"], e.get("expires_at"), e.get("label", ""))
                for i, e in sorted(self._load().items())]

    def verify(self, token: str) -> ApiToken | None:
        """The entry for a valid, unexpired `token`, else None (constant-time hash comparison)."""
        ident = token_id(token)
        entry = self._load().get(ident or "")
        if entry is None or not hmac.compare_digest(entry["sha256"], _digest(token)):
            return None
        found = ApiToken(ident, entry["identity"], entry["created_at"], entry.get("expires_at"),  # type: ignore[arg-type]
                         entry.get("label", ""))
        return None if found.expired else found

    def _write(self, entries: dict) -> None:
        atomic_write(self.path, json.dumps(entries, indent=2, sort_keys=True).encode())
        os.chmod(self.path, 0o600)
