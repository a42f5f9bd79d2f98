"""The read-ahead thread keeps order, raises the source's error on the consumer, and stops when closed early."""

from __future__ import annotations

import threading

import pytest

from lineage_guard.prefetch import Prefetched


def test_items_come_out_in_order_and_complete():
    with Prefetched(iter(range(500)), depth=2) as items:
        assert list(items) == list(range(500))


def test_an_error_while_reading_is_raised_on_the_consumer_after_the_items_before_it():
    def source():
        yield 1
        yield 2
        raise KeyError("boom")

    seen = []
    with pytest.raises(KeyError, match="boom"), Prefetched(source()) as items:
        for item in items:
            seen.append(item)  # noqa: PERF402 - list() would lose the items seen before the error
    assert seen == [1, 2]


def test_closing_early_stops_reading_ahead_and_leaves_the_source_alone():
    read, threads = [], set()

    def source():
        for i in range(1000):
            threads.add(threading.current_thread().name)
            read.append(i)
            yield i

    with Prefetched(source(), depth=1) as items:
        assert next(items) == 0
    before = len(read)
    assert before <= 3  # the item taken, one waiting, one being read when closed
    assert not any(t.name == "lineage-guard-prefetch" for t in threading.enumerate() if t.is_alive())
    assert threads == {"lineage-guard-prefetch"}
    assert len(read) == before
