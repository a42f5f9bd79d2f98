"""A split read in Airflow: `GovernedSplitReadOperator` plans once, `GovernedPostgresOperator.partial().expand()`
fetches one endpoint per mapped task instance; real `dag.test()` in a process holding only a token.

The service is a real TLS subprocess on the real PostgreSQL; the task process reaches it through a TCP
proxy that resets the first connection carrying more than 256 KiB back (a killed connection in the
middle of an endpoint's stream), or, in the black-hole test, stops forwarding it and closes nothing (a
dropped link: only the client's service_timeout_s or keepalive can notice). Lineage from both producers
(the service, Airflow's provider) goes to one HTTP receiver on 127.0.0.1 and is checked with the
project's checker.
"""

from __future__ import annotations

import json
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from airflow_conftest import *
from conftest import TEST_MASTER_KEY, require
from fault_proxy import CuttingProxy
from lineage_check import assert_valid_events
from ol_receiver import FakeMarquez
from service_helpers import RAW_SENSITIVE, ledger_entries, people_service

pytestmark = pytest.mark.airflow

SQL = "SELECT id, email, ssn, plan FROM people"
ROWS = 60_000          # 15,000 rows (~1 MB) per endpoint: far more than the proxy lets through before the cut
PARTS = 4


@pytest.fixture(scope="module")
def marquez():
    with FakeMarquez.running() as server:
        yield server


@pytest.fixture(scope="module")
def svc(airflow_env, new_database, tmp_path_factory, marquez):
    require("jwt", "service")
    with people_service(new_database(), tmp_path_factory.mktemp("airflow-split"), rows=ROWS,
                        env={"OPENLINEAGE_URL": marquez.url}) as service:
        yield service


def rows_of(table: pa.Table) -> list[tuple]:
    return sorted(zip(*(table.column(n).to_pylist() for n in ("id", "email", "ssn", "plan")), strict=True))


