"""`pseudonymize`: realistic Faker values chosen by a keyed hash, unique per distinct input within a scope.

Faker fills small pools once per (kind, locale) with a fixed seed; each distinct input's
HMAC picks pool entries, all in numpy/Arrow. Pool picks alone repeat (there are only so
many names), so by default (`unique: true`) each value also carries a 64-bit keyed tag (hex):
`Maria Lopez 9F3A0C21B7E4D5A8`, `jsmith.9f3a0c21b7e4d5a8@example.org`, `+1-555-201-3344 x123456789012345678`.
Tags make collisions negligible (about 1e-7 for 2 million distinct inputs; 2e-6 for the
18-digit phone extension) without any
state shared between batches. `unique: false` gives plain realistic values that may repeat.

Pools come from Faker with a fixed seed: a Faker upgrade can change which names appear,
so pin Faker where pseudonyms must stay stable across releases (tags never change).

    >>> import pyarrow as pa
    >>> from lineage_guard.mask.keys import Keyring
    >>> from lineage_guard.mask.spec import MaskSpec
    >>> out = pseudonymize(pa.array(["Ada Lovelace"]), MaskSpec("pseudonymize", {"kind": "email"}), Keyring(bytes(32)))
    >>> "@" in out[0].as_py()
    True
"""

from __future__ import annotations

import functools

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import ConfigError
from ._arrow import canonical_binary, distinct_or_rows, fixed_width_text, hex_chars, is_text, per_row
from .digest import digest_uint64
from .keyed import hmac_digests
from .keys import Keyring
from .params import checked
from .spec import MaskSpec

POOL_DRAWS = 2000
_TAG_BYTES = 8  # 64 bits, 16 hex characters
_PHONE_DIGITS = 18  # 10**18 < 2**60

# Which Faker providers fill the pools of each kind.
_POOLS = {
    "name": ("first_name", "last_name"),
    "first_name": ("first_name",),
    "last_name": ("last_name",),
    "email": ("user_name", "free_email_domain"),
    "phone": ("phone_number",),
    "address": ("building_number", "street_name", "city"),
    "city": ("city",),
    "company": ("company",),
    "generic": ("word", "word"),
}


@functools.lru_cache(maxsize=64)
def _pool(provider: str, locale: str) -> pa.Array:
    from faker import Faker
    from faker.config import AVAILABLE_LOCALES

    if locale not in AVAILABLE_LOCALES:
        raise ConfigError(f"pseudonymize: unknown locale {locale!r}; use a Faker locale such as en_US, fr_FR, de_DE")
    fake = Faker(locale)
    fake.seed_instance(0)
    draw = getattr(fake, provider)
    values = list(dict.fromkeys(str(draw()).replace("\n", ", ") for _ in range(POOL_DRAWS)))
    if provider == "phone_number":  # the unique tag is an extension; drop numbers that already have one
        values = [v for v in values if "x" not in v.lower()] or values
    return pa.array(values, pa.string())


def _pick(provider: str, locale: str, digests: np.ndarray, offset: int) -> pa.Array:
    pool = _pool(provider, locale)
    return pool.take(pa.array(digest_uint64(digests, offset) % np.uint64(len(pool)), pa.uint64()))


def _tag(digests: np.ndarray, upper: bool) -> pa.Array:
    chars = hex_chars(digests, _TAG_BYTES)
    if upper:
        chars = np.where(chars >= 97, chars - 32, chars).astype(np.uint8)
    return fixed_width_text(chars, pa.string())


def _digits(digests: np.ndarray) -> pa.Array:
    number = digest_uint64(digests, 0) % np.uint64(10**_PHONE_DIGITS)
    powers = np.uint64(10) ** np.arange(_PHONE_DIGITS - 1, -1, -1, dtype=np.uint64)
    chars = (48 + (number[:, None] // powers[None, :]) % np.uint64(10)).astype(np.uint8)
    return fixed_width_text(chars, pa.string())


def _join(*parts) -> pa.Array:
    return pc.binary_join_element_wise(*parts, "")


def pseudonymize(array: pa.Array, spec: MaskSpec, keyring: Keyring) -> pa.Array:
    """Realistic stand-ins (params `kind`, `locale` default en_US, `unique` default true); output is text."""
    params = checked(spec)
    kind, locale, unique = params["kind"], params["locale"], params["unique"]
    values, indices = distinct_or_rows(array)
    digests = hmac_digests(keyring.mask_key_text(spec, f"pseudonymize:{kind}"), canonical_binary(values))
    picks = [_pick(p, locale, digests, 8 * (i + 1)) for i, p in enumerate(_POOLS[kind])]
    if kind == "email":
        user = pc.utf8_lower(picks[0])
        out = _join(user, ".", _tag(digests, False), "@", picks[1]) if unique else _join(user, "@", picks[1])
    elif kind == "phone":
        out = _join(picks[0], " x", _digits(digests)) if unique else picks[0]
    elif kind == "address":
        street = _join(picks[0], " ", picks[1])
        out = (_join(street, " Unit ", _tag(digests, True), ", ", picks[2]) if unique
               else _join(street, ", ", picks[2]))
    else:
        sep = "-" if kind == "generic" else " "
        parts: list = [x for p in picks for x in (p, sep)][:-1]
        if unique:
            parts += [sep, _tag(digests, kind != "generic")]
        out = _join(*parts)
    out_type = array.type if is_text(array.type) else pa.string()
    return per_row(out.cast(out_type), indices, array)
