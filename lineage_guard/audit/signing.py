"""The ledger's own Ed25519 signing key: kept apart from the masking master key.

Whoever can compute tokens (holds `LINEAGE_GUARD_MASTER_KEY`) must not be able to re-sign
history, so the ledger's key is not derived from the master key. The private key is a PEM
(PKCS#8) file: `LINEAGE_GUARD_LEDGER_SIGNING_KEY_FILE`, else `ledger-signing.key` in the state
folder, generated (mode 0600, with a warning) the first time a process records. The ledger pins
the public key on its first entry (see `ledger.py`); verifiers pin it too (`--public-key`,
`LINEAGE_GUARD_LEDGER_PUBLIC_KEY`), never taking it from the ledger they check.

Example:
    >>> signer = Signer.generate()
    >>> signature = signer.sign(b"entry bytes")
    >>> verify_signature(signer.public_key, b"entry bytes", signature)
    True
    >>> signer.key_id == key_id_for(signer.public_key)
    True
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .. import paths
from ..errors import ConfigError

KEY_FILE_ENV = "LINEAGE_GUARD_LEDGER_SIGNING_KEY_FILE"
PUBLIC_KEY_ENV = "LINEAGE_GUARD_LEDGER_PUBLIC_KEY"
DEFAULT_KEY_FILE = "ledger-signing.key"
# The masking master key's variables: named here only to move a ledger signed by the old,
# master-derived key onto a key of its own (`audit rotate-key --from-master-key`).
MASTER_KEY_ENV = "LINEAGE_GUARD_MASTER_KEY"
MASTER_KEY_FILE_ENV = "LINEAGE_GUARD_MASTER_KEY_FILE"
_LEGACY_SCOPE, _LEGACY_USE = "ledger", "ledger-signing/v1"

log = logging.getLogger("lineage_guard.audit")


def key_id_for(public_key: str) -> str:
    """The key id of a hex public key: `ed25519:` + the first 16 hex digits of its sha256."""
    return "ed25519:" + hashlib.sha256(bytes.fromhex(public_key)).hexdigest()[:16]


@dataclass(frozen=True, repr=False)
class Signer:
    """Signs ledger entries. `repr` and `str` never show the private key; `source` says where it came from."""

    _private: Ed25519PrivateKey
    public_key: str  # hex of the 32 raw public key bytes
    key_id: str
    source: str = "memory"

    def __repr__(self) -> str:
        return f"Signer(key_id={self.key_id!r}, source={self.source!r})"

    @classmethod
    def from_private_key(cls, private: Ed25519PrivateKey, source: str = "memory") -> Signer:
        public = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()
        return cls(private, public, key_id_for(public), source)

    @classmethod
    def generate(cls) -> Signer:
        """A fresh random key (in memory; `write_key_file` saves one)."""
        return cls.from_private_key(Ed25519PrivateKey.generate())

    @classmethod
    def from_file(cls, path: str | Path) -> Signer:
        """The key in a PEM (PKCS#8, unencrypted) file, e.g. from `openssl genpkey -algorithm ed25519`."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ConfigError(f"ledger signing key file {path} does not exist; create one with "
                              f"`lineage-guard audit new-key {path}` (or `openssl genpkey -algorithm ed25519 "
                              f"-out {path}`), or unset {KEY_FILE_ENV}") from None
        except OSError as exc:
            raise ConfigError(f"cannot read the ledger signing key file {path}: {exc.strerror}") from None
        try:
            private = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError):  # never echo the file's content
            raise ConfigError(f"{path} is not an unencrypted PEM private key; the ledger needs an Ed25519 key "
                              "(`openssl genpkey -algorithm ed25519`)") from None
        if not isinstance(private, Ed25519PrivateKey):
            raise ConfigError(f"{path} holds a {type(private).__name__.removeprefix('_')}, not an Ed25519 key")
        _warn_if_readable_by_others(path)
        return cls.from_private_key(private, str(path))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, create: bool = True) -> Signer:
        """The writer's key: `LINEAGE_GUARD_LEDGER_SIGNING_KEY_FILE`, else the state folder's
        `ledger-signing.key`, generated on first use when `create` (with a warning saying where)."""
        env = os.environ if environ is None else environ
        named = env.get(KEY_FILE_ENV, "").strip()
        if named:
            return cls.from_file(named)
        path = paths.state_file(DEFAULT_KEY_FILE)
        if not path.exists() and create:
            try:
                signer = write_key_file(path)
            except ConfigError:  # another process or thread created it first: use theirs
                return cls.from_file(path)
            log.warning("lineage_guard: generated the ledger signing key %s (%s) at %s, readable by you only. "
                        "Back it up and keep it apart from the ledger and the master key; publish the public key "
                        "(`lineage-guard audit public-key`) to whoever verifies the ledger. Set %s to use a key "
                        "kept elsewhere.", signer.key_id, signer.public_key, path, KEY_FILE_ENV)
            return signer
        return cls.from_file(path)

    @classmethod
    def from_master_key(cls, environ: Mapping[str, str] | None = None) -> Signer:
        """The key older versions derived from the master key: only to rotate an old ledger off it."""
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey as _Key

        from ..mask.keys import Keyring

        seed = Keyring.from_env(environ).key(_LEGACY_SCOPE, _LEGACY_USE)
        return cls.from_private_key(_Key.from_private_bytes(seed), "derived from the master key (legacy)")

    def sign(self, data: bytes) -> str:
        """The hex Ed25519 signature of `data`."""
        return self._private.sign(data).hex()


