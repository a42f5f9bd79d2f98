"""Scale-out of one governed read: 1, 2 and 4 partitions fetched by separate worker processes.

    .venv/bin/python benchmarks/scale_out.py                      # 1,000,000 rows, median of 3
    .venv/bin/python benchmarks/scale_out.py --rows 300000 --repeats 3

The driver plans once (`RemoteSession.flight_info(..., partitions=N)`, a real `lineage-guard serve`
subprocess over TLS) and hands each endpoint, serialized, to one of N worker processes (warm, each
with its own client and the caller's API token, as Spark/Ray tasks would); each worker fetches its
endpoint (`RemoteSession.fetch`). Per partition count, interleaved, median of `--repeats`:
wall seconds (plan + all fetches), rows/s, and CPU seconds of the workers (their own process times
around the fetch), of the server process (psutil) and of the PostgreSQL backends serving this
benchmark's database (sampled from pg_stat_activity every 20 ms; a backend's last ~20 ms can be
missed, so that column is a slight under-estimate). Also the planning time (GetFlightInfo) alone.
Needs a PostgreSQL at $LINEAGE_GUARD_TEST_POSTGRES_URL (a scratch database is made and dropped).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import pathlib
import statistics
import threading
import time
from concurrent.futures import ProcessPoolExecutor

import psutil
from _served import served_people

QUERY = "SELECT id, full_name, email, ssn, plan FROM people"
_client = None


def _worker_init(url: str, token: str, pem: bytes) -> None:
    global _client
    from lineage_guard.client import connect

    _client = connect(url, purpose="ai_training", token=token, tls_root_certs=pem)


def _fetch(blob: bytes) -> tuple[int, float]:
    """In a worker: fetch one serialized endpoint; its rows and this process's CPU seconds for it."""
    from pyarrow import flight

    t0 = os.times()
    table, _receipt = _client.fetch(flight.FlightEndpoint.deserialize(blob))
    t1 = os.times()
    return table.num_rows, (t1.user - t0.user) + (t1.system - t0.system)


def _warm(_: int) -> int:
    _client.read_arrow("SELECT id FROM people WHERE id = 1")
    return os.getpid()


class PgCpu:
    """CPU seconds of the PostgreSQL backends connected to one database, sampled while it runs."""

    def __init__(self, base_url: str, database: str):
        import psycopg

        self._conn = psycopg.connect(base_url, autocommit=True)
        self._database = database
        self._seen: dict[int, tuple[psutil.Process, float, float]] = {}   # pid -> (proc, first, last)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            pids = [r[0] for r in self._conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (self._database,)).fetchall()]
            for pid in pids:
                try:
                    proc, first, _ = self._seen.get(pid) or (psutil.Process(pid), None, None)
                    times = proc.cpu_times()
                    now = times.user + times.system
                    self._seen[pid] = (proc, now if first is None else first, now)
                except psutil.Error:
                    pass
            self._stop.wait(0.02)

    def __enter__(self) -> PgCpu:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def seconds(self) -> float:
        # A backend first seen mid-read already had CPU: count from its first sample (slight under-estimate).
        return sum(last - first for _, first, last in self._seen.values())

    def close(self) -> None:
        self._conn.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--partitions", type=int, nargs="+", default=[1, 2, 4])
    args = ap.parse_args()

    from pyarrow import flight

    from lineage_guard.client import connect
    from lineage_guard.service import flightsql as fs

    with served_people(args.rows, "split") as world:
        tls, token, server, server_proc = world.tls, world.token, world.server, world.server_proc
        driver = connect(server.url, purpose="ai_training", token=token, tls_root_certs=tls.pem)
        descriptor = flight.FlightDescriptor.for_command(fs.pack(fs.MESSAGES.CommandStatementQuery(query=QUERY)))
        most = max(args.partitions)
        spawn = multiprocessing.get_context("spawn")   # no fork of a process holding gRPC threads
        with ProcessPoolExecutor(most, mp_context=spawn, initializer=_worker_init,
                                 initargs=(server.url, token, tls.pem)) as pool:
            list(pool.map(_warm, range(most * 2)))
            results: dict[int, list[tuple[float, float, float, float, float]]] = {n: [] for n in args.partitions}
            for _ in range(args.repeats + 1):          # the first round warms the server's paths, not counted
                for parts in args.partitions:
                    pg = PgCpu(world.base_url, world.database)
                    s0 = server_proc.cpu_times()
                    with pg:
                        t0 = time.perf_counter()
                        info = driver.flight_info(descriptor, partitions=parts)
                        planned = time.perf_counter() - t0
                        done = list(pool.map(_fetch, [e.serialize() for e in info.endpoints]))
                        wall = time.perf_counter() - t0
                    s1 = server_proc.cpu_times()
                    pg.close()
                    rows = sum(r for r, _ in done)
                    assert rows == args.rows, (parts, rows)
                    results[parts].append((wall, planned, sum(c for _, c in done),
                                           (s1.user - s0.user) + (s1.system - s0.system), pg.seconds()))
            for parts in args.partitions:
                results[parts] = results[parts][1:]
        load = pathlib.Path("/proc/loadavg").read_text().split()[:3]
        print(f"# {args.rows:,} rows, `{QUERY}`, workers = partitions (separate processes), median of "
              f"{args.repeats}; {os.cpu_count()} cores; load average {' '.join(load)} at the end")
        print("| partitions | wall s | plan s | rows/s | vs 1 | workers CPU s | server CPU s | PostgreSQL CPU s |"
              " CPU us/row (all) |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        first = None
        for parts in args.partitions:
            med = [statistics.median(r[i] for r in results[parts]) for i in range(5)]
            wall, planned, wcpu, scpu, pcpu = med
            first = first or wall
            total = (wcpu + scpu + pcpu) / args.rows * 1e6
            print(f"| {parts} | {wall:.2f} | {planned:.3f} | {args.rows / wall:,.0f} | {first / wall:.2f}x | "
                  f"{wcpu:.2f} | {scpu:.2f} | {pcpu:.2f} | {total:.2f} |")
        driver.close()


if __name__ == "__main__":
    main()
