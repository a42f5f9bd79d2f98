"""Notifiers against real HTTP servers on 127.0.0.1: exact bodies, secrets from env only, outages lose nothing."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from pydantic import ValidationError

from lineage_guard.approvals import ApprovalsConfig, ApprovalStore, NotifierConfig, retry_failed
from lineage_guard.identity import Identity
from lineage_guard.run import SourceInfo

PROD = SourceInfo("postgres", "db.internal", 5432, "shop", "production")
SQL = "UPDATE public.customers SET tier = 'gold' WHERE email = 'alice@example.com'"
REASON = "writes touching sensitive table(s) public.customers in environment 'production' need an approval"
CONTEXT = {"dag_id": "crm_sync", "run_id": "scheduled__2026-11-23", "task_id": "promote"}


class Receiver:
    """A real HTTP server recording what it is sent; `status` is what it answers."""

    def __init__(self, status=200):
        self.status, self.received = status, []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((self.path, dict(self.headers), json.loads(body)))
                self.send_response(receiver.status)
                self.end_headers()
                self.wfile.write(b'{"echo": "a server reply is never stored"}')

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def free_port_url() -> str:
    """A URL where nothing listens: connection refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def ask(notifiers, tmp_path, **store_kw):
    store = ApprovalStore.open(f"sqlite:///{tmp_path}/a.sqlite",
                               config=ApprovalsConfig(notifiers=[NotifierConfig.model_validate(n) for n in notifiers]))
    req = store.request(identity=Identity("svc-crm", "service"), statement=SQL, purpose="crm", source=PROD,
                        reasons=[REASON], context=CONTEXT)
    return store, req


def no_raw_values(*payloads):
    text = json.dumps(payloads)
    assert "alice" not in text and "gold" not in text


def test_generic_webhook_body(receiver, tmp_path, monkeypatch):
    monkeypatch.setenv("HOOK_TOKEN", "Bearer t0ken-value")
    store, req = ask([{"kind": "webhook", "url": receiver.url + "/hooks/lg", "headers": {"Authorization": "HOOK_TOKEN"}}],
                     tmp_path)
    assert req.notify_status == {"webhook": "sent"}
    [(path, headers, body)] = receiver.received
    assert path == "/hooks/lg" and headers["Authorization"] == "Bearer t0ken-value"
    assert body == {
        "event": "lineage_guard.approval_requested",
        "summary": f"lineage-guard approval needed: svc-crm for purpose 'crm' on postgres://db.internal:5432/shop "
                   f"(production) [request {req.id}]",
        "request": {
            "id": req.id, "fingerprint": req.fingerprint, "requester": "svc-crm", "purpose": "crm",
            "environment": "production", "namespace": "postgres://db.internal:5432", "database": "shop",
            "statement_shape": "UPDATE public.customers SET tier = %s WHERE email = %s",
            "statement_hash": req.statement_hash, "reasons": [REASON], "context": CONTEXT, "status": "pending",
            "created_at": req.created_at.isoformat(), "expires_at": req.expires_at.isoformat(), "single_use": True,
        },
        "approve_command": f"lineage-guard approvals approve {req.id} --as <approver> --store {store.url}",
        "deny_command": f"lineage-guard approvals deny {req.id} --as <approver> --store {store.url}",
    }
    no_raw_values(body)
    assert "t0ken" not in json.dumps(store.get(req.id).to_json())


def test_slack_body(receiver, tmp_path, monkeypatch):
    monkeypatch.setenv("SLACK_APPROVALS_WEBHOOK", receiver.url + "/services/T0/B0/xyz")
    _, req = ask([{"kind": "slack", "url_env": "SLACK_APPROVALS_WEBHOOK"}], tmp_path)
    [(path, _, body)] = receiver.received
    assert path == "/services/T0/B0/xyz" and set(body) == {"text", "blocks"}
    assert body["text"].startswith("lineage-guard approval needed: svc-crm for purpose 'crm'")
    assert [b["type"] for b in body["blocks"]] == ["section", "section", "section", "context", "section"]
    assert body["blocks"][1]["text"] == {"type": "mrkdwn", "text": f"*Why*\n• {REASON}"}
    assert body["blocks"][3]["elements"][0]["text"] == (
        "Asked by: dag_id=crm_sync, run_id=scheduled__2026-11-23, task_id=promote")
    assert body["blocks"][4]["text"]["text"].startswith(f"Approve: `lineage-guard approvals approve {req.id} "
                                                       "--as &lt;approver&gt;")
    no_raw_values(body)


