"""Token version 3: every keyed method's HMAC-SHA256, through a compiled kernel.

The HMAC key is the lowercase hex text (64 ASCII characters) of the 32-byte derived mask key
(`Keyring.mask_key_text`). An HMAC key is any byte string, so this is a full-strength key; the
text form is what lets polars-hash's compiled `hmac_sha256` take it, since its `key` argument is
a `str`. Where the project's own kernel is built (`native`: OpenSSL's SHA-256 from cached pad
midstates, ~2.5x less CPU a value) every size goes through it; otherwise large inputs go through
polars-hash and small ones a Python loop over cached pad states. All three give
`hmac.new(key_text.encode(), v, sha256)` byte for byte (property-tested in
tests/test_mask_native.py and tests/test_mask_tokenize_fast.py).

The key text is handed to the plugin as an expression keyword; polars neither prints keywords in
an expression's repr/str/explain nor in its error messages (tests/test_mask_tokenize_fast.py checks).
The expression is built, run and dropped inside one function call here and is never serialized.

    >>> import hmac, hashlib, pyarrow as pa
    >>> key = "ab" * 32
    >>> hmac_hex(key, pa.array([b"a"]))[0].as_py() == hmac.new(key.encode(), b"a", hashlib.sha256).hexdigest()
    True
"""

from __future__ import annotations

import binascii
import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import MaskingError
from . import native
from .digest import DIGEST_SIZE, hmac_sha256_many

# Below this many values the plugin's fixed cost (Arrow -> Polars, the call, back) loses to the
# Python loop (benchmarks/masking.py prints the crossing: the compiled path was already 1.8x the
# loop at 2,000 values on a quiet box).
COMPILED_MIN = 2_048
# From this many values on, two halves run on two threads (the plugin releases the GIL);
# below it the second thread's start-up costs more than it saves.
THREADED_MIN = 200_000
THREADS = 2
_KEY_TEXT = re.compile(r"^[0-9a-f]{64}$")


def hmac_hex(key_text: str, values: pa.Array, *, prefix: str = "", length: int = 2 * DIGEST_SIZE) -> pa.Array:
    """`prefix + hex(HMAC-SHA256(key_text, v))[:length]` for every row of a text/binary array (nulls hashed as empty).

    Returns a `large_string` array. `key_text` is a token-version-3 key (64 lowercase hex characters).
    """
    _check_key(key_text)
    if not 0 <= length <= 2 * DIGEST_SIZE:
        raise MaskingError(f"a token is 0 to {2 * DIGEST_SIZE} hex characters long, not {length}")
    raw = _large_binary(values)
    if native.AVAILABLE:
        return native.hex_text(key_text.encode(), raw, prefix.encode(), length)
    if len(raw) < max(COMPILED_MIN, 1):
        digests = hmac_sha256_many(key_text.encode(), raw.to_pylist())
        blocks = [np.frombuffer(digests.tobytes().hex().encode(), np.uint8).reshape(len(raw), 2 * DIGEST_SIZE)]
    else:
        blocks = _hex_blocks(_compiled(key_text, raw))
    return _text_rows(prefix.encode(), [block[:, :length] for block in blocks])


def hmac_digests(key_text: str, values: pa.Array) -> np.ndarray:
    """HMAC-SHA256(key_text, v) for every row, as an `(n, 32)` uint8 matrix (what the non-text kernels read)."""
    _check_key(key_text)
    raw = _large_binary(values)
    if native.AVAILABLE:
        return native.digests(key_text.encode(), raw)
    if len(raw) < max(COMPILED_MIN, 1):
        return hmac_sha256_many(key_text.encode(), raw.to_pylist())
    blocks = _hex_blocks(_compiled(key_text, raw))
    # binascii decodes in C straight from the Arrow buffers (~20x a numpy table lookup per byte pair).
    return np.frombuffer(b"".join(binascii.unhexlify(block) for block in blocks), np.uint8).reshape(-1, DIGEST_SIZE)


def _check_key(key_text: str) -> None:
    # Fail closed on anything but a derived key's text: a short or mistyped key must never mask.
    if not isinstance(key_text, str) or not _KEY_TEXT.match(key_text):
        raise MaskingError("a token-version-3 key is the 64-character hex text of a derived mask key")


def _large_binary(values: pa.Array) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    raw = values if pa.types.is_large_binary(values.type) else pc.cast(values, pa.large_binary())
    return pc.fill_null(raw, pa.scalar(b"", pa.large_binary())) if raw.null_count else raw


