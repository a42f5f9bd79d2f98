"""Start-up cost of the CLI and of the library's imports, in fresh processes.

    python benchmarks/cli_startup.py            # 15 runs of each case, medians
    python benchmarks/cli_startup.py --runs 25
    git archive main | tar -x -C /tmp/base && python benchmarks/cli_startup.py --baseline /tmp/base

Each case runs in a new interpreter (nothing cached in-process); the table gives median wall
time and median CPU time (user + system of the child, steadier than wall time on a shared
machine), and the heavy packages each case imports (`python -X importtime`, counted once).
`--baseline DIR` also runs every case against the lineage_guard package in DIR (put first on
PYTHONPATH), interleaved run by run with the installed one, and prints the CPU ratio.
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


def _env(tree: str | None) -> dict[str, str]:
    env = dict(os.environ)
    if tree:
        env["PYTHONPATH"] = tree + os.pathsep + env.get("PYTHONPATH", "")
    return env


def one_run(args: list[str], tree: str | None = None) -> tuple[float, float]:
    before = os.times()
    start = time.perf_counter()
    # not check=True: a case may not exist in an older tree (the baseline, e.g. --version)
    subprocess.run([sys.executable, *args], check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(tree))
    wall = time.perf_counter() - start
    after = os.times()
    return wall, (after.children_user - before.children_user) + (after.children_system - before.children_system)


def heavy_modules(args: list[str], tree: str | None = None) -> list[str]:
    done = subprocess.run([sys.executable, "-X", "importtime", *args], check=False, capture_output=True, text=True, env=_env(tree))
    names = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    return sorted({n.split(".")[0] for n in names if n.split(".")[0] in HEAVY})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--baseline", help="a source tree holding the lineage_guard package to compare against")
    opts = parser.parse_args()
    trees: dict[str, str | None] = {"this": None, **({"baseline": opts.baseline} if opts.baseline else {})}
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
