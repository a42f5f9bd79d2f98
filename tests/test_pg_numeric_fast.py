"""Unconstrained numeric: the direct cast fast path gives exactly what parse-wide-round-narrow gives, or falls back."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from lineage_guard.sources.pg_types import _WIDE, UNCONSTRAINED_NUMERIC, _numeric_free


def _reference(arr: pa.Array) -> pa.Array:
    rounded = pc.round(pc.cast(arr, _WIDE), ndigits=10, round_mode="half_to_even")
    return pc.cast(rounded, UNCONSTRAINED_NUMERIC)


@pytest.mark.parametrize("values", [
    ["0.00", "12.34", "-9999.99", None, "1234567890123456789012345678.1234567890"],
    ["1.12345678905", "2.5", None],           # an 11th decimal: rounds half to even on the slow path
    ["-0.00000000005", "0.000000000051"],
])
def test_fast_and_reference_paths_agree(values):
    arr = pa.array(values, pa.string())
    assert _numeric_free(arr).equals(_reference(arr))
    assert _numeric_free(arr).type == UNCONSTRAINED_NUMERIC
