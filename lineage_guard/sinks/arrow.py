"""An in-memory sink: the result as one `pyarrow.Table`, available after `commit()`.

Example:
    >>> import pyarrow as pa
    >>> sink = ArrowSink("preview")
    >>> sink.open(pa.schema([("x", pa.int64())]))
    >>> sink.write(pa.record_batch({"x": [1]}))
    >>> sink.commit().namespace, sink.table.num_rows
    ('memory', 1)
"""

from __future__ import annotations

import pyarrow as pa

from ..run import SinkInfo
from .base import Sink


class ArrowSink(Sink):
    """Collect batches in memory. `table` is None until commit (and after abort)."""

    def __init__(self, name: str = "arrow"):
        super().__init__()
        self.name = name
        self.table: pa.Table | None = None
        self._batches: list[pa.RecordBatch] = []

    @property
    def info(self) -> SinkInfo:
        return SinkInfo(kind="memory", uri=f"memory://{self.name}", namespace="memory", name=self.name)

    def _open(self, schema: pa.Schema) -> None:
        self._batches = []

    def _write(self, batch: pa.RecordBatch) -> None:
        self._batches.append(batch)
        self.bytes_written += batch.nbytes

    def _commit(self) -> None:
        self.table = pa.Table.from_batches(self._batches, schema=self.schema)
        self._batches = []

    def _abort(self) -> None:
        self._batches = []
        self.table = None
