"""Masking keys: one master secret, per-scope keys derived with HKDF-SHA256, key ids, rotation.

The master comes from `LINEAGE_GUARD_MASTER_KEY` (hex, >= 32 bytes) or from the file named
by `LINEAGE_GUARD_MASTER_KEY_FILE`, or is passed in. To rotate, give several versioned
masters, newest first: `"2:<hex>,1:<hex>"`. Masks are made with the current version; the
previous ones stay so old key ids and old tokens remain verifiable.

    >>> kr = Keyring(bytes(32))
    >>> kr.key_id("purpose:ai_training").startswith("k1-")
    True
    >>> "000000" in repr(kr)
    False
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import threading
from collections.abc import Mapping
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import ConfigError

ENV_KEY = "LINEAGE_GUARD_MASTER_KEY"
ENV_KEY_FILE = "LINEAGE_GUARD_MASTER_KEY_FILE"
MIN_MASTER_BYTES = 32
_SALT = b"lineage_guard/mask/v1"
_SCOPE = re.compile(r"^[A-Za-z0-9_.:@/+\-*]{1,200}$")


def _parse_master(text: str, source: str) -> dict[int, bytes]:
    """Parse `<hex>` or `<version>:<hex>,<version>:<hex>,...` (newest first). Never echoes the text."""
    masters: dict[int, bytes] = {}
    parts = [p.strip() for p in text.strip().split(",") if p.strip()]
    if not parts:
        raise ConfigError(f"{source} is empty: set it to the hex of a random secret of at least "
                          f"{MIN_MASTER_BYTES} bytes (e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`)")
    for n, part in enumerate(parts):
        version_text, sep, hex_text = part.rpartition(":")
        if not sep:
            if len(parts) > 1:
                raise ConfigError(f"{source}: with several masters every entry must be `<version>:<hex>` "
                                  f"(entry {n + 1} has no version)")
            version_text, hex_text = "1", part
        if not version_text.isdigit() or int(version_text) < 1:
            raise ConfigError(f"{source}: entry {n + 1} has an invalid version; versions are integers >= 1")
        version = int(version_text)
        if version in masters:
            raise ConfigError(f"{source}: version {version} is given twice")
        masters[version] = _check_master(hex_text, f"{source} (entry {n + 1})")
    return masters


def _check_master(value: bytes | str, source: str) -> bytes:
    if isinstance(value, str):
        try:
            raw = bytes.fromhex(value.strip())
        except ValueError:
            raise ConfigError(f"{source} is not valid hex; give the hex of a random secret of at least "
                              f"{MIN_MASTER_BYTES} bytes") from None
    elif isinstance(value, (bytes, bytearray)):
        raw = bytes(value)
    else:
        raise ConfigError(f"{source} must be bytes or a hex string, not {type(value).__name__}")
    if len(raw) < MIN_MASTER_BYTES:
        raise ConfigError(f"{source} is too short: a master key needs at least {MIN_MASTER_BYTES} bytes "
                          f"({2 * MIN_MASTER_BYTES} hex characters)")
    return raw


class Keyring:
    """Holds the master secret(s) and derives per-scope keys. `repr()` never shows key material.

    `scope` strings come from the policy (`global`, `purpose:ai_training`, `group:clinicians`,
    `identity:svc-x`, `tenant:acme`). The same scope gives the same key (joins keep working);
    different scopes give unrelated keys (tokens cannot be linked across scopes).

        >>> kr = Keyring({2: bytes(range(32)), 1: bytes(32)})
        >>> kr.version, sorted(kr.versions)
        (2, [1, 2])
        >>> kr.key_id("global", version=1) != kr.key_id("global")
        True
    """

    __slots__ = ("_cache", "_lock", "_masters", "_version")

    def __init__(self, master: bytes | str | Mapping[int, bytes | str], *, version: int | None = None):
        if isinstance(master, Mapping):
            if not master:
                raise ConfigError("Keyring needs at least one master key")
            masters = {int(v): _check_master(m, f"master key version {v}") for v, m in master.items()}
            if any(v < 1 for v in masters):
                raise ConfigError("master key versions are integers >= 1")
        else:
            masters = {version or 1: _check_master(master, "the master key")}
        current = version if version is not None else max(masters)
        if current not in masters:
            raise ConfigError(f"current version {current} has no master key; versions held: {sorted(masters)}")
        self._masters = masters
        self._version = current
        self._cache: dict[tuple[int, str, str], bytes] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Keyring:
        """Read the master from `LINEAGE_GUARD_MASTER_KEY`, else the file named by `LINEAGE_GUARD_MASTER_KEY_FILE`.

        The value is `<hex>` or, when rotating, `<version>:<hex>,<version>:<hex>` newest first.
        """
        env = os.environ if environ is None else environ
        text = env.get(ENV_KEY)
        source = ENV_KEY
        if not text:
            path = env.get(ENV_KEY_FILE)
            if not path:
                raise ConfigError(f"no masking key: set {ENV_KEY} to the hex of a random secret of at least "
                                  f"{MIN_MASTER_BYTES} bytes, or {ENV_KEY_FILE} to a file holding it")
            try:
                text = Path(path).read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigError(f"{ENV_KEY_FILE} names a file that cannot be read ({type(exc).__name__}): "
                                  f"{path}") from None
            source = f"{ENV_KEY_FILE} ({path})"
        masters = _parse_master(text, source)
        return cls(masters, version=next(iter(masters)))

    @property
    def version(self) -> int:
        """The version new masks are made with."""
        return self._version

    @property
    def versions(self) -> tuple[int, ...]:
        """Every version held, current first."""
        return (self._version, *sorted((v for v in self._masters if v != self._version), reverse=True))

    def key(self, scope: str, use: str = "scope", *, version: int | None = None) -> bytes:
        """The 32-byte key for `scope`, narrowed to one `use` (a mask method) so methods never share a key."""
        if not isinstance(scope, str) or not _SCOPE.match(scope):
            raise ConfigError("a key scope is 1-200 characters of letters, digits and `_.:@/+-*` "
                              "(e.g. `purpose:ai_training`)")
        v = self._version if version is None else version
        if v not in self._masters:
            raise ConfigError(f"no master key version {v}; versions held: {sorted(self._masters)}")
        cache_key = (v, scope, use)
        found = self._cache.get(cache_key)
        if found is not None:
            return found
        with self._lock:
            scope_key = HKDF(algorithm=hashes.SHA256(), length=32, salt=_SALT,
                             info=b"scope\x00" + scope.encode()).derive(self._masters[v])
            derived = scope_key if use == "scope" else hmac.new(scope_key, b"use\x00" + use.encode(),
                                                                 hashlib.sha256).digest()
            self._cache[cache_key] = derived
        return derived

    def key_id(self, scope: str, *, version: int | None = None) -> str:
        """`k<version>-<8 hex>`: names the scope key (a hash of it) without revealing it."""
        v = self._version if version is None else version
        digest = hashlib.sha256(b"lineage_guard key id\x00" + self.key(scope, version=v)).hexdigest()
        return f"k{v}-{digest[:8]}"

    def verify_token(self, value: object, token: object, scope: str, **params) -> str | None:
        """The key id of the version that tokenizes `value` to `token` in `scope`, or None.

        Tries the current version, then the previous ones, so tokens made before a rotation
        stay verifiable. `params` are the tokenize parameters the token was made with.
        """
        import pyarrow as pa

        from .spec import MaskSpec
        from .tokenize import tokenize

        spec = MaskSpec("tokenize", dict(params), scope)
        array = pa.array([value])
        for v in self.versions:
            made = tokenize(array, spec, self, version=v)[0].as_py()
            if made is not None and hmac.compare_digest(str(made), str(token)):
                return self.key_id(scope, version=v)
        return None

    def __repr__(self) -> str:
        return f"Keyring(version={self._version}, versions={list(self.versions)})"

    __str__ = __repr__

    def __copy__(self) -> Keyring:
        return self  # immutable apart from its cache: a copy may share it

    def __deepcopy__(self, memo) -> Keyring:
        return self

    def __reduce__(self):
        # Pickling would copy the master into task queues and caches; refuse instead.
        raise TypeError("a Keyring cannot be pickled; rebuild it with Keyring.from_env() where it is needed")
