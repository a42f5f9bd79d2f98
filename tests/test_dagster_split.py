"""A split read as Dagster partitions: `governed_split_assets` plans once, one partition per endpoint; real
`materialize()` through the real TLS service on the real PostgreSQL, with only a token in this process's
resources.

The resource dials the service through a TCP proxy that resets the first connection carrying more than
256 KiB back (a killed connection mid-endpoint); the partition asset's RetryPolicy retries that partition
alone. The service's lineage goes to an HTTP receiver on 127.0.0.1 and is checked with the project's checker.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import TEST_MASTER_KEY, require
from fault_proxy import CuttingProxy
from lineage_check import assert_valid_events
from ol_receiver import FakeMarquez
from service_helpers import RAW_SENSITIVE, ledger_entries, people_service

SQL = "SELECT id, email, ssn, plan FROM people"
ROWS = 40_000          # 10,000 rows per endpoint: far more than the proxy lets through before the cut
PARTS = 4


@pytest.fixture(scope="module")
def marquez():
    with FakeMarquez.running() as server:
        yield server


@pytest.fixture(scope="module")
def svc(new_database, tmp_path_factory, marquez):
    require("jwt", "service")
    require("dagster", "dagster")
    with people_service(new_database(), tmp_path_factory.mktemp("dagster-split"), rows=ROWS,
                        env={"OPENLINEAGE_URL": marquez.url}) as service:
        yield service


def rows_of(table: pa.Table) -> list[tuple]:
    return sorted(zip(*(table.column(n).to_pylist() for n in ("id", "email", "ssn", "plan")), strict=True))


def test_partitions_are_the_endpoints_of_one_plan_and_a_cut_partition_is_retried_alone(svc, marquez, tmp_path):
    import dagster as dg
    from lineage_guard.assets import GovernedIOManager, GovernedPostgresResource, governed_split_assets

    from lineage_guard.audit.query import effective, who_saw
    from lineage_guard.client import connect

    plan, people = governed_split_assets("people", SQL, partitions=PARTS, resource_key="governed",
                                         retry_policy=dg.RetryPolicy(max_retries=1))
    lake = tmp_path / "lake"
    port = int(svc.url.rsplit(":", 1)[1])
    with CuttingProxy(("127.0.0.1", port), cut_after=256 * 1024) as proxy, dg.instance_for_test() as instance:
        governed = GovernedPostgresResource(service_url=f"grpc+tls://127.0.0.1:{proxy.port}", purpose="ai_training",
                                            token=svc.token, ca_file=str(svc.tls.cert))
        resources = {"governed": governed, "io_manager": GovernedIOManager(governed=governed, base_path=str(lake))}
        planned = dg.materialize([plan], resources=resources, instance=instance)
        assert planned.success
        keys = instance.get_dynamic_partitions("people_endpoints")
        docs = planned.asset_materializations_for_node("people_plan")[0].metadata["lineage_guard/endpoints"].value
        assert keys == [d["key"] for d in docs] and len(keys) == PARTS
        parent = docs[0]["parent_run_id"]
        runs = {key: dg.materialize([plan, people], selection=[people.key], partition_key=key, resources=resources,
                                    instance=instance) for key in keys}
        assert all(r.success for r in runs.values())
        # A stale partition key (not an endpoint of the latest plan) is refused with what to do.
        instance.add_dynamic_partitions("people_endpoints", ["00000000-9"])
        stale = dg.materialize([plan, people], selection=[people.key], partition_key="00000000-9",
                               resources=resources, instance=instance, raise_on_error=False)
        assert not stale.success
        assert "not an endpoint of the latest plan" in str(stale.get_step_failure_events()[0].event_specific_data)
    assert proxy.cuts == 1                                # the fault really happened, once

    # The cut partition's step ran twice (Dagster's retry), every other once: no re-plan.
    retried = [k for k, r in runs.items() if any(e.event_type_value == "STEP_RESTARTED" for e in r.all_events)]
    assert len(retried) == 1
    (retried_index,) = [d["index"] for d in docs if d["key"] == retried[0]]

    # The same rows and tokens as one governed extract; one file per partition with the server's footer.
    files = [lake / "people" / f"{key}.parquet" for key in keys]
    parts = [pq.read_table(f) for f in files]
    with connect(svc.url, purpose="ai_training", token=svc.token, tls_root_certs=svc.tls.pem) as s:
        single = s.read_arrow(SQL)
    assert len(rows_of(pa.concat_tables(parts))) == ROWS and rows_of(pa.concat_tables(parts)) == rows_of(single)
    for f in files:
        assert pq.read_metadata(f).metadata.get(b"lineage_guard.provenance")   # the server's provenance document

    # The ledger: one summary (its parent the plan's Dagster run), one entry per endpoint fetched.
    entries = [e for e in ledger_entries(svc.home) if (e["body"].get("split") or {}).get("parent_run_id") == parent]
    mine = [e["body"] for e in effective(entries)]
    (summary,) = [b for b in mine if b["split"]["role"] == "summary"]
    assert summary["parent"]["run_id"] == planned.run_id
    ends = [b for b in mine if b["split"]["role"] == "endpoint"]
    assert sorted(b["split"]["index"] for b in ends) == sorted([*range(PARTS), retried_index])
    again = sorted((b for b in ends if b["split"]["index"] == retried_index), key=lambda b: b["split"]["attempt"])
    assert [b["split"]["attempt"] for b in again] == [1, 2] and again[1]["split"]["retry_of"] == again[0]["run_id"]
    assert again[1]["outcome"] == "success" and {b["parent"]["run_id"] for b in ends} == {parent}
    # each endpoint entry names the partition's own Dagster run
    by_key = {d["index"]: d["key"] for d in docs}
    for b in ends:
        assert b["split"]["worker_run"]["run_id"] == runs[by_key[b["split"]["index"]]].run_id
    (seen,) = who_saw(entries, "public.people.email")["masked"]
    assert seen.rows == ROWS                               # the retried partition counted once

    # Lineage: the plan's run under the plan's Dagster run, every endpoint run under the plan's run.
    ok_runs = {b["run_id"] for b in ends}
    events = marquez.wait_for(lambda got: {e["run"]["runId"] for e in got if e["eventType"] in ("COMPLETE", "FAIL")}
                              >= ok_runs | {parent})
    mine_events = [e for e in events if e["run"]["runId"] in ok_runs | {parent}]
    plan_events = [e for e in mine_events if e["run"]["runId"] == parent]
    assert [e["eventType"] for e in plan_events] == ["START", "COMPLETE"]
    assert plan_events[-1]["run"]["facets"]["parent"]["run"]["runId"] == planned.run_id
    assert all(e["run"]["facets"]["parent"]["run"]["runId"] == parent for e in mine_events if e not in plan_events)
    assert_valid_events(mine_events, forbid=[*RAW_SENSITIVE, TEST_MASTER_KEY, svc.token])
