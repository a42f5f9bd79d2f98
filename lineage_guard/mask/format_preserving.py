"""`format_preserving`: keyed substitution keeping length and character classes.

Digits stay digits, lowercase letters lowercase, uppercase letters uppercase; every other
character (punctuation, spaces, non-ASCII) is kept, so `123-45-6789` stays shaped like an
SSN. Each character comes from a keystream made by HMAC-SHA256 of the whole value, so the
same value gives the same output in a scope. It is one-way (not an FF1 cipher: nothing can
be decrypted) and, on small value spaces such as 4-digit numbers, different inputs can meet.

    >>> import pyarrow as pa
    >>> from lineage_guard.mask.keys import Keyring
    >>> from lineage_guard.mask.spec import MaskSpec
    >>> out = format_preserving(pa.array(["AB-12 x"]), MaskSpec("format_preserving"), Keyring(bytes(32)))[0].as_py()
    >>> out[0].isupper() and out[2] == "-" and out[3:5].isdigit() and out[5] == " " and out[6].islower()
    True
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import ConfigError, MaskingError
from ._arrow import canonical_binary, distinct_or_rows, is_integer, is_text, per_row
from .digest import DIGEST_SIZE
from .keyed import hmac_digests
from .keys import Keyring
from .params import checked
from .spec import MaskSpec

_WIDE = 64  # values longer than this (rare) get their keystream one at a time


def _keystreams(digests: np.ndarray, width: int) -> np.ndarray:
    """An `(n, width)` keystream per value; past 32 bytes the digest is re-used rotated and re-tinted."""
    if width <= DIGEST_SIZE:
        return digests[:, :width]
    cols = np.arange(width)
    return digests[:, (cols + 7 * (cols // DIGEST_SIZE)) % DIGEST_SIZE] ^ (cols // DIGEST_SIZE).astype(np.uint8)


def _substitute(data: np.ndarray, keystream: np.ndarray, first_digit: np.ndarray | None) -> np.ndarray:
    """Digits to digits, a-z to a-z, A-Z to A-Z by the keystream; every other byte kept (UTF-8 stays valid)."""
    # Dense where() over the whole buffer: boolean-indexed assignment is several times slower.
    out = np.where((data - 48).astype(np.uint8) < 10, 48 + keystream % 10, data)
    out = np.where((data - 97).astype(np.uint8) < 26, 97 + keystream % 26, out)
    out = np.where((data - 65).astype(np.uint8) < 26, 65 + keystream % 26, out).astype(np.uint8)
    if first_digit is not None:  # a leading zero would shorten an integer
        out[first_digit] = 49 + keystream[first_digit] % 9
    return out


def format_preserving(array: pa.Array, spec: MaskSpec, keyring: Keyring) -> pa.Array:
    """Keyed, deterministic, same length and character classes; text and integers keep their type."""
    checked(spec)
    t = array.type
    if not (is_text(t) or is_integer(t)):
        raise ConfigError(f"format_preserving applies to text and integers, not {t}; use generalize or tokenize")
    values, indices = distinct_or_rows(array)
    digests = hmac_digests(keyring.mask_key_text(spec, "format_preserving"), canonical_binary(values))
    text = values if is_text(t) else values.cast(pa.large_string())
    raw = pc.fill_null(text.cast(pa.large_binary()), pa.scalar(b"", pa.large_binary()))
    offsets = np.frombuffer(raw.buffers()[1], dtype=np.int64)[raw.offset:raw.offset + len(raw) + 1]
    data_buf = raw.buffers()[2]
    data = (np.frombuffer(data_buf, dtype=np.uint8)[offsets[0]:offsets[-1]] if data_buf is not None
            else np.zeros(0, np.uint8))
    offsets = offsets - offsets[0]
    lengths = np.diff(offsets)
    width = int(min(lengths.max(initial=0), _WIDE))
    cols = np.arange(width)
    # Row-major boolean selection lays each value's first `width` keystream bytes end to end, as in `data`.
    inside = cols[None, :] < lengths[:, None]
    long_rows = np.flatnonzero(lengths > width)
    if len(long_rows):
        keystream = np.empty(len(data), np.uint8)
        starts = np.repeat(offsets[:-1], np.minimum(lengths, width))
        keystream[starts + np.nonzero(inside)[1]] = _keystreams(digests, width)[inside]
        for r in long_rows:
            keystream[offsets[r]:offsets[r + 1]] = np.frombuffer(
                hashlib.shake_256(digests[r].tobytes()).digest(int(lengths[r])), dtype=np.uint8)
    else:
        keystream = _keystreams(digests, width)[inside]
    first_digit = None
    if is_integer(t):
        # Integers: the first character, or the second after a minus sign.
        starts = offsets[:-1][lengths > 0]
        lead = np.where(data[starts] == 45, starts + 1, starts)
        first_digit = np.zeros(len(data), bool)
        first_digit[lead[lead < len(data)]] = True
        first_digit &= (data >= 48) & (data <= 57)
    out = _substitute(data, keystream, first_digit)
    masked = pa.Array.from_buffers(pa.large_string(), len(raw),
                                   [None, pa.py_buffer(offsets.tobytes()), pa.py_buffer(out.tobytes())])
    try:
        masked = masked.cast(t)
    except (pa.ArrowInvalid, OverflowError):
        raise MaskingError(f"format_preserving: a masked value does not fit {t}") from None
    return per_row(masked, indices, array)
