"""The console's access control at the HTTP level (Starlette's TestClient over the real app, the real
approval store and ledger, requests made through the one path on the real PostgreSQL): no session,
an expired session, a forged cookie, the wrong role, a missing or foreign CSRF token, self-approval under
another spelling, an approver outside its grant; and what a page may show (never a typed value)."""

from __future__ import annotations

import csv
import io
import json

import pytest
from conftest import TEST_MASTER_KEY
from console_helpers import (
    SECRET_CITY,
    SECRET_PARAM,
    ask,
    console_policy,
    load,
    make_table,
    run_write,
    sign_in_directly,
)
from starlette.testclient import TestClient

from lineage_guard.approvals import ApprovalStore
from lineage_guard.audit import Ledger, Signer
from lineage_guard.console.app import COOKIE, build_app

SECRET = "test-session-secret-not-a-real-one-0123456789"


class Clock:
    def __init__(self):
        import time

        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def world(pg_url, tmp_path_factory):
    root = tmp_path_factory.mktemp("console_http")
    with pytest.MonkeyPatch.context() as mp:  # module scope: the per-test state folder is not set up yet
        mp.setenv("LINEAGE_GUARD_HOME", str(root / "home"))
        mp.setenv("LINEAGE_GUARD_MASTER_KEY", TEST_MASTER_KEY)
        yield from _world(pg_url, root)


def _world(pg_url, root):
    make_table(pg_url)
    policy = load(console_policy("http://127.0.0.1:9/not-contacted"))
    signer = Signer.generate()
    ledger = Ledger.open(str(root / "ledger.sqlite"), signer=signer)
    store = ApprovalStore.open(f"sqlite:///{root}/approvals.sqlite", config=policy.approvals)
    ids = {
        "a": ask(pg_url, policy, ledger, store, f"UPDATE console_shipments SET city = '{SECRET_CITY}' WHERE id = 1"),
        "b": ask(pg_url, policy, ledger, store, "UPDATE console_shipments SET code = $1 WHERE id = 2", [SECRET_PARAM]),
        "c": ask(pg_url, policy, ledger, store, "UPDATE console_shipments SET city = 'Molde' WHERE id = 3"),
    }
    clock = Clock()
    app = build_app(policy, approvals=store, ledger=ledger, secure_cookies=False, session_secret=SECRET,
                    public_keys=(signer.public_key,), clock=clock)
    yield {"app": app, "store": store, "ledger": ledger, "policy": policy, "ids": ids, "clock": clock, "pg": pg_url}
    ledger.close()


def client_as(world, identity: str | None, subject: str | None = None) -> tuple[TestClient, object]:
    client = TestClient(world["app"], base_url="http://127.0.0.1", follow_redirects=False)
    me = None
    if identity is not None:
        me = sign_in_directly(world["app"], identity, subject)
        client.cookies.set(COOKIE, me.sid)
    return client, me


def decide(client, request_id, csrf, verb="approve", reason="checked with the owner"):
    data = {"decision": verb, "reason": reason}
    if csrf is not None:
        data["csrf"] = csrf
    return client.post(f"/approvals/{request_id}/decide", data=data)


def status(world, key) -> str:
    return world["store"].get(world["ids"][key]).status


def test_no_session_sends_pages_to_sign_in_and_refuses_every_decision(world):
    client, _ = client_as(world, None)
    for path in ("/approvals", "/timeline", "/timeline/export.csv", "/receipts/x", "/columns/public.a.b"):
        got = client.get(path)
        assert got.status_code == 303 and got.headers["location"].startswith("/signin"), path
    assert decide(client, world["ids"]["a"], "anything").status_code == 401
    # a made-up session id is no session either
    client.cookies.set(COOKIE, "made-up-session-id-0123456789abcdef0123456789")
    assert client.get("/approvals").status_code == 303
    assert status(world, "a") == "pending"


def test_an_expired_or_signed_out_session_is_refused(world):
    client, me = client_as(world, "dana")
    assert client.get("/approvals").status_code == 200
    world["clock"].now += 31 * 60  # session_minutes: 30
    try:
        assert client.get("/approvals").status_code == 303
        assert decide(client, world["ids"]["a"], me.csrf).status_code == 401
    finally:
        world["clock"].now -= 31 * 60
    assert status(world, "a") == "pending"
    client, me = client_as(world, "dana")
    assert client.post("/signout", data={"csrf": me.csrf}).status_code == 303
    assert client.get("/approvals").status_code == 303   # the id in a kept copy of the cookie is dead too


