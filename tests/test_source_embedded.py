"""The embedded server (pgserver) starts, is reused per data dir, and serves a governed read."""

from __future__ import annotations

import pytest
from conftest import require


@pytest.mark.embedded
def test_embedded_server_roundtrip(traversable_dir):
    require("pgserver", "embedded")
    from lineage_guard.demo.data import seed
    from lineage_guard.sources import PostgresSource
    from lineage_guard.sources.embedded import embedded_url, stop_embedded

    data = traversable_dir / "pg"
    try:
        url = embedded_url(data)
        assert embedded_url(data) == url
        assert seed(url, patients=50, customers=40) == {"customers": 40, "orders": 80, "patients": 50}
        src = PostgresSource(url, schema="lineage_guard_demo")  # the demo seeds only its own schema
        assert src.info.host == "localhost"
        assert src.read_all("SELECT count(*) AS n FROM patients").column("n").to_pylist() == [50]
        assert (data / "PG_VERSION").exists()
    finally:
        stop_embedded(data)


@pytest.mark.embedded
def test_stopped_server_logs_nothing_at_exit(traversable_dir):
    """Stopped early, the server leaves no atexit hook that logs to a stream the host has closed."""
    require("pgserver", "embedded")
    import subprocess
    import sys

    code = ("import logging, sys\n"
            "from lineage_guard.sources.embedded import embedded_url, stop_embedded\n"
            "stream = open(sys.argv[2], 'w')\n"
            "logging.basicConfig(stream=stream, level=logging.INFO)\n"
            "embedded_url(sys.argv[1]); stop_embedded(sys.argv[1])\n"
            "stream.close()  # as pytest closes its capture streams before atexit hooks run\n")
    done = subprocess.run([sys.executable, "-c", code, str(traversable_dir / "pg"), str(traversable_dir / "log")],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Logging error" not in done.stderr, done.stderr[-2000:]
