"""The read-ahead thread (extract and the service's DoGet): order, bound, errors, stopping, cancelling."""

from __future__ import annotations

import threading
import time

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


def test_items_arrive_in_order_and_the_end_repeats():
    ahead = Prefetched(iter(range(50)), depth=2)
    assert list(ahead) == list(range(50))
    with pytest.raises(StopIteration):
        next(ahead)
    ahead.close()


def test_it_reads_at_most_depth_items_ahead_of_the_consumer():
    pulled = []

    def source():
        for i in range(100):
            pulled.append(i)
            yield i

    ahead = Prefetched(source(), depth=2)
    assert next(ahead) == 0
    time.sleep(0.3)
    # one handed over, two queued, one more waiting to be queued: never the whole source
    assert len(pulled) <= 4
    ahead.close()


def test_an_error_in_the_source_is_raised_to_the_consumer_after_the_items_before_it():
    def source():
        yield 1
        raise ValueError("the read failed")

    ahead = Prefetched(source(), depth=2)
    assert next(ahead) == 1
    with pytest.raises(ValueError, match="the read failed"):
        next(ahead)
    with pytest.raises(ValueError, match="the read failed"):   # the same end, again
        next(ahead)
    ahead.close()


def test_close_stops_the_thread_cancels_a_blocked_read_and_never_advances_the_source_again():
    release = threading.Event()
    cancelled = []

    def source():
        yield 1
        release.wait(10)   # a read that blocks until cancelled
        yield 2
        yield 3

    def cancel():
        cancelled.append(True)
        release.set()

    ahead = Prefetched(source(), depth=1, cancel=cancel)
    assert next(ahead) == 1
    time.sleep(0.1)
    t0 = time.monotonic()
    ahead.close()
    assert time.monotonic() - t0 < 5 and cancelled == [True]
    assert not ahead._thread.is_alive()
    ahead.close()   # idempotent