def test_jira_create_issue_body(receiver, tmp_path, monkeypatch):
    monkeypatch.setenv("JIRA_AUTH", "Basic dXNlcjp0b2tlbg==")
    _, req = ask([{"kind": "jira", "url": receiver.url + "/jira/", "project": "DATA", "issue_type": "Approval",
                   "headers": {"Authorization": "JIRA_AUTH"}}], tmp_path)
    [(path, headers, body)] = receiver.received
    assert path == "/jira/rest/api/2/issue" and headers["Authorization"] == "Basic dXNlcjp0b2tlbg=="
    fields = body["fields"]
    assert set(body) == {"fields"} and set(fields) == {"project", "summary", "description", "issuetype"}
    assert fields["project"] == {"key": "DATA"} and fields["issuetype"] == {"name": "Approval"}
    assert len(fields["summary"]) <= 255 and req.id in fields["summary"]
    for part in (REASON, "dag_id=crm_sync", "task_id=promote", req.approve_command, req.deny_command,
                 "UPDATE public.customers SET tier = %s WHERE email = %s", req.statement_hash):
        assert part in fields["description"]
    no_raw_values(body)


def test_outage_keeps_the_request_and_retry_delivers(tmp_path):
    down, failing = free_port_url(), Receiver(status=503)
    try:
        store, req = ask([{"kind": "webhook", "name": "down", "url": down},
                          {"kind": "webhook", "name": "flaky", "url": failing.url}], tmp_path)
        assert store.get(req.id).notify_status == {"down": "failed: cannot connect", "flaky": "failed: HTTP 503"}
        assert req.notify_failed == ["down", "flaky"] and req.status == "pending"
        assert "a server reply" not in json.dumps(store.get(req.id).to_json())

        failing.status = 200
        retried = retry_failed(store)
        assert [r.notify_status for r in retried] == [{"down": "failed: cannot connect", "flaky": "sent"}]
        assert len(failing.received) == 2

        assert [r.notify_status["flaky"] for r in retry_failed(store)] == ["sent"]
        assert len(failing.received) == 2  # a notifier already reached is not sent again
    finally:
        failing.close()


def test_missing_env_var_is_a_recorded_failure_naming_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("SLACK_APPROVALS_WEBHOOK", raising=False)
    _, req = ask([{"kind": "slack", "url_env": "SLACK_APPROVALS_WEBHOOK"}], tmp_path)
    assert req.notify_status == {"slack": "failed: notifier 'slack': environment variable "
                                          "SLACK_APPROVALS_WEBHOOK is not set"}


def test_a_reused_request_is_not_announced_twice(receiver, tmp_path):
    store, first = ask([{"kind": "webhook", "url": receiver.url}], tmp_path)
    again = store.request(identity=Identity("svc-crm", "service"), statement=SQL, purpose="crm", source=PROD,
                          reasons=[REASON], context=CONTEXT)
    assert again.id == first.id and len(receiver.received) == 1


@pytest.mark.parametrize("notifier, message", [
    ({"kind": "slack", "url": "https://hooks.slack.com/services/T/B/x"}, "Slack webhook URL is a secret"),
    ({"kind": "webhook", "url": "https://h/x", "headers": {"Authorization": "Bearer abc"}}, "environment variable"),
    ({"kind": "webhook", "url": "https://u:pw@h/x"}, "must not carry credentials"),
    ({"kind": "webhook", "url": "https://h/x?token=abc"}, "must not carry credentials"),
    ({"kind": "webhook", "url": "ftp://h/x"}, "http"),
    ({"kind": "webhook"}, "exactly one of 'url' or 'url_env'"),
    ({"kind": "jira", "url": "https://jira"}, "needs 'project'"),
    ({"kind": "teams", "url": "https://h"}, "webhook"),
])
def test_notifier_config_refuses_literal_secrets_and_incomplete_settings(notifier, message):
    with pytest.raises(ValidationError, match=message):
        NotifierConfig.model_validate(notifier)


def test_notifier_names_must_be_distinct():
    with pytest.raises(ValidationError, match="distinct names"):
        ApprovalsConfig.model_validate({"notifiers": [{"kind": "webhook", "url": "https://a"},
                                                      {"kind": "webhook", "url": "https://b"}]})
