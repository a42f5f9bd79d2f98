"""Client processes import no masking keys, no database driver, no Great Expectations.

Each check is a fresh interpreter that imports one client path and builds a service-mode session
(no network call is needed for that), then lists what got loaded. Key material and the masking
kernels (`lineage_guard.mask.keys`, `.apply`, the method modules), the source and session core, the
PostgreSQL drivers and GX must stay out: a process that never loads them cannot leak or misuse them.
Mask *declarations* (`lineage_guard.mask.spec`) hold no key and may load.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

KEYS_DRIVERS_GX = ("lineage_guard.mask.keys", "lineage_guard.mask.apply", "lineage_guard.mask.tokenize",
                   "lineage_guard.mask.pseudonymize", "lineage_guard.mask.format_preserving",
                   "lineage_guard.mask.digest", "lineage_guard.mask.shift_date", "lineage_guard.mask._arrow",
                   "lineage_guard.audit.signing", "adbc_driver_postgresql", "psycopg", "great_expectations")
# The integrations in service mode also leave the governed path itself (source, session, planner) on the server.
NO_PATH = (*KEYS_DRIVERS_GX, "lineage_guard.sources", "lineage_guard.session", "lineage_guard.planner")

PATHS = {
    "thin client": (NO_PATH, """
from lineage_guard.client import connect
connect("grpc+tls://127.0.0.1:9", purpose="ai_training", token="lgt_x").close()
"""),
    # GovernedSession.connect lives on the session class, so the session module loads; keys and drivers do not.
    "GovernedSession.connect": (KEYS_DRIVERS_GX, """
from lineage_guard import GovernedSession
GovernedSession.connect("grpc+tls://127.0.0.1:9", purpose="ai_training", token="lgt_x").close()
"""),
    "airflow operator in service mode": (NO_PATH, """
from lineage_guard.operators import GovernedPostgresOperator, GovernedServiceHook
op = GovernedPostgresOperator(task_id="t", service_conn_id="lg", sql="SELECT 1", purpose="ai_training")
from lineage_guard.client import connect
connect("grpc+tls://127.0.0.1:9", purpose="ai_training", token="lgt_x").close()
"""),
    "dagster resource in service mode": (NO_PATH, """
from lineage_guard.assets import GovernedPostgresResource
r = GovernedPostgresResource(service_url="grpc+tls://127.0.0.1:9", purpose="ai_training", token="lgt_x")
r.session().close()
"""),
}


@pytest.mark.parametrize("name", sorted(PATHS))
def test_a_client_path_loads_no_key_no_driver_and_no_gx(name, tmp_path):
    if name.startswith("airflow"):
        __import__("airflow_conftest")  # sets an isolated AIRFLOW_HOME in the environment the child inherits
    forbidden, body = PATHS[name]
    code = body + f"""
import json, sys
print(json.dumps(sorted(m for m in sys.modules if m.startswith({forbidden!r}))))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180, check=False,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [], name


def test_public_names_all_resolve():
    """`__all__` is spelled out for linters; every name in it resolves lazily, and every lazy export is listed."""
    import lineage_guard
    from lineage_guard import _EXPORTS

    assert set(lineage_guard.__all__) == {*_EXPORTS, "attest"}
    for name in lineage_guard.__all__:
        assert getattr(lineage_guard, name) is not None, name
