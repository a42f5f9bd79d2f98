"""Read the next batch on a second thread while this one masks and writes the last (steps 6 and 7-8 overlap).

The source's read (libpq COPY parsing in the ADBC driver, Arrow type conversion) releases the
GIL, as do masking (polars, pyarrow compute) and the Parquet writer, so overlapping them cuts
wall time on a multi-core host; CPU time is unchanged. At most `depth` batches wait, so memory
stays bounded. Batches come out in the source's order, and an error on the reading thread is
raised on the consuming thread, unchanged, at the point that batch would have come out.

Closing early (the consumer stops, or fails) stops the reader after the batch it is reading:
the source is never touched by two threads at once, and is closed by its owner afterwards. A
`cancel` callback lets `close()` interrupt a read that blocks (a slow query), so closing does
not wait for it. The end (exhaustion or the error) repeats on every later `next()`.

One class serves both homes of the path: `GovernedSession.extract` (read while masking and
writing Parquet) and the service's DoGet (read and mask while the Flight writer sends).

    >>> with Prefetched(iter([1, 2, 3])) as batches:
    ...     list(batches)
    [1, 2, 3]
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")
_END = object()


class Prefetched(Generic[T]):
    """Iterate `source` on a daemon thread, `depth` items ahead; use as a context manager."""

    def __init__(self, source: Iterator[T], depth: int = 1, cancel: Callable[[], None] | None = None):
        self._source = source
        self._queue: queue.Queue = queue.Queue(maxsize=max(depth, 1))
        self._stop = threading.Event()
        self._cancel = cancel
        self._end: tuple | None = None
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
        if self._end is None:
            if self._stop.is_set():
                raise StopIteration
            item, exc = self._queue.get()
            if item is not _END:
                return item
            self._stop.set()
            self._end = (exc,)
        if self._end[0] is not None:
            raise self._end[0]
        raise StopIteration

    def close(self) -> None:
        """Stop reading ahead and wait for the reading thread to leave the source. Idempotent."""
        self._stop.set()
        if self._thread.is_alive() and self._cancel is not None:
            with contextlib.suppress(Exception):  # best effort: the thread still ends when the read returns
                self._cancel()
        while self._thread.is_alive():  # unblock a reader waiting to put, then wait for its current item
            try:
                while True:
                    self._queue.get_nowait()
            except queue.Empty:
                pass
            self._thread.join(timeout=0.1)

    def __enter__(self) -> Prefetched[T]:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
