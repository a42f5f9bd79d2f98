"""Tokens: keyed HMAC-SHA256 (`tokenize`) and keyless SHA-256 (`hash`), over distinct values only.

`tokenize` gives `tok_<hex>` for text and other scalars, and a non-negative int64 for
integer columns (so an integer key stays an integer and still joins). The same value in
the same scope and classification always gives the same token, in every batch; other
scopes and other classifications give unlinkable tokens (see `keys` for token versions).

`hash` is keyless: anyone can hash a guess and compare, so it is linkable across
datasets and open to dictionary attacks on small value spaces (phone numbers, birth
dates). Prefer `tokenize` unless a keyless, reproducible-anywhere digest is the point.

    >>> import pyarrow as pa
    >>> from lineage_guard.mask.keys import Keyring
    >>> from lineage_guard.mask.spec import MaskSpec
    >>> out = tokenize(pa.array(["a@x.org", None, "a@x.org"]), MaskSpec("tokenize"), Keyring(bytes(32)))
    >>> out[0] == out[2], out[1].as_py(), len(out[0].as_py())
    (True, None, 28)
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ._arrow import (
    canonical_bytes,
    check_hashable,
    distinct,
    fixed_width_text,
    hex_chars,
    is_integer,
    is_text,
    prefixed,
)
from .digest import digest_uint64, hmac_sha256_arrow, sha256_many
from .keys import Keyring
from .params import checked
from .spec import MaskSpec


def tokenize(array: pa.Array, spec: MaskSpec, keyring: Keyring, *, version: int | None = None,
             token_version: int = 2) -> pa.Array:
    """Keyed tokens of `array` under `spec`'s (scope, classification) key (params: `length` hex characters, `prefix`).

    `token_version=1` uses the old per-scope key; only `Keyring.verify_token` asks for it.
    """
    params = checked(spec)
    values, indices = distinct(array)
    key = (keyring.key(spec.scope, "tokenize", version=version) if token_version == 1
           else keyring.mask_key(spec, "tokenize", version=version))
    digests = hmac_sha256_arrow(key, canonical_binary(values))
    if is_integer(array.type):
        tokens = pa.array(digest_uint64(digests) >> np.uint64(1), pa.uint64()).cast(pa.int64())
    else:
        length = params["length"]
        chars = hex_chars(digests, (length + 1) // 2)[:, :length]
        out_type = array.type if is_text(array.type) else pa.string()
        tokens = fixed_width_text(prefixed(params["prefix"].encode(), chars), out_type)
    return tokens.take(indices)


def canonical_binary(values: pa.Array) -> pa.Array:
    """`canonical_bytes` kept as one Arrow binary array (no Python object per value); nulls stay null."""
    t = values.type
    check_hashable(t)
    if not (is_text(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t)):
        values = pc.cast(values, pa.large_string())
    return pc.cast(values, pa.large_binary())


def sha256_hex(array: pa.Array, spec: MaskSpec) -> pa.Array:
    """Keyless SHA-256 hex of each value (64 characters); text keeps its string type, other types become text."""
    checked(spec)
    values, indices = distinct(array)
    digests = sha256_many(canonical_bytes(values))
    out_type = array.type if is_text(array.type) else pa.string()
    return fixed_width_text(hex_chars(digests, 32), out_type).take(indices)
