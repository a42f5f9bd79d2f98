"""Step 8: sinks. Open with a schema, write batches, then commit (atomic) or abort.

Example:
    >>> from lineage_guard.sinks import ParquetSink
    >>> ParquetSink("/tmp/out.parquet").info.namespace
    'file'
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

# Names load on first use: a Dagster process in service mode imports `ArrowSink` and must not load the
# PostgreSQL table sink, which pulls in the source and its driver helpers.
_EXPORTS = {"ArrowSink": ".arrow", "Sink": ".base", "ParquetSink": ".parquet", "PostgresTableSink": ".postgres_table"}
__all__ = ["ArrowSink", "ParquetSink", "PostgresTableSink", "Sink"]

if TYPE_CHECKING:  # pragma: no cover
    from .arrow import ArrowSink
    from .base import Sink
    from .parquet import ParquetSink
    from .postgres_table import PostgresTableSink


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
