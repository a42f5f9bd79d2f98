"""Build lineage_guard's wheel the way an installer does, outside the source tree.

setuptools' backend writes `build/` and `*.egg-info` next to `pyproject.toml`; building in a
copy keeps the checkout clean and stops a stale `build/lib` from slipping deleted files into
the wheel.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Everything pyproject.toml packages or reads (readme, licence); nothing else is copied.
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "lineage_guard", "operators", "assets", "integrations")


def build_wheel(out: Path) -> Path:
    """Build the wheel into `out` from a copy of the sources under `out`; return the wheel's path.

    Example:
        >>> build_wheel(tmp_path).name            # doctest: +SKIP
        'lineage_guard-0.1.0-py3-none-any.whl'
    """
    src = out / "src"
    src.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=ignore)
        else:
            shutil.copy2(path, src / name)
    dist = out / "dist"
    dist.mkdir()
    build = f"from setuptools import build_meta; print(build_meta.build_wheel({str(dist)!r}))"
    done = subprocess.run(
        [sys.executable, "-c", build], check=False, cwd=src, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return dist / done.stdout.strip().splitlines()[-1]
