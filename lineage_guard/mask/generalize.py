"""`generalize`: coarser values of the same type — dates to month/year start, numbers to bucket lower bounds,
text (zip codes, diagnosis codes) to a prefix followed by a fixed `**`, so the length does not leak.

    >>> import datetime, pyarrow as pa
    >>> from lineage_guard.mask.spec import MaskSpec
    >>> generalize(pa.array([datetime.date(1990, 7, 14)]), MaskSpec("generalize", {"to": "year"})).to_pylist()
    [datetime.date(1990, 1, 1)]
    >>> generalize(pa.array([37, -3]), MaskSpec("generalize", {"bucket": 10})).to_pylist()
    [30, -10]
    >>> generalize(pa.array(["94107"]), MaskSpec("generalize", {"keep": 3})).to_pylist()
    ['941**']
    >>> generalize(pa.array(["J06.9 Acute upper respiratory infection"]), MaskSpec("generalize", {"keep": 3})).to_pylist()
    ['J06**']
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import ConfigError, MaskingError
from ._arrow import is_temporal_date, is_text
from .params import checked
from .spec import MaskSpec

_FOR = {"temporal": "to", "numeric": "bucket", "text": "keep"}


_PAD = "**"


def _prefix(text: pa.Array, keep: int) -> pa.Array:
    """The first `keep` characters and a fixed pad; a value no longer than `keep` is masked whole."""
    head = pc.binary_join_element_wise(pc.utf8_slice_codeunits(text, 0, keep), pa.scalar(_PAD, text.type),
                                       pa.scalar("", text.type))
    whole = pa.scalar("*" * (keep + len(_PAD)), text.type)
    return pc.if_else(pc.greater(pc.utf8_length(text), keep), head, pc.if_else(pc.is_valid(text), whole, head))


def generalize(array: pa.Array, spec: MaskSpec) -> pa.Array:
    """Generalize dates (`to: month|year`, default month), numbers (`bucket: N`, required) or text (`keep: n`, default 3)."""
    params = checked(spec)
    t = array.type
    family = ("temporal" if is_temporal_date(t) else
              "numeric" if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t) else
              "text" if is_text(t) else None)
    if family is None:
        raise ConfigError(f"generalize does not apply to a column of type {t}; it takes dates/timestamps (to), "
                          f"numbers (bucket) or text (keep)")
    wrong = [k for k in ("to", "bucket", "keep") if params[k] is not None and k != _FOR[family]]
    if wrong:
        raise ConfigError(f"generalize on a {family} column ({t}) takes only `{_FOR[family]}`, not "
                          f"{', '.join(f'`{k}`' for k in wrong)}")
    if family == "temporal":
        return pc.floor_temporal(array, unit=params["to"] or "month")
    if family == "text":
        return _prefix(array, 3 if params["keep"] is None else params["keep"])
    bucket = params["bucket"]
    if bucket is None:
        raise ConfigError(f"generalize on a numeric column ({t}) needs `bucket: N` (the bucket width, e.g. 10)")
    if pa.types.is_integer(t):
        return _int_floor(array, bucket)
    if pa.types.is_floating(t):
        return pc.multiply(pc.floor(pc.divide(array, float(bucket))), pa.scalar(float(bucket), t)).cast(t)
    floats = pc.multiply(pc.floor(pc.divide(array.cast(pa.float64()), float(bucket))), float(bucket))
    try:
        return floats.cast(t)
    except pa.ArrowInvalid:
        raise MaskingError(f"generalize: a bucket lower bound does not fit {t}; use a smaller bucket") from None


def _int_floor(array: pa.Array, bucket: float) -> pa.Array:
    if bucket != int(bucket):
        raise ConfigError(f"generalize on an integer column ({array.type}) needs a whole-number bucket")
    width = pa.scalar(int(bucket), array.type)
    rem = pc.subtract(array, pc.multiply(pc.divide(array, width), width))  # truncating: rem has x's sign
    lower = pc.subtract(array, rem)
    return pc.if_else(pc.less(rem, pa.scalar(0, array.type)), pc.subtract(lower, width), lower)