def test_wrong_role_cannot_decide_or_read_receipts(world):
    viewer, me = client_as(world, "vic")
    assert viewer.get("/approvals").status_code == 200
    got = decide(viewer, world["ids"]["a"], me.csrf)
    assert got.status_code == 403 and "approver" in got.text
    receipt = next(world["ledger"].entries())["id"]
    assert viewer.get(f"/receipts/{receipt}").status_code == 403
    assert viewer.get("/timeline/export.json").status_code == 403
    auditor, me = client_as(world, "sam")
    assert decide(auditor, world["ids"]["a"], me.csrf).status_code == 403
    nobody, me = client_as(world, "stranger")  # signed in, but no role in the policy
    assert nobody.get("/approvals").status_code == 403
    staging, me = client_as(world, "stan")     # an approver, for staging only
    got = decide(staging, world["ids"]["a"], me.csrf)
    assert got.status_code == 403 and "production" in got.text
    assert status(world, "a") == "pending"


def test_a_missing_or_foreign_csrf_token_is_refused(world):
    dana, _ = client_as(world, "dana")
    _, other = client_as(world, "sam")
    assert decide(dana, world["ids"]["a"], None).status_code == 403
    assert decide(dana, world["ids"]["a"], other.csrf).status_code == 403
    assert dana.post("/signout", data={}).status_code == 403
    assert status(world, "a") == "pending"


def test_the_requester_cannot_approve_its_own_request_under_another_spelling(world):
    owner, me = client_as(world, " SVC-ETL", subject="etl-owner")  # normalises to svc-etl, the requester
    page = owner.get(f"/approvals/{world['ids']['c']}")
    assert page.status_code == 200 and "you asked for this request" in page.text and 'id="decide"' not in page.text
    got = decide(owner, world["ids"]["c"], me.csrf)
    assert got.status_code == 403 and "another person" in got.text
    assert status(world, "c") == "pending"


def test_an_approver_decides_with_a_reason_and_the_waiting_write_runs(world):
    dana, me = client_as(world, "dana")
    assert decide(dana, world["ids"]["a"], me.csrf, reason="  ").status_code == 400   # a reason is required
    got = decide(dana, world["ids"]["a"], me.csrf, reason="ticket OPS-9")
    assert got.status_code == 303
    req = world["store"].get(world["ids"]["a"])
    assert (req.status, req.approver) == ("approved", "dana") and req.note.startswith("ticket OPS-9")
    assert decide(dana, world["ids"]["a"], me.csrf).status_code == 409   # already decided
    result = run_write(world["pg"], world["policy"], world["ledger"], world["store"],
                       f"UPDATE console_shipments SET city = '{SECRET_CITY}' WHERE id = 1")
    assert result.rows_affected == 1 and world["store"].get(world["ids"]["a"]).status == "used"
    assert decide(dana, world["ids"]["b"], me.csrf, verb="deny", reason="no").status_code == 303
    with pytest.raises(Exception, match="denied by dana"):
        run_write(world["pg"], world["policy"], world["ledger"], world["store"],
                  "UPDATE console_shipments SET code = $1 WHERE id = 2", [SECRET_PARAM])


def test_pages_and_exports_never_show_a_typed_value(world):
    dana, _ = client_as(world, "dana")
    pages = [dana.get("/approvals?status=all"), *(dana.get(f"/approvals/{i}") for i in world["ids"].values()),
             dana.get("/timeline"), dana.get("/timeline/export.csv"), dana.get("/timeline/export.json"),
             dana.get("/columns/public.console_shipments.city")]
    entries = list(world["ledger"].entries())
    pages += [dana.get(f"/receipts/{e['id']}") for e in entries]
    for page in pages:
        assert page.status_code == 200, page.url
        assert SECRET_CITY not in page.text and SECRET_PARAM not in page.text, page.url
    detail = dana.get(f"/approvals/{world['ids']['b']}").text
    assert "1 value(s)" in detail and "values not shown" in detail
    assert "verified" in dana.get(f"/receipts/{entries[0]['id']}").text
    rows = list(csv.DictReader(io.StringIO(dana.get("/timeline/export.csv?outcome=needs_approval").text)))
    assert rows and {r["outcome"] for r in rows} == {"needs_approval"}
    assert {r["approval_id"] for r in rows} >= set(world["ids"].values())
    docs = json.loads(dana.get("/timeline/export.json?identity=svc-etl").text)
    assert len(docs) == len(entries) and all(d["body"]["who"]["principal"] == "svc-etl" for d in docs)