def test_mapped_tasks_read_one_plan_and_a_killed_connection_is_retried_alone(airflow_env, svc, marquez, tmp_path):
    from lineage_guard.audit.query import effective, who_saw
    from lineage_guard.client import connect

    out = tmp_path / "out"
    with CuttingProxy(("127.0.0.1", int(svc.url.rsplit(":", 1)[1])), cut_after=256 * 1024) as proxy:
        conn = {"conn_type": "lineage_guard_service", "host": "127.0.0.1", "port": proxy.port,
                "password": svc.token, "extra": {"ca_file": str(svc.tls.cert)}}
        env = task_environment(airflow_env, lg_split=conn)
        env["AIRFLOW__OPENLINEAGE__TRANSPORT"] = json.dumps({"type": "http", "url": marquez.url})
        assert TEST_MASTER_KEY not in json.dumps(env) and svc.db not in json.dumps(env)
        result, logs = run_dag_process("lg_split", env, {"out_dir": str(out)})
    assert proxy.cuts == 1                       # the fault really happened, once

    # -- Airflow: one plan task, one mapped task instance per endpoint, one of them retried ---------------
    assert result["tasks"] == {"plan": "success"}, result
    mapped = sorted((i["map_index"], i["state"], i["try_number"]) for i in result["instances"] if i["task_id"] == "read")
    assert [(m, s) for m, s, _ in mapped] == [(i, "success") for i in range(PARTS)], mapped
    tries = Counter(t for _, _, t in mapped)
    assert tries == {1: PARTS - 1, 2: 1}, mapped            # the cut task instance alone ran twice
    (retried_index,) = [m for m, _, t in mapped if t == 2]
    docs = result["xcoms"]["plan"]
    assert [d["index"] for d in docs] == list(range(PARTS)) and len({d["parent_run_id"] for d in docs}) == 1
    parent = docs[0]["parent_run_id"]
    assert not {"token", "password"} & {k for d in docs for k in d}     # the XCom holds no credential

    # -- the same rows and the same tokens as one governed extract of the statement ------------------------
    files = sorted(out.glob("part-*.parquet"))
    assert [f.name for f in files] == [f"part-{i}.parquet" for i in range(PARTS)]
    parts = [pq.read_table(f) for f in files]
    with connect(svc.url, purpose="ai_training", token=svc.token, tls_root_certs=svc.tls.pem) as s:
        single = s.read_arrow(SQL)
    got = rows_of(pa.concat_tables(parts))
    assert len(got) == ROWS and got == rows_of(single)          # nothing missing, nothing twice
    assert all(e.startswith("tok_") for e in single.column("email").to_pylist()[:100])
    summaries = result["mapped_xcoms"]["read"]
    for i, table in enumerate(parts):
        meta = pq.read_metadata(files[i]).metadata
        assert meta[b"lineage_guard.receipt_id"].decode() == summaries[str(i)]["receipt_id"]
        assert summaries[str(i)]["endpoint"] == {"key": docs[i]["key"], "index": i, "of": PARTS,
                                                 "parent_run_id": parent}
        assert summaries[str(i)]["rows"] == table.num_rows

    # -- the ledger: one summary, one entry per endpoint fetched, the retry tied to its first attempt -------
    entries = [e for e in ledger_entries(svc.home) if (e["body"].get("split") or {}).get("parent_run_id") == parent]
    mine = [e["body"] for e in effective(entries)]
    (summary,) = [b for b in mine if b["split"]["role"] == "summary"]
    assert summary["split"]["endpoints"] == PARTS and summary["rows"] == 0
    assert summary["parent"]["job_name"] == "lg_split.plan"          # the plan's run is the plan task's child
    (summary_id,) = [e["id"] for e in entries if e["body"]["split"]["role"] == "summary"]
    assert {d["summary_receipt_id"] for d in docs} == {summary_id}
    ends = [b for b in mine if b["split"]["role"] == "endpoint"]
    # One entry per endpoint fetched: one per range, plus the retried range's second attempt.
    assert sorted(b["split"]["index"] for b in ends) == sorted([*range(PARTS), retried_index])
    assert {b["split"]["summary_receipt_id"] for b in ends} == {summary_id}
    again = sorted((b for b in ends if b["split"]["index"] == retried_index), key=lambda b: b["split"]["attempt"])
    assert [b["split"]["attempt"] for b in again] == [1, 2]
    # The server records what it sent: the cut attempt's stream may have left the server whole (into the
    # kernel's buffers: success) before the reset reached it, or not (failed). Either way the retry says so.
    assert again[0]["outcome"] in ("success", "failed")
    assert again[1]["split"]["retry_of"] == again[0]["run_id"] and again[1]["outcome"] == "success"
    ok = [b for b in ends if b["outcome"] == "success" and (b["split"]["index"] != retried_index
                                                             or b["split"]["attempt"] == 2)]
    assert sorted(b["split"]["index"] for b in ok) == list(range(PARTS))
    assert [b["split"]["index"] for b in ends if b["split"]["attempt"] > 1] == [retried_index]   # no re-plan
    assert {b["parent"]["run_id"] for b in ends} == {parent}        # one parent run for the whole read
    (seen,) = who_saw(entries, "public.people.email")["masked"]
    assert seen.rows == ROWS                                        # the retried range counted once

    # -- lineage: the plan's run, each endpoint's run under it, each mapped task naming its endpoint ------
    ok_runs = {b["run_id"] for b in ok}
    events = marquez.wait_for(lambda got: {e["run"]["runId"] for e in got if e["eventType"] == "COMPLETE"}
                              >= ok_runs | {parent} and
                              sum(1 for e in got if e["job"]["name"] == "lg_split.read"
                                  and e["eventType"] == "COMPLETE") >= PARTS)
    plan_events = [e for e in events if e["run"]["runId"] == parent]
    assert [e["eventType"] for e in plan_events] == ["START", "COMPLETE"]
    plan_task = [e for e in events if e["job"]["name"] == "lg_split.plan" and e["eventType"] == "COMPLETE"]
    assert plan_events[-1]["run"]["facets"]["parent"]["run"]["runId"] == plan_task[-1]["run"]["runId"]
    for run_id in ok_runs:
        (complete,) = [e for e in events if e["run"]["runId"] == run_id and e["eventType"] == "COMPLETE"]
        assert complete["run"]["facets"]["parent"]["run"]["runId"] == parent
    read_events = [e for e in events if e["job"]["name"] == "lg_split.read" and e["eventType"] == "COMPLETE"]
    receipts = {e["id"]: e["body"] for e in entries}
    for event in read_events:
        access = event["run"]["facets"]["lineageGuard_access"]
        entry = receipts[access["receipt"]["id"]]          # the endpoint entry this task instance fetched
        assert entry["split"]["role"] == "endpoint" and entry["outcome"] == "success"
        # the entry names the mapped task instance's own OpenLineage run: Airflow's run and the service's tie up
        assert entry["split"]["worker_run"] == {"run_id": event["run"]["runId"], "job_namespace":
                                                event["job"]["namespace"], "job_name": "lg_split.read"}
        assert access["purpose"] == "ai_training" and access["outcome"] == "success"
        assert [o["name"] for o in event["outputs"]] == [str(out / f"part-{entry['split']['index']}.parquet")]
    assert sorted(receipts[e["run"]["facets"]["lineageGuard_access"]["receipt"]["id"]]["split"]["index"]
                  for e in read_events) == list(range(PARTS))
    (cut,) = [e for e in events if e["job"]["name"] == "lg_split.read" and e["eventType"] == "FAIL"]
    assert [o["name"] for o in cut["outputs"]] == [str(out / f"part-{retried_index}.parquet")]   # as its START
    # The DAG run's own events are left out, as in tests/test_airflow_service.py: under dag.test() the
    # provider sends its COMPLETE only. Every task's and every service run's events are checked.
    checked = [e for e in events if e["job"]["name"] != "lg_split"]
    assert_valid_events(checked, forbid=[*RAW_SENSITIVE, TEST_MASTER_KEY, svc.token])
    for needle in [*RAW_SENSITIVE, TEST_MASTER_KEY, svc.token]:
        assert needle not in logs


