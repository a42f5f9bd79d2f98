"""The compiled HMAC kernel: HMAC-SHA256 of every row of an Arrow binary array in one C call.

`_hmac_sha256.c` composes RFC 2104 from OpenSSL's SHA-256 and hashes the key's two pad blocks
once per call, so a short value costs two compressions (~140 ns here, against ~350 ns for
polars-hash's per-value `hmac_sha256`; benchmarks/masking.py). It reads the Arrow buffers in
place and runs without the GIL, so large arrays are split over `THREADS` threads.

The extension is optional (pyproject.toml): a build without a C compiler or OpenSSL 3 headers
has none, `AVAILABLE` is False and the callers in `keyed` and `digest` take polars-hash. Both
give `hmac.new(key, v, sha256)` byte for byte (tests/test_mask_native.py, property-tested).
`LINEAGE_GUARD_NATIVE_HMAC=0` turns it off (read once, at import).

    >>> import hmac, hashlib, pyarrow as pa
    >>> if AVAILABLE:
    ...     assert digests(b"k", pa.array([b"a"], pa.large_binary()))[0].tobytes() == \\
    ...         hmac.new(b"k", b"a", hashlib.sha256).digest()
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa

try:
    from . import _hmac_sha256 as _kernel  # type: ignore[attr-defined]
except ImportError:  # built without it (see the module doc)
    _kernel = None

AVAILABLE = _kernel is not None and os.environ.get("LINEAGE_GUARD_NATIVE_HMAC", "1") != "0"
DIGEST_SIZE = 32
# From this many rows on, two threads each take half (the kernel releases the GIL); below it a
# thread's start-up costs more than the half it saves (benchmarks/masking.py, `--threads`).
THREADED_MIN = 65_536
THREADS = 2


def digests(key: bytes, raw: pa.Array) -> np.ndarray:
    """HMAC-SHA256(key, row) for every row of a null-free `large_binary` array, as `(n, 32)` uint8."""
    out = np.empty((len(raw), DIGEST_SIZE), dtype=np.uint8)
    _run(lambda offsets, data, rows: _kernel.digests(key, offsets, data, rows), raw, out)
    return out


def hex_text(key: bytes, raw: pa.Array, prefix: bytes, hex_chars: int) -> pa.Array:
    """`prefix + hex(HMAC-SHA256(key, row))[:hex_chars]` for every row, as a `large_string` array."""
    width = len(prefix) + hex_chars
    out = np.empty((len(raw), width), dtype=np.uint8)
    _run(lambda offsets, data, rows: _kernel.hex_rows(key, offsets, data, rows, prefix, hex_chars), raw, out)
    offsets = np.arange(len(raw) + 1, dtype=np.int64) * width
    return pa.Array.from_buffers(pa.large_string(), len(raw), [None, pa.py_buffer(offsets), pa.py_buffer(out)])


def _run(call, raw: pa.Array, out: np.ndarray) -> None:
    if _kernel is None:
        raise RuntimeError("the compiled HMAC kernel is not built")
    if not pa.types.is_large_binary(raw.type) or raw.null_count:
        raise TypeError("the HMAC kernel takes a null-free large_binary array")
    n = len(raw)
    if not n:
        return
    buffers = raw.buffers()
    # The offsets of a sliced array start at its offset; the kernel checks each against the data.
    offsets = memoryview(buffers[1])[8 * raw.offset:8 * (raw.offset + n + 1)]
    data = buffers[2] if buffers[2] is not None else b""
    if n < THREADED_MIN or THREADS < 2:
        call(offsets, data, out)
        return
    step = -(-n // THREADS)
    spans = [(lo, min(lo + step, n)) for lo in range(0, n, step)]
    with ThreadPoolExecutor(len(spans)) as pool:
        for done in [pool.submit(call, offsets[8 * lo:8 * (hi + 1)], data, out[lo:hi]) for lo, hi in spans]:
            done.result()
