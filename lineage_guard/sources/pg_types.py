"""Map the Arrow types ADBC gives PostgreSQL columns to plain, portable Arrow types.

ADBC's PostgreSQL driver returns some types as extension or opaque types that
Parquet writers, Polars and the masking kernels do not understand. Each field of
the result gets a converter, chosen once from the schema and applied to every
batch (vectorized; Python runs per distinct value only for the rare network types):

| PostgreSQL | ADBC gives | lineage_guard gives |
|---|---|---|
| numeric(p, s), p <= 38 | opaque string | decimal128(p, s) |
| numeric(p, s), p <= 76 | opaque string | decimal256(p, s) |
| numeric (no typmod) | opaque string | decimal128(38, 10), rounded half-to-even at 10 decimals |
| json, jsonb | arrow.json | string |
| uuid | arrow.uuid | string, canonical `8-4-4-4-12` lowercase |
| inet, cidr, macaddr, macaddr8 | opaque binary | string, PostgreSQL's text form |
| xml | opaque binary | string |
| other opaque text types (enums) | opaque string | string |
| void (e.g. `SELECT pg_sleep(1)`) | opaque | null |
| arrays of the above | list<...> | list<converted> |

Unconstrained numeric becomes decimal128(38, 10), not float64: money-like values
keep exact cents and Parquet keeps a decimal logical type. Values that do not fit
(NaN, Infinity, more than 28 integer digits, more than 38 decimals) raise a
`SourceError` telling the author to cast in SQL (`x::float8` or `x::numeric(p,s)`).
Other types are left as ADBC gives them (int, float, bool, text, bytea -> binary,
date, timestamp[us], timestamptz -> timestamp[us, UTC], time64[us], interval ->
month_day_nano_interval, money -> int64 cents). Opaque binary types with no
converter (point, tsvector, ranges, bit, timetz...) are refused with the cast to add.

Example:
    >>> import pyarrow as pa
    >>> plan = TypePlan.for_schema(pa.schema([pa.field("n", pa.int32())]))
    >>> plan.schema.field("n").type
    DataType(int32)
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import SourceError

Converter = Callable[[pa.Array], pa.Array]

UNCONSTRAINED_NUMERIC = pa.decimal128(38, 10)
_WIDE = pa.decimal256(76, 38)
_PG_TYPE = b"POSTGRESQL:type"
_PG_TYPMOD = b"POSTGRESQL:typmod"


def _pg_type(field: pa.Field) -> str:
    meta = field.metadata or {}
    raw = meta.get(_PG_TYPE) or meta.get(b"ADBC:postgresql:typname") or b""
    return raw.decode(errors="replace")


def _numeric_type(typmod: int) -> pa.DataType | None:
    """numeric(p, s) from the typmod; None when unconstrained or not representable."""
    if typmod < 4:
        return None
    precision, scale = ((typmod - 4) >> 16) & 0xFFFF, (typmod - 4) & 0x7FF
    if not 0 <= scale <= precision:
        return None
    if precision <= 38:
        return pa.decimal128(precision, scale)
    if precision <= 76:
        return pa.decimal256(precision, scale)
    return None


class _Unconvertible(Exception):
    """Raised inside a converter; the caller turns it into a sanitized SourceError for the column."""


def _safe_cast(arr: pa.Array, to: pa.DataType) -> pa.Array:
    try:
        return pc.cast(arr, to)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        # pyarrow's message quotes the value: never let it out.
        raise _Unconvertible() from None


def _numeric_fixed(to: pa.DataType) -> Converter:
    return lambda arr: _safe_cast(_storage(arr), to)


def _numeric_free(arr: pa.Array) -> pa.Array:
    storage = _storage(arr)
    try:
        # Exact when it succeeds (every value has <= 10 decimals and <= 28 integer digits, so rounding
        # to 10 would change nothing), and ~6x cheaper than parse-wide, round, narrow; any value that
        # does not fit exactly raises and takes the rounding path below.
        return pc.cast(storage, UNCONSTRAINED_NUMERIC)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    wide = _safe_cast(storage, _WIDE)
    rounded = pc.round(wide, ndigits=10, round_mode="half_to_even")
    return _safe_cast(rounded, UNCONSTRAINED_NUMERIC)


def _storage(arr: pa.Array) -> pa.Array:
    return arr.storage if isinstance(arr.type, pa.BaseExtensionType) else arr


def _utf8(arr: pa.Array) -> pa.Array:
    return _safe_cast(_storage(arr), pa.string())


_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def _uuid_to_string(arr: pa.Array) -> pa.Array:
    """16-byte UUIDs to their canonical text, with numpy (no per-row Python)."""
    storage = _storage(arr)
    n = len(storage)
    if n == 0:
        return pa.array([], pa.string())
    raw = np.frombuffer(storage.buffers()[1], dtype=np.uint8)[storage.offset * 16:(storage.offset + n) * 16]
    raw = raw.reshape(n, 16)
    hexed = np.empty((n, 32), dtype=np.uint8)
    hexed[:, 0::2] = _HEX[raw >> 4]
    hexed[:, 1::2] = _HEX[raw & 0x0F]
    dashed = np.full((n, 36), ord("-"), dtype=np.uint8)
    for dst, src in ((slice(0, 8), slice(0, 8)), (slice(9, 13), slice(8, 12)), (slice(14, 18), slice(12, 16)),
                     (slice(19, 23), slice(16, 20)), (slice(24, 36), slice(20, 32))):
        dashed[:, dst] = hexed[:, src]
    offsets = pa.array(np.arange(0, (n + 1) * 36, 36, dtype=np.int32))
    return pa.StringArray.from_buffers(n, offsets.buffers()[1], pa.py_buffer(dashed.tobytes()),
                                       storage.buffers()[0], storage.null_count)


def _inet_text(raw: bytes, cidr: bool) -> str:
    # PostgreSQL's binary inet: family (2 = v4, 3 = v6), bits, is_cidr, nbytes, address.
    family, bits, _, nbytes = raw[0], raw[1], raw[2], raw[3]
    addr = raw[4:4 + nbytes]
    ip = ipaddress.IPv4Address(addr) if family == 2 else ipaddress.IPv6Address(addr)
    if cidr or bits != ip.max_prefixlen:
        return f"{ip}/{bits}"
    return str(ip)


def _mac_text(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def _per_distinct(fn: Callable[[bytes], str]) -> Converter:
    """Apply a Python decoder once per distinct value (these columns are low-cardinality and rare)."""

    def convert(arr: pa.Array) -> pa.Array:
        encoded = pc.dictionary_encode(_storage(arr))
        try:
            decoded = pa.array([fn(v) for v in encoded.dictionary.to_pylist()], pa.string())
        except (ValueError, IndexError):
            raise _Unconvertible() from None
        return pc.take(decoded, encoded.indices)

    return convert


_OPAQUE_BINARY: dict[str, Converter] = {
    "inet": _per_distinct(lambda raw: _inet_text(raw, cidr=False)),
    "cidr": _per_distinct(lambda raw: _inet_text(raw, cidr=True)),
    "macaddr": _per_distinct(_mac_text),
    "macaddr8": _per_distinct(_mac_text),
    "xml": _utf8,
}


def _plan_type(field_name: str, typ: pa.DataType, field: pa.Field) -> tuple[pa.DataType, Converter | None]:
    """The output type of one (possibly nested) value type and how to get there."""
    if isinstance(typ, (pa.ListType, pa.LargeListType)):
        value_field = typ.value_field
        out, conv = _plan_type(field_name, value_field.type, value_field)
        if conv is None:
            return typ, None
        list_type = pa.list_ if isinstance(typ, pa.ListType) else pa.large_list
        out_type = list_type(value_field.with_type(out))

        def convert_list(arr: pa.Array, conv=conv, out_type=out_type) -> pa.Array:
            arr = _storage(arr)
            values = conv(arr.values)
            cls = pa.ListArray if isinstance(out_type, pa.ListType) else pa.LargeListArray
            return cls.from_arrays(arr.offsets, values, type=out_type, mask=arr.is_null())

        return out_type, convert_list
    if isinstance(typ, pa.BaseExtensionType):
        ext = typ.extension_name
        pg = _pg_type(field)
        if ext == "arrow.json":
            return typ.storage_type, _storage
        if ext == "arrow.uuid":
            return pa.string(), _uuid_to_string
        if ext == "arrow.opaque":
            type_name = getattr(typ, "type_name", pg)
            if type_name == "numeric":
                typmod = int((field.metadata or {}).get(_PG_TYPMOD, b"-1"))
                fixed = _numeric_type(typmod)
                return (fixed, _numeric_fixed(fixed)) if fixed else (UNCONSTRAINED_NUMERIC, _numeric_free)
            if type_name == "void":
                return pa.null(), lambda arr: pa.nulls(len(arr))
            if pa.types.is_string(typ.storage_type) or pa.types.is_large_string(typ.storage_type):
                return typ.storage_type, _storage
            if type_name in _OPAQUE_BINARY:
                return pa.string(), _OPAQUE_BINARY[type_name]
            raise SourceError(
                f"column {field_name!r} has PostgreSQL type {type_name!r}, which lineage_guard does not read "
                f"as Arrow; cast it in the query, e.g. {field_name}::text"
            )
        return typ.storage_type, _storage
    return typ, None


_NUMERIC_FIX = ("cast it in the query to float8 or to numeric(p, s) with p <= 38 "
                "(NaN, Infinity and values beyond 28 integer or 38 decimal digits do not fit)")


@dataclass(frozen=True)
class TypePlan:
    """The converted schema of a result and the per-column converters that produce it."""

    schema: pa.Schema
    converters: tuple[Converter | None, ...]

    @classmethod
    def for_schema(cls, schema: pa.Schema) -> TypePlan:
        """Plan the conversion of every column of an ADBC result schema (raises SourceError if one cannot be)."""
        fields, converters = [], []
        for field in schema:
            out, conv = _plan_type(field.name, field.type, field)
            fields.append(pa.field(field.name, out, field.nullable, field.metadata))
            converters.append(conv)
        return cls(pa.schema(fields, schema.metadata), tuple(converters))

    @property
    def identity(self) -> bool:
        return all(c is None for c in self.converters)

    def apply(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """Convert one batch to `self.schema`."""
        if self.identity:
            return batch
        columns = []
        for i, conv in enumerate(self.converters):
            column = batch.column(i)
            if conv is not None:
                try:
                    column = conv(column)
                except _Unconvertible:
                    field = self.schema.field(i)
                    fix = _NUMERIC_FIX if pa.types.is_decimal(field.type) else f"cast it in the query ({field.name}::text)"
                    raise SourceError(f"column {field.name!r}: a value could not be converted to {field.type}; {fix}") from None
            columns.append(column)
        return pa.RecordBatch.from_arrays(columns, schema=self.schema)
