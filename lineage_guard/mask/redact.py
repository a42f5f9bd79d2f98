"""Keyless masks that hide characters or whole values: `partial`, `redact`, `null`.

    >>> import pyarrow as pa
    >>> from lineage_guard.mask.spec import MaskSpec
    >>> partial(pa.array(["4111111111111111", "12", None]), MaskSpec("partial", {"keep_last": 4})).to_pylist()
    ['************1111', '**', None]
    >>> redact(pa.array([1, None]), MaskSpec("redact")).to_pylist()
    [None, None]
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from ._arrow import is_text
from .params import checked
from .spec import MaskSpec


def keep_ends(text: pa.Array, keep_first: int, keep_last: int, mask_char: str) -> pa.Array:
    """Keep `keep_first`/`keep_last` characters and mask the rest; a value no longer than what
    would be kept is masked whole, so a short value is never returned clear."""
    length = pc.utf8_length(text)
    hidden = pc.max_element_wise(pc.subtract(length, keep_first + keep_last), 0)
    char = pa.scalar(mask_char, text.type)
    head = pc.utf8_slice_codeunits(text, 0, keep_first)
    tail = pc.utf8_slice_codeunits(text, -keep_last) if keep_last else pc.utf8_slice_codeunits(text, 0, 0)
    kept = pc.binary_join_element_wise(head, pc.binary_repeat(char, hidden), tail, pa.scalar("", text.type))
    return pc.if_else(pc.greater(hidden, 0), kept, pc.binary_repeat(char, length))


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
