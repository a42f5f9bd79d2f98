"""The interface every sink (step 8) implements: open, write batches, then commit or abort.

A sink is atomic: nothing is visible at its target until `commit()` succeeds,
and `abort()` removes whatever was staged. Used as a context manager, a sink
aborts when the block raises *or* ends without `commit()`, so a half-read
result is never published by accident.

Example:
    >>> import pyarrow as pa
    >>> from lineage_guard.sinks import ArrowSink
    >>> batch = pa.record_batch({"x": [1, 2]})
    >>> with ArrowSink() as sink:
    ...     sink.open(batch.schema)
    ...     sink.write(batch)
    ...     info = sink.commit()
    >>> sink.table.num_rows
    2
"""

from __future__ import annotations

import abc
from typing import Self

import pyarrow as pa

from ..errors import SinkError
from ..run import SinkInfo


class Sink(abc.ABC):
    """Base class: tracks state (new -> open -> committed | aborted), rows and bytes."""

    def __init__(self) -> None:
        self.state = "new"
        self.rows = 0
        self.bytes_written = 0
        self.schema: pa.Schema | None = None
        self.sealed = False

    @property
    @abc.abstractmethod
    def info(self) -> SinkInfo:
        """Where the result goes, named the OpenLineage way (known before commit)."""

    def open(self, schema: pa.Schema) -> None:
        """Start staging a result with this schema."""
        if self.state != "new":
            raise SinkError(f"this sink is {self.state}; create a new sink for each result")
        self.schema = schema
        self._open(schema)
        self.state = "open"

    def write(self, batch: pa.RecordBatch) -> None:
        """Stage one batch (its schema must equal the one given to `open`)."""
        if self.state != "open" or self.sealed:
            state = "sealed" if self.state == "open" else self.state
            raise SinkError(f"write() on a sink that is {state}; call open(schema) first, and write before seal()")
        if not batch.schema.equals(self.schema, check_metadata=False):
            self.abort()
            raise SinkError("a batch's schema differs from the schema the sink was opened with; "
                            "every batch of one result must have the same columns and types")
        self._or_abort(lambda: self._write(batch), "writing a batch")
        self.rows += batch.num_rows

    def seal(self) -> None:
        """Finish staging (no more writes) without publishing: `bytes_written` is then exact.

        Optional: `commit()` seals first if needed. Call it when the size must be known
        before the result becomes visible (e.g. to record it in the ledger first).
        """
        if self.state != "open":
            raise SinkError(f"seal() on a sink that is {self.state}; call open(schema) first")
        if self.sealed:
            return
        self._or_abort(self._seal, "finishing the result")
        self.sealed = True

    def commit(self) -> SinkInfo:
        """Publish the staged result atomically; returns where it went."""
        if self.state != "open":
            raise SinkError(f"commit() on a sink that is {self.state}; call open(schema) first")
        self.seal()
        self._or_abort(self._commit, "publishing the result")
        self.state = "committed"
        return self.info

    def _or_abort(self, step, doing: str) -> None:
        """Run one staging step; on any failure drop what was staged and raise a value-free SinkError."""
        try:
            step()
        except SinkError:
            self.abort()
            raise
        except Exception as exc:  # noqa: BLE001 - library errors may quote data: only the class is kept
            self.abort()
            raise SinkError(f"{doing} failed ({type(exc).__name__}); nothing was left at {self.info.uri}") from None

    def abort(self) -> None:
        """Drop whatever was staged. Safe to call in any state; a committed result is left alone."""
        if self.state in ("committed", "aborted"):
            return
        self.state = "aborted"
        self._abort()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.state != "committed":
            self.abort()

    @abc.abstractmethod
    def _open(self, schema: pa.Schema) -> None: ...

    @abc.abstractmethod
    def _write(self, batch: pa.RecordBatch) -> None: ...

    def _seal(self) -> None:
        """Flush whatever is buffered; the default has nothing to flush."""

    @abc.abstractmethod
    def _commit(self) -> None: ...

    @abc.abstractmethod
    def _abort(self) -> None: ...
