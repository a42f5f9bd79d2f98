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
