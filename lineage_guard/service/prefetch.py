"""Read ahead of the Flight writer: the next masked batches are read and masked while one is sent.

DoGet's writer calls the stream's generator, then sends what it returned; with one thread the
database read and the masking of batch n+1 wait for batch n to be serialized, encrypted and
written. `ReadAhead` runs the governed batches in a thread of their own and hands them over
through a queue of `depth` batches, so the two overlap (the database, the server and the
client each keep a core busy). Errors are raised in the reader as they happened; `close()`
stops the thread (first asking the read to cancel, so a long query does not hold it) and waits
for it, so the governed stream is never advanced by two threads and is closed by its owner.

Example:
    >>> ahead = ReadAhead(iter([1, 2, 3]), depth=2)
    >>> list(ahead), ahead.close()
    ([1, 2, 3], None)
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")
_END = object()


class ReadAhead(Generic[T]):
    """Iterate `source` in a background thread, at most `depth` items ahead of the consumer."""

    def __init__(self, source: Iterator[T], depth: int = 2, cancel: Callable[[], None] | None = None) -> None:
        self._source = source
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._cancel = cancel
        self._thread = threading.Thread(target=self._run, name="lineage-guard-read-ahead", daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            for item in self._source:
                if not self._put((item, None)):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            self._put((_END, exc))
            return
        self._put((_END, None))

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        item, error = self._queue.get()
        if item is _END:
            self._queue.put((_END, error))   # later calls see the same end
            if error is not None:
                raise error
            raise StopIteration
        return item

    def close(self) -> None:
        """Stop reading ahead and wait for the thread (idempotent)."""
        self._stop.set()
        if self._thread.is_alive() and self._cancel is not None:
            try:
                self._cancel()
            except Exception:  # noqa: BLE001 - best effort: the thread still ends when the read returns
                pass
        while self._thread.is_alive():
            try:
                while True:
                    self._queue.get_nowait()
            except queue.Empty:
                pass
            self._thread.join(timeout=0.1)
