"""GovernedPostgresOperator in service mode: real `dag.test()` in a task process holding only tokens.

A real `lineage-guard serve` subprocess (TLS, a JWKS issuer over HTTP on 127.0.0.1) holds the policy,
the database URL and the master key. The DAG runs in a fresh process whose environment has no
database credential and no master key: one task reads with a projected service-account token from a
file (a JWT), one with a lineage-guard API token in the connection's password, one with a forged JWT
naming the first task's subject (refused, with a ledger entry). The embedded-mode tests are beside this
one (tests/test_airflow_operator.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from airflow_conftest import *
from conftest import TEST_MASTER_KEY, require
from cryptography.hazmat.primitives.asymmetric import rsa
from lineage_check import assert_valid_events
from service_helpers import AUDIENCE, Issuer, make_tls, server_key, start_server

from lineage_guard.audit import Ledger
from lineage_guard.audit.query import effective

pytestmark = pytest.mark.airflow

EXTRACT_SUBJECT = "system:serviceaccount:airflow:extract"
WRITER_SUBJECT = "system:serviceaccount:airflow:writer"
SENSITIVE = ("mrn", "full_name", "email", "diagnosis")


def raw_values(patients) -> list[str]:
    return [str(p[c]) for p in patients for c in SENSITIVE]


def _server_policy(issuer: Issuer) -> str:
    """The Airflow tests' policy plus a service section: who each credential is, and for what."""
    doc = yaml.safe_load((DAGS / "policy.yaml").read_text())
    doc["identities"].update({"airflow:lg_service.extract": {"kind": "service", "groups": ["training-jobs"]},
                              "airflow:lg_service.rows": {"kind": "service", "groups": ["training-jobs"]},
                              "airflow:lg_service_writes.fix_city": {"kind": "service", "groups": ["data-eng"]}})
    doc["detection"] = {"enabled": False}
    doc["service"] = {
        "audience": AUDIENCE,
        "issuers": [{"issuer": issuer.url, "jwks_url": issuer.jwks_url, "algorithms": ["RS256"]}],
        "principals": [{"identity": "airflow:lg_service.extract", "issuer": issuer.url, "subject": EXTRACT_SUBJECT},
                       {"identity": "airflow:lg_service_writes.fix_city", "issuer": issuer.url,
                        "subject": WRITER_SUBJECT}],
        "purposes": {"airflow:lg_service.extract": ["ai_training"], "airflow:lg_service.rows": ["ai_training"],
                     "airflow:lg_service_writes.fix_city": ["maintenance"]},
    }
    return yaml.safe_dump(doc)


@pytest.fixture(scope="module")
def service(airflow_env, patients, tmp_path_factory):
    require("jwt", "service")
    root = tmp_path_factory.mktemp("airflow-service")
    issuer = Issuer()
    policy = root / "policy.yaml"
    policy.write_text(_server_policy(issuer))
    tls = make_tls(root / "tls")
    home = root / "server-home"
    home.mkdir()
    # production, as the embedded tests' connection says: its writes to patients need an approval
    server = start_server(policy, airflow_env.pg_url, tls, home, TEST_MASTER_KEY,
                          extra_args=("--environment", "production"))
    from lineage_guard.service.tokens import TokenStore

    api_token = TokenStore(home / "api_tokens.json").create("airflow:lg_service.rows")
    yield server, issuer, tls, api_token
    assert server.stop() == 0
    issuer.close()


def _run_dag(airflow_env, dag_id: str, env: dict, conf: dict) -> tuple[dict, str, list[dict]]:
    """`run_dag_process`, and the OpenLineage events Airflow's provider wrote for it (file transport)."""
    seen = airflow_env.ol_file.read_text().count("\n") if airflow_env.ol_file.exists() else 0
    result, logs = run_dag_process(dag_id, env, conf)
    new = airflow_env.ol_file.read_text().splitlines()[seen:] if airflow_env.ol_file.exists() else []
    events = [e for e in (json.loads(line) for line in new if line.strip())
              if e["job"]["name"].startswith(f"{dag_id}.")]
    return result, logs, events


_task_environment = task_environment


