"""The ledger's Ed25519 signing key, derived from the master secret and never stored.

The private key is derived with HKDF-SHA256 (info `lineage_guard/ledger-signing/v1`)
from the master secret in `LINEAGE_GUARD_MASTER_KEY` (hex). Entries carry the
public key and its key id, so anyone holding the public key can verify a receipt
without the ledger's database or the secret.

Example:
    >>> signer = Signer.from_master_key("00" * 32)
    >>> signature = signer.sign(b"entry bytes")
    >>> verify_signature(signer.public_key, b"entry bytes", signature)
    True
    >>> signer.key_id == key_id_for(signer.public_key)
    True
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import ConfigError

MASTER_KEY_ENV = "LINEAGE_GUARD_MASTER_KEY"
INFO = b"lineage_guard/ledger-signing/v1"
MIN_MASTER_BYTES = 16


def key_id_for(public_key: str) -> str:
    """The key id of a hex public key: `ed25519:` + the first 16 hex digits of its sha256."""
    return "ed25519:" + hashlib.sha256(bytes.fromhex(public_key)).hexdigest()[:16]


def _master_bytes(master_key_hex: str) -> bytes:
    # The message names the variable, never the value: the value is the secret.
    try:
        raw = bytes.fromhex(master_key_hex.strip())
    except ValueError:
        raise ConfigError(f"{MASTER_KEY_ENV} must be hex (e.g. the output of `openssl rand -hex 32`)") from None
    if len(raw) < MIN_MASTER_BYTES:
        raise ConfigError(f"{MASTER_KEY_ENV} must hold at least {MIN_MASTER_BYTES} bytes ({2 * MIN_MASTER_BYTES} hex digits)")
    return raw


@dataclass(frozen=True, repr=False)
class Signer:
    """Signs ledger entries. `repr` and `str` never show the private key."""

    _private: Ed25519PrivateKey
    public_key: str   # hex of the 32 raw public key bytes
    key_id: str

    def __repr__(self) -> str:
        return f"Signer(key_id={self.key_id!r})"

    @classmethod
    def from_master_key(cls, master_key_hex: str) -> "Signer":
        """Derive the signing key from a hex master secret."""
        seed = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=INFO).derive(_master_bytes(master_key_hex))
        private = Ed25519PrivateKey.from_private_bytes(seed)
        public = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()
        return cls(private, public, key_id_for(public))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Signer":
        """The signer for `LINEAGE_GUARD_MASTER_KEY`; a clear error if it is unset."""
        value = (environ if environ is not None else os.environ).get(MASTER_KEY_ENV, "")
        if not value.strip():
            raise ConfigError(f"the audit ledger signs entries with a key derived from {MASTER_KEY_ENV}; set it (hex)")
        return cls.from_master_key(value)

    def sign(self, data: bytes) -> str:
        """The hex Ed25519 signature of `data`."""
        return self._private.sign(data).hex()


def verify_signature(public_key: str, data: bytes, signature: str) -> bool:
    """True if `signature` (hex) is a valid Ed25519 signature of `data` under `public_key` (hex)."""
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key)).verify(bytes.fromhex(signature), data)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def trusted_keys(public_keys: list[str] | tuple[str, ...] = (), environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The keys a verifier trusts: the given hex public keys plus the one derived from the master key, if set.

    Keys are pinned by the verifier, never taken from the ledger itself: whoever can
    write the ledger could otherwise re-sign a forged chain with a key of their own.
    """
    keys: dict[str, str] = {}
    for key in public_keys:
        key = key.strip().lower()
        try:
            Ed25519PublicKey.from_public_bytes(bytes.fromhex(key))
        except ValueError:
            raise ConfigError("public key must be 64 hex digits (the `public_key` of an exported ledger)") from None
        keys[key_id_for(key)] = key
    env = environ if environ is not None else os.environ
    if env.get(MASTER_KEY_ENV, "").strip():
        signer = Signer.from_env(env)
        keys[signer.key_id] = signer.public_key
    return keys
