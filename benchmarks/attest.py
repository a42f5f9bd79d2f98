"""Attestation cost: digest throughput vs `sha256sum`, and k-anonymity vs a bare polars group-by.

Digesting is what attestation and verification spend their time on (the ledger checks are a
few entries). Generates a dataset folder and a model folder of random bytes, digests each
with `digest_tree` and with `sha256sum` (coreutils), median of --repeats, and prints MB/s and
the ratio. The page cache is warm for both (each is run once before timing).

    .venv/bin/python benchmarks/attest.py                              # 256 MB dataset dir, 128 MB model
    .venv/bin/python benchmarks/attest.py --dataset-mb 1024 --model-mb 512   # the issue's sizes, if the disk allows
    .venv/bin/python benchmarks/attest.py --rows 10000000                    # k-anonymity on 10M rows

k-anonymity: `lineage_guard.attest.risk.measure` (k, l, smallest classes) over 3 quasi-identifiers
and one sensitive column of --rows random rows, against the baseline
`frame.group_by(quasi).len()["len"].min()` (k alone) in the same run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from lineage_guard.attest.manifest import digest_tree


def _make(folder: Path, total_mb: int, files: int) -> None:
    folder.mkdir(parents=True)
    per = total_mb * (1 << 20) // files
    for i in range(files):
        with open(folder / f"part-{i:04d}.bin", "wb") as fh:
            left = per
            while left:
                chunk = min(left, 8 << 20)
                fh.write(os.urandom(chunk))
                left -= chunk


def _time(fn, repeats: int) -> float:
    fn()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset-mb", type=int, default=256)
    parser.add_argument("--model-mb", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rows", type=int, default=2_000_000)
    args = parser.parse_args()
    if shutil.which("sha256sum") is None:
        raise SystemExit("sha256sum (coreutils) is not installed: it is the baseline")
    with tempfile.TemporaryDirectory() as tmp:
        cases = [("dataset dir", Path(tmp, "data"), args.dataset_mb, 16), ("model dir", Path(tmp, "model"), args.model_mb, 4)]
        print(f"{'case':12} {'MB':>6} {'files':>5} {'ours s':>8} {'sha256sum s':>12} {'ours MB/s':>10} {'ratio':>6}")
        for label, folder, mb, files in cases:
            _make(folder, mb, files)
            names = sorted(str(p) for p in folder.iterdir())
            ours = _time(lambda f=folder: digest_tree(f), args.repeats)
            base = _time(lambda n=names: subprocess.run(["sha256sum", *n], check=True, capture_output=True),
                         args.repeats)
            print(f"{label:12} {mb:6d} {files:5d} {ours:8.3f} {base:12.3f} {mb / ours:10.1f} {ours / base:6.2f}")
            shutil.rmtree(folder)
    _risk(args.rows, args.repeats)


def _risk(rows: int, repeats: int) -> None:
    import numpy as np
    import polars as pl

    from lineage_guard.attest.risk import measure

    rng = np.random.default_rng(7)
    frame = pl.DataFrame({"zip": rng.integers(0, 3000, rows), "birth_year": rng.integers(1930, 2010, rows),
                          "sex": rng.integers(0, 2, rows), "dx": rng.integers(0, 40, rows)})
    quasi = ["zip", "birth_year", "sex"]
    ours = _time(lambda: measure(frame, quasi, sensitive="dx"), repeats)
    base = _time(lambda: frame.group_by(quasi).len()["len"].min(), repeats)
    print(f"k-anonymity on {rows:,} rows, 3 quasi-identifiers + l over 1 sensitive: ours {ours:.3f} s, "
          f"group-by k only {base:.3f} s, ratio {ours / base:.2f}")


if __name__ == "__main__":
    main()
