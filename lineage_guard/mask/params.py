"""Each mask method's parameters: names, defaults and checks. Bad parameters are a ConfigError naming the valid ones.

    >>> from lineage_guard.mask.spec import MaskSpec
    >>> checked(MaskSpec("partial", {"keep_last": 2}))["mask_char"]
    '*'
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from numbers import Real
from typing import Any

from ..errors import ConfigError
from .spec import METHODS, MaskSpec

_NAME = r"[A-Za-z_][A-Za-z0-9_$]{0,62}"
_SUBJECT = re.compile(rf"^(?:{_NAME}\.{_NAME}\.)?{_NAME}$")
KINDS = ("name", "first_name", "last_name", "email", "phone", "address", "city", "company", "generic")


@dataclass(frozen=True)
class Param:
    default: Any
    check: Callable[[Any], bool]
    valid: str


def _int_between(lo: int, hi: int) -> Param:
    return Param(None, lambda v: isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi,
                 f"an integer from {lo} to {hi}")


def _with_default(p: Param, default: Any) -> Param:
    return Param(default, p.check, p.valid)


def _ascii(max_len: int, min_len: int = 0) -> Param:
    return Param(None, lambda v: isinstance(v, str) and v.isascii() and v.isprintable() and min_len <= len(v) <= max_len,
                 f"printable ASCII text of {min_len}-{max_len} characters")


PARAMS: dict[str, dict[str, Param]] = {
    "tokenize": {"length": _with_default(_int_between(8, 64), 24),
                 "prefix": _with_default(_ascii(16), "tok_")},
    "pseudonymize": {"kind": Param("generic", lambda v: v in KINDS, "one of " + ", ".join(KINDS)),
                     "locale": Param("en_US", lambda v: isinstance(v, str) and 2 <= len(v) <= 16,
                                     "a Faker locale such as en_US or fr_FR"),
                     "unique": Param(True, lambda v: isinstance(v, bool), "true or false")},
    "partial": {"keep_first": _with_default(_int_between(0, 64), 0),
                "keep_last": _with_default(_int_between(0, 64), 4),
                "mask_char": Param("*", lambda v: isinstance(v, str) and len(v) == 1, "a single character")},
    "redact": {"replacement": Param("[REDACTED]", lambda v: isinstance(v, str) and len(v) <= 64,
                                    "text of at most 64 characters")},
    "null": {},
    "drop": {},
    "generalize": {"to": Param(None, lambda v: v in ("month", "year"), "month or year"),
                   "bucket": Param(None, lambda v: isinstance(v, Real) and not isinstance(v, bool) and v > 0,
                                   "a positive number"),
                   "keep": _int_between(0, 64)},
    "shift_date": {"subject": Param(None, lambda v: isinstance(v, str) and _SUBJECT.match(v) is not None,
                                    "a source column: a column of the masked column's table (`id`) or "
                                    "`schema.table.column`"),
                   "max_days": _with_default(_int_between(1, 36500), 365)},
    # Keyless: anyone can hash a guess and compare (dictionary inversion); only on explicit request.
    "hash": {"allow_keyless": Param(False, lambda v: v is True,
                                    "true: hash is keyless, so anyone can invert it by hashing guesses (a "
                                    "dictionary attack on phones, dates, ids); use tokenize unless a digest "
                                    "reproducible without the key is the point")},
    "format_preserving": {},
}
assert set(PARAMS) == set(METHODS)


def checked(spec: MaskSpec) -> dict[str, Any]:
    """The spec's parameters with defaults filled in; fails closed on an unknown method or parameter."""
    if not isinstance(spec, MaskSpec):
        raise ConfigError(f"expected a MaskSpec, got {type(spec).__name__}")
    table = PARAMS.get(spec.method)
    if table is None:
        raise ConfigError(f"unknown mask method {spec.method!r}; valid: {', '.join(METHODS)}")
    valid = ", ".join(table) or "none"
    out: dict[str, Any] = {}
    for name, value in (spec.params or {}).items():
        param = table.get(name)
        if param is None:
            raise ConfigError(f"mask method {spec.method!r} has no parameter {name!r}; valid parameters: {valid}")
        if not param.check(value):
            raise ConfigError(f"mask method {spec.method!r}: parameter {name!r} must be {param.valid}")
        out[name] = value
    for name, param in table.items():
        out.setdefault(name, param.default)
    if spec.method == "hash" and not out["allow_keyless"]:
        raise ConfigError("mask method 'hash' is keyless: anyone can hash a guess and compare, so small value "
                          "spaces (phones, birth dates, ids) invert by dictionary. Use tokenize (keyed), or say "
                          "`params: {allow_keyless: true}` if a digest reproducible without the key is the point")
    return out