def _compiled(key_text: str, raw: pa.Array) -> pa.Array:
    """Lowercase hex HMAC of every row as `string_view`, in one plugin call or two on two threads."""
    n = len(raw)
    if n >= THREADED_MIN and THREADS > 1:
        step = -(-n // THREADS)
        with ThreadPoolExecutor(THREADS) as pool:
            parts = list(pool.map(lambda i: _plugin(key_text, raw.slice(i, step)), range(0, n, step)))
        out = pa.concat_arrays(parts)  # string_view: concatenates views and buffer lists, not the text
    else:
        out = _plugin(key_text, raw)
    if out.null_count or len(out) != n:
        raise MaskingError("compiled HMAC returned an unexpected shape; refusing to emit tokens")
    return out


def _plugin(key_text: str, raw: pa.Array) -> pa.Array:
    # Polars loads on the first compiled call: a small read (the Python loop) never pays its import.
    import polars as pl
    import polars_hash  # noqa: F401  # registers the `chash` expression namespace

    # Polars' newest Arrow level hands its string view array over as it is; the default level
    # converts it to large_string, a copy of every 64-byte answer (~4% of a 1M extract's CPU).
    out = pl.DataFrame({"v": raw}).select(pl.col("v").chash.hmac_sha256(key=key_text)).to_series()
    out = out.to_arrow(compat_level=pl.CompatLevel.newest())
    if isinstance(out, pa.ChunkedArray):
        out = out.combine_chunks()
    return out if pa.types.is_string_view(out.type) else pc.cast(out, pa.string_view())


def _hex_blocks(hexed: pa.Array) -> list[np.ndarray]:
    """The 64-character hex rows of a `string_view` array, in row order, as `(k, 64)` uint8 blocks read in place.

    Polars writes a column's long strings one after another into a few growing data buffers, so
    each buffer's rows are one contiguous run: a block per buffer, no copy. Any other layout (or a
    row that is not 64 bytes) is refused rather than guessed at.
    """
    n = len(hexed)
    if not n:
        return [np.zeros((0, 2 * DIGEST_SIZE), dtype=np.uint8)]
    buffers = hexed.buffers()
    # A view is 16 bytes: int32 length, 4 prefix bytes, int32 buffer index, int32 offset (long strings).
    views = np.frombuffer(buffers[1], dtype=np.int32).reshape(-1, 4)[hexed.offset:hexed.offset + n]
    if not np.all(views[:, 0] == 2 * DIGEST_SIZE):
        raise MaskingError("compiled HMAC returned an unexpected shape; refusing to emit tokens")
    index, offset = views[:, 2], views[:, 3]
    starts = np.flatnonzero(np.diff(index, prepend=-1))  # first row of each buffer's run
    ends = np.append(starts[1:], n)
    blocks = []
    for lo, hi in zip(starts, ends, strict=True):
        first, count = int(offset[lo]), int(hi - lo)
        data = buffers[2 + int(index[lo])]
        expected = first + 2 * DIGEST_SIZE * np.arange(count, dtype=np.int64)
        if (lo and index[lo] <= index[lo - 1]) or not np.array_equal(offset[lo:hi], expected) \
                or data is None or first + 2 * DIGEST_SIZE * count > data.size:
            raise MaskingError("compiled HMAC returned an unexpected layout; refusing to emit tokens")
        blocks.append(np.frombuffer(data, dtype=np.uint8, count=2 * DIGEST_SIZE * count,
                                    offset=first).reshape(count, 2 * DIGEST_SIZE))
    return blocks


def _text_rows(prefix: bytes, blocks: list[np.ndarray]) -> pa.Array:
    """A `large_string` array whose row i is `prefix + ` row i of the stacked blocks (one numpy copy; no Python per row)."""
    n = sum(block.shape[0] for block in blocks)
    width = len(prefix) + (blocks[0].shape[1] if blocks else 0)
    rows = np.empty((n, width), dtype=np.uint8)
    rows[:, :len(prefix)] = np.frombuffer(prefix, dtype=np.uint8)
    at = 0
    for block in blocks:
        rows[at:at + block.shape[0], len(prefix):] = block
        at += block.shape[0]
    offsets = np.arange(n + 1, dtype=np.int64) * width
    return pa.Array.from_buffers(pa.large_string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(rows)])
