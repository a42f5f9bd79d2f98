"""Warm step overhead in service mode: a governed Airflow task / Dagster asset vs a plain one.

    .venv/bin/python benchmarks/service_steps.py                      # 1,000-row query, 15 rounds
    .venv/bin/python benchmarks/service_steps.py --rounds 21 --profile airflow

One `lineage-guard serve` subprocess (TLS, an API token) is started and warmed; then, in this one
warm process, each round runs the four steps back to back in turn (interleaved, so load on a shared
box hits all of them alike):

  Airflow plain      SQLExecuteQueryOperator(conn_id=...).execute (psycopg via the Postgres provider)
  Airflow governed   GovernedPostgresOperator(service_conn_id=...).execute (the thin client)
  Dagster plain      dg.materialize() of an asset reading with plain ADBC
  Dagster governed   dg.materialize() of an asset reading through GovernedPostgresResource(service_url=...)

For each step: the median wall time, the median CPU of this process (the client) and of the server
process (psutil), and the governed - plain difference of the medians. `--profile airflow|dagster`
instead runs the governed step under cProfile and prints the top functions by cumulative time (the
client side; the server's share is the time spent waiting in Flight calls). The load average is
printed at the start and end (the box is shared). Needs PostgreSQL at $LINEAGE_GUARD_TEST_POSTGRES_URL
(a scratch database is made and dropped).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import psutil
from _served import served_people


def cpu(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1000, help="rows the step's query returns")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--profile", choices=("airflow", "dagster", "fresh"),
                    help="cProfile the warm governed step, or (fresh) one governed task process")
    ap.add_argument("--fresh", type=int, default=5, help="rounds of the fresh-process Airflow task (0: skip)")
    args = ap.parse_args()
    airflow_home = Path(tempfile.mkdtemp(prefix="lg-bench-airflow-"))
    os.environ.update(AIRFLOW_HOME=str(airflow_home), AIRFLOW__CORE__LOAD_EXAMPLES="False",
                      AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{airflow_home / 'airflow.db'}",
                      OPENLINEAGE_DISABLED="true", DAGSTER_HOME=tempfile.mkdtemp(prefix="lg-bench-dg-"))
    with served_people(args.rows, "steps") as world:
        os.environ.pop("LINEAGE_GUARD_MASTER_KEY", None)   # the client process holds no key
        run(world.url, world.server, world.tls, world.token, args)


def run(url: str, server, tls, token: str, args) -> None:
    migrate = subprocess.run([str(Path(sys.executable).parent / "airflow"), "db", "migrate"], capture_output=True,
                             text=True, env=os.environ.copy(), timeout=600, check=False)
    if migrate.returncode != 0:
        raise SystemExit("airflow db migrate failed: " + migrate.stderr[-1000:])
    sql = f"SELECT id, full_name, email FROM people WHERE id <= {int(args.rows)} ORDER BY id"
    parts = urlsplit(url)
    host, port = server.url.removeprefix("grpc+tls://").rsplit(":", 1)
    os.environ["AIRFLOW_CONN_BENCH_PG"] = json.dumps({"conn_type": "postgres", "host": parts.hostname,
                                                      "port": parts.port or 5432, "login": parts.username or "",
                                                      "schema": parts.path.lstrip("/")})
    os.environ["AIRFLOW_CONN_BENCH_LG"] = json.dumps({"conn_type": "lineage_guard_service", "host": host,
                                                      "port": int(port), "password": token,
                                                      "extra": {"ca_file": str(tls.cert)}})
    if args.profile == "fresh":
        profile_fresh(sql, args)
        return
    import adbc_driver_postgresql.dbapi as pg
    import dagster as dg
    from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator
    from lineage_guard.assets import GovernedPostgresResource
    from lineage_guard.operators import GovernedPostgresOperator

    plain_op = SQLExecuteQueryOperator(task_id="plain", conn_id="bench_pg", sql=sql)
    governed_op = GovernedPostgresOperator(task_id="governed", service_conn_id="bench_lg", sql=sql,
                                           purpose="ai_training", max_rows=args.rows)

    @dg.asset
    def plain_asset():
        with pg.connect(url) as conn, conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetch_arrow_table().num_rows

    @dg.asset(required_resource_keys={"lg"})
    def governed_asset(context):
        return context.resources.lg.read_arrow(sql, context=context).num_rows

    resource = GovernedPostgresResource(service_url=server.url, purpose="ai_training", token=token,
                                        ca_file=str(tls.cert))
    steps = {
        "Airflow plain": lambda: plain_op.execute({}),
        "Airflow governed": lambda: governed_op.execute({}),
        "Dagster plain": lambda: dg.materialize([plain_asset]),
        "Dagster governed": lambda: dg.materialize([governed_asset], resources={"lg": resource}),
    }
    for fn in steps.values():   # warm: imports, first connections, the server's first plans
        fn()
        fn()
    if args.profile:
        profile(steps[f"{args.profile.capitalize()} governed"])
        return
    srv = psutil.Process(server.proc.pid)
    load0 = os.getloadavg()
    samples: dict[str, list[tuple[float, float, float]]] = {k: [] for k in steps}
    for _ in range(args.rounds):
        for label, fn in steps.items():
            c0, s0, t0 = time.process_time(), cpu(srv), time.perf_counter()
            fn()
            samples[label].append((time.perf_counter() - t0, time.process_time() - c0, cpu(srv) - s0))
    load1 = os.getloadavg()
    # medians of wall and client CPU; the server's CPU is a mean (psutil counts it in 10 ms ticks)
    med = {k: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v),
               sum(x[2] for x in v) / len(v)) for k, v in samples.items()}
    print(f"# warm steps, service mode: `{sql}`; medians of {args.rounds} interleaved rounds in one warm process")
    print(f"# load average at start {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}, "
          f"at end {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f} ({os.cpu_count()} cores)")
    print("| step | wall s | client CPU s | server CPU s (mean) |")
    print("|---|---:|---:|---:|")
    for label, (wall, client, srv_cpu) in med.items():
        print(f"| {label} | {wall:.3f} | {client:.3f} | {srv_cpu:.3f} |")
    for kind in ("Airflow", "Dagster"):
        p, g = med[f"{kind} plain"], med[f"{kind} governed"]
        print(f"| **{kind} governed - plain** | {g[0] - p[0]:+.3f} | {g[1] - p[1]:+.3f} | {g[2] - p[2]:+.3f} |")
    if args.fresh:
        fresh(sql, args)


FRESH = """
import sys, time
t0 = time.perf_counter()
if sys.argv[1] == "governed":
    from lineage_guard.operators import GovernedPostgresOperator
    op = GovernedPostgresOperator(task_id="governed", service_conn_id="bench_lg", sql=sys.argv[2],
                                  purpose="ai_training", max_rows=int(sys.argv[3]))
