"""A missing extra names the exact pip command that installs it, for every integration.

Each case imports the integration in a fresh interpreter with the extra's top module made
unimportable (`sys.modules[name] = None` makes `import name` raise ModuleNotFoundError, as on a
machine without it), so the real import guard runs.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from lineage_guard.extras import EXTRA_MODULES, MissingExtra, install_command, needs_extra

CASES = [
    # (extra, module made unimportable, statement a user runs)
    ("airflow", "airflow", "from lineage_guard.operators import GovernedPostgresOperator"),
    ("dagster", "dagster", "import lineage_guard.assets"),
    ("ray", "ray", "import lineage_guard.integrations.ray"),
    ("gx", "great_expectations", "from lineage_guard.integrations.great_expectations import _gx; _gx()"),
    ("embedded", "pgserver", "from lineage_guard.sources.embedded import embedded_url; embedded_url()"),
    ("service", "google", "from lineage_guard.client import connect"),
]

# The CLI's servers say the same in one line, no traceback, exit 1.
CLI_CASES = [
    ("service", "google", ["serve", "--policy", "p.yaml", "--source", "postgresql://u@127.0.0.1:1/db"]),
    ("console", "starlette", ["console", "--policy", "p.yaml"]),
]


@pytest.mark.parametrize(("extra", "blocked", "statement"), CASES, ids=[c[0] for c in CASES])
def test_missing_extra_names_the_pip_command(extra, blocked, statement, tmp_path):
    code = f"import sys; sys.modules[{blocked!r}] = None\n{statement}"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert f"pip install 'lineage-guard[{extra}]'" in last, done.stderr[-1500:]


@pytest.mark.parametrize(("extra", "blocked", "args"), CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_a_server_command_without_its_extra_says_the_pip_command_in_one_line(extra, blocked, args, tmp_path):
    (tmp_path / "p.yaml").write_text("version: 1\n")
    code = f"import sys; sys.modules[{blocked!r}] = None\nfrom lineage_guard.cli import main\nsys.argv = ['lineage-guard', *{args!r}]\nmain()"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 1, done.stderr[-1500:]
    assert "Traceback" not in done.stderr and install_command(extra) in done.stderr, done.stderr[-1500:]


def test_postgres_source_without_the_extra(tmp_path):
    code = ("import sys; sys.modules['adbc_driver_postgresql'] = None\n"
            "from lineage_guard.sources.postgres import _connect\n"
            "from lineage_guard.sources.pg_url import PgUrl\n"
            "_connect(PgUrl.parse('postgresql://u@127.0.0.1:1/db'))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode != 0
    assert install_command("postgres") in done.stderr.strip().splitlines()[-1], done.stderr[-1500:]


def test_an_import_error_inside_an_installed_extra_is_not_renamed():
    # A broken install (a name missing from an installed module) must not read as "install the extra".
    with pytest.raises(ImportError) as raised, needs_extra("x", "airflow"):
        raise ImportError("cannot import name 'nope' from 'somewhere_else'", name="somewhere_else")
    assert not isinstance(raised.value, MissingExtra)
    with pytest.raises(MissingExtra, match=r"pip install 'lineage-guard\[airflow\]'"), needs_extra("x", "airflow"):
        raise ModuleNotFoundError("No module named 'airflow.sdk'", name="airflow.sdk")
    assert all(EXTRA_MODULES.values())
