"""`shift_date`: move dates by a keyed offset of 1..max_days days, forwards or back, the same for every date of a subject.

With `subject` (a source column, e.g. the patient id, that the planner binds to the output
position carrying it unchanged) every date of one subject moves by the same amount, so
intervals within a subject survive while calendar dates do not. A row whose subject is null
gets a null date (no consistent offset exists for it). When the subject is not in the output
as stored, the planner masks the date `null` instead: a shared offset would let one known
date reveal all. Without `subject`, one offset per key applies to the whole column (weaker
for the same reason; a policy choice).

    >>> import datetime, pyarrow as pa
    >>> from lineage_guard.mask.keys import Keyring
    >>> from lineage_guard.mask.spec import MaskSpec
    >>> d = pa.array([datetime.date(2020, 1, 1), datetime.date(2020, 1, 11)])
    >>> out = shift_date(d, MaskSpec("shift_date", {"subject": "pid"}), Keyring(bytes(32)), subject=pa.array([7, 7]))
    >>> (out[1].as_py() - out[0].as_py()).days
    10
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import ConfigError, MaskingError
from ._arrow import canonical_binary, distinct, is_temporal_date
from .digest import digest_uint64
from .keyed import hmac_digests
from .keys import Keyring
from .params import checked
from .spec import MaskSpec

_PER_DAY = {"s": 86_400, "ms": 86_400_000, "us": 86_400_000_000, "ns": 86_400_000_000_000}


def _offsets(digests: np.ndarray, max_days: int) -> np.ndarray:
    """Signed day offsets, never zero: a zero shift would return some subjects' dates clear."""
    numbers = digest_uint64(digests)
    magnitude = (numbers % np.uint64(max_days)).astype(np.int64) + 1
    return np.where((numbers >> np.uint64(63)) == 1, -magnitude, magnitude)


def shift_date(array: pa.Array, spec: MaskSpec, keyring: Keyring, *, subject: pa.Array | None = None) -> pa.Array:
    """Shift each date/timestamp by its subject's keyed offset (params `subject`, `max_days` default 365)."""
    params = checked(spec)
    t = array.type
    if not is_temporal_date(t):
        raise ConfigError(f"shift_date applies to dates and timestamps, not {t}; use generalize or redact")
    if params["subject"] is not None and subject is None:
        raise ConfigError(f"shift_date needs the values of its subject column {params['subject']!r}; "
                          f"pass them as subject= (mask_batch takes them from the spec's bound position)")
    key = keyring.mask_key_text(spec, "shift_date")
    if subject is None:
        days = pa.scalar(int(_offsets(hmac_digests(key, pa.array([b"c"])), params["max_days"])[0]), pa.int64())
    else:
        if len(subject) != len(array):
            raise ConfigError("shift_date: the subject column must have one value per row of the date column")
        values, indices = distinct(subject)
        marked = pc.binary_join_element_wise(pa.scalar(b"s", pa.large_binary()), canonical_binary(values),
                                             pa.scalar(b"", pa.large_binary()))
        digests = hmac_digests(key, marked)
        days = pa.array(_offsets(digests, params["max_days"]), pa.int64()).take(indices)
    if pa.types.is_date32(t):
        storage, per_day = array.cast(pa.int32()).cast(pa.int64()), 1
    elif pa.types.is_date64(t):
        storage, per_day = array.cast(pa.int64()), _PER_DAY["ms"]
    else:
        storage, per_day = array.cast(pa.int64()), _PER_DAY[t.unit]
    try:
        shifted = pc.add_checked(storage, pc.multiply_checked(days, per_day))
        if pa.types.is_date32(t):
            return shifted.cast(pa.int32()).cast(t)
        return shifted.cast(t)
    except (pa.ArrowInvalid, OverflowError):
        raise MaskingError(f"shift_date: a shifted value falls outside the range of {t}") from None
