"""Start-up cost of the CLI and of the library's imports, in fresh processes.

    python benchmarks/cli_startup.py            # 15 runs of each case, medians
    python benchmarks/cli_startup.py --runs 25
    python benchmarks/cli_startup.py --baseline /tmp/base-venv/bin/python   # an interpreter with the old version

Each case runs in a new interpreter (nothing cached in-process); the table gives median wall
time and median CPU time (user + system of the child, steadier than wall time on a shared
machine), and the heavy packages each case imports (`python -X importtime`, counted once).
`--baseline PYTHON` also runs every case with another interpreter (a venv holding the version to
compare against, installed non-editable), interleaved run by run, and prints the CPU ratio.
To build one for `main`: `git archive main | tar -x -C /tmp/base`, `uv venv /tmp/base-venv`,
`uv export --frozen --all-extras --no-emit-project > req.txt`, `uv pip install --python
/tmp/base-venv/bin/python -r req.txt`, `uv pip install --python /tmp/base-venv/bin/python --no-deps /tmp/base`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

CASES: dict[str, list[str]] = {
    "lineage-guard --help": ["-m", "lineage_guard.cli", "--help"],
    "lineage-guard --version": ["-m", "lineage_guard.cli", "--version"],
    "lineage-guard plan --help": ["-m", "lineage_guard.cli", "plan", "--help"],
    "import lineage_guard": ["-c", "import lineage_guard"],
    "import lineage_guard.operators": ["-c", "import lineage_guard.operators"],
    "from lineage_guard import GovernedSession": ["-c", "from lineage_guard import GovernedSession"],
}
HEAVY = ("polars", "openlineage", "great_expectations", "faker", "pandas", "sqlglot", "airflow", "pyarrow")


def one_run(args: list[str], python: str = sys.executable) -> tuple[float, float]:
    before = os.times()
    start = time.perf_counter()
    # not check=True: a case may not exist in an older tree (the baseline, e.g. --version)
    subprocess.run([python, *args], check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=os.sep)
    wall = time.perf_counter() - start
    after = os.times()
    return wall, (after.children_user - before.children_user) + (after.children_system - before.children_system)


def heavy_modules(args: list[str], python: str = sys.executable) -> list[str]:
    done = subprocess.run([python, "-X", "importtime", *args], check=False, capture_output=True, text=True, cwd=os.sep)
    names = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    return sorted({n.split(".")[0] for n in names if n.split(".")[0] in HEAVY})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--baseline", help="an interpreter whose environment holds the version to compare against")
    opts = parser.parse_args()
    trees: dict[str, str] = {"this": sys.executable, **({"baseline": opts.baseline} if opts.baseline else {})}
    print(f"{'case':42} {'tree':9} {'wall median':>12} {'CPU median':>11}  heavy imports")
    for name, args in CASES.items():
        samples: dict[str, list[tuple[float, float]]] = {t: [] for t in trees}
        for tree in trees.values():
            one_run(args, tree)  # warm the OS file cache
        for _ in range(opts.runs):
            for label, tree in trees.items():
                samples[label].append(one_run(args, tree))
        cpu = {}
        for label, tree in trees.items():
            wall = statistics.median(s[0] for s in samples[label])
            cpu[label] = statistics.median(s[1] for s in samples[label])
            print(f"{name:42} {label:9} {wall:11.3f}s {cpu[label]:10.3f}s  "
                  f"{', '.join(heavy_modules(args, tree)) or '-'}", flush=True)
        if opts.baseline:
            print(f"{name:42} {'ratio':9} {'':12} {cpu['baseline'] / max(cpu['this'], 1e-9):10.1f}x less CPU", flush=True)


if __name__ == "__main__":
    main()