def _doc(**changes) -> dict:
    doc = {"key": "0f3a9c1e-0", "index": 0, "of": 2, "ticket": "CgUKAwAAAA==", "parent_run_id": "p",
           "summary_receipt_id": "r", "plan_digest": "d"}
    return {**doc, **changes}


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"endpoint": _doc()}, "give service_conn_id="),
    ({"endpoint": _doc(), "service_conn_id": "lg", "sql": "SELECT 1"}, "not both"),
    ({"endpoint": {"index": 0}, "service_conn_id": "lg"}, "lacks key, of, ticket"),
    ({"endpoint": _doc(index=2), "service_conn_id": "lg"}, "index must be an integer from 0 to of-1"),
    ({"endpoint": "CgUKAwAAAA==", "service_conn_id": "lg"}, "one endpoint document"),
    ({"service_conn_id": "lg"}, "sql= is required"),
])
def test_a_mapped_read_is_refused_at_parse_when_its_endpoint_cannot_be_one(airflow_env, kwargs, message):
    from lineage_guard.operators import GovernedPostgresOperator

    from lineage_guard.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        GovernedPostgresOperator(task_id="read", purpose="ai_training", **kwargs)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"service_conn_id": "", "sql": "SELECT 1"}, "service_conn_id= is required"),
    ({"service_conn_id": "lg", "sql": "  "}, "one SELECT"),
    ({"service_conn_id": "lg", "sql": "SELECT 1", "purpose": ""}, "purpose= is required"),
])
def test_a_split_plan_is_refused_at_parse_without_a_service_or_a_statement(airflow_env, kwargs, message):
    from lineage_guard.operators import GovernedSplitReadOperator

    from lineage_guard.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        GovernedSplitReadOperator(task_id="plan", **{"purpose": "ai_training", **kwargs})


def test_a_bad_ticket_is_a_clear_error():
    from lineage_guard.integrations.endpoints import endpoint_from_doc

    from lineage_guard.errors import ConfigError

    with pytest.raises(ConfigError, match="not base64"):
        endpoint_from_doc(_doc(ticket="not base64!"))
    with pytest.raises(ConfigError, match="not a serialized Flight endpoint"):
        endpoint_from_doc(_doc(ticket="AAAA"))


