"""Shared fixtures: a real PostgreSQL database per test session, an isolated state home, a master key.

The server is the one named by LINEAGE_GUARD_TEST_POSTGRES_URL (CI starts the
machine's own), else an embedded one (pgserver) the suite starts itself. Each test
session gets its own database so parallel runs never see each other's tables.
"""

from __future__ import annotations

import importlib
import os
import secrets
import uuid
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
# The project carries everything its tests read: the adversarial corpus, the OpenLineage checker
# and the official OpenLineage JSON Schemas it validates against (tests/openlineage-spec, Apache-2.0).
CORPUS = HERE / "corpus"
CHECK_LINEAGE = HERE / "tools" / "check_lineage.py"
OPENLINEAGE_SPEC = HERE / "openlineage-spec"
# A fixed test-only master key: generated here, never committed as a fixture file.
TEST_MASTER_KEY = secrets.token_hex(32)


def require(module: str, extra: str):
    """Import an optional dependency; skip without it, but fail under CI=true (a skip is not a pass)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and the [{extra}] extra is missing ({module} does not import)")
        pytest.skip(f"needs the [{extra}] extra", allow_module_level=True)


def _embedded_data() -> Path:
    return Path(os.environ.get("LINEAGE_GUARD_TEST_PGDATA", Path.home() / ".cache" / "lineage_guard" / "test-pg"))


def _with_database(url: str, database: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + database))


def namespace_of(url: str) -> str:
    """The OpenLineage namespace a read of `url` must carry: postgres://host:port, localhost for a Unix socket."""
    from lineage_guard.sources.pg_url import url_parts

    parts = url_parts(url)
    host = "localhost" if str(parts["host"]).startswith("/") else parts["host"]
    return f"postgres://{host}:{parts['port']}"


@pytest.fixture(scope="session")
def pg_server_url():
    """The URL of the server (its maintenance database)."""
    url = os.environ.get("LINEAGE_GUARD_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    import warnings

    with warnings.catch_warnings():  # pgserver asks platformdirs for XDG_RUNTIME_DIR at import (unset on CI/root)
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        require("pgserver", "embedded")
    from lineage_guard.sources.embedded import embedded_url, stop_embedded

    data = _embedded_data()
    data.mkdir(parents=True, exist_ok=True)
    yield embedded_url(data)  # the project's own start: no platformdirs RuntimeDirWarning
    # Stopped here, while pytest's streams are open: left to pgserver's atexit hook, its log lines
    # go to streams pytest has closed ("--- Logging error ---" tracebacks at exit).
    stop_embedded(data)


@pytest.fixture(scope="session")
def pg_url(pg_server_url):
    """A fresh database on the test server for this test session, dropped at the end."""
    psycopg = require("psycopg", "postgres")
    name = f"lg_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield _with_database(pg_server_url, name)
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def new_database(pg_server_url):
    """Factory for a fresh, empty database: for tests whose tables would clash with the corpus's."""
    psycopg = require("psycopg", "postgres")
    created: list[str] = []

    def make() -> str:
        name = f"lg_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(pg_server_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        created.append(name)
        return _with_database(pg_server_url, name)

    yield make
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        for name in created:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def corpus_url(pg_url):
    """The session database loaded with the adversarial corpus schema (+ extras)."""
    psycopg = require("psycopg", "postgres")
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute((CORPUS / "schema.sql").read_text())
        conn.execute((CORPUS / "schema_extras.sql").read_text())
    return pg_url


@pytest.fixture(autouse=True)
def lg_home(tmp_path, monkeypatch):
    """Every test gets its own state folder and the test master key; no OpenLineage backend by default."""
    home = tmp_path / "lg_home"
    monkeypatch.setenv("LINEAGE_GUARD_HOME", str(home))
    monkeypatch.setenv("LINEAGE_GUARD_MASTER_KEY", TEST_MASTER_KEY)
    monkeypatch.delenv("LINEAGE_GUARD_IDENTITY", raising=False)
    monkeypatch.delenv("OPENLINEAGE_URL", raising=False)
    monkeypatch.delenv("OPENLINEAGE_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    return home


@pytest.fixture
def traversable_dir():
    """A folder the unprivileged `pgserver` user can reach when the suite runs as root (embedded-server tests).

    Not under pytest's tmp_path: pytest keeps /tmp/pytest-of-<user> at mode 0700 (and resets it
    when another session starts), so a server running as another user cannot open its data there.
    """
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="lg-embedded-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def master_key() -> str:
    return TEST_MASTER_KEY
