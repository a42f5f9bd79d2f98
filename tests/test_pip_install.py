"""The wheel installs with plain pip into a fresh venv, core first, then every extra, and works.

One venv, installed in two stages with `-c constraints.txt` and pip's own cache: after the core
install the CLI answers `--help` and `--version` and an integration without its extra names the
pip command; after `[all]` each extra's integration imports. (One pip run per extra took 702 s at
load ~9 with a partly warm cache; that each extra declares its own imports is checked statically
by test_packaging.py::test_every_import_is_a_declared_dependency_of_its_extra.)
Nothing from this checkout's .venv is visible (a fresh `python -m venv`, run from a temp folder).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from wheel_build import ROOT, build_wheel

# extra -> the import a user of that extra writes first
EXTRAS = {
    "postgres": "from lineage_guard.sources import PostgresSource",
    "embedded": "import pgserver; from lineage_guard.sources.embedded import embedded_url",
    "service": "from lineage_guard.client import RemoteSession",
    "console": "import lineage_guard.console.app, starlette, uvicorn, authlib",
    "gx": "from lineage_guard.integrations.great_expectations import _gx; _gx()",
    "dagster": "from lineage_guard.assets import GovernedIOManager, GovernedPostgresResource",
    "airflow": "from lineage_guard.operators import GovernedPostgresOperator, ApprovalTrigger",
    "spark": "import lineage_guard.integrations.spark, pyspark",
    "ray": "import lineage_guard.integrations.ray",
}


def _run(cmd: list[str], cwd: Path, timeout: int = 1800) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


class Venv:
    """A fresh venv with the wheel installed by pip; `install(extra)` adds an extra (once)."""

    def __init__(self, root: Path, wheel: Path) -> None:
        self.root, self.wheel = root, wheel
        done = _run([sys.executable, "-m", "venv", str(root / "venv")], root)
        assert done.returncode == 0, done.stderr[-2000:]
        self.bin = root / "venv" / "bin"
        self.installed: set[str] = set()
        self.install(None)

    def install(self, extra: str | None) -> None:
        if extra in self.installed:
            return
        target = f"{self.wheel}[{extra}]" if extra else str(self.wheel)
        done = _run([str(self.bin / "pip"), "install", "--quiet", "--no-compile", target, "-c", str(ROOT / "constraints.txt")],
                    self.root)
        assert done.returncode == 0, f"pip install {target} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        self.installed.add(extra)

    def python(self, code: str) -> subprocess.CompletedProcess[str]:
        return _run([str(self.bin / "python"), "-c", code], self.root, timeout=300)


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    root = tmp_path_factory.mktemp("pip-install")
    wheel = build_wheel(root / "build")
    env = Venv(root, wheel)
    # What the core install alone gives, taken before any extra is added (tests may run in any order).
    env.core = {
        "help": _run([str(env.bin / "lineage-guard"), "--help"], root),
        "version": _run([str(env.bin / "lineage-guard"), "--version"], root),
        "airflow": env.python("from lineage_guard.operators import GovernedPostgresOperator"),
        "where": env.python("import lineage_guard; print(lineage_guard.__file__)"),
    }
    return env


def test_core_install_runs_the_cli(venv):
    help_, version = venv.core["help"], venv.core["version"]
    assert help_.returncode == 0 and "Usage:" in help_.stdout, help_.stderr[-2000:]
    assert version.returncode == 0 and "0.1.0" in version.stdout, version.stderr[-2000:]
    # the package came from the venv, not this checkout
    assert str(venv.root) in venv.core["where"].stdout and str(ROOT) not in venv.core["where"].stdout


def test_core_install_names_the_missing_extra(venv):
    done = venv.core["airflow"]
    assert done.returncode != 0
    assert "pip install 'lineage-guard[airflow]'" in done.stderr.strip().splitlines()[-1], done.stderr[-2000:]


@pytest.mark.parametrize("extra", list(EXTRAS))
def test_each_extra_installs_and_its_integration_imports(venv, extra):
    venv.install("all")
    done = venv.python(EXTRAS[extra])
    assert done.returncode == 0, f"[{extra}]: {EXTRAS[extra]}\n{done.stderr[-3000:]}"
