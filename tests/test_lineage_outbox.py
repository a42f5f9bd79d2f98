"""The outbox and shipping against a real HTTP lineage endpoint on 127.0.0.1 that answers like Marquez."""

from __future__ import annotations

import json
import logging
import threading

import pytest
from lineage_check import assert_valid_events, sample_run
from ol_receiver import FakeMarquez

from lineage_guard.lineage import LineageEmitter, Outbox, OutboxError, build_event, ship_pending
from lineage_guard.paths import state_file

ALIASES = [f"OPENLINEAGE__TRANSPORT__TRANSPORTS__DEFAULT_HTTP__{k}" for k in ("TYPE", "URL", "AUTH", "ENDPOINT")]


@pytest.fixture
def marquez(monkeypatch):
    server = FakeMarquez()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    for name in ALIASES:  # the client writes these into os.environ; make monkeypatch remove them afterwards
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def fast_http(marquez, monkeypatch):
    """The client's http transport via OPENLINEAGE__TRANSPORT__*, one quick retry instead of ~9 s of backoff."""
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__TYPE", "http")
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__URL", marquez.url)
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__RETRY", '{"total": 1, "backoff_factor": 0}')
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__TIMEOUT", "5")
    return marquez


def test_events_reach_marquez_with_openlineage_url(marquez, monkeypatch):
    monkeypatch.setenv("OPENLINEAGE_URL", marquez.url)
    run = sample_run()
    emitter = LineageEmitter(ship="inline")
    emitter.start(run)
    emitter.complete(run)
    assert marquez.seen() == [(run.run_id, "START"), (run.run_id, "COMPLETE")]
    for event in marquez.received:   # the client adds its own version tag; everything else is as stored
        assert event["run"]["facets"].pop("tags")["tags"][0]["key"] == "openlineage_client_version"
    assert marquez.received == Outbox().events(run_id=run.run_id)
    assert Outbox().counts() == {"queued": 0, "shipped": 2, "rejected": 0}
    assert state_file("outbox.sqlite").is_file()
    assert_valid_events(marquez.received, forbid=["123-45-6789"])


def test_outage_loses_nothing_and_sends_nothing_twice(fast_http, caplog):
    fast_http.fail_status = 503
    runs = [sample_run() for _ in range(3)]
    emitter = LineageEmitter(ship="inline")
    with caplog.at_level(logging.WARNING):
        for run in runs:                     # each run succeeds although the backend is down
            emitter.start(run)
            emitter.complete(run)
    assert fast_http.received == [] and fast_http.requests >= 6
    assert Outbox().counts() == {"queued": 6, "shipped": 0, "rejected": 0}
    assert "stay queued" in caplog.text and fast_http.url not in caplog.text
    status = Outbox().status()
    assert status["last_error"].startswith("RetryError") and status["attempts"] >= 1

    fast_http.fail_status = None             # backend is back
    assert emitter.flush() == 6
    expected = [(r.run_id, t) for r in runs for t in ("START", "COMPLETE")]
    assert fast_http.seen() == expected      # in order, each exactly once
    assert emitter.flush() == 0 and fast_http.seen() == expected
    assert Outbox().counts() == {"queued": 0, "shipped": 6, "rejected": 0}
    assert_valid_events(fast_http.received, forbid=["123-45-6789"])


def test_flush_stops_at_first_failure_so_order_holds(fast_http):
    runs = [sample_run() for _ in range(3)]
    box = Outbox()
    for run in runs:
        box.enqueue(build_event(run, "START"))
        box.enqueue(build_event(run, "COMPLETE"))
    fast_http.accept_before_failing, fast_http.fail_status = 3, 500
    first = ship_pending(box)
    assert (first.shipped, first.remaining) == (3, 3) and first.error.startswith("RetryError")
    fast_http.accept_before_failing = None
    fast_http.fail_status = None
    assert ship_pending(box).shipped == 3
    assert fast_http.seen() == [(r.run_id, t) for r in runs for t in ("START", "COMPLETE")]


def test_next_run_ships_what_an_outage_left(fast_http):
    earlier, later = sample_run(), sample_run()
    emitter = LineageEmitter(ship="inline")
    fast_http.fail_status = 502
    emitter.start(earlier)
    emitter.fail(earlier)
    fast_http.fail_status = None
    emitter.start(later)                     # the next run's START pushes the backlog first
    assert fast_http.seen() == [(earlier.run_id, "START"), (earlier.run_id, "FAIL"), (later.run_id, "START")]


def test_background_shipping(fast_http):
    run = sample_run()
    emitter = LineageEmitter()               # default: a worker thread ships after each enqueue
    emitter.start(run)
    emitter.complete(run)
    emitter.close(timeout=60)
    assert emitter.flush() == 0
    assert fast_http.seen() == [(run.run_id, "START"), (run.run_id, "COMPLETE")]


