"""Lineage overhead on the data path: what `LineageEmitter.start` + `.complete` cost per run.

The data path pays for building two events and writing them to the SQLite outbox;
shipping happens afterwards (background thread or `lineage flush`). This measures,
per run, in the same process and state folder:

    nothing            an empty call (timer floor)
    sqlite insert x2   two autocommitted INSERTs of a same-size JSON blob, WAL (the floor of "durable")
    build x2           build_event(START) + build_event(COMPLETE), no I/O
    outbox enqueue x2  Outbox.enqueue of two pre-built events (protocol checks + insert)
    emitter            LineageEmitter(ship="manual").start + .complete: build + outbox writes (the data-path cost)
    ship (off path)    flushing those two events to an HTTP endpoint on 127.0.0.1 (informational)

Run:
    .venv/bin/python benchmarks/lineage_overhead.py            # 300 runs
    .venv/bin/python benchmarks/lineage_overhead.py --runs 1000
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


class _Sink(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def median_us(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=300)
    args = ap.parse_args()

    home = tempfile.mkdtemp(prefix="lg_bench_lineage_")
    os.environ["LINEAGE_GUARD_HOME"] = home
    os.chdir(home)  # no stray openlineage.yml
    for var in [v for v in os.environ if v.startswith("OPENLINEAGE")]:
        del os.environ[var]

    from lineage_check import sample_run  # a realistic 5-column, 2-table run record

    from lineage_guard.lineage import LineageEmitter, Outbox, build_event

    runs = [sample_run() for _ in range(args.runs)]
    blob = json.dumps(build_event(runs[0], "COMPLETE"))
    db_path = Path(home) / "plain.sqlite"
    with sqlite3.connect(db_path) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)")

    def nothing(_run):
        pass

    plain = sqlite3.connect(db_path, isolation_level=None)
    plain.execute("PRAGMA synchronous=NORMAL")

    def sqlite_x2(_run):
        for _ in range(2):
            plain.execute("INSERT INTO t (body) VALUES (?)", (blob,))

    def build_x2(run):
        build_event(run, "START")
        build_event(run, "COMPLETE")

    emitter = LineageEmitter(ship="manual")
    box = emitter.outbox  # create the outbox file outside the timed part
    spare = Outbox(Path(home) / "spare.sqlite")
    prebuilt = [(build_event(r, "START"), build_event(r, "COMPLETE")) for r in (sample_run() for _ in runs)]

    def emit(run):
        emitter.start(run)
        emitter.complete(run)

    def outbox_x2(i):
        spare.enqueue(prebuilt[i][0])
        spare.enqueue(prebuilt[i][1])

    steps = [("nothing", nothing), ("sqlite insert x2", sqlite_x2), ("outbox enqueue x2 (pre-built)", outbox_x2),
             ("build x2", build_x2), ("emitter start+complete", emit)]
    results: dict[str, list[float]] = {name: [] for name, _ in steps}
    # Interleaved, so every step sees the same machine load (the box is shared).
    for i, run in enumerate(runs):
        for name, fn in steps:
            arg = i if fn is outbox_x2 else run
            t0 = time.perf_counter()
            fn(arg)
            results[name].append(time.perf_counter() - t0)
    assert box.counts()["queued"] == 2 * len(runs)

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    os.environ["OPENLINEAGE_URL"] = f"http://127.0.0.1:{server.server_address[1]}"
    shipper = LineageEmitter(ship="manual")
    ship_samples = []
    for _ in runs[: min(len(runs), 100)]:
        t0 = time.perf_counter()
        shipper.flush()   # first call ships the whole backlog: measured separately below
        ship_samples.append(time.perf_counter() - t0)
    backlog = ship_samples.pop(0)
    extra = [sample_run() for _ in range(min(len(runs), 100))]
    ship_samples = []
    for run in extra:
        emitter.start(run)
        emitter.complete(run)
        t0 = time.perf_counter()
        shipper.flush()
        ship_samples.append(time.perf_counter() - t0)
    server.shutdown()

    base = median_us(results["sqlite insert x2"])
    print(f"lineage overhead per run, median of {args.runs} runs (2 events, {len(blob)} bytes each)\n")
    print("| step | median µs/run | × sqlite insert x2 |")
    print("|---|---:|---:|")
    for name, samples in results.items():
        print(f"| {name} | {median_us(samples):.0f} | {median_us(samples) / base:.2f} |")
    print(f"| ship 2 events over HTTP (off the data path) | {median_us(ship_samples):.0f} | "
          f"{median_us(ship_samples) / base:.2f} |")
    print(f"\nbacklog flush: {args.runs * 2} events in {backlog:.2f} s")


if __name__ == "__main__":
    main()
