"""A real HTTP lineage endpoint on 127.0.0.1 that answers like Marquez (POST /api/v1/lineage -> 201).

Shared by the tests that capture OpenLineage events over HTTP (the outbox's shipping, a service
subprocess with OPENLINEAGE_URL, Airflow's provider with an http transport).

    with FakeMarquez.running() as marquez:
        ...                               # point a producer at marquez.url
        events = marquez.wait_for(lambda got: len(got) >= 2)
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeMarquez(ThreadingHTTPServer):
    """Accepts POST /api/v1/lineage with 201, or answers `fail_status` while it is set."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.received: list[dict] = []
        self.requests = 0
        self.fail_status: int | None = None
        self.reject_event_type: str | None = None     # answer 400 for events of this type
        self.accept_before_failing: int | None = None  # accept this many, then fail with fail_status
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def seen(self) -> list[tuple[str, str]]:
        return [(e["run"]["runId"], e["eventType"]) for e in self.received]

    @classmethod
    @contextmanager
    def running(cls) -> Iterator[FakeMarquez]:
        server = cls()
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            yield server
        finally:
            server.shutdown()
            server.server_close()

    def wait_for(self, done: Callable[[list[dict]], bool], timeout: float = 120) -> list[dict]:
        """The events received once `done(events)` holds (a copy); fails with what arrived after `timeout`.
        A wait for asynchronous shipping, not a timing assertion."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                got = list(self.received)
            if done(got):
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"the events awaited did not arrive in {timeout} s; got "
                                     f"{[(e['job']['name'], e['eventType']) for e in got]}")
            time.sleep(0.2)


class _Handler(BaseHTTPRequestHandler):
    server: FakeMarquez

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        srv = self.server
        with srv.lock:
            srv.requests += 1
            if self.path != "/api/v1/lineage":
                status = 404
            elif srv.accept_before_failing is not None and len(srv.received) >= srv.accept_before_failing:
                status = srv.fail_status or 503
            elif srv.fail_status and srv.accept_before_failing is None:
                status = srv.fail_status
            else:
                event = json.loads(body)
                status = 400 if event.get("eventType") == srv.reject_event_type else 201
                if status == 201:
                    srv.received.append(event)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):  # keep test output clean
        pass
