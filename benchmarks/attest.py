"""Attestation cost: attest + verify of a 1 GB governed dataset folder and a 500 MB model, vs `sha256sum`;
k-anonymity on 10M rows vs a bare polars group-by.

Attest and verify are timed end to end on real governed files: a table of random hex text is
created in a database of its own on PostgreSQL ($LINEAGE_GUARD_TEST_POSTGRES_URL, or --pg), and
--files governed extracts (one receipt each) write the dataset folder; the model folder is
random bytes. Then, in the same run, median of --repeats each (page cache warm for all, each run
once before timing):

- `attest(model, [folder])` (ledger checks + digests of every file; no lineage sent, no copy kept),
- `verify(envelope, model=...)` (signature, model and dataset digests, receipts, chain),
- `digest_tree` of each folder alone (our digest),
- `sha256sum` (coreutils) over the same files: the baseline. Ratios are ours / sha256sum (wall, and CPU: on a shared machine CPU is the steadier).

Wall and CPU (this process + children) are printed, with the load average. Everything generated is
deleted at the end (temp folder and database).

    .venv/bin/python benchmarks/attest.py                                    # 1 GB / 500 MB / 10M rows
    .venv/bin/python benchmarks/attest.py --dataset-mb 128 --model-mb 64 --rows 1000000   # a quick look

k-anonymity: `lineage_guard.attest.risk.measure` (k, l, smallest classes) over 3 quasi-identifiers
and one sensitive column of --rows random rows, against `frame.group_by(quasi).len()["len"].min()`
(k alone) in the same run.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from lineage_guard.attest.manifest import digest_tree

POLICY = """
version: 1
identities:
  svc-bench: {kind: service, groups: [training-jobs]}
