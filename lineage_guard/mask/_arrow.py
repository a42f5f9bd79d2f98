"""Arrow plumbing shared by the kernels: distinct values, canonical bytes, fixed-width text from numpy."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import ConfigError


def is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def is_integer(t: pa.DataType) -> bool:
    return pa.types.is_integer(t)


def is_temporal_date(t: pa.DataType) -> bool:
    return pa.types.is_date(t) or pa.types.is_timestamp(t)


_SAMPLE = 16_384


def distinct(array: pa.Array) -> tuple[pa.Array, pa.Array]:
    """(values to transform once each, indices back into them; a null index for a null row).

    Usually the distinct values. When a sample of the column is (nearly) all distinct,
    building the dictionary costs more than it saves, so every row is its own value
    (null rows then stay in `values` but no index points at them). Only speed differs:
    each value's output depends on the value alone.
    """
    values, indices = distinct_or_rows(array)
    if indices is None:
        mask = np.asarray(array.is_null()) if array.null_count else None
        indices = pa.array(np.arange(len(array), dtype=np.int64), pa.int64(), mask=mask)
    return values, indices


def distinct_or_rows(array: pa.Array) -> tuple[pa.Array, pa.Array | None]:
    """`distinct`, but None for the indices when every row is its own value (`per_row` then skips the `take`)."""
    check_hashable(array.type)
    n = len(array)
    if n > 4 * _SAMPLE:
        sample = array.slice(0, _SAMPLE)
        valid = len(sample) - sample.null_count
        if valid and pc.count_distinct(sample).as_py() >= 0.9 * valid:
            return array, None
    encoded = pc.dictionary_encode(array)
    return encoded.dictionary, encoded.indices


def per_row(out: pa.Array, indices: pa.Array | None, array: pa.Array) -> pa.Array:
    """Outputs per row of `array`: taken through `distinct_or_rows`' indices, or (every row its own value) nulls kept."""
    if indices is not None:
        return out.take(indices)
    if not array.null_count:
        return out
    return pc.if_else(array.is_valid(), out, pa.scalar(None, out.type))


def check_hashable(t: pa.DataType) -> None:
    if pa.types.is_nested(t) or pa.types.is_dictionary(t) or pa.types.is_null(t):
        raise ConfigError(f"cannot mask a column of type {t} with a value-based method; "
                          f"mask it with redact, null or drop")


def without_negative_zero(values: pa.Array) -> pa.Array:
    """Floats with -0.0 made +0.0, every other value (NaN included) as it was.

    PostgreSQL's float `=` holds -0 equal to 0 but prints it `-0`: hashed as text, the two would get
    different tokens, and a join or IN on the masked column would pair rows whose tokens differ (one
    bit of the values that the tokens hide). Adding +0.0 is IEEE's own normalisation; NaNs already
    print alike, as PostgreSQL's `=` holds them equal.
    """
    if pa.types.is_float32(values.type) or pa.types.is_float64(values.type):
        return pc.add(values, pa.scalar(0.0, values.type))
    return values


def canonical_bytes(values: pa.Array) -> list[bytes]:
    """The bytes a keyed hash is taken over: UTF-8 text for strings, Arrow's text form for other scalars.

    Arrow's cast to string is vectorized and stable for a given type, so the same value
    hashes the same in every batch (an int 42 and the text "42" deliberately agree, so
    ids stored as text and as integers still join).
    """
    t = values.type
    check_hashable(t)
    values = without_negative_zero(values)
    if not (is_text(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t)):
        values = pc.cast(values, pa.large_string())
    raw = pc.cast(values, pa.large_binary())
    if raw.null_count:  # rows no index points at (see `distinct`); hash them as empty
        raw = pc.fill_null(raw, pa.scalar(b"", pa.large_binary()))
    return raw.to_pylist()


def canonical_binary(values: pa.Array) -> pa.Array:
    """`canonical_bytes` kept as one Arrow binary array (no Python object per value); nulls stay null."""
    t = values.type
    check_hashable(t)
    values = without_negative_zero(values)
    if not (is_text(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t)):
        values = pc.cast(values, pa.large_string())
    return pc.cast(values, pa.large_binary())


def fixed_width_text(chars: np.ndarray, type_: pa.DataType | None = None) -> pa.Array:
    """An Arrow string array whose row i is the ASCII bytes `chars[i]` (an `(n, w)` uint8 matrix)."""
    n, width = chars.shape
    large = type_ is not None and pa.types.is_large_string(type_)
    offsets = np.arange(n + 1, dtype=np.int64 if large else np.int32) * width
    data = np.ascontiguousarray(chars).tobytes()
    return pa.Array.from_buffers(pa.large_string() if large else pa.string(), n,
                                 [None, pa.py_buffer(offsets.tobytes()), pa.py_buffer(data)])


def hex_chars(digests: np.ndarray, nbytes: int) -> np.ndarray:
    """Lowercase hex of the first `nbytes` of each digest row: an `(n, 2*nbytes)` uint8 matrix."""
    # bytes.hex runs in C over the whole block: several times faster than a numpy table lookup.
    text = np.ascontiguousarray(digests[:, :nbytes]).tobytes().hex().encode()
    return np.frombuffer(text, dtype=np.uint8).reshape(digests.shape[0], 2 * nbytes)


def prefixed(prefix: bytes, chars: np.ndarray) -> np.ndarray:
    head = np.broadcast_to(np.frombuffer(prefix, dtype=np.uint8), (chars.shape[0], len(prefix)))
    return np.concatenate([head, chars], axis=1)


def string_like(array: pa.Array, template: pa.DataType) -> pa.Array:
    """Cast text to the string flavour of `template` (string, large_string or string_view)."""
    return array if array.type == template else array.cast(template)
