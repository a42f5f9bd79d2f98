"""The ledger's Ed25519 signing key, derived from the master secret and never stored.

The private key's seed is derived from the masking master secret by the Keyring's
HKDF-SHA256 (scope `ledger`, use `ledger-signing/v1`), one per master key version,
so rotating the master rotates the signing key while old entries stay verifiable.
Entries carry the public key and its key id: anyone holding the public key can
verify a receipt without the ledger's database or the secret.

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
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..mask.keys import Keyring

# The Keyring's variables (lineage_guard.mask.keys), named here so verifying never imports the masking engine.
ENV_KEY = "LINEAGE_GUARD_MASTER_KEY"
ENV_KEY_FILE = "LINEAGE_GUARD_MASTER_KEY_FILE"

MASTER_KEY_ENV = ENV_KEY
SCOPE, USE = "ledger", "ledger-signing/v1"


def key_id_for(public_key: str) -> str:
    """The key id of a hex public key: `ed25519:` + the first 16 hex digits of its sha256."""
    return "ed25519:" + hashlib.sha256(bytes.fromhex(public_key)).hexdigest()[:16]


@dataclass(frozen=True, repr=False)
class Signer:
    """Signs ledger entries. `repr` and `str` never show the private key."""

    _private: Ed25519PrivateKey
    public_key: str  # hex of the 32 raw public key bytes
    key_id: str

    def __repr__(self) -> str:
        return f"Signer(key_id={self.key_id!r})"

    @classmethod
    def from_keyring(cls, keyring: Keyring, version: int | None = None) -> Signer:
        """The signer for one master key version (default: the current one)."""
        seed = keyring.key(SCOPE, USE, version=version)
        private = Ed25519PrivateKey.from_private_bytes(seed)
        public = (
            private.public_key()
            .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            .hex()
        )
        return cls(private, public, key_id_for(public))

    @classmethod
    def from_master_key(cls, master_key_hex: str) -> Signer:
        """The signer for a hex master secret (`<hex>` or `<version>:<hex>,...` newest first)."""
        return cls.from_env({ENV_KEY: master_key_hex})

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Signer:
        """The signer for `LINEAGE_GUARD_MASTER_KEY` (or `..._FILE`); a clear error if neither is set."""
        from ..mask.keys import Keyring

        return cls.from_keyring(Keyring.from_env(environ))

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


def signing_keys(environ: Mapping[str, str] | None = None) -> list[tuple[int, str, str]]:
    """(master version, key id, hex public key) for every master version held, current first.

    What an auditor pins: publish these public keys; the private keys are never needed to verify.
    """
    from ..mask.keys import Keyring

    keyring = Keyring.from_env(environ)
    return [
        (version, (signer := Signer.from_keyring(keyring, version)).key_id, signer.public_key)
        for version in keyring.versions
    ]


def trusted_keys(
    public_keys: list[str] | tuple[str, ...] = (), environ: Mapping[str, str] | None = None
) -> dict[str, str]:
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
            raise ConfigError(
                "public key must be 64 hex digits (the `public_key` of an exported ledger)"
            ) from None
        keys[key_id_for(key)] = key
    env = environ if environ is not None else os.environ
    if env.get(ENV_KEY, "").strip() or env.get(ENV_KEY_FILE, "").strip():
        # every version: entries signed before a rotation still verify
        keys.update({key_id: public for _, key_id, public in signing_keys(env)})
    return keys