def test_bad_filters_say_what_to_fix(world):
    dana, _ = client_as(world, "dana")
    got = dana.get("/timeline?since=yesterday")
    assert got.status_code == 400 and "ISO 8601" in got.text
    assert dana.get("/timeline?outcome=maybe").status_code == 400
    assert dana.get("/timeline/export.xml").status_code == 404


def test_every_response_forbids_framing_scripts_and_caching(world):
    got = TestClient(world["app"], base_url="http://127.0.0.1").get("/healthz")
    assert "script-src" not in got.headers["content-security-policy"]
    assert "default-src 'none'" in got.headers["content-security-policy"]
    assert got.headers["x-frame-options"] == "DENY" and got.headers["cache-control"] == "no-store"


def test_models_page_lists_what_is_in_the_attestations_folder_and_refuses_to_trust_bad_files(world):
    """The registry is the state folder's attestations/: a file that is not an envelope, or a signature by a key
    the console does not pin, is listed as not verifying (fail closed), and the page still renders."""
    from lineage_guard import paths
    from lineage_guard.attest import dsse

    folder = paths.home_path() / "attestations"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "garbage.dsse.json").write_text("{not json")
    statement = {"_type": "https://in-toto.io/Statement/v1", "predicateType": "x", "subject": [],
                 "predicate": {"model": {"digest": "sha256:" + "e" * 64}}}
    foreign = dsse.sign(json.dumps(statement).encode(), Signer.generate())   # a key nobody pinned
    (folder / "foreign.dsse.json").write_text(json.dumps(foreign))
    app = build_app(world["policy"], approvals=world["store"], ledger=world["ledger"], secure_cookies=False,
                    session_secret=SECRET, public_keys=(world["ledger"].signer.public_key,), clock=world["clock"])
    client = TestClient(app, base_url="http://127.0.0.1", follow_redirects=False)
    assert client.get("/models").status_code == 303          # signed out: to sign-in
    me = sign_in_directly(app, "vic")
    client.cookies.set(COOKIE, me.sid)
    got = client.get("/models")
    assert got.status_code == 200
    assert "not a JSON DSSE envelope" in got.text
    assert "sha256:" + "e" * 64 in got.text and "does not verify: signature" in got.text
    assert got.text.count('class="verdict bad"') == 2 and 'class="verdict ok"' not in got.text


def test_sessions_live_in_the_store_survive_a_new_app_and_can_be_ended_by_identity(world, tmp_path):
    """A second app over the same approvals store (what a restarted console is) knows the session; the store keeps
    neither the session id nor the CSRF token; ending an identity's sessions signs it out everywhere."""
    dana, me = client_as(world, "dana")
    again = build_app(world["policy"], approvals=world["store"], ledger=world["ledger"], secure_cookies=False,
                      clock=world["clock"])
    fresh = TestClient(again, base_url="http://127.0.0.1", follow_redirects=False)
    fresh.cookies.set(COOKIE, me.sid)
    page = fresh.get(f"/approvals/{world['ids']['c']}")
    assert page.status_code == 200 and me.csrf in page.text   # same session, same CSRF token
    raw = (world["store"].url.removeprefix("sqlite:///"))
    from pathlib import Path

    stored = b"".join(p.read_bytes() for p in Path(raw).parent.glob(Path(raw).name + "*"))
    assert me.sid.encode() not in stored and me.csrf.encode() not in stored
    assert again.state.sessions.end_all("dana") >= 1
    assert fresh.get("/approvals").status_code == 303 and dana.get("/approvals").status_code == 303


