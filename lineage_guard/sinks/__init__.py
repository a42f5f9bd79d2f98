"""Step 8: sinks. Open with a schema, write batches, then commit (atomic) or abort.

Example:
    >>> from lineage_guard.sinks import ParquetSink
    >>> ParquetSink("/tmp/out.parquet").info.namespace
    'file'
"""

from .arrow import ArrowSink
from .base import Sink
from .parquet import ParquetSink
from .postgres_table import PostgresTableSink

__all__ = ["ArrowSink", "ParquetSink", "PostgresTableSink", "Sink"]