def test_a_dag_in_service_mode_reads_masked_data_with_only_a_token(airflow_env, service, patients, tmp_path):
    import pyarrow.parquet as pq

    server, issuer, tls, api_token = service
    host, port = server.url.removeprefix("grpc+tls://").rsplit(":", 1)
    token_file = tmp_path / "projected-token"      # what the kubelet mounts for a pod
    token_file.write_text(issuer.token(EXTRACT_SUBJECT))
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    base = {"conn_type": "lineage_guard_service", "host": host, "port": int(port)}
    env = _task_environment(
        airflow_env,
        lg_service_jwt={**base, "extra": {"token_file": str(token_file), "ca_file": str(tls.cert)}},
        lg_service_api={**base, "password": api_token, "extra": {"ca_file": str(tls.cert)}},
        lg_service_forged={**base, "password": issuer.token(EXTRACT_SUBJECT, key=stranger),
                           "extra": {"ca_file": str(tls.cert)}},
    )
    assert TEST_MASTER_KEY not in json.dumps(env) and airflow_env.pg_url not in json.dumps(env)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    result, logs, events = _run_dag(airflow_env, "lg_service", env, {"out_dir": str(out_dir)})
    assert result["tasks"] == {"extract": "success", "rows": "success", "forged": "failed",
                               "environment": "success"}, result

    # the task process held no key, no database credential, and loaded neither the masking engine nor a driver
    report = result["xcoms"]["environment"]
    assert report["loaded"] == []
    assert not any(k.startswith(("LINEAGE_GUARD_", "PG")) for k in report["env"])
    assert report["env"] == ["AIRFLOW_CONN_LG_SERVICE_API", "AIRFLOW_CONN_LG_SERVICE_FORGED",
                                     "AIRFLOW_CONN_LG_SERVICE_JWT"]

    # masked Parquet written by the thin client, with the server's receipt
    [written] = list(out_dir.iterdir())
    table = pq.read_table(written)
    assert table.column("id").to_pylist() == [p["id"] for p in patients]
    assert table.column("city").to_pylist() == [p["city"] for p in patients]
    for column in SENSITIVE:
        assert not set(table.column(column).to_pylist()) & {p[column] for p in patients}, column
    summary = result["xcoms"]["extract"]
    assert summary["rows"] == len(patients) and sorted(summary["masked_columns"]) == sorted(SENSITIVE)
    assert pq.read_metadata(written).metadata[b"lineage_guard.receipt_id"] == summary["receipt_id"].encode()
    from lineage_guard.attest.provenance import read_provenance

    footer = read_provenance(written)       # the server's provenance document, as embedded writes carry
    assert footer["receipt_id"] == summary["receipt_id"] and footer["written_by"] == "client"
    assert footer["identity"]["principal"] == "airflow:lg_service.extract"
    assert {c["name"] for c in footer["columns"] if c["treatment"] == "masked"} == set(SENSITIVE)

    rows = result["xcoms"]["rows"]
    assert [(r[0], r[2]) for r in rows] == [(p["id"], p["city"]) for p in patients[:3]]
    assert not {r[1] for r in rows} & {p["full_name"] for p in patients}

    # the server's ledger: verified identities, and the forged token refused with an entry
    with Ledger.open(f"sqlite:///{server.home / 'ledger.sqlite'}", create=False) as led:
        check = led.verify_receipt(summary["receipt_id"], server_key(led))
        assert check.ok, check
        bodies = [e["body"] for e in led.entries()]
        assert led.verify(server_key(led)).ok
    who = check.entry["body"]["who"]
    assert who["principal"] == "airflow:lg_service.extract"
    assert who["auth"]["method"] == "jwt" and who["auth"]["subject"] == EXTRACT_SUBJECT
    reads = [b for b in bodies if b["who"]["principal"] == "airflow:lg_service.rows" and b["outcome"] == "success"]
    assert reads and reads[-1]["who"]["auth"]["method"] == "api_token" and reads[-1]["rows"] == 3
    refused = [b for b in bodies if b["job"]["name"] == "lineage_guard.service.auth"]
    assert refused and refused[-1]["outcome"] == "denied" and refused[-1]["who"]["principal"] == "unauthenticated"
    assert "does not verify" in refused[-1]["decision"]["reasons"][0]
    assert not [b for b in bodies if b["who"]["principal"] == "airflow:lg_service.extract" and b["rows"] and
                b["run_id"] != check.entry["body"]["run_id"] and b["outcome"] == "success"]
    # nothing raw and no token in the task logs
    for needle in [*(str(p[c]) for p in patients for c in SENSITIVE), TEST_MASTER_KEY, api_token]:
        assert needle not in logs

    # The task's own OpenLineage events (Airflow's provider) carry what the service decided, as in embedded
    # mode: inputs, the Parquet file the thin client wrote with column lineage and masking, who saw what.
    extract_events = [e for e in events if e["job"]["name"] == "lg_service.extract"]
    assert [e["eventType"] for e in extract_events] == ["START", "COMPLETE"], [e["eventType"] for e in events]
    complete = extract_events[-1]
    assert "parent" in complete["run"]["facets"]              # Airflow's DAG-run parent facet
    access = complete["run"]["facets"]["lineageGuard_access"]
    assert access["identity"]["principal"] == "airflow:lg_service.extract" and access["purpose"] == "ai_training"
    assert access["outcome"] == "success" and access["receipt"]["id"] == summary["receipt_id"]
    assert {c["name"] for c in access["columns"] if c["access"] == "masked"} == set(SENSITIVE)
    assert [i["name"].rsplit(".", 2)[1:] for i in complete["inputs"]] == [["public", "patients"]]
    [output] = complete["outputs"]
    assert (output["namespace"], output["name"]) == ("file", str(written))
    lineage = output["facets"]["columnLineage"]["fields"]
    assert lineage["email"]["inputFields"][0]["field"] == "email"
    assert lineage["email"]["inputFields"][0]["transformations"][0]["masking"] is True
    assert lineage["city"]["inputFields"][0]["transformations"][0]["subtype"] == "IDENTITY"
    assert output["outputFacets"]["lineageGuard_masking"]["maskedColumns"] == len(SENSITIVE)
    assert output["outputFacets"]["outputStatistics"]["rowCount"] == len(patients)
    assert_valid_events(extract_events, forbid=[*raw_values(patients), TEST_MASTER_KEY, api_token])
    # the server's ledger entry names the Airflow task's run as its parent
    assert check.entry["body"]["parent"]["run_id"] == complete["run"]["runId"]
    rows_events = [e for e in events if e["job"]["name"] == "lg_service.rows"]
    assert rows_events[-1]["eventType"] == "COMPLETE"
    assert rows_events[-1]["run"]["facets"]["lineageGuard_access"]["identity"]["principal"] == "airflow:lg_service.rows"
    assert rows_events[-1]["outputs"] == [] or "outputs" not in rows_events[-1]   # rows went to XCom, no file


