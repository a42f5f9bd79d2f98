"""Arrow in, Arrow out: the table types an asset may return or ask for (pyarrow, Polars, pandas).

Example:
    >>> import pyarrow as pa
    >>> to_arrow(pa.table({"x": [1]})).num_rows
    1
    >>> type(from_arrow(pa.table({"x": [1]}), pa.Table)).__name__
    'Table'
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from lineage_guard.errors import ConfigError

SUPPORTED = "pyarrow.Table, pyarrow.RecordBatch, polars.DataFrame, polars.LazyFrame or pandas.DataFrame"


def _module(obj_or_type: Any) -> str:
    t = obj_or_type if isinstance(obj_or_type, type) else type(obj_or_type)
    return t.__module__.split(".", 1)[0]


def to_arrow(obj: Any) -> pa.Table:
    """An asset's return value as an Arrow table; a clear error for anything else."""
    if isinstance(obj, pa.Table):
        return obj
    if isinstance(obj, pa.RecordBatch):
        return pa.Table.from_batches([obj])
    module = _module(obj)
    if module == "polars":
        import polars as pl

        if isinstance(obj, pl.LazyFrame):
            obj = obj.collect()
        if isinstance(obj, pl.DataFrame):
            return obj.to_arrow()
    if module == "pandas":
        import pandas as pd

        if isinstance(obj, pd.DataFrame):
            return pa.Table.from_pandas(obj, preserve_index=False)
    raise ConfigError(f"GovernedIOManager stores tables: return a {SUPPORTED}, not {type(obj).__name__}")


def from_arrow(table: pa.Table, wanted: Any) -> Any:
    """`table` as the type an input asks for (its annotation); Arrow when it asks for none."""
    if wanted is None or wanted is Any or wanted is pa.Table or wanted is object:
        return table
    module = _module(wanted) if isinstance(wanted, type) else ""
    name = getattr(wanted, "__name__", "")
    if module == "polars":
        import polars as pl

        frame = pl.from_arrow(table)
        return frame.lazy() if name == "LazyFrame" else frame
    if module == "pandas" and name == "DataFrame":
        return table.to_pandas()
    raise ConfigError("GovernedIOManager loads inputs as pyarrow.Table, polars.DataFrame/LazyFrame or "
                      f"pandas.DataFrame; annotate the input with one of them "
                      f"(got {wanted!r})")
