"""Split reads on the real TLS server: one plan, endpoints fetched by other workers (service/partitions.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pyarrow as pa
import pytest
from conftest import require
from pyarrow import flight
from service_helpers import people_service

from lineage_guard.audit import Ledger
from lineage_guard.audit.query import effective, open_runs, who_saw
from lineage_guard.client import ServiceError, connect
from lineage_guard.service import flightsql as fs

SQL = "SELECT id, email, ssn, plan FROM people"
ROWS = 3000


@pytest.fixture(scope="module")
def svc(new_database, tmp_path_factory):
    require("jwt", "service")
    with people_service(new_database(), tmp_path_factory.mktemp("split-svc"), rows=ROWS) as service:
        yield service


def entries(svc) -> list[dict]:
    with Ledger.open(f"sqlite:///{svc.home / 'ledger.sqlite'}", create=False) as led:
        return list(led.entries())


def bodies(svc) -> list[dict]:
    return [e["body"] for e in entries(svc)]


def client(svc, who: str = "svc-training"):
    return connect(svc.url, purpose="ai_training", token=svc.tokens[who], tls_root_certs=svc.tls.pem)


def descriptor(sql: str = SQL) -> flight.FlightDescriptor:
    return flight.FlightDescriptor.for_command(fs.pack(fs.MESSAGES.CommandStatementQuery(query=sql)))


def rows(table: pa.Table) -> list[tuple]:
    return sorted(zip(*(table.column(n).to_pylist() for n in table.column_names), strict=True))


def split_entries(svc, parent: str, role: str) -> list[dict]:
    latest = [e["body"] for e in effective(entries(svc))]   # a run's final entry supersedes its `open` one
    return [b for b in latest if (b.get("split") or {}).get("parent_run_id") == parent
            and b["split"]["role"] == role]


def test_split_read_is_one_plan_with_a_summary_and_an_entry_per_endpoint(svc):
    with client(svc) as s:
        whole = s.read_arrow(SQL)
        info = s.flight_info(descriptor(), partitions=3)
        about = json.loads(info.app_metadata)["lineage_guard"]
        parent = about["parent_run_id"]
        # Planning read nothing of any endpoint: only the summary is in the ledger, no endpoint entry (open
        # or otherwise). (The first version opened endpoint 0 while planning: an `open` entry was here.)
        assert [b["split"]["role"] for b in bodies(svc) if (b.get("split") or {}).get("parent_run_id") == parent] \
            == ["summary"]
        assert open_runs(entries(svc)) == []
        assert len(info.endpoints) == 3 and about["partitions"] == 3
        assert info.schema.names == whole.schema.names
        parts = [s.fetch(e) for e in info.endpoints]
    table = pa.concat_tables([t for t, _ in parts])
    assert table.schema.equals(info.schema)                 # the schema the plan gave is the one streamed
    assert rows(table) == rows(whole)                        # the same rows and the same tokens as one read
    assert all(e.startswith("tok_") for e in table.column("email").to_pylist())
    assert all(len({*t.column("id").to_pylist()}) > 0 for t, _ in parts)   # every range has rows
    (summary,) = split_entries(svc, parent, "summary")
    assert summary["split"]["endpoints"] == 3 and summary["split"]["plan_digest"] == about["plan_digest"]
    assert summary["rows"] == 0 and summary["split"]["split_key"] == "id"
    fetched = [b for b in split_entries(svc, parent, "endpoint") if b["outcome"] == "success"]
    assert sorted(b["split"]["index"] for b in fetched) == [0, 1, 2]
    assert {b["split"]["summary_receipt_id"] for b in fetched} == {about["summary_receipt_id"]}
    assert {b["parent"]["run_id"] for b in fetched} == {parent}    # one parent lineage run
    assert sum(b["rows"] for b in fetched) == ROWS
    assert {r.run_id for _, r in parts} == {b["run_id"] for b in fetched}


KILLED_WORKER = textwrap.dedent("""
    import os, sys
    from pyarrow import flight
    from lineage_guard.client import connect
    url, token, ca, blob = sys.argv[1], sys.argv[2], open(sys.argv[3], "rb").read(), bytes.fromhex(sys.stdin.read())
    endpoint = flight.FlightEndpoint.deserialize(blob)
    with connect(url, purpose="ai_training", token=token, tls_root_certs=ca) as s:
        reader = s._client.do_get(endpoint.ticket, s._options())
        chunk = reader.read_chunk()          # some of the partition has arrived ...
        print(chunk.data.num_rows, flush=True)
        os._exit(9)                          # ... and the worker dies before the end of the stream
