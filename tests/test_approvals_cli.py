"""`lineage-guard approvals ...` end to end on a real store file and a real HTTP receiver."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from typer.testing import CliRunner

from lineage_guard.approvals import ApprovalsConfig, ApprovalStore, NotifierConfig
from lineage_guard.cli.approvals import app
from lineage_guard.identity import Identity
from lineage_guard.run import SourceInfo

PROD = SourceInfo("postgres", "db.internal", 5432, "shop", "production")
SQL = "DELETE FROM public.orders WHERE customer_email = 'alice@example.com'"
runner = CliRunner()


@pytest.fixture
def store_url(tmp_path):
    return f"sqlite:///{tmp_path}/approvals.sqlite"


def ask(store_url, purpose="backfill", notifiers=(), sql=SQL):
    store = ApprovalStore.open(store_url, config=ApprovalsConfig(notifiers=list(notifiers)))
    return store.request(identity=Identity("svc-etl", "service"), statement=sql, purpose=purpose, source=PROD,
                         reasons=["writes touching public.orders in environment 'production' need an approval"],
                         context={"dag_id": "nightly", "task_id": "purge"})


def cli(*args, code=0):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output
    assert "alice" not in result.output
    return result.output


def test_list_show_approve_roundtrip(store_url):
    req = ask(store_url)
    listed = json.loads(cli("list", "--store", store_url, "--json"))
    assert [(r["id"], r["status"], r["requester"]) for r in listed] == [(req.id, "pending", "svc-etl")]
    assert req.id in cli("list", "--store", store_url)

    shown = json.loads(cli("show", req.id, "--store", store_url, "--json"))
    assert shown["context"] == {"dag_id": "nightly", "task_id": "purge"}
    assert shown["statement_shape"] == "DELETE FROM public.orders WHERE customer_email = %s"
    text = cli("show", req.id, "--store", store_url)
    assert "dag_id=nightly" in text and f"lineage-guard approvals approve {req.id} --as <approver>" in text

    assert f"request {req.id} approved by dana" in cli("approve", req.id, "--as", "dana", "--note", "DATA-12",
                                                         "--store", store_url)
    assert json.loads(cli("list", "--status", "approved", "--store", store_url, "--json"))[0]["note"] == "DATA-12"
    assert json.loads(cli("list", "--status", "pending", "--store", store_url, "--json")) == []
    assert "no pending approval requests" in cli("list", "--status", "pending", "--store", store_url)


def test_the_requester_cannot_approve_and_errors_exit_nonzero(store_url):
    req = ask(store_url)
    assert "cannot decide it" in cli("approve", req.id, "--as", "svc-etl", "--store", store_url, code=1)
    assert "no approval request 'nope'" in cli("show", "nope", "--store", store_url, code=1)
    assert "unknown status" in cli("list", "--status", "bogus", "--store", store_url, code=1)
    assert f"request {req.id} denied by erin" in cli("deny", req.id, "--as", "erin", "--store", store_url)
    assert "already denied by erin" in cli("approve", req.id, "--as", "dana", "--store", store_url, code=1)


def test_show_prints_statements_verbatim_not_as_markup(store_url):
    req = ask(store_url, sql="UPDATE public.orders SET tags[1] = 'x' WHERE id = 1", purpose="[bold]p[/bold]")
    text = cli("show", req.id, "--store", store_url)
    assert "tags[%s] = %s" in text and "[bold]p[/bold]" in text


def test_store_from_environment(store_url, monkeypatch):
    req = ask(store_url)
    monkeypatch.setenv("LINEAGE_GUARD_APPROVALS_URL", store_url)
    assert json.loads(cli("show", req.id, "--json"))["id"] == req.id


def test_notify_retry_delivers_after_an_outage(store_url):
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    with socket.socket() as s:  # reserve a port, then leave it closed: the notifier is down
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    req = ask(store_url, notifiers=[NotifierConfig(kind="webhook", url=f"http://127.0.0.1:{port}/hook")])
    assert json.loads(cli("list", "--store", store_url, "--json"))[0]["notify_status"] == {
        "webhook": "failed: cannot connect"}
    assert "1 request(s) retried, 1 still failing" in cli("notify", "--retry", "--store", store_url, code=1)

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert "1 request(s) retried, 0 still failing" in cli("notify", "--retry", "--store", store_url)
    finally:
        server.shutdown()
        server.server_close()
    assert [r["request"]["id"] for r in received] == [req.id]
    assert "0 request(s) retried" in cli("notify", "--retry", "--store", store_url)
    assert "--retry" in cli("notify", "--store", store_url, code=2)
