"""How many refusals of unverified callers the ledger records one by one, per client address.

Every refused call leaves a ledger entry, and a caller needs no credential to be refused: without a
bound, anyone who can reach the port writes signed entries as fast as it can send junk (77 a second
from one client in the red-team round, up to 9 KB each with a long made-up `iss`), filling the
ledger's disk and burying the entries auditors look for. So per client host a token bucket
(`BURST` entries, refilled at `PER_SECOND`) decides which refusals are recorded one by one; the ones
past it are counted, and the next recorded refusal from that host says how many it stands for.
The refusal itself always stands: this bounds the record, never the check. Verified callers are
not limited here (each of their calls is attributable and is recorded anyway).

Example:
    >>> gate = RefusalGate(burst=2, per_second=0.0)
    >>> [gate.admit("ipv4:10.0.0.1:5000") for _ in range(3)]
    [(True, 0), (True, 0), (False, 0)]
"""

from __future__ import annotations

import threading
import time

BURST = 100
PER_SECOND = 1.0
MAX_HOSTS = 10_000   # past this many hosts the fullest buckets are forgotten (memory stays bounded)


def client_host(peer: str | None) -> str:
    """gRPC's peer (`ipv4:1.2.3.4:5000`, `ipv6:[::1]:5000`) without its port: one bucket per host."""
    text = peer or "-"
    host, sep, port = text.rpartition(":")
    return host if sep and port.isdigit() else text


class RefusalGate:
    """A token bucket per client host; `admit` says whether to record this refusal and how many were skipped."""

    def __init__(self, burst: int = BURST, per_second: float = PER_SECOND):
        self.burst = burst
        self.per_second = per_second
        self._lock = threading.Lock()
        self._buckets: dict[str, list[float]] = {}   # host -> [tokens, last refill, suppressed since last record]

    def admit(self, peer: str | None) -> tuple[bool, int]:
        """(record it?, refusals from this host not recorded since its last recorded one)."""
        host = client_host(peer)
        now = time.monotonic()
        with self._lock:
            bucket = self._buckets.get(host)
            if bucket is None:
                if len(self._buckets) >= MAX_HOSTS:
                    self._forget_full(now)
                bucket = self._buckets[host] = [float(self.burst), now, 0]
            bucket[0] = min(float(self.burst), bucket[0] + (now - bucket[1]) * self.per_second)
            bucket[1] = now
            if bucket[0] < 1:
                bucket[2] += 1
                return False, 0
            bucket[0] -= 1
            skipped, bucket[2] = int(bucket[2]), 0
            return True, skipped

    def _forget_full(self, now: float) -> None:
        # Hosts whose bucket has refilled lose nothing by being forgotten (they start full again);
        # a skipped count still pending is kept.
        for host in [h for h, b in self._buckets.items()
                     if not b[2] and b[0] + (now - b[1]) * self.per_second >= self.burst]:
            del self._buckets[host]
        if len(self._buckets) >= MAX_HOSTS:   # all busy: drop the oldest half rather than grow
            for host in sorted(self._buckets, key=lambda h: self._buckets[h][1])[:MAX_HOSTS // 2]:
                del self._buckets[host]
