"""A governed extract against a raw one and the usual alternatives, on the same table, CPU and wall, interleaved.

    .venv/bin/python benchmarks/extract_vs_raw.py --rows 1000000 --rounds 3
    .venv/bin/python benchmarks/extract_vs_raw.py --rows 10000000 --rounds 1 --only raw,governed,duckdb
    .venv/bin/python benchmarks/extract_vs_raw.py --bench-python /tmp/benchvenv/bin/python ...   # presidio, duckdb
    .venv/bin/python benchmarks/extract_vs_raw.py --only raw,governed --before main   # and main's governed

The table (a scratch database, dropped after the run): id bigint, email, ssn, full_name,
created_at timestamptz, amount numeric(12,2). Three columns are masked: email tokenize, ssn
partial (keep_last 4), full_name tokenize. Every contestant reads all six columns from
PostgreSQL and writes one zstd Parquet file:

- raw: ADBC PostgreSQL -> Arrow batches -> pyarrow ParquetWriter, nothing masked (the floor).
- governed: `GovernedSession.extract` (plan, EXPLAIN binding check, read, mask, Parquet, ledger,
  lineage outbox), a fresh session each run.
- pandas: `pandas.read_sql` (SQLAlchemy + psycopg) + a per-value `hmac.new` for the two tokenized
  columns and a Python partial for ssn, `DataFrame.to_parquet`.
- presidio: the same pandas read, then presidio-anonymizer's `AnonymizerEngine` per value (`hash`
  with the key as salt for the tokenized columns, `mask` for ssn). It is timed on the first
  `--presidio-sample` rows and the per-row cost **extrapolated** to the table (said in the table).
- duckdb: DuckDB's postgres extension (the `duckdb-ext-postgres` wheel from PyPI, loaded from the
  file: this machine cannot download extensions at run time) attached read-only,
  `COPY (SELECT ...) TO parquet` with HMAC-SHA256 composed in SQL from DuckDB's `sha256` over
  blobs (DuckDB has no built-in HMAC).

presidio and duckdb are not project dependencies: they run under `--bench-python`, an ad-hoc venv
(`uv venv /tmp/benchvenv && VIRTUAL_ENV=/tmp/benchvenv uv pip install presidio-anonymizer
"duckdb==1.4.4" duckdb-ext-postgres pandas pyarrow sqlalchemy "psycopg[binary]"`). Without it they
are left out and the table says so.

`--before REF` adds `governed@REF`: the same governed extract run by REF's `lineage_guard/`
(`git archive` to a temp folder, first on `PYTHONPATH`, same interpreter and packages, its own
LINEAGE_GUARD_HOME), interleaved with the others, so a change is measured under the same load.

Each run is a fresh child process; it times its own work after its imports (CPU = user + system
of all its threads, `time.process_time`) and reports wall too. Rounds rotate the order of the
contestants; ratios are per round, then the median. PostgreSQL's own CPU is not in any figure
(the server does the same work for every contestant). Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from urllib.parse import urlsplit, urlunsplit

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
CONTESTANTS = ("raw", "governed", "pandas", "presidio", "duckdb")
EXTERNAL = {"presidio", "duckdb"}
PRELOAD = {
    "raw": ("pyarrow.parquet", "adbc_driver_postgresql.dbapi"),
    "governed": ("lineage_guard.session", "lineage_guard.mask.apply", "lineage_guard.mask.keyed",
                 "lineage_guard.sinks.parquet", "lineage_guard.lineage", "lineage_guard.audit",
                 "lineage_guard.sql.catalog", "lineage_guard.attest.provenance", "adbc_driver_postgresql.dbapi",
                 "psycopg", "lineage_guard.planner", "lineage_guard.sources.adbc_conn", "lineage_guard.sql.explain",
                 "polars", "polars_hash",  # the compiled keyed path imports them on its first call
                 # what the analyzer imports on its first statement (~4% of a 1M extract's CPU went to these)
                 "lineage_guard.sql.allowlist", "lineage_guard.sql.cohort", "lineage_guard.sql.guards",
                 "lineage_guard.sql.lineage", "lineage_guard.sql.nodes", "lineage_guard.sql.statements"),
    "pandas": ("pandas", "sqlalchemy", "psycopg", "pyarrow.parquet"),
    "presidio": ("pandas", "sqlalchemy", "psycopg", "pyarrow.parquet", "presidio_anonymizer"),
    "duckdb": ("duckdb",),
}

TABLE = """
CREATE UNLOGGED TABLE people AS
SELECT g AS id,
       'user' || g || '@example.invalid' AS email,
       '9' || lpad((g %% 100)::text, 2, '0') || '-' || lpad((g %% 97 + 1)::text, 2, '0') || '-'
           || lpad((g %% 9999 + 1)::text, 4, '0') AS ssn,
       (ARRAY['Ada','Alan','Grace','Edsger','Barbara','Donald','Frances','John'])[g %% 8 + 1]
           || ' Person' || (g %% 200000) AS full_name,
       timestamptz '2024-01-01' + g * interval '1 second' AS created_at,
       ((g::bigint * 7919) %% 1000000) / 100.0 :: numeric(12, 2) AS amount
