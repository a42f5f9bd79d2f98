"""Masking keys: one master secret, keys per (scope, classification) derived with HKDF-SHA256, key ids, rotation.

The master comes from `LINEAGE_GUARD_MASTER_KEY` (hex, >= 32 bytes) or from the file named
by `LINEAGE_GUARD_MASTER_KEY_FILE`, or is passed in. To rotate, give several versioned
masters, newest first: `"2:<hex>,1:<hex>"`. Masks are made with the current version; the
previous ones stay so old key ids and old tokens remain verifiable.

Token versions (how a mask key is derived from a master and applied):

- **3** (current): the version-2 key per (scope, classification), applied as an HMAC key in its
  64-character lowercase hex text form: `mask_key_text(spec, use)`. An HMAC key is any byte
  string, so this is as strong as the raw 32 bytes; the text form is what polars-hash's compiled
  `hmac_sha256` takes, the fallback of the project's own kernel (see `keyed`, `native`): either way
  every keyed mask is a single compiled pass.
  Key ids read `k<master version>-t3-<8 hex>`.
- **2** (before): the same key per (scope, classification) as raw bytes: `mask_key(spec, use)`.
  A value pushed through the mask of an `email` column is keyed apart from a `national_id`
  column's, so no caller-chosen value can reproduce a sensitive column's token through another
  column's mask. No mask is made with it any more; `verify_token` still recognises its tokens,
  with their old key ids `k<master version>-t2-<8 hex>`.
- **1** (before): one key per scope, shared by every column: `key(scope, use)`. No mask is made
  with it any more; `verify_token` still recognises its tokens, with their old key ids
  `k<master version>-<8 hex>`.

    >>> from lineage_guard.mask.spec import MaskSpec
    >>> kr = Keyring(bytes(32))
    >>> kr.mask_key_id(MaskSpec("tokenize", scope="purpose:ai", classification="email")).startswith("k1-t3-")
    True
    >>> email, nid = MaskSpec("tokenize", classification="email"), MaskSpec("tokenize", classification="national_id")
    >>> kr.mask_key(email, "tokenize") != kr.mask_key(nid, "tokenize")
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
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import ConfigError

if TYPE_CHECKING:
    from .spec import MaskSpec

ENV_KEY = "LINEAGE_GUARD_MASTER_KEY"
ENV_KEY_FILE = "LINEAGE_GUARD_MASTER_KEY_FILE"
MIN_MASTER_BYTES = 32
_SALT = b"lineage_guard/mask/v1"      # token version 1: a key per scope (verification of old tokens only)
_SALT_V2 = b"lineage_guard/mask/v2"   # token version 2: a key per (scope, classification)
TOKEN_VERSION = 3
_DERIVATION_V2 = 2  # versions 2 and 3 share the key derivation (and so its cache entries)
_SCOPE = re.compile(r"^[A-Za-z0-9_.:@/+\-*]{1,200}$")


def _check_scope(scope: object) -> None:
    if not isinstance(scope, str) or not _SCOPE.match(scope):
        raise ConfigError("a key scope is 1-200 characters of letters, digits and `_.:@/+-*` "
                          "(e.g. `purpose:ai_training`)")


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
        self._cache: dict[tuple, bytes] = {}
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
        """The token-version-1 key for `scope` (one per scope), narrowed to one `use` so uses never share a key.

        Masks no longer use it (see `mask_key`); it stays to verify version-1 tokens and for
        callers that need a per-scope secret of their own.
        """
        _check_scope(scope)
        v = self._held(version)
        return self._derived((v, scope, use), lambda: HKDF(
            algorithm=hashes.SHA256(), length=32, salt=_SALT, info=b"scope\x00" + scope.encode(),
        ).derive(self._masters[v]), use)

    def mask_key(self, spec: MaskSpec, use: str, *, version: int | None = None) -> bytes:
        """The 32-byte key a mask method (`use`) applies to `spec`'s column: one per (scope, classification).

        `spec.classification` None (a column with no single classification: computed from several,
        or of unknown provenance) has a key of its own, apart from every named classification.
        Derived once per (version, scope, classification, use) and cached.
        """
        scope, classification = spec.scope, spec.classification
        _check_scope(scope)
        if classification is not None and not isinstance(classification, str):
            raise ConfigError(f"a mask's classification is a string, not {type(classification).__name__}")
        v = self._held(version)
        # The classification comes last with a marker byte: None and every string derive apart.
        tail = b"\x00" if classification is None else b"\x01" + classification.encode()
        return self._derived((v, scope, use, _DERIVATION_V2, classification), lambda: HKDF(
            algorithm=hashes.SHA256(), length=32, salt=_SALT_V2,
            info=b"scope\x00" + scope.encode() + b"\x00classification" + tail,
        ).derive(self._masters[v]), use)

    def mask_key_text(self, spec: MaskSpec, use: str, *, version: int | None = None) -> str:
        """The token-version-3 HMAC key of `spec`'s column for `use`: `mask_key(...)` as 64 lowercase hex characters.

        It is key material: it goes to the compiled HMAC and nowhere else (never a log or a message).
        """
        return self.mask_key(spec, use, version=version).hex()

    def _held(self, version: int | None) -> int:
        v = self._version if version is None else version
        if v not in self._masters:
            raise ConfigError(f"no master key version {v}; versions held: {sorted(self._masters)}")
        return v

    def _derived(self, cache_key: tuple, base, use: str) -> bytes:
        found = self._cache.get(cache_key)
        if found is not None:
            return found
        with self._lock:
            base_key = base()
            derived = base_key if use == "scope" else hmac.new(base_key, b"use\x00" + use.encode(),
                                                               hashlib.sha256).digest()
            self._cache[cache_key] = derived
        return derived

    def key_id(self, scope: str, *, version: int | None = None) -> str:
        """`k<version>-<8 hex>`: names a token-version-1 scope key (a hash of it) without revealing it."""
        v = self._held(version)
        digest = hashlib.sha256(b"lineage_guard key id\x00" + self.key(scope, version=v)).hexdigest()
        return f"k{v}-{digest[:8]}"

    def mask_key_id(self, spec: MaskSpec, *, version: int | None = None, token_version: int = TOKEN_VERSION) -> str:
        """`k<version>-t3-<8 hex>`: names the (scope, classification) key of `spec` without revealing it.

        What the ledger and lineage record for a keyed mask; every use of one key shares the id.
        `token_version=2` gives the id version-2 tokens were recorded under (same key, raw-bytes form).
        """
        if token_version not in (2, 3):
            raise ConfigError(f"mask key ids exist for token versions 2 and 3, not {token_version!r}")
        v = self._held(version)
        digest = hashlib.sha256(b"lineage_guard key id\x00" + self.mask_key(spec, "scope", version=v)).hexdigest()
        return f"k{v}-t{token_version}-{digest[:8]}"

    def verify_token(self, value: object, token: object, scope: str, *, classification: str | None = None,
                     **params) -> str | None:
        """The key id that tokenizes `value` to `token` in `scope` for `classification`, or None.

        Tries token version 3 (the (scope, classification) key's hex text) under the current master,
        then the previous ones, then version 2 (the same key as raw bytes), then version 1 (the
        scope key) under each master, so tokens made before a rotation, before the compiled HMAC
        or before per-classification keys stay verifiable by their recorded key id. `params` are
        the tokenize parameters the token was made with.
        """
        import pyarrow as pa

        from .spec import MaskSpec
        from .tokenize import tokenize

        spec = MaskSpec("tokenize", dict(params), scope, classification=classification)
        array = pa.array([value])
        for token_version in (3, 2):
            for v in self.versions:
                made = tokenize(array, spec, self, version=v, token_version=token_version)[0].as_py()
                if made is not None and hmac.compare_digest(str(made), str(token)):
                    return self.mask_key_id(spec, version=v, token_version=token_version)
        for v in self.versions:
            made = tokenize(array, spec, self, version=v, token_version=1)[0].as_py()
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
