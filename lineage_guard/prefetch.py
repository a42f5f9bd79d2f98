"""Read the next batch on a second thread while this one masks and writes the last (steps 6 and 7-8 overlap).

The source's read (libpq COPY parsing in the ADBC driver, Arrow type conversion) releases the
GIL, as do masking (polars, pyarrow compute) and the Parquet writer, so overlapping them cuts
wall time on a multi-core host; CPU time is unchanged. At most `depth` batches wait, so memory
stays bounded. Batches come out in the source's order, and an error on the reading thread is
raised on the consuming thread, unchanged, at the point that batch would have come out.

Closing early (the consumer stops, or fails) stops the reader after the batch it is reading:
the source is never touched by two threads at once, and is closed by its owner afterwards.

    >>> with Prefetched(iter([1, 2, 3])) as batches:
    ...     list(batches)
    [1, 2, 3]
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")
_END = object()


class Prefetched(Generic[T]):
    """Iterate `source` on a daemon thread, `depth` items ahead; use as a context manager."""

    def __init__(self, source: Iterator[T], depth: int = 1):
        self._source = source
        self._queue: queue.Queue = queue.Queue(maxsize=max(depth, 1))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._fill, name="lineage-guard-prefetch", daemon=True)
        self._thread.start()

    def _fill(self) -> None:
        try:
            for item in self._source:
                if not self._put((item, None)):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there unchanged
            self._put((_END, exc))
            return
        self._put((_END, None))

    def _put(self, entry: tuple) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        if self._stop.is_set():
            raise StopIteration
        item, exc = self._queue.get()
        if item is _END:
            self._stop.set()
            if exc is not None:
                raise exc
            raise StopIteration
        return item

    def close(self) -> None:
        """Stop reading ahead and wait for the reading thread to leave the source. Idempotent."""
        self._stop.set()
        while True:  # unblock a reader waiting to put, then wait for it to finish its current item
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join()

    def __enter__(self) -> Prefetched[T]:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