def _decide_when_asked(server_home: Path, verb: str, found: dict):
    """An approver on the service's side: waits for the pending request, then runs the real CLI there."""
    import threading
    import time

    env = {k: v for k, v in os.environ.items() if not k.startswith(("LINEAGE_GUARD_", "AIRFLOW_CONN_"))}
    env["LINEAGE_GUARD_HOME"] = str(server_home)
    cli = str(Path(sys.executable).parent / "lineage-guard")

    def approver() -> None:
        from lineage_guard.approvals import ApprovalStore

        store = ApprovalStore.open(f"sqlite:///{server_home / 'approvals.sqlite'}")
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            pending = store.list(status="pending")
            if pending:
                found["request"] = pending[0]
                found["cli"] = subprocess.run([cli, "approvals", verb, pending[0].id, "--as", "dana", "--note",
                                               "ticket DATA-9"], capture_output=True, text=True, env=env,
                                              check=False, timeout=60)
                return
            time.sleep(0.2)

    thread = threading.Thread(target=approver, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("verb", ["deny", "approve"])
def test_a_write_needing_approval_defers_on_the_service_until_decided(airflow_env, service, patients, tmp_path,
                                                                       verb):
    import psycopg

    server, issuer, tls, api_token = service
    host, port = server.url.removeprefix("grpc+tls://").rsplit(":", 1)
    token_file = tmp_path / "projected-token"
    token_file.write_text(issuer.token(WRITER_SUBJECT, expires_in=600))
    env = _task_environment(airflow_env, lg_service_writer={
        "conn_type": "lineage_guard_service", "host": host, "port": int(port),
        "extra": {"token_file": str(token_file), "ca_file": str(tls.cert)}})
    found: dict = {}
    patient = {"approve": 1, "deny": 2}[verb]
    approver = _decide_when_asked(server.home, verb, found)
    try:
        # each case writes its own row: a denied request refuses that exact statement from then on
        result, logs, events = _run_dag(airflow_env, "lg_service_writes", env, {"patient": patient})
    finally:
        with psycopg.connect(airflow_env.pg_url, autocommit=True) as conn:
            city = conn.execute("SELECT city FROM patients WHERE id = %s", (patient,)).fetchone()[0]
            conn.execute("UPDATE patients SET city = %s WHERE id = %s", (patients[patient - 1]["city"], patient))
    approver.join(timeout=5)
    assert found["cli"].returncode == 0, found["cli"].stdout + found["cli"].stderr

    # the request names the DAG run and task that asked, and binds to that run
    request = found["request"]
    assert request.requester == "airflow:lg_service_writes.fix_city"
    context = dict(request.context)
    assert (context["dag_id"], context["task_id"]) == ("lg_service_writes", "fix_city")
    assert request.run == f"airflow:lg_service_writes/{context['run_id']}/fix_city"

    assert result["tasks"] == {"fix_city": "success" if verb == "approve" else "failed"}, logs[-3000:]
    assert (city == "Bergen") is (verb == "approve")
    assert "Deferring until it is decided" in logs
    if verb == "deny":
        assert f"approval request {request.id} was denied by dana" in logs
    assert "Bergen" not in logs                                       # literals stay out of the task logs
    with Ledger.open(f"sqlite:///{server.home / 'ledger.sqlite'}", create=False) as led:
        assert led.verify(server_key(led)).ok
        # effective: a write's final entry supersedes the intent it recorded before touching the database
        mine = [e["body"] for e in effective(led.entries())
                if e["body"]["who"]["principal"] == "airflow:lg_service_writes.fix_city"
                and e["body"].get("approval_id") == request.id]
    assert [b["outcome"] for b in mine] == (["needs_approval", "success"] if verb == "approve" else ["needs_approval"])

    # The service tells a request's status to its requester only: another identity learns nothing of it.
    from lineage_guard.client import RemoteSession, ServiceError

    with (RemoteSession(server.url, purpose="ai_training", token=api_token, tls_root_certs=tls.cert) as other,
          pytest.raises(ServiceError, match="no approval request")):
        other.approval_status(request.id)
    with RemoteSession(server.url, purpose="maintenance", token_file=token_file, tls_root_certs=tls.cert) as mine_:
        assert mine_.approval_status(request.id)["status"] == ("used" if verb == "approve" else "denied")

    # The deferred task's events: START, START again on resume (the provider's way), then the end, with our facets.
    terminal = "COMPLETE" if verb == "approve" else "FAIL"
    assert [e["eventType"] for e in events] == ["START", "START", terminal]
    assert len({e["run"]["runId"] for e in events}) == 1
    if verb == "approve":
        access = events[-1]["run"]["facets"]["lineageGuard_access"]
        assert access["outcome"] == "success" and access["approvalId"] == request.id
        assert mine[-1]["parent"]["run_id"] == events[-1]["run"]["runId"]
    assert_valid_events([events[0], events[-1]], forbid=[TEST_MASTER_KEY, "Bergen"])


def test_service_mode_refuses_an_identity_named_in_dag_code(airflow_env):
    from lineage_guard.operators import GovernedPostgresOperator

    from lineage_guard.errors import ConfigError

    with pytest.raises(ConfigError, match="establishes the identity from the connection's token"):
        GovernedPostgresOperator(task_id="spoof", service_conn_id="lg_service_api", identity="dr-grey",
                                 sql="SELECT 1", purpose="ai_training")
    with pytest.raises(ConfigError, match="hook_params"):
        GovernedPostgresOperator(task_id="keys", service_conn_id="lg_service_api", sql="SELECT 1",
                                 purpose="ai_training", hook_params={"master_key_conn_id": "k"})


def test_the_service_connection_names_one_credential(airflow_env, monkeypatch, tmp_path):
    from lineage_guard.operators import GovernedServiceHook

    from lineage_guard.errors import ConfigError

    monkeypatch.setenv("AIRFLOW_CONN_LG_SVC_BAD", json.dumps({"conn_type": "lineage_guard_service", "host": "127.0.0.1",
                                                              "port": 1, "password": "lgt_x",
                                                              "extra": {"token_file": str(tmp_path / "t")}}))
    with pytest.raises(ConfigError, match="both a password"):
        GovernedServiceHook("lg_svc_bad").credential()
    monkeypatch.setenv("AIRFLOW_CONN_LG_SVC_NONE", json.dumps({"conn_type": "lineage_guard_service",
                                                               "host": "127.0.0.1", "port": 1}))
    with pytest.raises(ConfigError, match="no credential"):
        GovernedServiceHook("lg_svc_none").credential()
    monkeypatch.setenv("AIRFLOW_CONN_LG_SVC_PG", json.dumps({"conn_type": "postgres", "host": "127.0.0.1"}))
    with pytest.raises(ConfigError, match="type lineage_guard_service"):
        _ = GovernedServiceHook("lg_svc_pg").url
