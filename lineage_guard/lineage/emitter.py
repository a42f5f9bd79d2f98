"""`LineageEmitter`: what the session calls at step 10. Enqueue first, ship after, never block the read.

    emitter = LineageEmitter()
    emitter.start(run)        # before the read: START goes to the outbox (a local SQLite insert)
    ...                       # read, mask, write, audit
    emitter.complete(run)     # or emitter.fail(run): the terminal event, same inputs/outputs
    emitter.close()           # optional: wait for background shipping (e.g. before a test asserts)

Shipping happens in a background thread (default), inline, or only on
`flush()` / `lineage-guard lineage flush`. A backend that is down or answers 5xx
never fails the run: events stay queued and the next run or flush ships them,
in order.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from typing import Literal

from ..run import RunRecord
from .events import build_event
from .outbox import Outbox
from .shipping import ShipResult, lineage_disabled, make_client, ship_pending

log = logging.getLogger(__name__)
_BUSY_RETRIES, _BUSY_WAIT_S = 50, 0.2
ShipMode = Literal["background", "inline", "manual"]
_live: weakref.WeakSet[LineageEmitter] = weakref.WeakSet()


class LineageEmitter:
    """Writes a run's START and terminal events to the durable outbox and ships them.

    `ship`: "background" (default; a worker thread ships after each enqueue),
    "inline" (ship before returning; errors are logged, never raised) or "manual"
    (only `flush()`). `integration`/`job_type` name the caller in the jobType facet
    (default LINEAGE_GUARD / QUERY, or TASK when the run has a parent).

    Example:
        >>> emitter = LineageEmitter(ship="manual")
        >>> emitter.start(run); emitter.complete(run)          # doctest: +SKIP
        >>> emitter.flush()                                      # doctest: +SKIP
        2
    """

    def __init__(self, outbox: Outbox | None = None, *, ship: ShipMode = "background",
                 integration: str | None = None, job_type: str | None = None, client=None):
        if ship not in ("background", "inline", "manual"):
            raise ValueError(f"ship must be background, inline or manual, got {ship!r}")
        self._outbox = outbox
        self.ship = ship
        self.integration, self.job_type = integration, job_type
        self._client = client
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._dirty = False
        self.last_result: ShipResult | None = None
        _live.add(self)

    @property
    def outbox(self) -> Outbox:
        if self._outbox is None:  # resolved late so LINEAGE_GUARD_HOME set after construction still counts
            self._outbox = Outbox()
        return self._outbox

    # -- the run protocol -------------------------------------------------------------------------
    def start(self, run: RunRecord) -> None:
        """Queue the run's START event (call before reading)."""
        if lineage_disabled():
            return
        self.outbox.enqueue(self._build(run, "START"))
        self._shipped_later()

    def complete(self, run: RunRecord) -> None:
        """Queue the COMPLETE event (full inputs/outputs, outputStatistics)."""
        self._end(run, "COMPLETE")

    def fail(self, run: RunRecord) -> None:
        """Queue the FAIL event with an errorMessage facet built from the run's sanitized error."""
        self._end(run, "FAIL")

    def abort(self, run: RunRecord) -> None:
        """Queue an ABORT event (the run was cancelled)."""
        self._end(run, "ABORT")

    def _end(self, run: RunRecord, event_type: str) -> None:
        if lineage_disabled():
            return
        if not self.outbox.has(run.run_id, "START"):
            # A run stopped before its START (e.g. denied at plan time) still gets exactly one START.
            self.outbox.enqueue(self._build(run, "START"))
        self.outbox.enqueue(self._build(run, event_type))
        self._shipped_later()

    def send(self, events: list[dict]) -> None:
        """Queue ready-made events of one run (START first, then its terminal event) and ship them.

        For runs that are not governed reads, e.g. an attested training step (`lineage_guard.attest`).
        """
        if lineage_disabled():
            return
        for event in events:
            self.outbox.enqueue(event)
        self._shipped_later()

    def _build(self, run: RunRecord, event_type: str) -> dict:
        return build_event(run, event_type, integration=self.integration, job_type=self.job_type)

    # -- shipping ---------------------------------------------------------------------------------
    def flush(self) -> int:
        """Ship queued events now (oldest first, stop at the first failure); return how many were shipped."""
        if self._client is None:
            self._client = make_client()
        result = ship_pending(self.outbox, self._client)
        self.last_result = result
        return result.shipped

    def _shipped_later(self) -> None:
        if self.ship == "manual":
            return
        if self.ship == "inline":
            self._flush_quietly()
            return
        with self._lock:
            self._dirty = True
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name="lineage-guard-outbox", daemon=True)
                self._worker.start()

    def _work(self) -> None:
        busy_waits = 0
        while True:
            with self._lock:
                if not self._dirty:
                    self._worker = None
                    return
                self._dirty = False
            self._flush_quietly()
            result = self.last_result
            if result is not None and result.busy and busy_waits < _BUSY_RETRIES:
                # Another flusher (thread or process) may have read the queue before our event
                # landed: try again shortly rather than leave it for the next run.
                busy_waits += 1
                time.sleep(_BUSY_WAIT_S)
                with self._lock:
                    self._dirty = True

    def _flush_quietly(self) -> None:
        try:
            self.flush()
        except Exception as exc:  # noqa: BLE001 - shipping must never fail the data path
            log.warning("lineage: shipping failed (%s); events stay queued", type(exc).__name__)

    def close(self, timeout: float | None = 5.0) -> None:
        """Wait for background shipping to finish, at most `timeout` seconds (None: no limit).

        Bounded by default: a slow backend must not hold the caller; whatever is
        not shipped stays queued for the next run or `lineage-guard lineage flush`.
        """
        worker = self._worker
        if worker is not None:
            worker.join(timeout)


@atexit.register
def _drain_on_exit() -> None:
    # Daemon threads die at exit; give in-flight shipping a moment so a row is not left
    # posted-but-unmarked (which would resend it once on the next flush).
    for emitter in list(_live):
        emitter.close(timeout=2)