def test_concurrent_flushers_never_double_send(fast_http):
    box = Outbox()
    runs = [sample_run() for _ in range(10)]
    for run in runs:
        box.enqueue(build_event(run, "START"))
        box.enqueue(build_event(run, "COMPLETE"))
    emitters = [LineageEmitter(Outbox(box.path), ship="manual") for _ in range(4)]
    threads = [threading.Thread(target=e.flush) for e in emitters for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    emitters[0].flush()                      # whatever a skipped flusher left
    assert sorted(fast_http.seen()) == sorted((r.run_id, t) for r in runs for t in ("START", "COMPLETE"))
    assert len(fast_http.seen()) == 20


def test_rejected_event_is_set_aside_not_blocking(fast_http):
    fast_http.reject_event_type = "START"
    run = sample_run()
    emitter = LineageEmitter(ship="inline")
    emitter.start(run)
    emitter.complete(run)
    assert fast_http.seen() == [(run.run_id, "COMPLETE")]
    box = Outbox()
    assert box.counts() == {"queued": 0, "shipped": 1, "rejected": 1}
    assert box.status()["queued"] == 0
    fast_http.reject_event_type = None
    assert box.requeue_rejected() == 1 and emitter.flush() == 1


def test_no_transport_keeps_events_quietly(capfd, monkeypatch):
    run = sample_run()
    emitter = LineageEmitter(ship="inline")
    emitter.start(run)
    emitter.complete(run)
    assert emitter.flush() == 0
    assert Outbox().counts() == {"queued": 2, "shipped": 0, "rejected": 0}
    out, err = capfd.readouterr()
    assert run.run_id not in out + err and "eventType" not in out + err   # no console transport spam


def test_disabled_writes_nothing(marquez, monkeypatch):
    monkeypatch.setenv("OPENLINEAGE_URL", marquez.url)
    monkeypatch.setenv("OPENLINEAGE_DISABLED", "true")
    run = sample_run()
    emitter = LineageEmitter(ship="inline")
    emitter.start(run)
    emitter.complete(run)
    assert Outbox().counts() == {"queued": 0, "shipped": 0, "rejected": 0} and marquez.received == []


def test_file_transport_from_openlineage_yml(tmp_path):
    events_file = tmp_path / "events.jsonl"
    (tmp_path / "openlineage.yml").write_text(
        f"transport:\n  type: file\n  log_file_path: {events_file}\n  append: true\n")   # cwd is tmp_path
    run = sample_run()
    emitter = LineageEmitter(ship="inline")
    emitter.start(run)
    emitter.complete(run)
    assert_valid_events([events_file], forbid=["123-45-6789"])
    assert [json.loads(line)["eventType"] for line in events_file.read_text().splitlines()] == ["START", "COMPLETE"]


def test_run_protocol_is_enforced():
    emitter = LineageEmitter(ship="manual")
    run = sample_run()
    emitter.fail(run)                                   # no START yet: one is queued first
    assert [e["eventType"] for e in Outbox().events(run_id=run.run_id)] == ["START", "FAIL"]
    with pytest.raises(OutboxError, match="nothing may follow a terminal event"):
        emitter.complete(run)
    other = sample_run()
    emitter.start(other)
    with pytest.raises(OutboxError, match="already has a START"):
        emitter.start(other)
    with pytest.raises(OutboxError, match="needs run.runId"):
        Outbox().enqueue({"eventType": "START"})
    emitter.complete(other)
    assert_valid_events(Outbox().events())


def test_busy_flusher_is_retried_not_forgotten(fast_http):
    from lineage_guard.lineage.shipping import _flush_lock

    box = Outbox()
    run = sample_run()
    emitter = LineageEmitter(box)
    with _flush_lock(box) as held:           # another flusher holds the outbox
        assert held
        emitter.start(run)
        for _ in range(600):                 # wait (not a timing assertion) until the worker found it busy
            if emitter.last_result is not None:
                break
            threading.Event().wait(0.05)
        assert emitter.last_result.busy and fast_http.received == []
    emitter.close(timeout=60)
    assert fast_http.seen() == [(run.run_id, "START")]


def test_prune_keeps_unshipped_events(fast_http):
    box = Outbox()
    shipped, queued = sample_run(), sample_run()
    emitter = LineageEmitter(box, ship="inline")
    emitter.start(shipped)
    emitter.complete(shipped)
    fast_http.fail_status = 503
    emitter.start(queued)
    assert box.prune(0) == 2 and box.counts() == {"queued": 1, "shipped": 0, "rejected": 0}
    with pytest.raises(OutboxError, match="zero or more"):
        box.prune(-1)


def test_two_processes_flushing_at_once_never_double_send(fast_http):
    import os
    import subprocess
    import sys
    from pathlib import Path

    box = Outbox()
    runs = [sample_run() for _ in range(15)]
    for run in runs:
        box.enqueue(build_event(run, "START"))
        box.enqueue(build_event(run, "COMPLETE"))
    exe = str(Path(sys.executable).with_name("lineage-guard"))
    procs = [subprocess.Popen([exe, "lineage", "flush"], env=dict(os.environ), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for _ in range(3)]
    for p in procs:
        p.communicate(timeout=120)
    ship_pending(box)                        # whatever a flusher that found the lock taken left behind
    assert sorted(fast_http.seen()) == sorted((r.run_id, t) for r in runs for t in ("START", "COMPLETE"))
    assert len(fast_http.seen()) == 30 and box.counts()["queued"] == 0


def test_outbox_survives_fork():
    import multiprocessing

    box = Outbox()
    parent_run, child_run = sample_run(), sample_run()
    box.enqueue(build_event(parent_run, "START"))      # the parent's connection exists before the fork
    child = multiprocessing.get_context("fork").Process(
        target=lambda: box.enqueue(build_event(child_run, "START")))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    box.enqueue(build_event(parent_run, "COMPLETE"))
    assert [(e["run"]["runId"], e["eventType"]) for e in box.events()] == [
        (parent_run.run_id, "START"), (child_run.run_id, "START"), (parent_run.run_id, "COMPLETE")]


def test_unusable_outbox_is_a_clear_error(tmp_path):
    (tmp_path / "not_a_file.sqlite").mkdir()
    with pytest.raises(OutboxError, match="not_a_file.sqlite: unable to open database file .*LINEAGE_GUARD_HOME"):
        Outbox(tmp_path / "not_a_file.sqlite")
