"""Red-team round on the web console, in a real headless Chromium (Debian's /usr/bin/chromium via Playwright)
signing in against the real OpenID provider (tests/oidc), the console under a real uvicorn, and an attacker's
own HTTP server on another 127.0.0.1 port (its pages, and a collector that counts every request made to it).

Each attack is first shown to be live (the payload is in the stored request / ledger entry; the same payload
on the attacker's page, with no console in between, does run; the forged request really reaches the endpoint
with the victim's cookie), then shown refused or neutralized. A test fails if its attack works.

Fixtures and the signed-in tab (`Pages`, which also checks every page for the raw values the statements
carried) come from tests/test_console_browser.py; requests are made through the one path (`ask`).
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import pytest
from conftest import TEST_MASTER_KEY
from console_helpers import SECRET_CITY, SECRET_PARAM, ask, console_policy, load, make_table, sign_in_directly
from test_console_browser import CLIENT_ID, Pages, browser, provider  # noqa: F401 - fixtures

from lineage_guard.approvals import ApprovalStore
from lineage_guard.audit import Ledger, Signer
from lineage_guard.identity import Identity
from lineage_guard.session import GovernedSession

# Payloads: each, were it markup, would set window.__pwned or fetch from the attacker's collector.
# Each fits a PostgreSQL identifier (63 bytes), so it survives into the statement's shape as a quoted name.
IMG = "<img src=x onerror=window.__pwned=1>"
DOTLESS = "<img src=x onerror=__pwned=5>"   # for a column path, which is split on dots
SCRIPT = "</script><script>window.__pwned=2</script>"
SVG = '"><svg onload=window.__pwned=3>'
TEMPLATE = "{{7*7}}{% raw %}"
JS_URL = "javascript:window.__pwned=4"
DANGEROUS = "script, img[src=x], svg[onload], [onerror], [onload], iframe, object, embed, base"


class Attacker:
    """A real HTTP server on its own 127.0.0.1 port: `pages[path]` is served as HTML, any other path is a hit on
    the collector (only the path is kept: the victim's browser sends it its cookies too, which are never kept)."""

    def __init__(self):
        self.pages: dict[str, str] = {}
        self.hits: list[str] = []
        self.got_console_cookie = False   # whether a console session cookie came along (never its value)
        attacker = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                path = self.path.split("?", 1)[0]
                attacker.got_console_cookie |= "lg_console=" in (self.headers.get("cookie") or "")
                if path in attacker.pages:
                    body = attacker.pages[path].encode()
                    self.send_response(200)
                    self.send_header("content-type", "text/html; charset=utf-8")
                    self.send_header("content-length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                if path != "/favicon.ico":
                    attacker.hits.append(path)
                self.send_response(204)
                self.end_headers()

            do_POST = do_GET

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.origin = f"http://127.0.0.1:{self.port}"
        self.collector = f"//127.0.0.1:{self.port}/collect"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def attacker():
    a = Attacker()
    yield a
    a.close()


def envelope(statement: dict) -> dict:
    return {"payloadType": "application/vnd.in-toto+json",
            "payload": base64.b64encode(json.dumps(statement).encode()).decode(),
            "signatures": [{"keyid": "forged", "sig": base64.b64encode(b"x" * 64).decode()}]}


@pytest.fixture(scope="module")
def rt(provider, attacker, pg_url, tmp_path_factory):  # noqa: F811 - provider is the imported fixture
    """The console on a real uvicorn over a ledger and approval store holding the attacker's strings, every one
    of them put there through a real write path."""
    from lineage_guard.console.app import build_app
    from lineage_guard.console.run import bound_port, start_in_thread

    root = tmp_path_factory.mktemp("redteam_console")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LINEAGE_GUARD_HOME", str(root / "home"))
        mp.setenv("LINEAGE_GUARD_MASTER_KEY", TEST_MASTER_KEY)
        make_table(pg_url)
        policy = load(console_policy(provider["issuer"], CLIENT_ID))
        signer = Signer.generate()
        ledger = Ledger.open(str(root / "ledger.sqlite"), signer=signer)
        store = ApprovalStore.open(f"sqlite:///{root}/approvals.sqlite", config=policy.approvals)
        hostile = {"job_name": f"etl{IMG}", "approval_context": {f"dag{IMG}": f"{SCRIPT}{TEMPLATE}",
                                                                   "ticket": f"{SVG}{JS_URL}"}}
        # A write that needs approval: quoted names carry the payloads, a literal carries a secret value.
        xss = ask(pg_url, policy, ledger, store,
                  f'UPDATE console_shipments AS "{IMG}" SET code = \'{SECRET_CITY}\' WHERE "{IMG}".id = 1 '
                  f'AND "{IMG}".city <> \'{SCRIPT}\'', **hostile)
        to_deny = ask(pg_url, policy, ledger, store, "UPDATE console_shipments SET code = $1 WHERE id = 2",
                      [SECRET_PARAM])
        spare = {name: ask(pg_url, policy, ledger, store, f"UPDATE console_shipments SET city = 'x' WHERE id = {i}")
                 for i, name in ((3, "csrf"), (4, "authz"), (5, "session"))}
        # A read whose output names are payloads, and an extract to a file whose name is one (the sink dataset).
        with GovernedSession(pg_url, policy, Identity("svc-etl"), "fulfilment", ledger=ledger,
                             job_name=f"read{SCRIPT}") as s:
            s.read_arrow(f'SELECT city AS "{IMG}", code AS "{TEMPLATE}" FROM console_shipments '
                         f"WHERE city <> '{SECRET_CITY}'")
            s.extract("SELECT id, city FROM console_shipments", to=root / f"{IMG}.parquet")
        # A forged attestation in the folder the Models page reads (shown there as "what the file claims").
        folder = root / "attestations"
        folder.mkdir()
        claims = {"predicate": {"model": {"digest": f"sha256:{IMG}", "files": 1}, "attestedAt": SCRIPT, "datasets": [{
            "name": IMG, "digest": {"sha256": SVG}, "receiptId": JS_URL, "approvalId": JS_URL,
            "identity": {"principal": SCRIPT}, "purpose": TEMPLATE, "source": {"tables": [SVG]},
            "columns": [{"name": IMG, "sources": [JS_URL, f"//127.0.0.1:{attacker.port}/x"], "treatment": "clear"}]}]}}
        (folder / "forged.dsse.json").write_text(json.dumps(envelope(claims)))
        app = build_app(policy, approvals=store, ledger=ledger, secure_cookies=False, attestations=folder,
                        public_keys=(signer.public_key,))
        server, thread = start_in_thread(app, host="127.0.0.1", port=provider["console_port"])
        base = f"http://127.0.0.1:{bound_port(server)}"
        entries = list(ledger.entries())
        receipts = {"needs_approval": next(e["id"] for e in entries if e["body"].get("approval_id") == xss),
                    "success-extract": next(e["id"] for e in entries
                                            if e["body"]["outcome"] == "success" and (e["body"].get("sink") or {}).get("namespace") == "file")}
        yield {"base": base, "issuer": provider["issuer"], "store": store, "ledger": ledger, "app": app,
               "xss": xss, "to_deny": to_deny, "spare": spare, "receipts": receipts, "root": root}
        server.should_exit = True
        thread.join(timeout=10)
        ledger.close()


def watch(page) -> list[str]:
    """Collect what the page says about the content security policy (a blocked inline handler would show here)."""
    said: list[str] = []
    page.on("console", lambda m: said.append(m.text) if "Content Security Policy" in m.text else None)
    return said


def assert_inert(page, base: str, attacker: Attacker, *visible: str) -> None:
    """No payload ran or became markup; each of `visible` is on the page as text; every link stays on the console."""
    assert page.evaluate("() => window.__pwned") is None
    assert page.evaluate(f"() => document.querySelectorAll({DANGEROUS!r}).length") == 0
    text = page.inner_text("body")
    for value in visible:
        assert value in text, (value, text[:2000])
    hrefs = page.evaluate("() => Array.from(document.querySelectorAll('a[href], form[action]'))"
                          ".map(a => a.href || a.action)")
    for href in hrefs:
        assert href.startswith(base + "/"), href
    assert attacker.hits == [], attacker.hits


def test_the_payloads_are_live_outside_the_console(rt, attacker, browser):  # noqa: F811
    """Control: the same strings as raw HTML on the attacker's page (no console, no CSP) do run in this Chromium,
    and each really is in what the console reads (store and ledger), so the page tests below mean something."""
    req = rt["store"].get(rt["xss"])
    assert IMG in req.statement_shape and SCRIPT not in req.statement_shape   # a literal: replaced by the shape
    assert req.context == {f"dag{IMG}": f"{SCRIPT}{TEMPLATE}", "ticket": f"{SVG}{JS_URL}"}
    entries = json.dumps(list(rt["ledger"].entries()))
    assert json.dumps(IMG) in entries and json.dumps(TEMPLATE) in entries and json.dumps(f"read{SCRIPT}") in entries
    attacker.pages["/control"] = (f"<p>{IMG}</p><div>{SVG}</div><img src={attacker.collector}>"
                                  f"<a id=js href='{JS_URL}'>x</a>")

    def control(chromium):
        context = chromium.new_context()
        try:
            page = context.new_page()
            page.goto(attacker.origin + "/control")
            page.wait_for_function("() => window.__pwned !== undefined")
            page.click("#js")
            return page.evaluate("() => window.__pwned")
        finally:
            context.close()

    pwned = browser.run(control).result(timeout=120)
    hits, attacker.hits[:] = list(attacker.hits), []
    assert pwned == 4 and "/collect" in hits


def test_stored_payloads_are_shown_as_text_on_every_page(rt, attacker, browser):  # noqa: F811
    """The attacker's job name, approval context, quoted SQL names, output column names, sink file name and a
    forged attestation, on the inbox, request, timeline, receipt, column and models pages: shown escaped, never
    run, no template evaluated, no link off the console, and no typed value shown (Pages.shot)."""
    base, receipts = rt["base"], rt["receipts"]

    def look(chromium):
        sam = Pages(chromium, rt, "sam")              # auditor: every read page
        said = watch(sam.page)
        try:
            sam.sign_in()
            pages = [
                ("/approvals", [rt["xss"]]),
                (f"/approvals/{rt['xss']}", [f'AS "{IMG}"', f"dag{IMG}={SCRIPT}{TEMPLATE}", f"ticket={SVG}{JS_URL}"]),
                ("/timeline", [f"{IMG}: clear", f"{TEMPLATE}: clear"]),
                (f"/receipts/{receipts['needs_approval']}", [f'AS "{IMG}"', f"lineage_guard/etl{IMG}"]),
                (f"/receipts/{receipts['success-extract']}", [f"{IMG}.parquet"]),
                ("/columns/public.console_shipments.city", ["svc-etl"]),
                ("/models", [f"sha256:{IMG}", SCRIPT, SVG, TEMPLATE, f"{JS_URL} //127.0.0.1:{attacker.port}/x → {IMG}"]),
            ]
            for path, visible in pages:
                sam.go(path)
                sam.shot("xss-" + path.strip("/").replace("/", "-")[:40])
                assert_inert(sam.page, base, attacker, *visible)
            assert said == [], said    # escaped, not merely blocked: nothing even asked the CSP
        finally:
            sam.close()

    browser.run(look).result(timeout=240)


def test_a_decision_reason_is_stored_and_shown_as_text(rt, attacker, browser):  # noqa: F811
    """The approver's own reason, typed into the real form: kept with the decision, shown escaped."""
    reason = f"{IMG} {SCRIPT} {TEMPLATE}"

    def deny(chromium):
        dana = Pages(chromium, rt, "dana")
        said = watch(dana.page)
        try:
            dana.sign_in()
            dana.go(f"/approvals/{rt['to_deny']}")
            dana.page.fill("input[name=reason]", reason)
            dana.page.click("button.deny")
            dana.page.wait_for_selector("#done")
            dana.go(f"/approvals/{rt['to_deny']}")
            dana.shot("xss-reason")
            assert_inert(dana.page, rt["base"], attacker, reason)
            assert said == []
        finally:
            dana.close()

    browser.run(deny).result(timeout=180)
    req = rt["store"].get(rt["to_deny"])
    assert req.status == "denied" and req.note.startswith(reason)


def test_reflected_payloads_in_paths_queries_and_errors_are_shown_as_text(rt, attacker, browser):  # noqa: F811
    """Payloads in URL paths and query strings that the pages echo (refusals, filters, the done notice, the
    provider's error on the callback): escaped; an attribute break-out stays inside its value."""
    base = rt["base"]
    reflected = [
        (f"/approvals/{quote(IMG)}", [IMG]),
        (f"/receipts/{quote(IMG)}", [IMG]),
        (f"/columns/a.b.{quote(DOTLESS)}", [f"a.b.{DOTLESS}"]),
        ("/approvals?" + urlencode({"done": f"{IMG}:{SCRIPT}"}), []),   # no such decision: no notice at all
        ("/timeline?" + urlencode({"since": IMG}), ["bad filter"]),
        ("/timeline?" + urlencode({"identity": SVG, "q": TEMPLATE, "table": SCRIPT}), []),
        ("/auth/callback?" + urlencode({"error": IMG, "error_description": SCRIPT, "state": SVG}), ["sign-in failed"]),
    ]

    def look(chromium):
        sam = Pages(chromium, rt, "sam")
        said = watch(sam.page)
        try:
            sam.sign_in()
            for path, visible in reflected:
                sam.go(path)
                sam.shot("reflected")
                assert_inert(sam.page, base, attacker, *visible)
            sam.go("/timeline?" + urlencode({"identity": SVG, "q": TEMPLATE}))
            assert sam.page.input_value("input[name=identity]") == SVG     # the break-out is the field's value
            assert sam.page.input_value("input[name=q]") == TEMPLATE
            # A crafted notice link announces nothing: not a made-up id, nor a real request that is still pending.
            for done in (f"approved:{IMG}", "denied:ANY", f"approved:{rt['spare']['session']}"):
                sam.go("/approvals?" + urlencode({"done": done}))
                assert sam.page.locator("#done").count() == 0, done
            assert said == [], said
        finally:
            sam.close()

    browser.run(look).result(timeout=240)


def test_a_cross_origin_page_cannot_decide_or_sign_out_with_the_victims_cookies(rt, attacker, browser):  # noqa: F811
    """An approver signed in visits the attacker's page on another 127.0.0.1 port. Another port is the same *site*
    (SameSite does not look at ports), so the browser does send the session cookie with its auto-submitted
    forms: the console's refusal says "CSRF token", not "sign in first". A fetch with credentials, a guessed
    token (another person's), GET forms, and the same page from a cross-site origin (localhost): all refused,
    the request stays pending, the approver stays signed in."""
    base, target = rt["base"], rt["spare"]["csrf"]
    decide = f"{base}/approvals/{target}/decide"
    other = sign_in_directly(rt["app"], "vic")                    # the attacker's own session: a real token
    submit = "<script>onload = () => setTimeout(() => document.forms[0].submit(), 50)</script>"
    form = "<form method=post action='{action}'>{fields}</form>" + submit

    def fields(**values):
        return "".join(f"<input type=hidden name={k} value='{v}'>" for k, v in values.items())

    attacker.pages["/csrf-approve"] = form.format(action=decide, fields=fields(decision="approve", reason="pwned"))
    attacker.pages["/csrf-foreign"] = form.format(action=decide, fields=fields(decision="approve", reason="pwned",
                                                                               csrf=other.csrf))
    attacker.pages["/csrf-signout"] = form.format(action=f"{base}/signout", fields="")
    attacker.pages["/csrf-get"] = ("<form method=get action='{action}'>{fields}</form>" + submit).format(
        action=decide, fields=fields(decision="approve", reason="pwned"))
    attacker.pages["/csrf-fetch"] = (
        f"<script>fetch('{decide}', {{method: 'POST', mode: 'no-cors', credentials: 'include', "
        f"body: new URLSearchParams({{decision: 'approve', reason: 'pwned', csrf: '{other.csrf}'}})}})"
        ".then(() => document.title = 'sent', () => document.title = 'failed')</script>")

    def attack(chromium):
        dana = Pages(chromium, rt, "dana")
        try:
            dana.sign_in()
            page = dana.page
            seen = {}
            for name in ("csrf-approve", "csrf-foreign", "csrf-signout", "csrf-get"):
                page.goto(f"{attacker.origin}/{name}")
                page.wait_for_url(lambda u: u.startswith(base))
                page.wait_for_load_state()
                seen[name] = page.inner_text("body")
            page.goto(f"{attacker.origin}/csrf-fetch")
            page.wait_for_function("() => document.title === 'sent' || document.title === 'failed'")
            seen["fetch"] = page.title()
            # cross-site: localhost is another site, so a Lax cookie is not sent with the POST at all
            page.goto(f"http://localhost:{attacker.port}/csrf-approve")
            page.wait_for_url(decide)
            seen["cross-site"] = page.inner_text("body")
            dana.go("/approvals")
            assert "dana" in page.inner_text("form.who"), "the forged sign-out signed the approver out"
            return seen
        finally:
            dana.close()

    seen = browser.run(attack).result(timeout=240)
    assert attacker.got_console_cookie     # another port is the same site: the browser even sends it the cookie
    assert "CSRF token is missing or wrong" in seen["csrf-approve"]      # the cookie went along: only the token stops it
    assert "CSRF token is missing or wrong" in seen["csrf-foreign"]
    assert "CSRF token is missing or wrong" in seen["csrf-signout"]
    assert "Method Not Allowed" in seen["csrf-get"]
    assert seen["fetch"] == "sent"                                       # it did reach the console
    assert "sign in first" in seen["cross-site"]
    req = rt["store"].get(target)
    assert (req.status, req.approver) == ("pending", None)
    assert attacker.hits == []


def test_the_console_cannot_be_framed_and_every_response_carries_its_headers(rt, attacker, browser):  # noqa: F811
    """The attacker frames the approver's request page (clickjacking the Approve button): Chromium refuses to
    render it; the attacker's own page frames fine (control). Every kind of response, a refusal, a 404, a 405,
    the sign-in redirect, the callback's plain page, a static file, carries the headers."""
    base = rt["base"]
    attacker.pages["/framed"] = f"<iframe id=f src='{base}/approvals/{rt['spare']['csrf']}'></iframe>"
    attacker.pages["/inner"] = "<p id=inner>attacker's own frame</p>"
    attacker.pages["/framed-control"] = f"<iframe src='{attacker.origin}/inner'></iframe>"

    def frame(chromium):
        dana = Pages(chromium, rt, "dana")
        try:
            dana.sign_in()
            page = dana.page
            page.goto(attacker.origin + "/framed-control")
            page.wait_for_function("() => document.querySelector('iframe').contentDocument"
                                   "?.getElementById('inner') !== null")
            page.goto(attacker.origin + "/framed")
            page.wait_for_load_state("load")
            time.sleep(1)
            urls, texts = [f.url for f in page.frames[1:]], []
            for f in page.frames[1:]:
                try:
                    texts.append(f.evaluate("() => document.body ? document.body.innerText : ''"))
                except Exception:  # noqa: BLE001 - Chromium's error page for a refused frame
                    texts.append("")
            headers = {}
            for path in ["/approvals", f"/approvals/{rt['spare']['csrf']}", "/timeline", "/models", "/signed-out",
                         "/approvals/nope", "/static/console.css", "/nowhere", f"/approvals/{rt['spare']['csrf']}/decide",
                         "/auth/callback?state=x&code=y", "/timeline?before=99999999999999999999"]:
                got = dana.context.request.get(base + path, max_redirects=0)
                headers[path] = (got.status, got.headers)
            stranger = chromium.new_context()
            got = stranger.request.get(base + "/approvals", max_redirects=0)
            headers["signed out redirect"] = (got.status, got.headers)
            stranger.close()
            return urls, texts, headers
        finally:
            dana.close()

    urls, texts, headers = browser.run(frame).result(timeout=180)
    assert len(urls) == 1 and all("Approve" not in t and "Reason" not in t for t in texts), (urls, texts)
    for path, (status, h) in headers.items():
        assert h.get("x-frame-options") == "DENY", (path, status)
        csp = h.get("content-security-policy", "")
        assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp and "script-src" not in csp, (path, csp)
        assert h.get("referrer-policy") == "no-referrer" and h.get("cache-control") == "no-store", (path, status)
        assert h.get("x-content-type-options") == "nosniff", path
    assert headers["/timeline?before=99999999999999999999"][0] == 400     # a bad cursor is a bad filter, not a crash


def test_a_crash_still_carries_the_security_headers(rt, tmp_path):
    """An error no handler expected (here: the provider's discovery is unreachable at sign-in) is a bare 500 from
    Starlette's outermost middleware, outside the header middleware: it must carry the headers all the same."""
    from starlette.testclient import TestClient

    from lineage_guard.console.app import build_app

    policy = load(console_policy("http://127.0.0.1:9/unreachable", CLIENT_ID))
    app = build_app(policy, approvals=rt["store"], ledger=rt["ledger"], secure_cookies=False)
    got = TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False).get("/signin")
    assert got.status_code == 500
    assert got.headers.get("x-frame-options") == "DENY" and got.headers.get("cache-control") == "no-store"
    assert "frame-ancestors 'none'" in got.headers.get("content-security-policy", "")
    assert "Traceback" not in got.text and "127.0.0.1:9" not in got.text


def capture_callback(context, base: str, login: str) -> str:
    """Sign in with this browser context's own cookie jar (its request API) up to the provider's redirect back,
    which is held, not delivered: its URL, the code still unused. (Chromium does not let a route hold a
    redirect, and the provider's last step is one.)"""
    import re
    from urllib.parse import urljoin

    location = base + "/signin?next=/timeline"
    for _ in range(12):
        if location.startswith(base + "/auth/callback"):
            return location
        got = context.request.get(location, max_redirects=0)
        if got.status == 200 and 'name="login"' in got.text():
            action = re.search(r'<form[^>]*action="([^"]+)"', got.text())[1]
            got = context.request.post(urljoin(location, action), max_redirects=0,
                                       form={"prompt": "login", "login": login, "password": "any"})
        assert got.status in (302, 303), (got.status, got.text()[:300])
        location = urljoin(location, got.headers["location"])
    raise AssertionError(f"the provider never redirected back: {location}")


def test_a_callback_is_bound_to_the_browser_that_began_the_sign_in_and_works_once(rt, browser, caplog):  # noqa: F811
    """A's callback URL (code and state), held before delivery: in browser B it is refused (B's sign-in cookie
    holds no such state); with B's own state pasted in, the provider refuses the code (PKCE verifier and
    nonce are B's); then A uses it and is signed in (it was live all along); a replay in A is refused."""
    base = rt["base"]
    caplog.set_level(logging.INFO, logger="lineage_guard.console")

    def attack(chromium):
        a, b = Pages(chromium, rt, "dana"), chromium.new_context()
        try:
            url = capture_callback(a.context, base, "dana")
            query = parse_qs(urlsplit(url).query)
            assert query.get("code") and query.get("state")
            before = len(list(rt["app"].state.sessions.live()))
            out = {"verbatim": b.request.get(url, max_redirects=0).status}
            log_verbatim = [r.getMessage() for r in caplog.records]
            caplog.clear()
            begun = b.request.get(base + "/signin", max_redirects=0)    # B's own transaction, B's state
            state_b = parse_qs(urlsplit(begun.headers["location"]).query)["state"][0]
            swapped = {k: v[0] for k, v in query.items()} | {"state": state_b}
            out["swapped"] = b.request.get(f"{base}/auth/callback?{urlencode(swapped)}", max_redirects=0).status
            out["sessions_after_b"] = len(list(rt["app"].state.sessions.live())) - before
            out["log_swapped"] = [r.getMessage() for r in caplog.records]
            out["b_cookies"] = [c["name"] for c in b.cookies()]
            a.page.goto(url)
            a.page.wait_for_url(base + "/timeline")
            out["a"] = a.page.inner_text("form.who")
            a.page.goto(url)                                             # the same callback again: replay
            out["replay"] = a.page.inner_text("body")
            out["log"] = log_verbatim
            return out
        finally:
            a.close()
            b.close()

    out = browser.run(attack).result(timeout=180)
    assert out["verbatim"] == 401 and out["swapped"] == 401
    assert any("MismatchingStateError" in m for m in out["log"]), out["log"]       # refused before the provider
    assert any(m.endswith(": OAuthError") for m in out["log_swapped"]), out["log_swapped"]  # the provider refused
    assert out["sessions_after_b"] == 0 and "lg_console" not in out["b_cookies"]
    assert "dana" in out["a"]                                            # the held code was good
    assert "sign-in failed" in out["replay"]


EVIL_NEXT = ["https://evil.example/", "//127.0.0.1:{port}/next", "/\\127.0.0.1:{port}/next", "\\\\127.0.0.1:{port}/next",
             "/\\/127.0.0.1:{port}/next", "/\t/127.0.0.1:{port}/next", "/%5C127.0.0.1:{port}/next",
             "/..//127.0.0.1:{port}/next", "/%2F127.0.0.1:{port}/next", "javascript:window.__pwned=1//",
             "/\r\nLocation: http://127.0.0.1:{port}/next", " //127.0.0.1:{port}/next", "http:127.0.0.1:{port}/next"]


def test_the_return_address_after_sign_in_never_leaves_the_console(rt, attacker, browser):  # noqa: F811
    """`/signin?next=` with absolute, scheme-relative, backslash, tab, encoded, dot-dot, CRLF and javascript:
    targets (the attacker's port): after the provider sends the browser back, it is on the console, the attacker
    got no request. Control: next=/timeline lands on /timeline."""
    base = rt["base"]

    def attack(chromium):
        dana = Pages(chromium, rt, "dana")
        try:
            dana.sign_in()                                  # the provider session: later sign-ins go straight back
            landed = {}
            for target in ["/timeline", *(t.format(port=attacker.port) for t in EVIL_NEXT)]:
                dana.page.goto(f"{base}/signin?next={quote(target, safe='')}")
                dana.page.wait_for_url(lambda u: not u.startswith(rt["issuer"]))
                dana.page.wait_for_load_state()
                landed[target] = (dana.page.url, dana.page.evaluate("() => window.__pwned"))
            return landed
        finally:
            dana.close()

    landed = browser.run(attack).result(timeout=240)
    assert landed.pop("/timeline")[0] == base + "/timeline"
    for target, (url, pwned) in landed.items():
        assert urlsplit(url).netloc == urlsplit(base).netloc, (target, url)
        assert pwned is None, target
    assert attacker.hits == []


def test_sign_in_issues_a_fresh_session_and_sign_out_revokes_it_server_side(rt, browser):  # noqa: F811
    """Fixation: the attacker plants their own real session id (and a junk sign-in cookie) in the victim's browser
    before the victim signs in; after sign-in the browser holds a new id and the planted one is still only the
    attacker's. Sign-out: the old cookie with its own CSRF token, replayed, neither decides nor reads."""
    base, target = rt["base"], rt["spare"]["session"]
    planted = sign_in_directly(rt["app"], "vic")

    def attack(chromium):
        dana = Pages(chromium, rt, "dana")
        try:
            dana.context.add_cookies([{"name": "lg_console", "value": planted.sid, "url": base},
                                      {"name": "lg_console_signin", "value": "junk.planted", "url": base}])
            dana.go("/approvals")                           # the planted session is the attacker's, as it was
            assert "vic" in dana.page.inner_text("form.who")
            dana.context.clear_cookies(name="lg_console")   # the victim's sign-in (from a signed-out state)
            dana.context.add_cookies([{"name": "lg_console", "value": "planted-but-unknown", "url": base}])
            dana.sign_in()
            sid = next(c["value"] for c in dana.context.cookies() if c["name"] == "lg_console")
            csrf = dana.page.get_attribute("form.who input[name=csrf]", "value")
            dana.sign_out()
            thief = chromium.new_context()
            try:
                thief.add_cookies([{"name": "lg_console", "value": sid, "url": base}])
                decided = thief.request.post(f"{base}/approvals/{target}/decide", max_redirects=0,
                                             form={"csrf": csrf, "decision": "approve", "reason": "replayed"})
                signout = thief.request.post(f"{base}/signout", form={"csrf": csrf}, max_redirects=0)
                page = thief.request.get(f"{base}/approvals/{target}", max_redirects=0)
                return sid, decided.status, signout.status, page.status
            finally:
                thief.close()
        finally:
            dana.close()

    sid, decided, signout, page = browser.run(attack).result(timeout=180)
    registry = rt["app"].state.sessions
    assert sid not in (planted.sid, "planted-but-unknown")
    assert registry.get(planted.sid).identity == "vic" and registry.get("planted-but-unknown") is None
    assert registry.get(sid) is None
    assert (decided, signout, page) == (401, 401, 303)
    assert rt["store"].get(target).status == "pending"


def test_signing_in_again_ends_the_session_the_browser_held(rt, browser):  # noqa: F811
    """A copy of the browser's session cookie taken before a second sign-in (in the same browser) no longer works
    after it: the callback ends the session the browser presented instead of leaving it valid until it expires."""
    base = rt["base"]

    def attack(chromium):
        dana = Pages(chromium, rt, "dana")
        try:
            dana.sign_in()
            first = next(c["value"] for c in dana.context.cookies() if c["name"] == "lg_console")
            dana.page.goto(base + "/signin?next=/approvals")   # the provider still knows dana: straight back
            if dana.page.url.startswith(rt["issuer"]):
                dana.page.fill("input[name=login]", "dana")
                dana.page.fill("input[name=password]", "any")
                dana.page.click("button[type=submit]")
            dana.page.wait_for_url(base + "/approvals")
            second = next(c["value"] for c in dana.context.cookies() if c["name"] == "lg_console")
            thief = chromium.new_context()
            try:
                thief.add_cookies([{"name": "lg_console", "value": first, "url": base}])
                replay = thief.request.get(f"{base}/approvals", max_redirects=0).status
            finally:
                thief.close()
            return first, second, replay
        finally:
            dana.close()

    first, second, replay = browser.run(attack).result(timeout=180)
    registry = rt["app"].state.sessions
    assert first != second and registry.get(second) is not None
    assert registry.get(first) is None, "the session held before the second sign-in still works"
    assert replay == 303   # sent to sign in, as a stranger is


def test_people_outside_a_request_cannot_decide_it_by_direct_post(rt, browser):  # noqa: F811
    """With their own valid session and CSRF token, posted straight to the endpoint (no form on their page):
    an approver whose grant is another environment (stan), the requester's own identity under another spelling
    (" SVC-ETL", subject etl-owner), an auditor (sam), a viewer (vic). Each refused, the request still pending.
    The read-only roles cannot reach what they are not given (receipts, exports, columns, timeline)."""
    base, target = rt["base"], rt["spare"]["authz"]

    def attack(chromium):
        out = {}
        for login in ("stan", "etl-owner", "sam", "vic"):
            me = Pages(chromium, rt, login)
            try:
                me.sign_in(identity="SVC-ETL" if login == "etl-owner" else None)
                csrf = me.page.get_attribute("form.who input[name=csrf]", "value")
                me.go(f"/approvals/{target}")
                form = me.page.query_selector("#decide")
                got = me.context.request.post(f"{base}/approvals/{target}/decide", max_redirects=0,
                                              form={"csrf": csrf, "decision": "approve", "reason": "forced"})
                reads = {p: me.context.request.get(base + p, max_redirects=0).status
                         for p in (f"/receipts/{rt['receipts']['needs_approval']}", "/timeline/export.json",
                                   "/columns/public.console_shipments.city", "/timeline")}
                out[login] = (form is None, got.status, got.text(), reads)
            finally:
                me.close()
        return out

    out = browser.run(attack).result(timeout=300)
    assert out["stan"][:2] == (True, 403) and "does not cover environment" in out["stan"][2]
    assert out["etl-owner"][:2] == (True, 403) and "you asked for this request" in out["etl-owner"][2]
    assert out["sam"][1] == 403 and out["vic"][1] == 403
    assert set(out["vic"][3].values()) == {403, 200} and out["vic"][3]["/timeline"] == 200
    assert out["stan"][3]["/timeline"] == 403
    req = rt["store"].get(target)
    assert (req.status, req.approver) == ("pending", None)


def test_no_page_or_export_holds_a_value_the_ledger_does_not(rt, browser):  # noqa: F811
    """The secret city (a literal) and parameter: neither the ledger nor the approval store holds them, and no page
    or export shows them (every page through Pages.shot; the exports read here)."""
    assert SECRET_CITY not in json.dumps(list(rt["ledger"].entries()), ensure_ascii=False)
    assert SECRET_CITY not in (rt["root"] / "approvals.sqlite").read_bytes().decode("utf-8", "replace")
    assert SECRET_PARAM not in (rt["root"] / "approvals.sqlite").read_bytes().decode("utf-8", "replace")

    def look(chromium):
        sam = Pages(chromium, rt, "sam")
        try:
            sam.sign_in()
            for path in ("/approvals?status=all", f"/approvals/{rt['xss']}", f"/approvals/{rt['to_deny']}",
                         "/timeline", f"/receipts/{rt['receipts']['needs_approval']}"):
                sam.go(path)
                sam.shot("values")
            return [sam.context.request.get(rt["base"] + f"/timeline/export.{f}").text() for f in ("csv", "json")]
        finally:
            sam.close()

    for text in browser.run(look).result(timeout=180):
        assert SECRET_CITY not in text and SECRET_PARAM not in text and "needs_approval" in text
