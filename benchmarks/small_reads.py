"""Small governed reads in one warm session: CPU and wall per read, read connections opened per read.

    .venv/bin/python benchmarks/small_reads.py --reads 100 --rounds 3 --before 9769a9a

A scratch database with the adversarial corpus (tests/corpus/schema.sql), the corpus policy,
detection on (its default). One `GovernedSession` per contestant and round, warmed by two reads of
each statement (catalog loaded, detection verdicts cached, the shared ADBC database handle open),
then `--reads` reads of each statement in turn (`read_arrow`, 10 rows each): what a task making
many small lookups, or a service partition (bounds, then probe), does on one session. Per read:
CPU of this process (`time.process_time`, all threads) and wall, both for the whole governed read
(plan, binding check, read, mask, ledger entry); ADBC connections opened are counted by wrapping
`adbc_driver_manager.AdbcConnection` in the measuring process (every read connection is made
through that name, on the shared database handle).

`--before REF` runs the same measurement with REF's `lineage_guard/` (`git archive` to a temp folder,
first on PYTHONPATH, same interpreter and packages, its own LINEAGE_GUARD_HOME), interleaved with
this tree's round by round, so both see the same load. Each contestant runs in a fresh child process.
Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from plan_cost import export_tree  # the same `git archive` of REF's lineage_guard/

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "corpus"

KEY = secrets.token_hex(32)
STATEMENTS = {
    "10 rows, clear": "SELECT id, plan FROM customers WHERE id <= 10",
    "10 rows, one tokenized": "SELECT id, email FROM customers WHERE id <= 10",
}


def child(url: str, reads: int) -> dict:
    """One warm session, `reads` reads of each statement; medians per statement."""
    import adbc_driver_manager

    opened = [0]
    real = adbc_driver_manager.AdbcConnection

    def counting(*args, **kwargs):
        opened[0] += 1
        return real(*args, **kwargs)

    adbc_driver_manager.AdbcConnection = counting  # every read connection is made through this name
    import lineage_guard
    from lineage_guard import GovernedSession, Identity
    from lineage_guard.policy import parse_policy

    policy = parse_policy((CORPUS / "policy.yaml").read_text())
    out = {"tree": str(Path(lineage_guard.__file__).resolve().parent.parent), "statements": {}}
    with GovernedSession(url, policy, Identity("svc-training", "service"), "ai_training") as s:
        for _ in range(2):
            for sql in STATEMENTS.values():
                assert s.read_arrow(sql).num_rows == 10
        times: dict[str, list[tuple[float, float, int]]] = {name: [] for name in STATEMENTS}
        for _ in range(reads):
            for name, sql in STATEMENTS.items():
                before, c0, w0 = opened[0], time.process_time(), time.perf_counter()
                s.read_arrow(sql)
                times[name].append((time.process_time() - c0, time.perf_counter() - w0, opened[0] - before))
    out["opened"], out["reads"] = opened[0], (2 + reads) * len(STATEMENTS)   # the whole session, warm-up included
    for name, runs in times.items():
        out["statements"][name] = {
            "cpu_ms": statistics.median(c for c, _, _ in runs) * 1000,
            "wall_ms": statistics.median(w for _, w, _ in runs) * 1000,
            "connections": sum(n for _, _, n in runs) / len(runs),
            "reads_per_s": len(runs) / sum(w for _, w, _ in runs),
        }
    return out


def run_child(url: str, reads: int, home: str, tree: str | None) -> dict:
    env = dict(os.environ, LINEAGE_GUARD_HOME=home)
    env.setdefault("LINEAGE_GUARD_MASTER_KEY", KEY)   # a throwaway key for the tokenized column, never printed
    env["PYTHONPATH"] = os.pathsep.join(p for p in (tree or str(ROOT), os.environ.get("PYTHONPATH")) if p)
    proc = subprocess.run([sys.executable, __file__, "--child", "--url", url, "--reads", str(reads)],
                          env=env, capture_output=True, text=True, check=False, cwd=str(ROOT))
    if proc.returncode != 0:
        sys.exit(f"child failed ({'this tree' if tree is None else tree}):\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=100, help="reads of each statement per round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (a fresh process each)")
    parser.add_argument("--before", help="a git ref measured alongside, round by round (e.g. 9769a9a)")
    parser.add_argument("--url", default=os.environ.get("LINEAGE_GUARD_TEST_POSTGRES_URL")
                        or "postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.url, args.reads)))
        return

    import psycopg

    name = f"perf_reads_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = urlunsplit(urlsplit(args.url)._replace(path="/" + name))
    contestants = ["this tree"] + ([f"@{args.before}"] if args.before else [])
    results: dict[str, list[dict]] = {c: [] for c in contestants}
    load = os.getloadavg()[0]
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute((CORPUS / "schema.sql").read_text())
        with tempfile.TemporaryDirectory() as folder:
            tree = export_tree(args.before, folder) if args.before else None
            homes = {c: os.path.join(folder, f"home{i}") for i, c in enumerate(contestants)}
            for h in homes.values():
                os.makedirs(h)
            for r in range(args.rounds):
                order = contestants if r % 2 == 0 else contestants[::-1]
                for c in order:
                    results[c].append(run_child(url, args.reads, homes[c], tree if c != "this tree" else None))
    finally:
        with psycopg.connect(args.url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, check=False).stdout.strip()
    print(f"# warm session, {args.reads} reads of each statement per round, {args.rounds} interleaved rounds, "
          f"this tree = {head or '?'} (+ working tree), load average {load:.2f} before, {os.getloadavg()[0]:.2f} after")
    print("| statement | tree | CPU ms/read (median of round medians) | wall ms/read | reads/s | connections/read |")
    print("|---|---|---:|---:|---:|---:|")
    for stmt in STATEMENTS:
        for c in contestants:
            rows = [r["statements"][stmt] for r in results[c]]
            print(f"| {stmt} | {c} | {statistics.median(x['cpu_ms'] for x in rows):.2f} | "
                  f"{statistics.median(x['wall_ms'] for x in rows):.2f} | "
                  f"{statistics.median(x['reads_per_s'] for x in rows):.0f} | "
                  f"{statistics.median(x['connections'] for x in rows):.2f} |")
    for c in contestants:
        print(f"\n{c}: {statistics.median(r['opened'] for r in results[c]):.0f} read connections opened per session "
              f"of {results[c][0]['reads']} reads (median of rounds)", end="")
    print()
    if args.before:
        before = f"@{args.before}"
        for key, label in (("cpu_ms", "CPU"), ("wall_ms", "wall")):
            print(f"\nthis tree / {before}, {label} ms per read, per round:")
            for stmt in STATEMENTS:
                ratios = [a["statements"][stmt][key] / b["statements"][stmt][key]
                          for a, b in zip(results["this tree"], results[before], strict=True)]
                print(f"  {stmt}: " + ", ".join(f"{x:.2f}" for x in ratios))


if __name__ == "__main__":
    main()
