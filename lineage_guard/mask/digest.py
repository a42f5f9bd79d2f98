"""Many digests at once: keyed HMAC-SHA256 and plain SHA-256 over lists of byte strings or Arrow binary arrays.

Arrow inputs take the compiled kernel (`native`) where it is built; otherwise large ones take
polars-hash SHA-256 (no Python per value) and small ones a Python loop over cached pad states.
All give exactly `hmac.new(...).digest()`.
Results come back as one `(n, 32)` uint8 matrix so the text encoders that follow run in numpy.

    >>> import hmac, hashlib
    >>> hmac_sha256_many(b"k" * 32, [b"a"])[0].tobytes() == hmac.new(b"k" * 32, b"a", hashlib.sha256).digest()
    True
"""

from __future__ import annotations

import binascii
import hashlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import native

try:  # CPython's own SHA-256: copying its state is far cheaper than copying an OpenSSL 3 context.
    from _sha2 import sha256 as _sha256  # type: ignore[import-not-found]  # Python >= 3.12
except ImportError:  # pragma: no cover - depends on the interpreter
    try:
        from _sha256 import sha256 as _sha256  # type: ignore[import-not-found]  # Python 3.11
    except ImportError:
        _sha256 = hashlib.sha256

DIGEST_SIZE = 32
_BLOCK = 64
# Below this many values the compiled path's fixed cost (Arrow <-> Polars, plugin call) loses
# to the Python loop; both paths cross between 20,000 and 50,000 values (benchmarks/masking.py prints the crossing).
COMPILED_MIN = 32_768
# Rows per plugin call: buffers that stay in cache make a call about 2.5x cheaper than one
# call over 2,000,000 rows (measured: CPU time 1.1 s vs 2.9 s for the whole column).
CHUNK_ROWS = 65_536
_THREADS = 2  # the plugin releases the GIL; two chunks in flight keep both cores of this machine class busy


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


def hmac_sha256_arrow(key: bytes, values: pa.Array) -> np.ndarray:
    """HMAC-SHA256(key, v) for every row of a binary Arrow array (nulls hashed as empty), as `(n, 32)` uint8.

    Byte-identical to `hmac_sha256_many`. From `COMPILED_MIN` rows on, HMAC is composed from two
    compiled SHA-256 passes (`H(K^opad || H(K^ipad || m))`, RFC 2104) with no Python per value:
    the padded key only ever sits in Arrow/numpy buffers of this process, never in an expression
    string, a log or an error.

        >>> import hmac, hashlib
        >>> hmac_sha256_arrow(b"k", pa.array([b"a"]))[0].tobytes() == hmac.new(b"k", b"a", hashlib.sha256).digest()
        True
    """
    raw = _large_binary(values)
    if native.AVAILABLE:
        return native.digests(key, raw)
    if len(raw) < max(COMPILED_MIN, 1):
        return hmac_sha256_many(key, raw.to_pylist())
    inner_pad, outer_pad = _pads(key)
    chunks = [raw.slice(i, CHUNK_ROWS) for i in range(0, len(raw), CHUNK_ROWS)]
    with ThreadPoolExecutor(min(_THREADS, len(chunks))) as pool:
        parts = list(pool.map(lambda chunk: _hmac_compiled(inner_pad, outer_pad, chunk), chunks))
    return np.concatenate(parts)


def _large_binary(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()  # the kernel reads one array's buffers
    raw = values if pa.types.is_large_binary(values.type) else pc.cast(values, pa.large_binary())
    return pc.fill_null(raw, pa.scalar(b"", pa.large_binary())) if raw.null_count else raw


def _pads(key: bytes) -> tuple[bytes, bytes]:
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_BLOCK, b"\0")
    return bytes(b ^ 0x36 for b in key), bytes(b ^ 0x5C for b in key)


def _hmac_compiled(inner_pad: bytes, outer_pad: bytes, raw: pa.Array) -> np.ndarray:
    empty = pa.scalar(b"", pa.large_binary())
    inner = _sha256_compiled(pc.binary_join_element_wise(pa.scalar(inner_pad, pa.large_binary()), raw, empty))
    rows = np.empty((len(inner), _BLOCK + DIGEST_SIZE), dtype=np.uint8)
    rows[:, :_BLOCK] = np.frombuffer(outer_pad, dtype=np.uint8)
    rows[:, _BLOCK:] = inner
    return _sha256_compiled(_fixed_binary(rows))


def _fixed_binary(rows: np.ndarray) -> pa.Array:
    n, width = rows.shape
    offsets = np.arange(n + 1, dtype=np.int64) * width
    return pa.Array.from_buffers(pa.large_binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(rows)])


def _sha256_compiled(raw: pa.Array) -> np.ndarray:
    """SHA-256 of every row through polars-hash (Rust `sha2`), which answers in lowercase hex."""
    import polars as pl  # on first use: small inputs take the Python loop and never load Polars
    import polars_hash  # noqa: F401  # registers the `chash` expression namespace (compiled SHA-256)

    return hex_to_digests(pl.DataFrame({"v": raw}).select(pl.col("v").chash.sha2_256()).to_series().to_arrow())


def hex_to_digests(hexed: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """An `(n, 32)` uint8 matrix from text rows of exactly 64 hex characters (refused otherwise)."""
    if isinstance(hexed, pa.ChunkedArray):
        hexed = hexed.combine_chunks()
    if not pa.types.is_large_string(hexed.type):
        hexed = pc.cast(hexed, pa.large_string())
    if not len(hexed):
        return np.zeros((0, DIGEST_SIZE), dtype=np.uint8)
    offsets = np.frombuffer(hexed.buffers()[1], dtype=np.int64)[hexed.offset:hexed.offset + len(hexed) + 1]
    if hexed.null_count or not np.all(np.diff(offsets) == 2 * DIGEST_SIZE):
        raise RuntimeError("compiled SHA-256 returned an unexpected shape; refusing to emit tokens")
    data = memoryview(hexed.buffers()[2])[int(offsets[0]):int(offsets[-1])]
    # binascii decodes in C straight from the Arrow buffer: ~20x a numpy table lookup per byte pair.
    return np.frombuffer(binascii.unhexlify(data), dtype=np.uint8).reshape(-1, DIGEST_SIZE)


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
