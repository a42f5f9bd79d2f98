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

from ..errors import ConfigError, MaskingError
from ._arrow import canonical_bytes, distinct, is_integer, is_text
from .digest import DIGEST_SIZE, hmac_sha256_many
from .keys import Keyring
from .params import checked
from .spec import MaskSpec


def format_preserving(array: pa.Array, spec: MaskSpec, keyring: Keyring) -> pa.Array:
    """Keyed, deterministic, same length and character classes; text and integers keep their type."""
    checked(spec)
    t = array.type
    if not (is_text(t) or is_integer(t)):
        raise ConfigError(f"format_preserving applies to text and integers, not {t}; use generalize or tokenize")
    values, indices = distinct(array)
    text = values if is_text(t) else values.cast(pa.large_string())
    raw = text.cast(pa.large_binary())
    digests = hmac_sha256_many(keyring.key(spec.scope, "format_preserving"), canonical_bytes(values))
    offsets = np.frombuffer(raw.buffers()[1], dtype=np.int64)[raw.offset:raw.offset + len(raw) + 1]
    data_buf = raw.buffers()[2]
    data = (np.frombuffer(data_buf, dtype=np.uint8)[offsets[0]:offsets[-1]] if data_buf is not None
            else np.zeros(0, np.uint8))
    offsets = offsets - offsets[0]
    lengths = np.diff(offsets)
    row = np.repeat(np.arange(len(raw)), lengths)
    pos = np.arange(len(data)) - offsets[:-1][row]
    keystream = digests[row, pos % DIGEST_SIZE].astype(np.uint16)
    for r in np.flatnonzero(lengths > DIGEST_SIZE):  # long values: extend the stream instead of repeating it
        keystream[offsets[r]:offsets[r + 1]] = np.frombuffer(
            hashlib.shake_256(digests[r].tobytes()).digest(int(lengths[r])), dtype=np.uint8)
    out = data.copy()
    digit = (data >= 48) & (data <= 57)
    lower = (data >= 97) & (data <= 122)
    upper = (data >= 65) & (data <= 90)
    out[digit] = 48 + keystream[digit] % 10
    out[lower] = 97 + keystream[lower] % 26
    out[upper] = 65 + keystream[upper] % 26
    if is_integer(t):
        # A leading zero would shorten the number once it is an integer again.
        first = digit & ((pos == 0) | ((pos == 1) & (data[np.maximum(np.arange(len(data)) - 1, 0)] == 45)))
        out[first] = 49 + keystream[first] % 9
    masked = pa.Array.from_buffers(pa.large_string(), len(raw),
                                   [None, pa.py_buffer(offsets.tobytes()), pa.py_buffer(out.tobytes())])
    try:
        masked = masked.cast(t)
    except (pa.ArrowInvalid, OverflowError):
        raise MaskingError(f"format_preserving: a masked value does not fit {t}") from None
    return masked.take(indices)
