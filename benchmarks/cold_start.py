"""Cold start: a fresh process's first governed read of 10 rows (imports + session + plan + read + ledger).

    .venv/bin/python benchmarks/cold_start.py                      # this tree, 7 fresh processes
    .venv/bin/python benchmarks/cold_start.py --before <git ref>   # and that commit's lineage_guard, interleaved

What an Airflow or Dagster task process pays before its first row. Each run is a new interpreter
that imports `lineage_guard`, opens a `GovernedSession` and reads 10 masked rows (tokenize +
partial) from a scratch table; the parent times the whole process (wall, and CPU of the child from
`RUSAGE_CHILDREN`), and the child reports its phases. Bytecode is compiled first (a warm-up run
writes `__pycache__`; an installed wheel has it), so source compilation is not counted: this
machine's shell sets PYTHONDONTWRITEBYTECODE, which the runs here unset. A warm-up run also makes
the ledger and its signing key, so no run pays their one-time creation.

`--before REF` exports `lineage_guard/` of REF (`git archive`) to a temp folder and runs it with the
same interpreter and packages (`PYTHONPATH` first), alternating with this tree, so the two are
measured under the same load. Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
POLICY = """
version: 1
identities: {svc-bench: {kind: service, groups: [bench]}}
purposes: [benchmark]
classifications: {public.people.email: email, public.people.ssn: national_id}
rules:
  - {classifications: [email], action: mask, mask: {method: tokenize}}
  - {classifications: [national_id], action: mask, mask: {method: partial, params: {keep_last: 4}}}
detection: {enabled: false}
"""
TABLE = """
CREATE TABLE people AS
SELECT g AS id, 'user' || g || '@example.invalid' AS email, '900-12-' || lpad(g::text, 4, '0') AS ssn,
       timestamptz '2024-01-01' + g * interval '1 second' AS created_at
FROM generate_series(1, 1000) AS g
"""

CHILD = r"""
import json, os, sys, time
t0 = time.perf_counter()
from lineage_guard import GovernedSession, Identity
from lineage_guard.policy import parse_policy
import lineage_guard.session
t1 = time.perf_counter()
with GovernedSession(sys.argv[1], parse_policy(os.environ["LG_BENCH_POLICY"]), Identity("svc-bench"),
                     "benchmark") as s:
    t2 = time.perf_counter()
    table = s.read_arrow("SELECT id, email, ssn, created_at FROM people ORDER BY id LIMIT 10")
    t3 = time.perf_counter()
assert table.num_rows == 10 and table.column("email")[0].as_py().startswith("tok_")
print(json.dumps({"imports": t1 - t0, "session": t2 - t1, "first_read": t3 - t2, "where": lineage_guard.__file__}))
"""


def run_once(url: str, home: str, pythonpath: str | None) -> dict:
    env = dict(os.environ, LINEAGE_GUARD_HOME=home, LG_BENCH_POLICY=POLICY)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath + os.pathsep + env.get("PYTHONPATH", "")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, url], capture_output=True, text=True, env=env, check=False,
                          cwd=home)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"the cold-start run failed:\n{proc.stderr[-3000:]}")
    phases = json.loads(proc.stdout.strip().splitlines()[-1])
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall": wall, "cpu": cpu, **phases}


def export_tree(ref: str, folder: str) -> str:
    archive = os.path.join(folder, "before.tar")
    subprocess.run(["git", "-C", str(ROOT), "archive", "-o", archive, ref, "lineage_guard"], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(os.path.join(folder, "before"), filter="data")
    return os.path.join(folder, "before")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--before", help="a git ref whose lineage_guard/ to measure alongside, interleaved")
    parser.add_argument("--url", default=os.environ.get("LINEAGE_GUARD_BENCH_POSTGRES_URL")
                        or os.environ.get("LINEAGE_GUARD_TEST_POSTGRES_URL") or DEFAULT_URL)
    args = parser.parse_args()
    os.environ.setdefault("LINEAGE_GUARD_MASTER_KEY", secrets.token_hex(32))  # throwaway, never printed

    import psycopg

    name = f"perf_cold_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(args.url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = urlunsplit(urlsplit(args.url)._replace(path="/" + name))
    load = os.getloadavg()[0]
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(TABLE)
        with tempfile.TemporaryDirectory(prefix="perf_cold_") as folder:
            trees = {"this tree": None}
            if args.before:
                trees[f"before ({args.before})"] = export_tree(args.before, folder)
            homes = {}
            for label, path in trees.items():
                homes[label] = os.path.join(folder, f"home_{len(homes)}")
                os.makedirs(homes[label])
                run_once(url, homes[label], path)  # warm-up: bytecode, ledger, signing key
            results: dict[str, list[dict]] = {label: [] for label in trees}
            for _ in range(args.runs):
                for label, path in trees.items():
                    results[label].append(run_once(url, homes[label], path))
    finally:
        with psycopg.connect(args.url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(f"\n# cold start: fresh process -> first governed read of 10 rows, median of {args.runs} runs each "
          f"(interleaved); load average {load:.2f} before, {os.getloadavg()[0]:.2f} after; python "
          f"{sys.version.split()[0]}")
    print("| tree | process wall s | process CPU s | imports s | session s | first read s |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, runs in results.items():
        med = {k: statistics.median(r[k] for r in runs) for k in ("wall", "cpu", "imports", "session", "first_read")}
        print(f"| {label} | {med['wall']:.2f} | {med['cpu']:.2f} | {med['imports']:.2f} | {med['session']:.3f} | "
              f"{med['first_read']:.2f} |")
    for label, runs in results.items():
        print(f"{label}: lineage_guard from {runs[0]['where']}")


if __name__ == "__main__":
    main()
