"""Slack, Jira and webhook notifications link to the request's page in the console inbox: a real HTTP server
on 127.0.0.1 receives each message, and the link it carries opens that request on the real console (uvicorn on
127.0.0.1) for a signed-in approver, and sends anyone else to sign in first, back to the same page."""

from __future__ import annotations

import json
import re
import socket

import httpx
import pytest
from conftest import TEST_MASTER_KEY
from console_helpers import SECRET_CITY, SECRET_PARAM, ask, console_policy, load, make_table, sign_in_directly
from pydantic import ValidationError
from test_approvals_notify import Receiver

from lineage_guard.approvals import ApprovalsConfig, ApprovalStore, retry_failed
from lineage_guard.audit import Ledger, Signer
from lineage_guard.console.app import COOKIE, build_app
from lineage_guard.console.run import bound_port, start_in_thread

SECRET = "test-notify-session-secret-0123456789-abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def policy_with_notifiers(receiver_url: str, console_url: str | None) -> str:
    notifiers = (f"  notifiers:\n"
                 f"    - {{kind: slack, url_env: LG_TEST_SLACK_HOOK}}\n"
                 f"    - {{kind: jira, url: '{receiver_url}/jira', project: DATA, headers: {{Authorization: LG_TEST_JIRA}}}}\n"
                 f"    - {{kind: webhook, url: '{receiver_url}/hook'}}\n")
    if console_url:
        notifiers += f"  console_url: '{console_url}'\n"
    text = console_policy("http://127.0.0.1:9/not-contacted")
    return text.replace("approvals:\n  ttl_seconds: 3600\n", "approvals:\n  ttl_seconds: 3600\n" + notifiers)


@pytest.fixture
def receiver(monkeypatch):
    r = Receiver()
    monkeypatch.setenv("LG_TEST_SLACK_HOOK", r.url + "/slack/T0/B0/x")
    monkeypatch.setenv("LG_TEST_JIRA", "Basic dGVzdDp0ZXN0")
    yield r
    r.close()


def links(received) -> dict[str, str]:
    """The console link in each message, by where it was sent."""
    out = {}
    for path, _, body in received:
        if path.startswith("/slack"):
            actions = [b for b in body["blocks"] if b["type"] == "actions"]
            if actions:
                [button] = actions[0]["elements"]
                assert button["text"]["text"] == "Review in the console"
                out["slack"] = button["url"]
                assert f"<{button['url']}|Review in the console>" in body["text"]
            else:
                assert "Review in the console" not in body["text"]
        elif path.startswith("/jira"):
            found = re.search(r"Review in the console: (\S+)", body["fields"]["description"])
            if found:
                out["jira"] = found.group(1)
        elif "console_url" in body:
            out["webhook"] = body["console_url"]
    return out


def test_each_notification_links_to_the_request_on_the_console(pg_url, receiver, tmp_path, monkeypatch):
    monkeypatch.setenv("LINEAGE_GUARD_MASTER_KEY", TEST_MASTER_KEY)
    monkeypatch.delenv("LINEAGE_GUARD_CONSOLE_URL", raising=False)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    policy = load(policy_with_notifiers(receiver.url, base))
    make_table(pg_url)
    signer = Signer.generate()
    ledger = Ledger.open(str(tmp_path / "ledger.sqlite"), signer=signer)
    store = ApprovalStore.open(f"sqlite:///{tmp_path}/approvals.sqlite", config=policy.approvals)
    app = build_app(policy, approvals=store, ledger=ledger, secure_cookies=False, session_secret=SECRET,
                    public_keys=(signer.public_key,))
    server, thread = start_in_thread(app, host="127.0.0.1", port=port)
    try:
        assert bound_port(server) == port
        request_id = ask(pg_url, policy, ledger, store, "UPDATE console_shipments SET code = $1 WHERE id = 2",
                         [SECRET_PARAM])
        assert store.get(request_id).notify_status == {"slack": "sent", "jira": "sent", "webhook": "sent"}
        found = links(receiver.received)
        assert found == dict.fromkeys(("slack", "jira", "webhook"), f"{base}/approvals/{request_id}")
        for value in (SECRET_PARAM, SECRET_CITY, TEST_MASTER_KEY):
            assert value not in json.dumps([body for _, _, body in receiver.received])

        # Nobody signed in: the link leads to sign-in, which comes back to this request.
        got = httpx.get(found["slack"], follow_redirects=False)
        assert got.status_code == 303 and got.headers["location"] == f"/signin?next=/approvals/{request_id}"
        # A signed-in approver: the link opens the request with its decide form.
        me = sign_in_directly(app, "dana")
        got = httpx.get(found["jira"], cookies={COOKIE: me.sid})
        assert got.status_code == 200
        assert request_id in got.text and 'id="decide"' in got.text
        assert SECRET_PARAM not in got.text
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        ledger.close()


def test_without_a_console_url_messages_carry_no_link_and_the_environment_sets_one(pg_url, receiver, tmp_path,
                                                                                  monkeypatch):
    monkeypatch.delenv("LINEAGE_GUARD_CONSOLE_URL", raising=False)
    policy = load(policy_with_notifiers(receiver.url, None))
    store = ApprovalStore.open(f"sqlite:///{tmp_path}/approvals.sqlite", config=policy.approvals)
    ledger = Ledger.open(str(tmp_path / "ledger.sqlite"), signer=Signer.generate())
    make_table(pg_url)
    ask(pg_url, policy, ledger, store, "UPDATE console_shipments SET city = 'Molde' WHERE id = 3")
    assert links(receiver.received) == {}   # no button, no line, no console_url key
    assert all("console_url" not in body for path, _, body in receiver.received if path == "/hook")

    receiver.received.clear()
    monkeypatch.setenv("LINEAGE_GUARD_CONSOLE_URL", "https://console.example.test/lg/")
    second = ask(pg_url, policy, ledger, store, "UPDATE console_shipments SET city = 'Hamar' WHERE id = 4")
    assert set(links(receiver.received).values()) == {f"https://console.example.test/lg/approvals/{second}"}

    # A bad URL in the environment: recorded as a failed notification (nothing sent), delivered once fixed.
    receiver.received.clear()
    monkeypatch.setenv("LINEAGE_GUARD_CONSOLE_URL", "http://console.example.test")
    third = ask(pg_url, policy, ledger, store, "UPDATE console_shipments SET city = 'Voss' WHERE id = 5")
    status = store.get(third).notify_status
    assert set(status) == {"slack", "jira", "webhook"} and all("https://" in v for v in status.values())
    assert receiver.received == []
    monkeypatch.setenv("LINEAGE_GUARD_CONSOLE_URL", "https://console.example.test")
    retry_failed(store)
    assert store.get(third).notify_status == {"slack": "sent", "jira": "sent", "webhook": "sent"}
    assert set(links(receiver.received).values()) == {f"https://console.example.test/approvals/{third}"}
    ledger.close()


@pytest.mark.parametrize("url, why", [
    ("http://console.example.com", "https://"),
    ("https://user:pw@console.example.com", "credentials"),
    ("https://console.example.com/?token=x", "query"),
    ("javascript:alert(1)", "https://host"),
])
def test_a_console_url_that_cannot_go_into_a_message_is_refused(url, why):
    with pytest.raises(ValidationError, match=re.escape(why)):
        ApprovalsConfig(console_url=url)
    assert ApprovalsConfig(console_url="http://127.0.0.1:8710/").console_url == "http://127.0.0.1:8710"