else:
    from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator
    op = SQLExecuteQueryOperator(task_id="plain", conn_id="bench_pg", sql=sys.argv[2])
t1 = time.perf_counter()
op.execute({})
t2 = time.perf_counter()
print(f"LG-FRESH {t1 - t0:.4f} {t2 - t1:.4f} {time.process_time():.4f}")
"""


def fresh(sql: str, args) -> None:
    """A task as a fresh process (what a worker pays per task): imports + first call, plain vs governed."""
    out: dict[str, list[tuple[float, ...]]] = {"plain": [], "governed": []}
    load0 = os.getloadavg()
    for _ in range(args.fresh):
        for kind, runs in out.items():
            t0 = time.perf_counter()
            done = subprocess.run([sys.executable, "-c", FRESH, kind, sql, str(args.rows)], capture_output=True,
                                  text=True, env=os.environ.copy(), check=False, timeout=300)
            wall = time.perf_counter() - t0
            line = [x for x in done.stdout.splitlines() if x.startswith("LG-FRESH ")]
            if done.returncode != 0 or not line:
                raise SystemExit(f"fresh {kind} task failed: {done.stderr[-2000:]}")
            imports, first, proc_cpu = (float(x) for x in line[-1].split()[1:])
            runs.append((wall, imports, first, proc_cpu))
    load1 = os.getloadavg()
    med = {k: tuple(statistics.median(x[i] for x in v) for i in range(4)) for k, v in out.items()}
    print(f"\n# a task as a fresh process, medians of {args.fresh} interleaved rounds; load average "
          f"{load0[0]:.2f} -> {load1[0]:.2f}")
    print("| task process | whole process s | imports + operator s | execute s | process CPU s |")
    print("|---|---:|---:|---:|---:|")
    for kind, (wall, imports, first, proc_cpu) in med.items():
        print(f"| Airflow {kind} | {wall:.3f} | {imports:.3f} | {first:.3f} | {proc_cpu:.3f} |")
    p, g = med["plain"], med["governed"]
    print(f"| **governed - plain** | {g[0] - p[0]:+.3f} | {g[1] - p[1]:+.3f} | {g[2] - p[2]:+.3f} | "
          f"{g[3] - p[3]:+.3f} |")


def profile_fresh(sql: str, args) -> None:
    """One governed task as a fresh process under cProfile (imports and the first call), top by cumulative time."""
    script = Path(tempfile.mkdtemp(prefix="lg-bench-fresh-")) / "task.py"
    script.write_text(FRESH)
    top = os.environ.get("LG_PROFILE_TOP", "60")
    code = ("import cProfile, pstats, sys; sys.argv = sys.argv[1:]; p = cProfile.Profile(); p.enable(); "
            "exec(compile(open(sys.argv[0]).read(), sys.argv[0], 'exec'), {'__name__': '__main__'}); p.disable(); "
            f"pstats.Stats(p).sort_stats('cumulative').print_stats({int(top)})")
    done = subprocess.run([sys.executable, "-c", code, str(script), "governed", sql, str(args.rows)],
                          capture_output=True, text=True, env=os.environ.copy(), check=False, timeout=300)
    print(done.stdout[-60000:])
    if done.returncode != 0:
        raise SystemExit(f"the fresh governed task failed: {done.stderr[-2000:]}")


def profile(fn) -> None:
    import cProfile
    import pstats

    prof = cProfile.Profile()
    prof.enable()
    for _ in range(5):
        fn()
    prof.disable()
    pstats.Stats(prof).sort_stats("cumulative").print_stats(int(os.environ.get("LG_PROFILE_TOP", "45")))


if __name__ == "__main__":
    main()