""")


def test_a_partition_fetched_again_by_its_owner_is_a_retry_counted_once(svc, tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_bytes(svc.tls.pem)
    with client(svc) as s:
        info = s.flight_info(descriptor(), partitions=2)
        parent = json.loads(info.app_metadata)["lineage_guard"]["parent_run_id"]
        # Another process, with its own credential and the endpoint serialized, starts the partition and dies.
        blob = info.endpoints[0].serialize()
        env = {k: v for k, v in os.environ.items() if not k.startswith("LINEAGE_GUARD_")}
        done = subprocess.run([sys.executable, "-c", KILLED_WORKER, svc.url, svc.tokens["svc-training"], str(ca)],
                              input=blob.hex(), capture_output=True, text=True, timeout=120, env=env, check=False)
        assert done.returncode == 9 and int(done.stdout.split()[0]) > 0, done.stderr
        # Retried alone, without a new GetFlightInfo: served again.
        retried, _ = s.fetch(flight.FlightEndpoint.deserialize(blob))
        other, _ = s.fetch(info.endpoints[1])
        again, _ = s.fetch(info.endpoints[1])        # e.g. a second Spark action over the same endpoints
        whole = s.read_arrow(SQL)
    assert rows(pa.concat_tables([retried, other])) == rows(whole)      # no duplicates, nothing missing
    assert rows(again) == rows(other)
    ends = split_entries(svc, parent, "endpoint")
    first = [b for b in ends if b["split"]["index"] == 0]
    assert [b["split"]["attempt"] for b in first] == [1, 2]
    assert "retry_of" not in first[0]["split"] and first[1]["split"]["retry_of"] == first[0]["run_id"]
    assert first[1]["outcome"] == "success"
    # who-saw counts each partition once: the retries are the same rows.
    mine = [e for e in entries(svc) if (e["body"].get("split") or {}).get("parent_run_id") == parent]
    (seen,) = who_saw(mine, "public.people.email")["masked"]
    assert seen.rows == ROWS and seen.runs == 2


def test_another_identity_cannot_use_a_split_ticket(svc):
    with client(svc) as s:
        info = s.flight_info(descriptor(), partitions=2)
    before = len(bodies(svc))
    with client(svc, "limited") as thief, pytest.raises(ServiceError, match="unknown or expired ticket"):
        thief.fetch(info.endpoints[0])
    new = bodies(svc)[before:]
    assert [b["outcome"] for b in new] == ["denied"]
    assert new[0]["who"]["principal"] == "limited" and "another identity" in new[0]["decision"]["reasons"][0]
    with client(svc) as s:                       # the owner still can
        table, receipt = s.fetch(info.endpoints[0])
    assert table.num_rows > 0 and receipt.rows == table.num_rows


def test_the_plan_is_a_lineage_run_under_the_callers_run_and_every_endpoint_run_under_it(svc):
    """The plan's run (the summary) is emitted (START, COMPLETE) with the caller's run as parent, and its
    lineage parts come back to the caller; each endpoint's run names it, and the worker that fetched it
    is recorded. (Before: no event had the plan's run id, so the endpoints' parent was a run never sent.)"""
    import uuid

    from lineage_check import assert_valid_events

    from lineage_guard.lineage import Outbox

    planner = {"run_id": str(uuid.uuid4()), "job_namespace": "airflow", "job_name": "dag.plan"}
    worker = {"run_id": str(uuid.uuid4()), "job_namespace": "airflow", "job_name": "dag.read"}
    with connect(svc.url, purpose="ai_training", token=svc.tokens["svc-training"], tls_root_certs=svc.tls.pem,
                 run_context={"parent": planner}) as s:
        info = s.flight_info(descriptor(), partitions=2)
    about = json.loads(info.app_metadata)["lineage_guard"]
    parent = about["parent_run_id"]
    assert about["lineage"]["run_id"] == parent and about["lineage"]["inputs"]   # the planning task's facets
    with connect(svc.url, purpose="ai_training", token=svc.tokens["svc-training"], tls_root_certs=svc.tls.pem,
                 run_context={"parent": worker}) as s:
        _, receipt = s.fetch(info.endpoints[1])
    assert receipt.lineage and receipt.lineage["run_id"] == receipt.run_id        # the worker's own facets
    box = Outbox(svc.home / "outbox.sqlite")     # the server's own durable outbox (what it ships)
    try:
        plan_events, endpoint_events = box.events(run_id=parent), box.events(run_id=receipt.run_id)
    finally:
        box.close()
    assert [e["eventType"] for e in plan_events] == ["START", "COMPLETE"]
    assert plan_events[-1]["run"]["facets"]["parent"]["run"]["runId"] == planner["run_id"]
    assert [e["eventType"] for e in endpoint_events] == ["START", "COMPLETE"]
    assert endpoint_events[-1]["run"]["facets"]["parent"]["run"]["runId"] == parent   # one parent: the plan's
    assert_valid_events([*plan_events, *endpoint_events])
    (entry,) = [b for b in split_entries(svc, parent, "endpoint")]
    assert entry["split"]["worker_run"] == worker and entry["parent"]["run_id"] == parent
    (summary,) = split_entries(svc, parent, "summary")
    assert summary["parent"]["run_id"] == planner["run_id"]
