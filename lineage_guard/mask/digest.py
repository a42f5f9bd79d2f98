"""Many digests at once: keyed HMAC-SHA256 and plain SHA-256 over lists of byte strings.

Results come back as one `(n, 32)` uint8 matrix so the text encoders that follow run in numpy.

    >>> import hmac, hashlib
    >>> hmac_sha256_many(b"k" * 32, [b"a"])[0].tobytes() == hmac.new(b"k" * 32, b"a", hashlib.sha256).digest()
    True
"""

from __future__ import annotations

import hashlib

import numpy as np

try:  # CPython's own SHA-256: copying its state is far cheaper than copying an OpenSSL 3 context.
    from _sha2 import sha256 as _sha256  # type: ignore[import-not-found]  # Python >= 3.12
except ImportError:  # pragma: no cover - depends on the interpreter
    try:
        from _sha256 import sha256 as _sha256  # type: ignore[import-not-found]  # Python 3.11
    except ImportError:
        _sha256 = hashlib.sha256

DIGEST_SIZE = 32
_BLOCK = 64


def hmac_sha256_many(key: bytes, values: list[bytes]) -> np.ndarray:
    """HMAC-SHA256(key, v) for every v, as an `(n, 32)` uint8 matrix (RFC 2104, equal to `hmac.new`).

    The inner and outer pads are hashed once; each value then costs two state copies
    instead of a fresh HMAC object, which is what makes the per-distinct-value loop fast.
    """
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_BLOCK, b"\0")
    inner_copy = _sha256(bytes(b ^ 0x36 for b in key)).copy
    outer_copy = _sha256(bytes(b ^ 0x5C for b in key)).copy
    out: list[bytes] = []
    append = out.append
    for v in values:
        inner = inner_copy()
        inner.update(v)
        outer = outer_copy()
        outer.update(inner.digest())
        append(outer.digest())
    return _matrix(out)


def sha256_many(values: list[bytes]) -> np.ndarray:
    """Keyless SHA-256 of every value, as an `(n, 32)` uint8 matrix."""
    return _matrix([_sha256(v).digest() for v in values])


def _matrix(digests: list[bytes]) -> np.ndarray:
    if not digests:
        return np.zeros((0, DIGEST_SIZE), dtype=np.uint8)
    return np.frombuffer(b"".join(digests), dtype=np.uint8).reshape(-1, DIGEST_SIZE)


def digest_uint64(digests: np.ndarray, offset: int = 0) -> np.ndarray:
    """Eight digest bytes from `offset` read as big-endian unsigned integers, one per row."""
    return np.ascontiguousarray(digests[:, offset:offset + 8]).view(">u8").ravel().astype(np.uint64)
