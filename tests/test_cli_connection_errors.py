"""Each way a connection fails gets its own one-line message and exit 1, never the password.

Against real servers: the test server (trust auth) for refused / missing database / missing role /
TLS refused, and a PostgreSQL started here with scram-sha-256 for a wrong password.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qsl

import pytest
from typer.testing import CliRunner

from lineage_guard.cli import app
from lineage_guard.sources.pg_url import compose_url, url_parts

CORPUS = Path(__file__).parent / "corpus"
runner = CliRunner()
SECRET = "hunter2-not-shown"


def plan_against(url: str):
    return runner.invoke(app, ["plan", "--policy", str(CORPUS / "policy.yaml"), "--identity", "svc-training",
                               "--purpose", "ai_training", "--source", url, "--sql", "SELECT 1"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server_with(url: str, *, user: str | None = None, database: str | None = None, port: int | None = None,
                 query: str = "") -> str:
    parts = url_parts(url)
    params = dict(parse_qsl(query.lstrip("?")))
    return compose_url(host=parts["host"], port=port or parts["port"], user=user or parts["user"] or "postgres",
                       password=SECRET, database=database or parts["database"], params=params)


@pytest.mark.parametrize("change, expected", [
    ({"port": "free"}, "connection refused; is the server running and accepting TCP connections on that host and port?"),
    ({"database": "lg_no_such_database"}, "database 'lg_no_such_database'"),
    ({"user": "lg_no_such_role"}, "the user (role) does not exist; check the user name."),
    ({"query": "?sslmode=require"}, "the SSL/TLS negotiation failed; check sslmode and certificates."),
])
def test_each_connection_failure_says_what_failed(pg_server_url, change, expected):
    over_socket = str(url_parts(pg_server_url)["host"]).startswith("/")  # the embedded server: a Unix socket only
    if change.get("port") == "free":
        change = {"port": _free_port()}
        if over_socket:  # no TCP: nothing listens on that port's socket file
            expected = "no server socket at that path; is the server running?"
    if "query" in change and "sslmode" in pg_server_url:
        pytest.skip("the test server speaks TLS; the refusal case needs one that does not")
    if "query" in change and over_socket:
        # libpq never negotiates TLS over a Unix socket (sslmode does not apply there): it connects.
        assert plan_against(_server_with(pg_server_url, **change)).exit_code == 0
        return
    result = plan_against(_server_with(pg_server_url, **change))
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    where = "socket " if over_socket else "host "
    assert len(lines) == 1 and lines[0].startswith(f"error: could not connect to PostgreSQL ({where}")
    assert expected in lines[0]
    if "database" in change:
        assert "the database does not exist; check the database name." in lines[0]
    assert SECRET not in result.output


@pytest.fixture(scope="module")
def scram_server():
    """A PostgreSQL of our own on 127.0.0.1:<ephemeral> that checks passwords (scram-sha-256)."""
    initdb, postgres = shutil.which("initdb"), shutil.which("postgres")
    if not (initdb and postgres):
        pytest.skip("initdb/postgres binaries are not installed")
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        if not shutil.which("runuser"):
            pytest.skip("running as root without runuser")
        as_user = ["runuser", "-u", "postgres", "--"]
    root = Path(tempfile.mkdtemp(prefix="lg-scram-"))
    os.chmod(root, 0o777)
    data, pwfile = root / "data", root / "pw"
    pwfile.write_text("right-password\n")
    os.chmod(pwfile, 0o644)
    subprocess.run([*as_user, initdb, "-D", str(data), "-U", "postgres", "--auth=scram-sha-256",
                    f"--pwfile={pwfile}"], check=True, capture_output=True, timeout=120)
    port = _free_port()
    server = subprocess.Popen([*as_user, postgres, "-D", str(data), "-p", str(port), "-k", str(root),
                               "-c", "listen_addresses=127.0.0.1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        time.sleep(0.5)  # accepting TCP before it accepts logins
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)


def test_a_wrong_password_is_named_and_never_echoed(scram_server):
    result = plan_against(_server_with(scram_server))
    assert result.exit_code == 1
    assert "could not connect to PostgreSQL (host 127.0.0.1" in result.output
    assert "authentication failed; check the user and password." in result.output
    assert SECRET not in result.output