def write_key_file(path: str | Path) -> Signer:
    """Generate a key and write it to `path` (PEM, mode 0600); refuses to overwrite an existing file.

    The file appears whole or not at all (written aside, then hard-linked into place), so a
    process that finds it never reads half a key, and of two racing first writers one wins.
    """
    path = Path(path)
    signer = Signer.generate()
    pem = signer._private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    aside = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(aside, path)
        except FileExistsError:
            raise ConfigError(f"{path} already exists; a signing key is never overwritten") from None
    finally:
        aside.unlink(missing_ok=True)
    return Signer.from_private_key(signer._private, str(path))


def _warn_if_readable_by_others(path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("lineage_guard: the ledger signing key %s is readable by others (mode %o); `chmod 600 %s`",
                    path, stat.S_IMODE(mode), path)


def verify_signature(public_key: str, data: bytes, signature: str) -> bool:
    """True if `signature` (hex) is a valid Ed25519 signature of `data` under `public_key` (hex)."""
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key)).verify(bytes.fromhex(signature), data)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def parse_public_key(text: str) -> str:
    """A hex public key, normalized; a clear error otherwise."""
    key = text.strip().lower()
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(key))
    except ValueError:
        raise ConfigError("public key must be 64 hex digits (`lineage-guard audit public-key` prints it)") from None
    return key


def local_signer(environ: Mapping[str, str] | None = None) -> Signer | None:
    """This machine's signing key if one exists (never created here: verifying must not make keys)."""
    env = os.environ if environ is None else environ
    named = env.get(KEY_FILE_ENV, "").strip()
    path = Path(named) if named else paths.state_file(DEFAULT_KEY_FILE)
    return Signer.from_file(path) if path.exists() else None


def trusted_keys(public_keys: list[str] | tuple[str, ...] = (),
                 environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The keys a verifier trusts: the given hex public keys, `LINEAGE_GUARD_LEDGER_PUBLIC_KEY`
    (comma-separated), and this machine's own signing key if it has one.

    Never the keys a ledger or an export names itself: whoever can write the ledger could
    otherwise re-sign a forged chain with a key of their own.
    """
    env = os.environ if environ is None else environ
    given = [*public_keys, *filter(str.strip, env.get(PUBLIC_KEY_ENV, "").split(","))]
    keys = {key_id_for(k): k for k in map(parse_public_key, given)}
    own = local_signer(env)
    if own is not None:
        keys[own.key_id] = own.public_key
    return keys


NO_TRUSTED_KEY = (f"no trusted key to verify the ledger against: pass its public key (--public-key HEX, printed "
                  f"by `lineage-guard audit public-key` where the ledger is written), set {PUBLIC_KEY_ENV}, or "
                  f"point {KEY_FILE_ENV} at its signing key")