FROM generate_series(1, %s::bigint) AS g
"""
COLUMNS = "id, email, ssn, full_name, created_at, amount"
POLICY = """
version: 1
identities: {svc-bench: {kind: service, groups: [bench]}}
purposes: [benchmark]
classifications: {public.people.email: email, public.people.ssn: national_id, public.people.full_name: person_name}
rules:
  - {classifications: [email, person_name], action: mask, mask: {method: tokenize}}
  - {classifications: [national_id], action: mask, mask: {method: partial, params: {keep_last: 4}}}
detection: {enabled: false}
"""


# -- the contestants (each runs in its own child process) ---------------------------------------------


def run_raw(url: str, out: str, rows: int) -> int:
    import pyarrow.parquet as pq
    from adbc_driver_postgresql import dbapi

    with dbapi.connect(url) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT {COLUMNS} FROM people WHERE id <= {rows}")
        reader = cur.fetch_record_batch()
        n = 0
        with pq.ParquetWriter(out, reader.schema, compression="zstd") as writer:
            for batch in reader:
                writer.write_batch(batch)
                n += batch.num_rows
    return n


def run_governed(url: str, out: str, rows: int) -> int:
    from lineage_guard import GovernedSession, Identity
    from lineage_guard.policy import parse_policy

    with GovernedSession(url, parse_policy(POLICY), Identity("svc-bench"), "benchmark") as session:
        result = session.extract(f"SELECT {COLUMNS} FROM people WHERE id <= {rows}", to=out)
    assert set(result.masked_columns) == {"email", "ssn", "full_name"}, result.masked_columns
    return result.rows


def _pandas_read(url: str, rows: int):
    import pandas as pd
    import sqlalchemy

    engine = sqlalchemy.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.connect() as conn:
        return pd.read_sql(f"SELECT {COLUMNS} FROM people WHERE id <= {rows}", conn)


def _partial(v):
    return None if v is None else "*" * max(len(v) - 4, 0) + v[-4:]


def run_pandas(url: str, out: str, rows: int) -> int:
    import hashlib
    import hmac

    key = bytes.fromhex(os.environ["LINEAGE_GUARD_MASTER_KEY"])
    df = _pandas_read(url, rows)

    def tok(v):
        return None if v is None else "tok_" + hmac.new(key, v.encode(), hashlib.sha256).hexdigest()[:24]

    df["email"] = [tok(v) for v in df["email"]]
    df["full_name"] = [tok(v) for v in df["full_name"]]
    df["ssn"] = [_partial(v) for v in df["ssn"]]
    df.to_parquet(out, compression="zstd", index=False)
    return len(df)


def run_presidio(url: str, out: str, rows: int, sample: int) -> tuple[int, dict]:
    """Presidio per value over the first `sample` rows; the caller scales that part to the table."""
    from presidio_anonymizer import AnonymizerEngine
    from presidio_anonymizer.entities import OperatorConfig, RecognizerResult

    salt = os.environ["LINEAGE_GUARD_MASTER_KEY"]
    engine = AnonymizerEngine()
    df = _pandas_read(url, rows)
    t0, c0 = time.perf_counter(), time.process_time()
    ops = {
        "EMAIL_ADDRESS": OperatorConfig("hash", {"hash_type": "sha256", "salt": salt}),
        "PERSON": OperatorConfig("hash", {"hash_type": "sha256", "salt": salt}),
        "US_SSN": OperatorConfig("mask", {"masking_char": "*", "chars_to_mask": 7, "from_end": False}),
    }

    def anon(values, entity):
        out = []
        for v in values:
            if v is None:
                out.append(None)
                continue
            found = [RecognizerResult(entity, 0, len(v), 1.0)]
            out.append(engine.anonymize(text=v, analyzer_results=found, operators={entity: ops[entity]}).text)
        return out

    head = df.head(sample)
    masked = {"email": anon(head["email"], "EMAIL_ADDRESS"), "full_name": anon(head["full_name"], "PERSON"),
              "ssn": anon(head["ssn"], "US_SSN")}
    sample_wall, sample_cpu = time.perf_counter() - t0, time.process_time() - c0
    scale = len(df) / max(len(head), 1)
    for name, values in masked.items():  # the rest of each column is left clear: only the sample was timed
        df.loc[: len(values) - 1, name] = values
    df.to_parquet(out, compression="zstd", index=False)
    # Rows beyond the sample cost what the sample cost per row (Presidio has no batch fast path).
    return len(df), {"extra_wall": sample_wall * (scale - 1), "extra_cpu": sample_cpu * (scale - 1)}


def run_duckdb(url: str, out: str, rows: int) -> int:
    import glob

    import duckdb

    key = os.environ["LINEAGE_GUARD_MASTER_KEY"].encode()
    key = key.ljust(64, b"\0") if len(key) <= 64 else key  # the 64 hex characters are one SHA-256 block
    ipad = bytes(b ^ 0x36 for b in key).hex()
    opad = bytes(b ^ 0x5C for b in key).hex()
    ext = glob.glob(os.path.join(os.path.dirname(duckdb.__file__), "..", "duckdb_ext", "extensions", "*", "*",
                                 "postgres_scanner.duckdb_extension"))
    con = duckdb.connect()
    con.execute(f"LOAD '{ext[0]}'")
    u = urlsplit(url)
    con.execute(f"ATTACH 'host={u.hostname} port={u.port or 5432} user={u.username or 'postgres'} "
                f"dbname={u.path.lstrip('/')}' AS pg (TYPE postgres, READ_ONLY)")

    def tok(col: str) -> str:
        inner = f"unhex(sha256(unhex('{ipad}') || encode({col})))"
        return f"'tok_' || left(sha256(unhex('{opad}') || {inner}), 24) AS {col}"

    con.execute(f"""COPY (SELECT id, {tok('email')},
                         repeat('*', length(ssn) - 4) || right(ssn, 4) AS ssn, {tok('full_name')},
                         created_at, amount FROM pg.public.people WHERE id <= {rows})
                    TO '{out}' (FORMAT parquet, COMPRESSION zstd)""")
    return con.execute(f"SELECT count(*) FROM read_parquet('{out}')").fetchone()[0]


def child(kind: str, url: str, out: str, rows: int, sample: int) -> None:
    runners = {"raw": run_raw, "governed": run_governed, "pandas": run_pandas, "duckdb": run_duckdb}
    # Imports first, outside the timing (each contestant's own): a fresh process's start-up is
    # benchmarks/cold_start.py's business; this compares the work.
    import importlib

    for module in PRELOAD[kind]:
        importlib.import_module(module)
    t0, c0 = time.perf_counter(), time.process_time()
    extra = {"extra_wall": 0.0, "extra_cpu": 0.0}
    if kind == "presidio":
        n, extra = run_presidio(url, out, rows, sample)
    else:
        n = runners[kind](url, out, rows)
    wall, cpu = time.perf_counter() - t0 + extra["extra_wall"], time.process_time() - c0 + extra["extra_cpu"]
    print(json.dumps({"rows": n, "wall": wall, "cpu": cpu, "bytes": os.path.getsize(out),
                      "extrapolated": extra["extra_wall"] > 0}))


# -- the driver ------------------------------------------------------------------------------------------


def run_child(python: str, kind: str, url: str, folder: str, rows: int, sample: int, tree: str | None = None) -> dict:
    env = dict(os.environ, LINEAGE_GUARD_HOME=folder)
    if tree is not None:  # another commit's lineage_guard, ahead of this tree's editable install
        env["PYTHONPATH"] = os.pathsep.join(p for p in (tree, os.environ.get("PYTHONPATH")) if p)
        env["LINEAGE_GUARD_HOME"] = os.path.join(folder, "home_before")
        os.makedirs(env["LINEAGE_GUARD_HOME"], exist_ok=True)
    out = os.path.join(folder, f"{kind}.parquet")
    proc = subprocess.run([python, __file__, "--child", "governed" if tree is not None else kind, "--url", url, "--out", out, "--rows", str(rows),
                           "--presidio-sample", str(sample)], capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        sys.exit(f"{kind} failed:\n{proc.stderr[-3000:]}")
    os.remove(out)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def export_tree(ref: str, folder: str) -> str:
    """`lineage_guard/` of git REF, extracted to a folder to put first on PYTHONPATH."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    archive = os.path.join(folder, "before.tar")
    subprocess.run(["git", "-C", root, "archive", "-o", archive, ref, "lineage_guard"], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(os.path.join(folder, "before"), filter="data")
    os.remove(archive)
    return os.path.join(folder, "before")


def scratch_database(server_url: str, rows: int) -> tuple[str, str]:
    import psycopg

    name = f"perf_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = urlunsplit(urlsplit(server_url)._replace(path="/" + name))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(TABLE, (rows,))
        conn.execute("VACUUM ANALYZE people")
    return name, url


def drop_database(server_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default=",".join(CONTESTANTS))
    parser.add_argument("--bench-python", default="", help="a venv's python with presidio-anonymizer and duckdb")
    parser.add_argument("--presidio-sample", type=int, default=50_000)
    parser.add_argument("--before", help="a git ref whose governed extract runs alongside (governed@REF)")
    parser.add_argument("--url", default=os.environ.get("LINEAGE_GUARD_BENCH_POSTGRES_URL")
                        or os.environ.get("LINEAGE_GUARD_TEST_POSTGRES_URL") or DEFAULT_URL)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.url, args.out, args.rows, args.presidio_sample)

    chosen = [c for c in CONTESTANTS if c in args.only.split(",")]
    skipped = [c for c in chosen if c in EXTERNAL and not args.bench_python]
    chosen = [c for c in chosen if c not in skipped]
    before = f"governed@{args.before}" if args.before else None
    if before:
        chosen.insert(chosen.index("governed") + 1 if "governed" in chosen else len(chosen), before)
    os.environ.setdefault("LINEAGE_GUARD_MASTER_KEY", secrets.token_hex(32))  # throwaway, never printed
    load_before = os.getloadavg()
    name, url = scratch_database(args.url, args.rows)
    results: dict[str, list[dict]] = {c: [] for c in chosen}
    try:
        with tempfile.TemporaryDirectory(prefix="perf_bench_") as folder:
            tree = export_tree(args.before, folder) if before else None
            for r in range(args.rounds):
                order = chosen[r % len(chosen):] + chosen[:r % len(chosen)]
                for kind in order:
                    python = args.bench_python if kind in EXTERNAL else sys.executable
                    results[kind].append(run_child(python, kind, url, folder, args.rows, args.presidio_sample,
                                                   tree if kind == before else None))
                    print(f"  round {r + 1} {kind}: {results[kind][-1]}", file=sys.stderr)
    finally:
        drop_database(args.url, name)
    load_after = os.getloadavg()

    print(f"\n# extract {args.rows:,} rows x 6 columns (3 masked), {args.rounds} interleaved round(s), "
          f"each run a fresh process; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after "
          f"(2-core box shared with other jobs); python {sys.version.split()[0]}")
    print("| contestant | median CPU s | median wall s | CPU x raw | wall x raw | governed faster (CPU) | "
          "governed faster (wall) | Parquet MB | note |")
    # "governed faster" = this contestant's time / governed's, per round
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    raw, gov = results.get("raw"), results.get("governed")
    for kind in chosen:
        runs = results[kind]

        def ratio(metric, base, runs=runs):
            """Median over rounds of this contestant's figure over `base`'s in the same round."""
            if not base:
                return "-"
            return f"{statistics.median(a[metric] / b[metric] for a, b in zip(runs, base, strict=True)):.2f}x"

        vs_gov = ("-", "-") if kind == "governed" else (ratio("cpu", gov), ratio("wall", gov))
        note = f"masking extrapolated from {args.presidio_sample:,} rows" if runs[0]["extrapolated"] else ""
        print(f"| {kind} | {statistics.median(r['cpu'] for r in runs):.2f} | "
              f"{statistics.median(r['wall'] for r in runs):.2f} | {ratio('cpu', raw)} | {ratio('wall', raw)} | "
              f"{vs_gov[0]} | {vs_gov[1]} | {statistics.median(r['bytes'] for r in runs) / 2**20:.1f} | {note} |")
    if before and gov:
        for metric in ("cpu", "wall"):
            paired = [a[metric] / b[metric] for a, b in zip(gov, results[before], strict=True)]
            print(f"\ngoverned / {before} {metric}, per round: " + ", ".join(f"{x:.2f}" for x in paired)
                  + f" (median {statistics.median(paired):.2f})")
    if skipped:
        print(f"\nnot run: {', '.join(skipped)} (give --bench-python, a venv with presidio-anonymizer and duckdb)")


if __name__ == "__main__":
    main()