groups: [training-jobs]
purposes: [ai_training]
"""
ROW_BYTES = 72             # one row of four md5 hex columns and an int8 id in the Parquet file (snappy), measured


def _cpu() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _time(fn, repeats: int) -> tuple[float, float]:
    """(median wall s, median CPU s) of `repeats` runs after one warm-up."""
    fn()
    walls, cpus = [], []
    for _ in range(repeats):
        c0, t0 = _cpu(), time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(_cpu() - c0)
    return statistics.median(walls), statistics.median(cpus)


def _random_files(folder: Path, total_mb: int, files: int) -> None:
    folder.mkdir(parents=True)
    per = total_mb * (1 << 20) // files
    for i in range(files):
        with open(folder / f"part-{i:04d}.bin", "wb") as fh:
            left = per
            while left:
                chunk = min(left, 8 << 20)
                fh.write(os.urandom(chunk))
                left -= chunk


def _governed_folder(pg: str, folder: Path, total_mb: int, files: int, ledger) -> None:
    import psycopg

    from lineage_guard.identity import Identity
    from lineage_guard.policy import parse_policy
    from lineage_guard.session import GovernedSession

    rows = total_mb * (1 << 20) // ROW_BYTES
    with psycopg.connect(pg, autocommit=True) as conn:
        conn.execute("CREATE TABLE bench_rows AS SELECT g::int8 AS id, md5(random()::text) AS a, "
                     "md5(random()::text) AS b, md5(random()::text) AS c, md5(random()::text) AS d "
                     f"FROM generate_series(1, {rows}) g")
    step = rows // files + 1
    with GovernedSession(pg, parse_policy(POLICY), Identity("svc-bench"), "ai_training", ledger=ledger) as s:
        for i in range(files):
            s.extract(f"SELECT id, a, b, c, d FROM bench_rows WHERE id > {i * step} AND id <= {(i + 1) * step}",
                      to=folder / f"part-{i:04d}.parquet")


def _database(admin: str) -> tuple[str, str]:
    import psycopg

    name = f"attest_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name, admin.rsplit("/", 1)[0] + "/" + name


def _drop(admin: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _sha256sum(folder: Path):
    names = sorted(str(p) for p in folder.rglob("*") if p.is_file())
    return lambda: subprocess.run(["sha256sum", *names], check=True, capture_output=True)


def _size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / (1 << 20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset-mb", type=int, default=1024)
    parser.add_argument("--files", type=int, default=8, help="governed extracts (receipts) in the dataset folder")
    parser.add_argument("--model-mb", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--pg", default=os.environ.get("LINEAGE_GUARD_TEST_POSTGRES_URL",
                                                       "postgresql://postgres@127.0.0.1:5432/postgres"))
    args = parser.parse_args()
    if shutil.which("sha256sum") is None:
        raise SystemExit("sha256sum (coreutils) is not installed: it is the baseline")
    print(f"load average before: {Path('/proc/loadavg').read_text().split()[:3]}")
    name, pg = _database(args.pg)
    tmp = Path(tempfile.mkdtemp(prefix="lg_attest_bench_"))
    try:
        _attest_and_verify(args, pg, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        _drop(args.pg, name)
    _risk(args.rows, args.repeats)
    print(f"load average after: {Path('/proc/loadavg').read_text().split()[:3]}")


def _attest_and_verify(args, pg: str, tmp: Path) -> None:
    from lineage_guard.attest.attestation import attest, verify
    from lineage_guard.audit import Ledger
    from lineage_guard.audit.signing import write_key_file

    os.environ["LINEAGE_GUARD_HOME"] = str(tmp / "home")
    os.environ.setdefault("LINEAGE_GUARD_MASTER_KEY", os.urandom(32).hex())   # no column is masked; the session wants a key
    signer = write_key_file(tmp / "ledger.key")
    os.environ["LINEAGE_GUARD_LEDGER_SIGNING_KEY_FILE"] = str(tmp / "ledger.key")
    ledger = Ledger.open(str(tmp / "ledger.sqlite"))
    data, model = tmp / "data", tmp / "model"
    t0 = time.perf_counter()
    _governed_folder(pg, data, args.dataset_mb, args.files, ledger)
    _random_files(model, args.model_mb, 4)
    print(f"generated in {time.perf_counter() - t0:.1f} s: dataset {_size_mb(data):.0f} MB in {args.files} governed "
          f"files, model {_size_mb(model):.0f} MB in 4 files")
    keys = [signer.public_key]
    envelope = {}

    def do_attest():
        envelope["e"] = attest(model, [data], ledger=ledger, public_keys=keys, keep=False, lineage=False)

    def do_verify():
        assert verify(envelope["e"], model=model, ledger=ledger, public_keys=keys).ok

    mb_data, mb_model = _size_mb(data), _size_mb(model)
    both = _sum_both([data, model])
    attested, baseline = _time(do_attest, args.repeats), _time(both, args.repeats)
    rows = [
        ("attest (dataset + model)", mb_data + mb_model, attested, baseline),
        ("verify (dataset + model)", mb_data + mb_model, _time(do_verify, args.repeats), baseline),
        ("digest_tree dataset", mb_data, _time(lambda: digest_tree(data), args.repeats),
         _time(_sha256sum(data), args.repeats)),
        ("digest_tree model", mb_model, _time(lambda: digest_tree(model), args.repeats),
         _time(_sha256sum(model), args.repeats)),
    ]
    print(f"{'case':26} {'MB':>6} {'wall s':>7} {'CPU s':>7} {'MB/s':>6} {'sha256sum wall s':>17} {'CPU s':>6} "
          f"{'ratio':>6} {'CPU ratio':>9}")
    for label, size, (wall, cpu), (bwall, bcpu) in rows:
        print(f"{label:26} {size:6.0f} {wall:7.3f} {cpu:7.3f} {size / wall:6.0f} {bwall:17.3f} {bcpu:6.3f} "
              f"{wall / bwall:6.2f} {cpu / bcpu:9.2f}")
    ledger.close()


def _sum_both(folders: list[Path]):
    runs = [_sha256sum(f) for f in folders]
    return lambda: [r() for r in runs]


def _risk(rows: int, repeats: int) -> None:
    import numpy as np
    import polars as pl

    from lineage_guard.attest.risk import measure

    rng = np.random.default_rng(7)
    frame = pl.DataFrame({"zip": rng.integers(0, 3000, rows), "birth_year": rng.integers(1930, 2010, rows),
                          "sex": rng.integers(0, 2, rows), "dx": rng.integers(0, 40, rows)})
    quasi = ["zip", "birth_year", "sex"]
    ours = _time(lambda: measure(frame, quasi, sensitive="dx"), repeats)
    k_only = _time(lambda: measure(frame, quasi), repeats)
    base = _time(lambda: frame.group_by(quasi).len()["len"].min(), repeats)
    print(f"k-anonymity on {rows:,} rows, 3 quasi-identifiers: group-by k only (baseline) {base[0]:.3f} s wall "
          f"{base[1]:.3f} s CPU; measure k {k_only[0]:.3f} s wall {k_only[1]:.3f} s CPU (ratio {k_only[0] / base[0]:.2f}); "
          f"measure k + l over 1 sensitive {ours[0]:.3f} s wall {ours[1]:.3f} s CPU (ratio {ours[0] / base[0]:.2f})")


if __name__ == "__main__":
    main()
