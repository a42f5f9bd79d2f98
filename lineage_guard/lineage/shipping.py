"""Ship the outbox with the openlineage-python client, configured the standard way.

The client is configured exactly as its docs say: `OPENLINEAGE_URL` (+
`OPENLINEAGE_ENDPOINT`, `OPENLINEAGE_API_KEY`), an `openlineage.yml`
(`OPENLINEAGE_CONFIG`, the working directory, `~/.openlineage/`) or
`OPENLINEAGE__TRANSPORT__*` variables; `OPENLINEAGE_DISABLED=true` turns lineage
off. With none of these, events stay in the outbox (the client's own fallback
would print every event to the console).

Order and exactly-once: one flusher at a time (a file lock next to the outbox),
oldest first, a row is marked shipped only after the transport returned, and the
first failure stops the flush so later events never overtake it. A crash between
the backend accepting an event and the mark can resend that one event (at least
once); nothing is ever dropped.

Example:
    >>> ship_pending(Outbox())          # doctest: +SKIP
    ShipResult(shipped=2, remaining=0, error=None)
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from .events import event_from_dict
from .outbox import Outbox

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: the in-process lock still orders this process's flushes
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)
_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def _process_lock(outbox: Outbox) -> threading.Lock:
    # flock orders processes; threads of one process share the open-file lock, so they need their own.
    with _locks_guard:
        return _locks.setdefault(str(outbox.path.resolve()), threading.Lock())


def lineage_disabled() -> bool:
    """True when `OPENLINEAGE_DISABLED=true`: no event is written or shipped."""
    return os.environ.get("OPENLINEAGE_DISABLED", "").strip().lower() == "true"


def _yaml_config_path() -> Path | None:
    # The same places, in the same order, as OpenLineageClient._find_yaml_config_path.
    for candidate in (os.environ.get("OPENLINEAGE_CONFIG"), Path.cwd() / "openlineage.yml",
                      Path("~/.openlineage/openlineage.yml").expanduser()):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def transport_configured() -> bool:
    """Whether the user configured an OpenLineage transport (URL, yml or OPENLINEAGE__TRANSPORT__TYPE)."""
    if os.environ.get("OPENLINEAGE_URL") or os.environ.get("OPENLINEAGE__TRANSPORT__TYPE"):
        return True
    path = _yaml_config_path()
    if path is None:
        return False
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        log.warning("lineage: cannot read the OpenLineage config file %s; events stay queued", path)
        return False
    return isinstance(config, dict) and bool((config.get("transport") or {}).get("type"))


def make_client():
    """An `OpenLineageClient` from the standard configuration, or None when none is configured/disabled."""
    if lineage_disabled() or not transport_configured():
        return None
    from openlineage.client import OpenLineageClient

    return OpenLineageClient()


@dataclass(frozen=True)
class ShipResult:
    shipped: int
    remaining: int
    error: str | None = None       # value-free: exception class and HTTP status, never a URL or body
    busy: bool = False             # another thread or process was flushing this outbox; nothing was tried


def _describe(exc: BaseException) -> tuple[str, int | None]:
    status = getattr(getattr(exc, "response", None), "status_code", None)
    return (f"{type(exc).__name__} (HTTP {status})" if status else type(exc).__name__), status


@contextmanager
def _flush_lock(outbox: Outbox) -> Iterator[bool]:
    """Hold the outbox's flush lock, or yield False at once if another flusher has it."""
    lock = _process_lock(outbox)
    if not lock.acquire(blocking=False):
        yield False
        return
    try:
        if fcntl is None:
            yield True
            return
        with open(outbox.path.with_name(outbox.path.name + ".lock"), "a+") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
    finally:
        lock.release()


BATCH = 200


def ship_pending(outbox: Outbox, client=None) -> ShipResult:
    """Ship queued events oldest first until none is left or the first failure. Never raises on a backend error."""
    client = client if client is not None else make_client()
    if client is None:
        return ShipResult(0, outbox.counts()["queued"], None)
    shipped = 0
    with _flush_lock(outbox) as got_it:
        if not got_it:  # another thread or process is shipping this outbox right now
            return ShipResult(0, outbox.counts()["queued"], None, busy=True)
        # Re-read until empty: other processes may enqueue while this flush runs.
        while batch := outbox.pending(BATCH):
            result = _ship_batch(outbox, client, batch)
            shipped += result.shipped
            if result.error:
                return ShipResult(shipped, result.remaining, result.error)
    return ShipResult(shipped, outbox.counts()["queued"], None)


def _ship_batch(outbox: Outbox, client, batch) -> ShipResult:
    shipped = 0
    for item in batch:
        try:
            client.emit(event_from_dict(item.event))
        except Exception as exc:  # noqa: BLE001 - any transport failure keeps the event queued
            error, status = _describe(exc)
            if status is not None and 400 <= status < 500 and status not in (408, 429):
                outbox.mark_rejected(item.seq, error)
                log.warning("lineage: the backend rejected %s event %s (%s); set aside, see "
                            "`lineage-guard lineage status`", item.event_type, item.run_id, error)
                continue
            outbox.mark_failed(item.seq, error)
            remaining = outbox.counts()["queued"]
            log.warning("lineage: shipping stopped (%s); %d event(s) stay queued for "
                        "`lineage-guard lineage flush` or the next run", error, remaining)
            return ShipResult(shipped, remaining, error)
        outbox.mark_shipped(item.seq)
        shipped += 1
    return ShipResult(shipped, 0, None)
