"""Per-identity limits on the service: concurrent streams, and rows / bytes / time per stream.

Example:
    >>> limiter = StreamLimiter(ServiceConfig(limits={"concurrent_streams": 1}))
    >>> with limiter.slot("svc-training"):
    ...     limiter.active("svc-training")
    1
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from ..errors import LineageGuardError
from .config import LimitsConfig, ServiceConfig


class LimitExceeded(LineageGuardError):
    """A per-identity limit stopped the call; the message names the limit and where it is set."""

    def __init__(self, message: str, retryable: bool = False):
        self.retryable = retryable
        super().__init__(message)


class StreamLimiter:
    """Counts open streams per identity; `slot` refuses one past `concurrent_streams`."""

    def __init__(self, config: ServiceConfig):
        self.config = config
        self._lock = threading.Lock()
        self._open: Counter[str] = Counter()

    def active(self, principal: str | None = None) -> int:
        with self._lock:
            return self._open[principal] if principal else sum(self._open.values())

    @contextmanager
    def slot(self, principal: str) -> Iterator[None]:
        limit = self.config.limits_for(principal).concurrent_streams
        with self._lock:
            if self._open[principal] >= limit:
                raise LimitExceeded(f"identity {principal!r} already has {limit} open stream(s), its limit "
                                    "(service.limits.concurrent_streams / identity_limits); retry when one ends",
                                    retryable=True)
            self._open[principal] += 1
        try:
            yield
        finally:
            with self._lock:
                self._open[principal] -= 1


class StreamBudget:
    """Rows, bytes and wall time of one stream against the identity's limits."""

    def __init__(self, principal: str, limits: LimitsConfig):
        self.principal = principal
        self.limits = limits
        self.deadline = time.monotonic() + limits.statement_timeout_s
        self.rows = 0
        self.bytes = 0

    def charge(self, rows: int, nbytes: int) -> None:
        self.rows += rows
        self.bytes += nbytes
        lim = self.limits
        if lim.max_rows is not None and self.rows > lim.max_rows:
            raise LimitExceeded(f"the result passed {lim.max_rows} rows, the limit of {self.principal!r} "
                                "(service.limits.max_rows); narrow the query or split it")
        if lim.max_bytes is not None and self.bytes > lim.max_bytes:
            raise LimitExceeded(f"the result passed {lim.max_bytes} bytes, the limit of {self.principal!r} "
                                "(service.limits.max_bytes); select fewer columns or rows")
        if time.monotonic() > self.deadline:
            raise LimitExceeded(f"the stream ran past {lim.statement_timeout_s:g} s, the statement timeout of "
                                f"{self.principal!r} (service.limits.statement_timeout_s)")
