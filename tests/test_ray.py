"""Ray Data (local mode) on the governed path, against the real TLS server and the real database.

One module-scoped Ray (num_cpus=2), started with no lineage_guard key in its environment: its
workers read the service's endpoints with the caller's token only.
"""

from __future__ import annotations

import os

import pytest
from conftest import require
from service_helpers import people_service

from lineage_guard.audit import Ledger

SQL = "SELECT id, email, ssn, plan FROM people"
ROWS = 2000


@pytest.fixture(scope="module")
def svc(new_database, tmp_path_factory):
    require("jwt", "service")
    with people_service(new_database(), tmp_path_factory.mktemp("ray-svc"), rows=ROWS) as service:
        yield service


@pytest.fixture(scope="module")
def ray_local(tmp_path_factory):
    ray = require("ray", "ray")
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("LINEAGE_GUARD_")}
    try:   # the raylet and its workers inherit this environment: no key in it
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
                 _temp_dir=str(tmp_path_factory.mktemp("ray")))
    finally:
        os.environ.update(saved)
    yield ray
    ray.shutdown()


def test_a_ray_dataset_with_one_block_per_endpoint(ray_local, svc):
    from lineage_guard.integrations.endpoints import plan_read
    from lineage_guard.integrations.ray import GovernedDatasource, ServiceCredential

    from lineage_guard.client import connect

    cred = ServiceCredential(svc.url, purpose="ai_training", token=svc.token, tls_root_certs=svc.tls.pem)
    planned = plan_read(cred, SQL, partitions=2)
    # One block per endpoint (Ray would otherwise split the blocks to its default parallelism); read once.
    dataset = ray_local.data.read_datasource(GovernedDatasource(planned),
                                             override_num_blocks=len(planned.endpoints)).materialize()
    assert dataset.num_blocks() == 2
    got = sorted(tuple(r[c] for c in ("id", "email", "ssn", "plan")) for r in dataset.take_all())
    with connect(svc.url, purpose="ai_training", token=svc.token, tls_root_certs=svc.tls.pem) as s:
        table = s.read_arrow(SQL)
    single = sorted(zip(*(table.column(n).to_pylist() for n in table.column_names), strict=True))
    assert got == single and len(got) == ROWS     # the same rows and tokens as one extract
    assert all(email.startswith("tok_") for _, email, _, _ in got)
    parent = planned.about["parent_run_id"]
    with Ledger.open(f"sqlite:///{svc.home / 'ledger.sqlite'}", create=False) as led:
        fetched = [e["body"] for e in led.entries() if (e["body"].get("parent") or {}).get("run_id") == parent
                   and e["body"]["outcome"] == "success" and e["body"]["rows"]]
    assert sum(e["rows"] for e in fetched) >= ROWS

    @ray_local.remote
    def environment() -> list[str]:
        return sorted(k for k in os.environ if k.startswith("LINEAGE_GUARD_"))

    assert ray_local.get(environment.remote()) == []   # the workers hold no key, no database URL
