"""Per-plan cost on a warm session: plans per second, CPU ms per plan, connections opened per plan.

    .venv/bin/python benchmarks/plan_cost.py --plans 100 --rounds 3 --before a0d3564

A scratch database with the adversarial corpus (tests/corpus/schema.sql + schema_extras.sql), the
corpus policy plus a row filter on orders, detection on (its default). One `GovernedSession` per
contestant and round, warmed by planning each statement twice (catalog loaded, detection verdicts
cached), then `--plans` plans of each statement in turn: what a task or the service does for every
call after its first. Per plan: CPU of this process (`time.process_time`) and wall; connections
opened are counted by wrapping `psycopg.connect` in the measuring process (the plan path opens
psycopg connections only; ADBC is for reads).

`--before REF` runs the same measurement with REF's `lineage_guard/` (`git archive` to a temp folder,
first on PYTHONPATH, same interpreter and packages, its own LINEAGE_GUARD_HOME), interleaved with
this tree's round by round, so both see the same load. Each contestant runs in a fresh child process.
Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
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
CORPUS = ROOT / "tests" / "corpus"

STATEMENTS = {
    "corpus join": "SELECT c.id, c.email, c.plan, o.amount FROM customers c JOIN orders o ON o.customer_id = c.id",
    "point lookup, row-filtered": "SELECT id, amount, created_at FROM orders WHERE id = 7",
    "view read": "SELECT id, contact, plan FROM v_customer_contact",
}

ROW_FILTER = """
row_filters:
  - {name: early-customers, table: public.orders, groups: [training-jobs], purposes: [ai_training],
     predicate: "customer_id <= 40"}
"""


def child(url: str, plans: int) -> dict:
    """One warm session, `plans` plans of each statement; medians per statement."""
    import psycopg

    opened = [0]
    real_connect = psycopg.connect

    def counting_connect(*args, **kwargs):
        opened[0] += 1
        return real_connect(*args, **kwargs)

    psycopg.connect = counting_connect  # every plan-path connection is made through this name
    import lineage_guard
    from lineage_guard import GovernedSession, Identity
    from lineage_guard.policy import parse_policy

    policy = parse_policy((CORPUS / "policy.yaml").read_text() + ROW_FILTER)
    out = {"tree": str(Path(lineage_guard.__file__).resolve().parent.parent), "statements": {}}
    with GovernedSession(url, policy, Identity("svc-training", "service"), "ai_training") as s:
        for _ in range(2):
            for sql in STATEMENTS.values():
                s.plan(sql)
        times: dict[str, list[tuple[float, float, int]]] = {name: [] for name in STATEMENTS}
        for _ in range(plans):
            for name, sql in STATEMENTS.items():
                before, c0, w0 = opened[0], time.process_time(), time.perf_counter()
                s.plan(sql)
                times[name].append((time.process_time() - c0, time.perf_counter() - w0, opened[0] - before))
    for name, runs in times.items():
        out["statements"][name] = {
            "cpu_ms": statistics.median(c for c, _, _ in runs) * 1000,
            "wall_ms": statistics.median(w for _, w, _ in runs) * 1000,
            "connections": sum(n for _, _, n in runs) / len(runs),
            "plans_per_s": len(runs) / sum(w for _, w, _ in runs),
        }
    return out


def export_tree(ref: str, folder: str) -> str:
    """`lineage_guard/` of git REF, extracted to a folder to put first on PYTHONPATH."""
    archive = os.path.join(folder, "before.tar")
    subprocess.run(["git", "-C", str(ROOT), "archive", "-o", archive, ref, "lineage_guard"], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(os.path.join(folder, "before"), filter="data")
    os.remove(archive)
    return os.path.join(folder, "before")


def run_child(url: str, plans: int, home: str, tree: str | None) -> dict:
    env = dict(os.environ, LINEAGE_GUARD_HOME=home)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (tree or str(ROOT), os.environ.get("PYTHONPATH")) if p)
    proc = subprocess.run([sys.executable, __file__, "--child", "--url", url, "--plans", str(plans)],
                          env=env, capture_output=True, text=True, check=False, cwd=str(ROOT))
    if proc.returncode != 0:
        sys.exit(f"child failed ({'this tree' if tree is None else tree}):\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plans", type=int, default=100, help="plans of each statement per round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (a fresh process each)")
    parser.add_argument("--before", help="a git ref measured alongside, round by round (e.g. a0d3564)")
    parser.add_argument("--url", default=os.environ.get("LINEAGE_GUARD_TEST_POSTGRES_URL")
                        or "postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.url, args.plans)))
        return

    import psycopg

    name = f"perf_plan_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = urlunsplit(urlsplit(args.url)._replace(path="/" + name))
    contestants = ["this tree"] + ([f"@{args.before}"] if args.before else [])
    results: dict[str, list[dict]] = {c: [] for c in contestants}
    load = os.getloadavg()[0]
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute((CORPUS / "schema.sql").read_text())
            conn.execute((CORPUS / "schema_extras.sql").read_text())
        with tempfile.TemporaryDirectory() as folder:
            tree = export_tree(args.before, folder) if args.before else None
            homes = {c: os.path.join(folder, f"home{i}") for i, c in enumerate(contestants)}
            for h in homes.values():
                os.makedirs(h)
            for r in range(args.rounds):
                order = contestants if r % 2 == 0 else contestants[::-1]
                for c in order:
                    results[c].append(run_child(url, args.plans, homes[c], tree if c != "this tree" else None))
    finally:
        with psycopg.connect(args.url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, check=False).stdout.strip()
    print(f"# warm session, {args.plans} plans of each statement per round, {args.rounds} interleaved rounds, "
          f"this tree = {head or '?'} (+ working tree), load average {load:.2f} before, {os.getloadavg()[0]:.2f} after")
    print("| statement | tree | CPU ms/plan (median of round medians) | wall ms/plan | plans/s | connections/plan |")
    print("|---|---|---:|---:|---:|---:|")
    for stmt in STATEMENTS:
        for c in contestants:
            rows = [r["statements"][stmt] for r in results[c]]
            print(f"| {stmt} | {c} | {statistics.median(x['cpu_ms'] for x in rows):.2f} | "
                  f"{statistics.median(x['wall_ms'] for x in rows):.2f} | "
                  f"{statistics.median(x['plans_per_s'] for x in rows):.0f} | "
                  f"{statistics.median(x['connections'] for x in rows):.2f} |")
    if args.before:
        before = f"@{args.before}"
        print(f"\nthis tree / {before}, CPU ms per plan, per round:")
        for stmt in STATEMENTS:
            ratios = [a["statements"][stmt]["cpu_ms"] / b["statements"][stmt]["cpu_ms"]
                      for a, b in zip(results["this tree"], results[before], strict=True)]
            print(f"  {stmt}: " + ", ".join(f"{x:.2f}" for x in ratios))


if __name__ == "__main__":
    main()
