"""A Unix-socket host end to end: URL building, the governed source, the Airflow hook, the Dagster resource.

The embedded server (pgserver) listens only on a socket, so these are what `make test` without a
server needs. Here they run against the test server's own socket (the embedded one's directory, or
the machine server's /var/run/postgresql), so CI covers them too.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import require

from lineage_guard.sources.pg_url import PgUrl, compose_url, url_parts, with_params

MACHINE_SOCKET_DIR = "/var/run/postgresql"


@pytest.fixture(scope="module")
def socket_db(pg_url) -> dict:
    """The session database, reached through a socket directory instead of TCP."""
    parts = url_parts(pg_url)
    host = str(parts["host"])
    if not host.startswith("/"):
        host = MACHINE_SOCKET_DIR
        assert (Path(host) / f".s.PGSQL.{parts['port']}").exists(), (
            f"the test server at {PgUrl.parse(pg_url).redacted} has no Unix socket in {host}; the socket tests "
            "need one (the Debian/Ubuntu postgresql package makes it)")
    return {**parts, "host": host}


def test_socket_urls_are_built_and_extended_without_mangling():
    url = compose_url(host="/var/run/postgresql", port=5433, database="clinic db", user="svc", password="p@ss")
    assert url == "postgresql://svc:p%40ss@/clinic%20db?host=%2Fvar%2Frun%2Fpostgresql&port=5433"
    assert url_parts(url) == {"host": "/var/run/postgresql", "port": 5433, "user": "svc", "password": "p@ss",
                              "database": "clinic db"}
    extended = with_params(url, options="-csearch_path=app")
    assert extended.count("?") == 1 and extended.endswith("&options=-csearch_path%3Dapp")  # not ...?host=...?options=
    assert url_parts(extended)["host"] == "/var/run/postgresql"
    assert PgUrl.parse(url).redacted == "postgresql://svc:***@localhost:5433/clinic db"  # lineage names the machine
    assert compose_url(host="db.internal", database="c", port=6543) == "postgresql://db.internal:6543/c"
    assert compose_url(host="::1", database="c", port=5432) == "postgresql://[::1]:5432/c"


@pytest.mark.parametrize("url", [
    "postgresql://u@/db?host=/run/Pg%20Sock&port=5433",
    "postgresql://u@%2Frun%2FPg%20Sock:5433/db",     # the socket directory percent-encoded in the host part
])
def test_a_socket_url_names_localhost_in_lineage_however_it_is_written(url):
    u = PgUrl.parse(url)
    assert (u.host, u.port, u.database, u.socket_dir) == ("localhost", 5433, "db", "/run/Pg Sock")


def test_a_governed_read_over_the_socket(socket_db):
    from lineage_guard.sources import PostgresSource

    url = compose_url(host=socket_db["host"], port=socket_db["port"], database=socket_db["database"],
                      user=socket_db["user"], password=socket_db["password"])
    source = PostgresSource(with_params(url, application_name="lg-socket-test"))
    assert source.read_all("SELECT current_setting('application_name') AS app").to_pylist() == [
        {"app": "lg-socket-test"}]
    assert source.info.namespace == f"postgres://localhost:{socket_db['port']}"


def test_the_airflow_hook_accepts_a_socket_host(socket_db, monkeypatch):
    require("airflow", "airflow")
    import airflow_conftest  # noqa: F401 - isolates AIRFLOW_HOME before Airflow is imported
    from lineage_guard.operators import GovernedPostgresHook

    monkeypatch.setenv("AIRFLOW_CONN_LG_SOCKET", json.dumps({
        "conn_type": "postgres", "host": socket_db["host"], "port": socket_db["port"],
        "login": socket_db["user"], "password": socket_db["password"] or "", "schema": socket_db["database"],
        "extra": {"application_name": "lg-airflow-socket"}}))
    hook = GovernedPostgresHook("lg_socket")
    assert url_parts(hook.source_url)["host"] == socket_db["host"]
    assert hook.test_connection() == (True, "connection works (read-only transaction)")
    assert hook.get_conn().read_all("SELECT current_setting('application_name') AS app").to_pylist() == [
        {"app": "lg-airflow-socket"}]


def test_the_dagster_resource_accepts_a_socket_host(socket_db, tmp_path):
    require("dagster", "dagster")
    from lineage_guard.assets import GovernedPostgresResource

    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\nidentities: {probe: {kind: service}}\npurposes: [checks]\n")
    resource = GovernedPostgresResource(host=socket_db["host"], port=socket_db["port"],
                                        database=socket_db["database"], user=socket_db["user"],
                                        password=socket_db["password"], policy=str(policy), purpose="checks",
                                        identity="probe")
    assert url_parts(resource.source_url())["host"] == socket_db["host"]
    assert resource.read_arrow("SELECT 41 + 1 AS answer").to_pylist() == [{"answer": 42}]
