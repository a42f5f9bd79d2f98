"""Bounded waits on the service: no Flight call of the thin client waits forever for the next message.

Two mechanisms, because they catch different faults:

- HTTP/2 keepalive (`keepalive_options`): while a call is open the client pings the server every
  `keepalive_s`; a ping unanswered within the ack timeout closes the connection and the call fails
  UNAVAILABLE. This is what notices a *dead path*: a link or NAT entry that drops packets, a peer host
  gone, a proxy that stopped forwarding without closing. TCP alone never notices those while the
  client only waits to receive (nothing unacknowledged is in flight), so the wait was unbounded.
- An idle timeout (`IdleWatch`): a stream whose next message does not arrive within `timeout_s` is
  cancelled and ends in `Stalled`. This catches a *live but silent* path that answers pings (an
  HTTP/2-terminating proxy in front of a stuck server). It bounds the gap between messages, never
  the whole stream: an honest multi-hour stream with data flowing is never cut.

One daemon thread serves every armed wait of the process (`_Watchdog`), so a stream costs no thread
of its own and an abandoned one leaks nothing.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from ..timeouts import SERVICE_KEEPALIVE_S as DEFAULT_KEEPALIVE_S
from ..timeouts import SERVICE_TIMEOUT_S as DEFAULT_TIMEOUT_S

T = TypeVar("T")

# DEFAULT_KEEPALIVE_S: a ping every minute while a call is open. The stock gRPC server (lineage-guard
# serve, through pyarrow, cannot change it) accepts a data-less ping at most every 5 minutes with 2
# strikes, so a wait of more than ~4 minutes with no data sent gets a GOAWAY "too_many_pings": the open
# stream still completes on that connection (measured) and the next call opens a new one.
KEEPALIVE_ACK_S = 20.0     # gRPC's own default wait for a keepalive ping's answer

__all__ = ["DEFAULT_KEEPALIVE_S", "DEFAULT_TIMEOUT_S", "IdleWatch", "Stalled", "keepalive_options", "opened"]


class Stalled(Exception):
    """No message from the service within the idle timeout; the call was cancelled."""

    def __init__(self, waited_s: float):
        super().__init__(f"no message from the service for {waited_s:g} s")
        self.waited_s = waited_s


def keepalive_options(keepalive_s: float | None) -> list[tuple[str, int]]:
    """gRPC channel arguments for HTTP/2 keepalive pings while a call is open (none for `None`)."""
    if keepalive_s is None:
        return []
    if keepalive_s <= 0:
        raise ValueError("keepalive_s must be positive seconds, or None for no keepalive")
    every_ms = int(keepalive_s * 1000)
    ack_ms = int(min(KEEPALIVE_ACK_S * 1000, every_ms))
    return [
        ("grpc.keepalive_time_ms", every_ms),
        ("grpc.keepalive_timeout_ms", ack_ms),
        # Any unanswered ping, not only a keepalive one: gRPC sends no keepalive ping while another (its
        # flow-control BDP probe) is in flight, and waits 60 s for that one by default.
        ("grpc.http2.ping_timeout_ms", ack_ms),
        # Ping only while a call is open: an idle pooled session would earn strikes on a stock server.
        ("grpc.keepalive_permit_without_calls", 0),
        # A DoGet client sends no data after its request; without 0 gRPC stops pinging after 2 pings.
        ("grpc.http2.max_pings_without_data", 0),
    ]


class _Watchdog:
    """One daemon thread calling each armed wait's `on_expiry` once its deadline passes."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int]] = []
        self._armed: dict[int, Callable[[], None]] = {}
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None

    def arm(self, timeout_s: float, on_expiry: Callable[[], None]) -> int:
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="lineage-guard-idle-watch", daemon=True)
                self._thread.start()
            token = next(self._ids)
            self._armed[token] = on_expiry
            heapq.heappush(self._heap, (time.monotonic() + timeout_s, token))
            self._cond.notify()
            return token

    def disarm(self, token: int) -> None:
        with self._cond:
            self._armed.pop(token, None)   # its heap entry is skipped when it comes up

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._heap and self._heap[0][1] not in self._armed:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                deadline, token = self._heap[0]
                left = deadline - time.monotonic()
                if left > 0:
                    self._cond.wait(left)
                    continue
                heapq.heappop(self._heap)
                on_expiry = self._armed.pop(token)
            try:
                on_expiry()
            except Exception:  # noqa: BLE001, S110 - a failed cancel must not stop the watch of the others
                pass


_WATCHDOG = _Watchdog()


class IdleWatch:
    """Bound each wait of one stream: `wait(fn)` runs `fn` (a blocking read or write); if it has not
    returned within `timeout_s`, `cancel()` is called (it makes `fn` return with an error) and `wait`
    raises `Stalled` instead of that error. `timeout_s=None`: no bound (keepalive still applies)."""

    def __init__(self, timeout_s: float | None, cancel: Callable[[], None]):
        self._timeout = timeout_s
        self._cancel = cancel
        self.fired = False

    def _expire(self) -> None:
        self.fired = True
        self._cancel()

    def wait(self, fn: Callable[[], T]) -> T:
        if self.fired:
            raise Stalled(self._timeout or 0)
        if self._timeout is None:
            return fn()
        token = _WATCHDOG.arm(self._timeout, self._expire)
        try:
            result = fn()
        except BaseException:
            _WATCHDOG.disarm(token)
            if self.fired:
                raise Stalled(self._timeout) from None
            raise
        _WATCHDOG.disarm(token)
        if self.fired:   # cancelled just as the message arrived: the stream is cancelled all the same
            raise Stalled(self._timeout)
        return result


def opened(timeout_s: float | None, open_call: Callable[[], T], abandon: Callable[[T], Any]) -> T:
    """`open_call()` (a DoGet, which returns only once the first message arrived) bounded by `timeout_s`.

    Flight offers no handle to cancel a call before it returns, so it runs on a helper thread: if it
    has not returned in time, `Stalled` is raised here and the late result, if one ever comes (the
    keepalive fails a dead connection within a minute or so), is handed to `abandon` (which cancels it)."""
    if timeout_s is None:
        return open_call()
    done = threading.Event()
    lock = threading.Lock()
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            value = open_call()
        except BaseException as exc:  # noqa: BLE001 - raised on the waiting thread
            with lock:
                box["error"] = exc
        else:
            with lock:
                late = box.get("gave_up", False)
                box["value"] = value
            if late:
                abandon(value)
        done.set()

    threading.Thread(target=run, name="lineage-guard-open", daemon=True).start()
    if not done.wait(timeout_s):
        with lock:
            if "value" not in box and "error" not in box:
                box["gave_up"] = True
                raise Stalled(timeout_s)
    if "error" in box:
        raise box["error"]
    return box["value"]
