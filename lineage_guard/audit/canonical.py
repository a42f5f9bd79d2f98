"""Canonical JSON for ledger entries: the bytes that are hashed, signed and stored.

RFC 8785-style: sorted keys, no whitespace, UTF-8, and no floats (entries carry
only strings, integers, booleans, null, lists and objects), so every writer and
verifier produces the same bytes for the same entry.

Example:
    >>> canonical({"b": 1, "a": ["x", None]})
    b'{"a":["x",null],"b":1}'
    >>> sha256_hex(b"")[:12]
    'e3b0c44298fc'
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


class NotCanonical(ValueError):
    """The document holds a value canonical JSON does not allow (a float, a non-string key...)."""


def _check(value: Any, where: str) -> None:
    # Floats have several textual forms; refusing them keeps the encoding unique.
    if isinstance(value, bool) or value is None or isinstance(value, (str, int)):
        return
    if isinstance(value, float):
        raise NotCanonical(f"{where}: floats are not allowed in ledger entries")
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise NotCanonical(f"{where}: object keys must be strings")
            _check(item, f"{where}.{key}")
        return
    raise NotCanonical(f"{where}: {type(value).__name__} is not a JSON value")


def canonical(document: Any, *, check: bool = True) -> bytes:
    """The canonical UTF-8 bytes of a JSON document (sorted keys, compact).

    `check=False` skips the value check, for documents that come from `loads` (already float-free).
    """
    if check:
        _check(document, "$")
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _refuse(text: str) -> Any:
    raise NotCanonical(f"non-integer number {text[:20]!r} is not allowed in ledger entries")


def loads(raw: bytes) -> Any:
    """Parse JSON that may only hold values canonical JSON allows (no floats, NaN or Infinity)."""
    return json.loads(raw.decode("utf-8"), parse_float=_refuse, parse_constant=_refuse)


def sha256_hex(data: bytes) -> str:
    """Lower-case hex sha256."""
    return hashlib.sha256(data).hexdigest()