def test_an_endpoint_the_service_no_longer_holds_fails_without_retries_saying_to_plan_again(
        airflow_env, svc, monkeypatch, tmp_path):
    """A ticket the service does not hold (expired, or issued before a restart) cannot come back by retrying:
    the task fails at once (AirflowFailException), naming the endpoint and what to do."""
    import base64

    from airflow.sdk.exceptions import AirflowFailException
    from lineage_guard.operators import GovernedPostgresOperator
    from pyarrow import flight

    from lineage_guard.service import flightsql as fs

    host, port = svc.url.removeprefix("grpc+tls://").rsplit(":", 1)
    monkeypatch.setenv("AIRFLOW_CONN_LG_SPLIT_UNIT", json.dumps({
        "conn_type": "lineage_guard_service", "host": host, "port": int(port), "password": svc.token,
        "extra": {"ca_file": str(svc.tls.cert)}}))
    forged = flight.FlightEndpoint(flight.Ticket(fs.pack(fs.MESSAGES.TicketStatementQuery(
        statement_handle=b"\x07" * 16))), [])
    doc = _doc(ticket=base64.b64encode(forged.serialize()).decode())
    op = GovernedPostgresOperator(task_id="read", service_conn_id="lg_split_unit", purpose="ai_training",
                                  endpoint=doc, output=str(tmp_path / "part.parquet"))
    with pytest.raises(AirflowFailException, match="no longer holds endpoint 0f3a9c1e-0.*clear the planning task"):
        op.execute({})
    assert not list(tmp_path.iterdir())          # nothing half-written


def test_a_statement_the_service_cannot_split_fails_the_plan_without_retries(airflow_env, svc, monkeypatch):
    """No clear integer key to split on is the request as written: the service says so (kind `invalid`), the
    client raises InvalidRequest (a ConfigError), and the plan task fails at once instead of retrying."""
    from airflow.sdk.exceptions import AirflowFailException
    from lineage_guard.operators import GovernedSplitReadOperator

    host, port = svc.url.removeprefix("grpc+tls://").rsplit(":", 1)
    monkeypatch.setenv("AIRFLOW_CONN_LG_SPLIT_PLAN", json.dumps({
        "conn_type": "lineage_guard_service", "host": host, "port": int(port), "password": svc.token,
        "extra": {"ca_file": str(svc.tls.cert)}}))
    op = GovernedSplitReadOperator(task_id="plan", service_conn_id="lg_split_plan", purpose="ai_training",
                                   sql="SELECT email, plan FROM people", partitions=2)
    with pytest.raises(AirflowFailException, match="no clear integer key column to split on"):
        op.execute({})


def test_a_black_holed_endpoint_fails_within_service_timeout_s_and_is_retried_alone(airflow_env, svc, tmp_path):
    """The proxy stops forwarding the first connection past 256 KiB and closes nothing (a dropped link): the
    mapped task's stream fails with ServiceUnavailable once no batch came for its service_timeout_s (5 s in
    the DAG), instead of waiting forever, and Airflow's retry of that task instance alone brings its rows."""
    from lineage_guard.client import connect

    out = tmp_path / "out"
    port = int(svc.url.rsplit(":", 1)[1])
    with CuttingProxy(("127.0.0.1", port), cut_after=256 * 1024, black_hole=True) as proxy:
        conn = {"conn_type": "lineage_guard_service", "host": "127.0.0.1", "port": proxy.port,
                "password": svc.token, "extra": {"ca_file": str(svc.tls.cert)}}
        result, logs = run_dag_process("lg_split_stall", task_environment(airflow_env, lg_split=conn),
                                       {"out_dir": str(out)})
    assert proxy.cuts == 1                                  # the fault really happened, once
    assert result["tasks"] == {"plan": "success"}, result
    mapped = sorted((i["map_index"], i["state"], i["try_number"]) for i in result["instances"] if i["task_id"] == "read")
    assert [(m, s) for m, s, _ in mapped] == [(i, "success") for i in range(PARTS)], mapped
    assert Counter(t for _, _, t in mapped) == {1: PARTS - 1, 2: 1}, mapped      # the stalled one alone, twice
    assert "ServiceUnavailable" in logs and "no message from the service for 5 s" in logs   # its own bound
    parts = [pq.read_table(f) for f in sorted(out.glob("part-*.parquet"))]
    with connect(svc.url, purpose="ai_training", token=svc.token, tls_root_certs=svc.tls.pem) as s:
        single = s.read_arrow(SQL)
    assert rows_of(pa.concat_tables(parts)) == rows_of(single)                     # nothing missing, nothing twice
