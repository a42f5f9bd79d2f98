"""Keyless masks that hide characters or whole values: `partial`, `redact`, `null`.

    >>> import pyarrow as pa
    >>> from lineage_guard.mask.spec import MaskSpec
    >>> partial(pa.array(["4111111111111111", "12", None]), MaskSpec("partial", {"keep_last": 4})).to_pylist()
    ['************1111', '**', None]
    >>> redact(pa.array([1, None]), MaskSpec("redact")).to_pylist()
    [None, None]
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ._arrow import is_text
from .params import checked
from .spec import MaskSpec


def keep_ends(text: pa.Array, keep_first: int, keep_last: int, mask_char: str) -> pa.Array:
    """Keep `keep_first`/`keep_last` characters and mask the rest; a value no longer than what
    would be kept is masked whole, so a short value is never returned clear."""
    fixed = _keep_ends_fixed_width(text, keep_first, keep_last, mask_char)
    if fixed is not None:
        return fixed
    length = pc.utf8_length(text)
    hidden = pc.subtract(length, keep_first + keep_last)
    char = pa.scalar(mask_char, text.type)
    empty = pa.scalar("", text.type)
    # Each pass is a whole-column kernel: the ones that cannot change the result are left out
    # (no head to keep, no value short enough to be masked whole), ~2x less CPU on an ssn column.
    parts = [pc.utf8_slice_codeunits(text, 0, keep_first)] if keep_first else []
    parts.append(pc.binary_repeat(char, pc.max_element_wise(hidden, 0, skip_nulls=False)))  # null stays null
    if keep_last:
        parts.append(pc.utf8_slice_codeunits(text, -keep_last))
    kept = pc.binary_join_element_wise(*parts, empty) if len(parts) > 1 else parts[0]
    shortest = pc.min(hidden).as_py()
    if shortest is None or shortest > 0:
        return kept
    return pc.if_else(pc.greater(hidden, 0), kept, pc.binary_repeat(char, length))


def _keep_ends_fixed_width(text: pa.Array, keep_first: int, keep_last: int, mask_char: str) -> pa.Array | None:
    """`keep_ends` in one numpy copy when every value is ASCII of one byte length (SSNs, card and phone
    numbers) and the mask character is one byte; None otherwise (the general path then runs).

    Characters are bytes there, so row i is bytes `[0, keep_first)` and `[L - keep_last, L)` of the
    value with the middle set to the mask byte, or all mask bytes when `L <= keep_first + keep_last`:
    what the general path gives, in ~1/10 of its CPU (tests/test_mask_properties.py compares both).
    """
    n = len(text)
    char = mask_char.encode()
    if n == 0 or text.null_count or len(char) != 1 or not isinstance(text, pa.Array):
        return None
    large = pa.types.is_large_string(text.type)
    if not (large or pa.types.is_string(text.type)):
        return None
    _, offsets_buf, data_buf = text.buffers()
    offsets = np.frombuffer(offsets_buf, np.int64 if large else np.int32)[text.offset:text.offset + n + 1]
    width = int(offsets[1] - offsets[0])
    if width == 0 or np.any(np.diff(offsets) != width):
        return None
    data = np.frombuffer(data_buf, np.uint8, count=width * n, offset=int(offsets[0]))
    if data.max() >= 0x80:  # not ASCII: characters are not bytes
        return None
    rows = data.reshape(n, width).copy()
    hidden = width - keep_first - keep_last
    if hidden > 0:
        rows[:, keep_first:width - keep_last] = char[0]
    else:
        rows[:, :] = char[0]
    out_offsets = np.arange(n + 1, dtype=np.int64 if large else np.int32) * width
    return pa.Array.from_buffers(text.type, n, [None, pa.py_buffer(out_offsets), pa.py_buffer(rows)])


def partial(array: pa.Array, spec: MaskSpec) -> pa.Array:
    """Keep the first/last n characters (params `keep_first`, `keep_last`, `mask_char`); non-text becomes text."""
    params = checked(spec)
    text = array if is_text(array.type) else pc.cast(array, pa.string())
    return keep_ends(text, params["keep_first"], params["keep_last"], params["mask_char"])


def redact(array: pa.Array, spec: MaskSpec) -> pa.Array:
    """Text becomes `[REDACTED]` (param `replacement`); other types become null, so the column keeps its type."""
    params = checked(spec)
    if not is_text(array.type):
        return pa.nulls(len(array), array.type)
    return pc.if_else(pc.is_valid(array), pa.scalar(params["replacement"], array.type), pa.scalar(None, array.type))


def null(array: pa.Array, spec: MaskSpec) -> pa.Array:
    """Every value becomes null; the column keeps its type."""
    checked(spec)
    return pa.nulls(len(array), array.type)