def test_a_role_taken_out_of_the_policy_is_gone_at_the_next_request(world):
    from lineage_guard.console.sessions import SessionRegistry

    _, me = client_as(world, "vic")
    grants = {"vic": world["policy"].console.grants("vic")}
    registry = SessionRegistry(world["store"], 30, lambda who: grants.get(who, []), world["clock"])
    assert registry.get(me.sid).has("viewer")
    grants.clear()
    assert not registry.get(me.sid).has("viewer")


def test_sign_out_without_a_provider_end_session_endpoint_says_the_provider_session_may_remain(world):
    client, me = client_as(world, "sam")
    got = client.post("/signout", data={"csrf": me.csrf})
    assert got.status_code == 303 and got.headers["location"] == "/signed-out?provider=kept"
    assert 'lg_console=""' in got.headers["set-cookie"] or "Max-Age=0" in got.headers["set-cookie"]
    assert "may still be open" in client.get("/signed-out?provider=kept").text


READ_RULES = """
classifications:
  public.console_shipments.code: national_id
  public.console_shipments.city: address
rules:
  - {classifications: [national_id], groups: [data-eng], action: clear, approval: true}
  - {classifications: [address], groups: [data-eng], action: mask, mask: {method: tokenize}}
"""


def test_a_read_waiting_for_approval_shows_its_plan_clear_and_masked_per_column(world):
    """The inbox shows what the read would return: which columns clear, which masked and how (from the ledger
    entry the waiting run recorded), with the statement's literals replaced."""
    from lineage_guard.errors import ApprovalRequired
    from lineage_guard.identity import Identity
    from lineage_guard.session import GovernedSession

    policy = load(console_policy("http://127.0.0.1:9/not-contacted") + READ_RULES)
    with (GovernedSession(world["pg"], policy, Identity("svc-etl"), "fulfilment", environment="production",
                          ledger=world["ledger"], approvals=world["store"]) as s,
          pytest.raises(ApprovalRequired) as asked):
        s.read_arrow(f"SELECT id, city, code FROM console_shipments WHERE code <> '{SECRET_PARAM}'")
    app = build_app(policy, approvals=world["store"], ledger=world["ledger"], secure_cookies=False,
                    clock=world["clock"])
    client = TestClient(app, base_url="http://127.0.0.1", follow_redirects=False)
    client.cookies.set(COOKIE, sign_in_directly(app, "dana").sid)
    page = client.get(f"/approvals/{asked.value.request_id}").text
    import re

    plan = {m[0]: m[2] for m in re.findall(r"<tr><td>(\w+)</td><td>([^<]*)</td><td class=\"\w+\">([^<]+)</td></tr>",
                                           page)}
    assert plan == {"id": "clear", "city": "masked (tokenize)", "code": "clear"}, page
    assert SECRET_PARAM not in page and "console_shipments" in page


def test_the_console_over_postgresql_stores_keeps_its_sessions_there(new_database, tmp_path):
    """Ledger and approval store on PostgreSQL: the timeline reads the index there, sessions are rows there
    (a second app over the same database knows them), expiry and ending by identity hold."""
    url = new_database()
    policy = load(console_policy("http://127.0.0.1:9/not-contacted"))
    store = ApprovalStore.open(url, config=policy.approvals)
    ledger = Ledger.open(url, schema="console_pg", signer=Signer.generate())
    clock = Clock()
    try:
        apps = [build_app(policy, approvals=store, ledger=ledger, secure_cookies=False, clock=clock,
                          models=None, attestations=tmp_path) for _ in range(2)]
        me = sign_in_directly(apps[0], "sam")
        clients = [TestClient(a, base_url="http://127.0.0.1", follow_redirects=False) for a in apps]
        for c in clients:
            c.cookies.set(COOKIE, me.sid)
            assert c.get("/timeline").status_code == 200
        clock.now += 31 * 60
        assert clients[1].get("/timeline").status_code == 303          # expired, for every process
        clock.now -= 31 * 60
        again = sign_in_directly(apps[1], "sam")
        clients[0].cookies.set(COOKIE, again.sid)
        assert clients[0].get("/timeline").status_code == 200
        assert apps[0].state.sessions.end_all("sam") == 1
        assert clients[0].get("/timeline").status_code == 303
    finally:
        ledger.close()
