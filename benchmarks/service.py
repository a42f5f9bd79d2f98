"""Service mode cost: one governed stream through `lineage-guard serve` vs in-process vs raw ADBC.

    .venv/bin/python benchmarks/service.py                       # 2,000,000 rows, median of 3
    .venv/bin/python benchmarks/service.py --rows 300000 --repeats 3

Same query on the same table, three ways, each consuming every batch:
  raw ADBC        adbc_driver_postgresql, no masking, no ledger (the floor)
  in-process      GovernedSession.stream (plan, read, mask, ledger, lineage) in this process
  service         lineage.client over TLS to a `lineage-guard serve` subprocess (API token), and the
                  official ADBC Flight SQL driver against the same server
Rounds are interleaved (each round runs every path once), so load on a shared box hits all alike.
For each: the median wall time, rows/s, and CPU seconds (this process; for the service also the
server process, measured with psutil). Then the per-call overhead: the median latency of a
one-row query, in-process vs through the service (server warm), over `--calls` calls.
Then 2 parallel endpoints (key ranges fetched concurrently) vs 1 on the same query, and the warm
step overhead as benchmarks/service_steps.py measures it (governed vs plain Airflow task and Dagster
`materialize()`, interleaved, on a `--step-rows` query, `--steps` rounds; `--no-steps` skips it: it
needs the [airflow] and [dagster] extras; service_steps.py alone also times fresh task processes).
Needs a PostgreSQL at $LINEAGE_GUARD_TEST_POSTGRES_URL (a scratch database is made and dropped).
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import tempfile
import time
from pathlib import Path

import psutil
from _served import served_people

QUERY = "SELECT id, full_name, email, ssn, plan FROM people"
ONE_ROW = "SELECT id, email FROM people WHERE id = 1"


def timed(fn, server: psutil.Process | None = None) -> tuple[float, float, float]:
    me = psutil.Process()
    cpu0 = me.cpu_times()
    srv0 = server.cpu_times() if server else None
    t0 = time.perf_counter()
    fn()
    wall = time.perf_counter() - t0
    cpu1 = me.cpu_times()
    client_cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    server_cpu = 0.0
    if server:
        srv1 = server.cpu_times()
        server_cpu = (srv1.user - srv0.user) + (srv1.system - srv0.system)
    return wall, client_cpu, server_cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--calls", type=int, default=30)
    ap.add_argument("--steps", type=int, default=7)
    ap.add_argument("--step-rows", type=int, default=1000)
    ap.add_argument("--no-steps", action="store_true")
    args = ap.parse_args()
    airflow_home = Path(tempfile.mkdtemp(prefix="lg-bench-airflow-"))
    os.environ.update(AIRFLOW_HOME=str(airflow_home), AIRFLOW__CORE__LOAD_EXAMPLES="False",
                      AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{airflow_home / 'airflow.db'}",
                      OPENLINEAGE_DISABLED="true", DAGSTER_HOME=str(Path(tempfile.mkdtemp(prefix="lg-bench-dg-"))))

    import adbc_driver_postgresql.dbapi as pg

    from lineage_guard.client import connect
    from lineage_guard.policy import load_policy
    from lineage_guard.session import GovernedSession

    master = secrets.token_hex(32)
    with served_people(args.rows, "service", master) as world:
        url, tls, token, server, server_proc = world.url, world.tls, world.token, world.server, world.server_proc
        os.environ.update(LINEAGE_GUARD_HOME=str(world.root / "inproc"), LINEAGE_GUARD_MASTER_KEY=master)
        policy = load_policy(world.policy_path)

        def raw():
            with pg.connect(url) as conn, conn.cursor() as cur:
                cur.execute(QUERY)
                for _ in cur.fetch_record_batch():
                    pass

        def inproc():
            with GovernedSession(url, policy, "svc-training", "ai_training") as s, s.stream(QUERY) as batches:
                for _ in batches:
                    pass

        client = connect(server.url, purpose="ai_training", token=token, tls_root_certs=tls.pem)

        def service():
            with client.stream(QUERY) as batches:
                for _ in batches:
                    pass

        def adbc_flight():   # the official Flight SQL driver against the same server
            from adbc_driver_flightsql import DatabaseOptions
            from adbc_driver_flightsql.dbapi import connect as flightsql_connect

            options = {DatabaseOptions.AUTHORIZATION_HEADER.value: f"Bearer {token}",
                       DatabaseOptions.TLS_ROOT_CERTS.value: tls.pem.decode(),
                       f"{DatabaseOptions.RPC_CALL_HEADER_PREFIX.value}x-lineage-guard-purpose": "ai_training"}
            with flightsql_connect(server.url, db_kwargs=options) as conn, conn.cursor() as cur:
                cur.execute(QUERY)
                for _ in cur.fetch_record_batch():
                    pass

        paths = [("raw ADBC", raw, None), ("in-process", inproc, None), ("service (our client)", service, server_proc),
                 ("service (ADBC Flight SQL)", adbc_flight, server_proc)]
        for _label, fn, _srv in paths:   # warm: imports, catalogs, first connections
            fn()
        load0 = os.getloadavg()
        samples: dict[str, list] = {label: [] for label, _fn, _srv in paths}
        for _ in range(args.repeats):   # interleaved rounds: load on the shared box hits every path alike
            for label, fn, srv in paths:
                samples[label].append(timed(fn, srv))
        results = {label: tuple(statistics.median(r[i] for r in runs) for i in range(3))
                   for label, runs in samples.items()}
        load1 = os.getloadavg()
        print(f"# {args.rows:,} rows, `{QUERY}`, medians of {args.repeats} interleaved rounds; load average "
              f"{load0[0]:.2f} -> {load1[0]:.2f}")
        print("| path | wall s | rows/s | client CPU s | server CPU s | rows/s vs in-process |")
        print("|---|---:|---:|---:|---:|---:|")
        base_rate = args.rows / results["in-process"][0]
        for label, (wall, ccpu, scpu) in results.items():
            rate = args.rows / wall
            print(f"| {label} | {wall:.2f} | {rate:,.0f} | {ccpu:.2f} | {scpu:.2f} | {rate / base_rate:.2f}x |")

        def one_inproc():
            with GovernedSession(url, policy, "svc-training", "ai_training") as s:
                s.read_arrow(ONE_ROW)

        def one_service():
            client.read_arrow(ONE_ROW)

        print(f"\n# per-call overhead: `{ONE_ROW}`, median of {args.calls} calls (server warm)")
        print("| path | median ms | p90 ms |")
        print("|---|---:|---:|")
        for label, fn in (("in-process (new session per call)", one_inproc), ("service (one client)", one_service)):
            fn()
            lat = sorted(timed(fn)[0] * 1000 for _ in range(args.calls))
            print(f"| {label} | {statistics.median(lat):.1f} | {lat[int(0.9 * (len(lat) - 1))]:.1f} |")
        parallel(client, args)
        if not args.no_steps:
            steps(url, server, tls, token, args)
        client.close()


def parallel(client, args) -> None:
    """The same masked result as one endpoint, and as 2 key ranges fetched concurrently."""
    walls: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(args.repeats):
        for parts in (1, 2):
            t0 = time.perf_counter()
            table = client.read_arrow(QUERY, partitions=parts)
            walls[parts].append(time.perf_counter() - t0)
            assert table.num_rows == args.rows, (parts, table.num_rows)
    one, two = statistics.median(walls[1]), statistics.median(walls[2])
    print(f"\n# parallel endpoints: `{QUERY}` as one table, median of {args.repeats} (2 cores, shared machine)")
    print("| endpoints | wall s | rows/s | vs 1 endpoint |")
    print("|---|---:|---:|---:|")
    print(f"| 1 | {one:.2f} | {args.rows / one:,.0f} | 1.00x |")
    print(f"| 2 (key ranges, fetched concurrently) | {two:.2f} | {args.rows / two:,.0f} | {one / two:.2f}x |")


def steps(url: str, server, tls, token: str, args) -> None:
    """Warm per-step overhead of a governed Airflow task / Dagster asset over a plain one: service_steps.py's
    interleaved measurement (wall, client and server CPU, load average) on this run's server."""
    from types import SimpleNamespace

    import service_steps  # benchmarks/ is this script's folder, first on sys.path

    service_steps.run(url, server, tls, token,
                      SimpleNamespace(rows=args.step_rows, rounds=args.steps, profile=None, fresh=0))


if __name__ == "__main__":
    main()
