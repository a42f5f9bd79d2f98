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

from ._arrow import (
    canonical_binary,
    canonical_bytes,
    distinct,
    distinct_or_rows,
    fixed_width_text,
    hex_chars,
    is_integer,
    is_text,
    per_row,
    prefixed,
)
from .digest import digest_uint64, hmac_sha256_arrow, sha256_many
from .keyed import hmac_digests, hmac_hex
from .keys import TOKEN_VERSION, Keyring
from .params import checked
from .spec import MaskSpec


def tokenize(array: pa.Array, spec: MaskSpec, keyring: Keyring, *, version: int | None = None,
             token_version: int = TOKEN_VERSION) -> pa.Array:
    """Keyed tokens of `array` under `spec`'s (scope, classification) key (params: `length` hex characters, `prefix`).

    Token version 3 (current) runs the compiled HMAC (`keyed`: the `native` kernel, else polars-hash)
    keyed with the derived key's hex text (`keys`); `token_version=2` (raw key bytes) and `1` (the old per-scope key) exist only
    so `Keyring.verify_token` can recognise old tokens.
    """
    params = checked(spec)
    if token_version not in (1, 2, 3):
        raise ValueError(f"token versions are 1, 2 and 3, not {token_version!r}")
    values, indices = distinct_or_rows(array)
    binary = canonical_binary(values)
    if token_version == 3:
        key_text = keyring.mask_key_text(spec, "tokenize", version=version)
        if is_integer(array.type):
            tokens = _int_tokens(hmac_digests(key_text, binary))
        else:
            length = params["length"]
            tokens = hmac_hex(key_text, binary, prefix=params["prefix"], length=length)
            tokens = tokens.cast(array.type) if is_text(array.type) else tokens.cast(pa.string())
        return per_row(tokens, indices, array)
    key = (keyring.key(spec.scope, "tokenize", version=version) if token_version == 1
           else keyring.mask_key(spec, "tokenize", version=version))
    digests = hmac_sha256_arrow(key, binary)
    if is_integer(array.type):
        tokens = _int_tokens(digests)
    else:
        length = params["length"]
        chars = hex_chars(digests, (length + 1) // 2)[:, :length]
        out_type = array.type if is_text(array.type) else pa.string()
        tokens = fixed_width_text(prefixed(params["prefix"].encode(), chars), out_type)
    return per_row(tokens, indices, array)


def _int_tokens(digests: np.ndarray) -> pa.Array:
    return pa.array(digest_uint64(digests) >> np.uint64(1), pa.uint64()).cast(pa.int64())


def sha256_hex(array: pa.Array, spec: MaskSpec) -> pa.Array:
    """Keyless SHA-256 hex of each value (64 characters); text keeps its string type, other types become text."""
    checked(spec)
    values, indices = distinct(array)
    digests = sha256_many(canonical_bytes(values))
    out_type = array.type if is_text(array.type) else pa.string()
    return fixed_width_text(hex_chars(digests, 32), out_type).take(indices)
