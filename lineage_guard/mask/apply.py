"""Step 7: apply MaskSpecs to Arrow arrays and record batches. Fails closed: an unknown method,
a bad parameter or a kernel failure raises; data never passes through unmasked.

    >>> import pyarrow as pa
    >>> from lineage_guard.mask.keys import Keyring
    >>> from lineage_guard.mask.spec import MaskSpec
    >>> batch = pa.record_batch({"id": [1, 2], "email": ["a@x.org", "b@x.org"], "ssn": ["123-45-6789", None]})
    >>> out = mask_batch(batch, {1: MaskSpec("tokenize"), 2: MaskSpec("drop")}, Keyring(bytes(32)))
    >>> out.schema.names, out.column(1)[0].as_py().startswith("tok_")
    (['id', 'email'], True)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pyarrow as pa

from ..errors import ConfigError, LineageGuardError, MaskingError
from .format_preserving import format_preserving
from .generalize import generalize
from .keys import Keyring
from .memo import TokenMemo
from .params import checked
from .pseudonymize import pseudonymize
from .redact import null, partial, redact
from .shift_date import shift_date
from .spec import MaskSpec
from .tokenize import sha256_hex, tokenize

Kernel = Callable[[pa.Array, MaskSpec, Keyring, pa.Array | None], pa.Array]

_KERNELS: dict[str, Kernel] = {
    "tokenize": lambda a, s, k, _: tokenize(a, s, k),
    "pseudonymize": lambda a, s, k, _: pseudonymize(a, s, k),
    "partial": lambda a, s, k, _: partial(a, s),
    "redact": lambda a, s, k, _: redact(a, s),
    "null": lambda a, s, k, _: null(a, s),
    "generalize": lambda a, s, k, _: generalize(a, s),
    "shift_date": lambda a, s, k, subject: shift_date(a, s, k, subject=subject),
    "hash": lambda a, s, k, _: sha256_hex(a, s),
    "format_preserving": lambda a, s, k, _: format_preserving(a, s, k),
}
_KEYED = {"tokenize", "pseudonymize", "shift_date", "format_preserving"}
_VIEWS = {pa.string_view(): pa.large_string(), pa.binary_view(): pa.large_binary()}


def mask_array(array: pa.Array | pa.ChunkedArray, spec: MaskSpec, keyring: Keyring | None = None, *,
               subject: pa.Array | pa.ChunkedArray | None = None) -> pa.Array | pa.ChunkedArray:
    """Mask one column. `keyring` defaults to `Keyring.from_env()` for keyed methods.

    `subject` is the column `shift_date` takes its per-subject offset from. `drop` is not a
    column transform: use `mask_batch`, which removes the column.

        >>> import pyarrow as pa
        >>> mask_array(pa.array(["secret"]), MaskSpec("redact")).to_pylist()
        ['[REDACTED]']
    """
    checked(spec)
    if spec.method == "drop":
        raise ConfigError("mask method 'drop' removes the column: apply it with mask_batch, not mask_array")
    if keyring is None and spec.method in _KEYED:
        keyring = Keyring.from_env()
    if isinstance(subject, pa.ChunkedArray):
        subject = subject.combine_chunks()
    if not isinstance(array, pa.ChunkedArray):
        return _mask(array, spec, keyring, subject)
    if subject is not None:  # rows must line up with the subject's: mask the column whole
        return pa.chunked_array([_mask(array.combine_chunks(), spec, keyring, subject)])
    chunks = [_mask(c, spec, keyring, None) for c in array.chunks]
    out_type = chunks[0].type if chunks else _mask(pa.array([], array.type), spec, keyring, None).type
    return pa.chunked_array(chunks, type=out_type)


def _mask(array: pa.Array, spec: MaskSpec, keyring: Keyring | None, subject: pa.Array | None) -> pa.Array:
    if not isinstance(array, pa.Array):
        raise ConfigError(f"mask_array takes a pyarrow Array, not {type(array).__name__}")
    t = array.type
    try:
        if pa.types.is_dictionary(t) and not (spec.method == "shift_date" and subject is not None):
            # Mask the dictionary once and keep the indices: the column stays dictionary-encoded.
            masked_dict = _mask(array.dictionary, spec, keyring, None)
            out = pa.DictionaryArray.from_arrays(array.indices, masked_dict)
        elif pa.types.is_dictionary(t):
            out = _mask(array.dictionary_decode(), spec, keyring, subject)
        elif t in _VIEWS:
            out = _KERNELS[spec.method](array.cast(_VIEWS[t]), spec, keyring, subject)
            out = out.cast(t) if out.type == _VIEWS[t] else out
        else:
            out = _KERNELS[spec.method](array, spec, keyring, subject)
    except LineageGuardError:
        raise
    except (pa.ArrowException, ValueError, TypeError, OverflowError) as exc:
        # Arrow's messages can quote values; say what failed, never the text.
        raise MaskingError(f"mask {spec.describe()} failed on a column of type {t} ({type(exc).__name__})") from None
    if len(out) != len(array):
        raise MaskingError(f"mask {spec.method} returned {len(out)} values for {len(array)} rows")
    return out


def mask_batch(batch: pa.RecordBatch | pa.Table, specs: Mapping[int, MaskSpec],
               keyring: Keyring | None = None, *, memo: TokenMemo | None = None) -> pa.RecordBatch | pa.Table:
    """Mask the columns of `batch` named by output POSITION (names can repeat); `drop` removes a column.

    A `shift_date` subject is the column at the spec's bound `subject` position (the planner
    binds it through lineage, never by name), read before any mask or drop, so a dropped
    patient id can still anchor its patients' date shifts. A spec naming a subject that is not
    bound is refused. Columns not in `specs` pass through unchanged. The same value masks the
    same way in every batch; `memo` (one per read, `mask.memo.TokenMemo`) only saves re-computing
    the tokens of values an earlier batch of the same read already had.
    """
    if not isinstance(batch, (pa.RecordBatch, pa.Table)):
        raise ConfigError(f"mask_batch takes a pyarrow RecordBatch or Table, not {type(batch).__name__}")
    width = batch.num_columns
    for position in specs:
        if not isinstance(position, int) or isinstance(position, bool) or not 0 <= position < width:
            raise ConfigError(f"mask position {position!r} is not a column of this batch (0..{width - 1})")
    if keyring is None and any(s.method in _KEYED for s in specs.values()):
        keyring = Keyring.from_env()
    arrays, fields = [], []
    for position in range(width):
        field, column = batch.schema.field(position), batch.column(position)
        spec = specs.get(position)
        if spec is None:
            arrays.append(column)
            fields.append(field)
            continue
        params = checked(spec)
        if spec.method == "drop":
            continue
        subject = None
        if spec.method == "shift_date" and spec.subject is not None:
            if not 0 <= spec.subject < width or spec.subject == position:
                raise ConfigError(f"shift_date subject position {spec.subject} is not another column of this "
                                  f"batch (0..{width - 1})")
            subject = batch.column(spec.subject)
        elif spec.method == "shift_date" and params["subject"] is not None:
            # Binding by output name would let `SELECT 1 AS id, birth_date` give everyone one offset.
            raise ConfigError(f"shift_date subject {params['subject']!r} is not bound to an output position: "
                              f"the planner binds it through lineage (or give MaskSpec(subject=POSITION))")
        if memo is not None and spec.method == "tokenize":
            masked = memo.tokenize(position, column, spec, keyring,
                                   lambda values, spec=spec: mask_array(values, spec, keyring))
        else:
            masked = mask_array(column, spec, keyring, subject=subject)
        arrays.append(masked)
        # Always nullable: masks may null values, and every batch must carry the same schema.
        fields.append(pa.field(field.name, masked.type, True, field.metadata))
    schema = pa.schema(fields, metadata=batch.schema.metadata)
    if isinstance(batch, pa.Table):
        return pa.Table.from_arrays(arrays, schema=schema)
    return pa.RecordBatch.from_arrays(arrays, schema=schema)
