"""The console in a real headless Chromium (Debian's `chromium`, driven by Playwright for Python), signing in
against a real OpenID provider on 127.0.0.1 (the npm `oidc-provider`, tests/oidc/provider.mjs), with the
console under a real uvicorn: approve a pending request and watch the deferred Airflow `dag.test()` task
finish; deny one; a user without the approver role cannot; filter the timeline; open a receipt; export.

Every page is saved as a screenshot under test-artifacts/console/ (gitignored) and its HTML is checked for
the raw values the statements carried. One browser for the module, driven from one worker thread (Playwright's
sync objects belong to the thread that made them; `dag.test()` runs in the main thread).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from airflow_conftest import *
from conftest import TEST_MASTER_KEY
from console_helpers import SECRET_CITY, SECRET_PARAM, ask, console_policy, load, make_table

from lineage_guard.approvals import ApprovalStore
from lineage_guard.audit import Ledger
from lineage_guard.audit.signing import write_key_file

pytestmark = pytest.mark.airflow

HERE = Path(__file__).resolve().parent
OIDC_DIR = HERE / "oidc"
ARTIFACTS = HERE.parent / "test-artifacts" / "console"
CHROMIUM = "/usr/bin/chromium"
CLIENT_ID = "lg-console"
FORBIDDEN = [SECRET_CITY, SECRET_PARAM, "Bergen", TEST_MASTER_KEY]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_modules() -> Path:
    """oidc-provider installed from the committed package-lock into a cache folder (once per lock)."""
    lock = (OIDC_DIR / "package-lock.json").read_bytes()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lineage_guard" / (
        "oidc-provider-" + hashlib.sha256(lock).hexdigest()[:12])
    if not (cache / "node_modules" / "oidc-provider").is_dir():
        cache.mkdir(parents=True, exist_ok=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copy(OIDC_DIR / name, cache / name)
        done = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=cache,
                              capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stderr[-2000:]
    return cache / "node_modules"


@pytest.fixture(scope="module")
def provider():
    assert shutil.which("node"), "node is needed for the OpenID provider: .ci/run installs nodejs and npm"
    modules = node_modules()
    port, console_port, restart_port = free_port(), free_port(), free_port()
    env = {**os.environ, "NODE_PATH": str(modules)}
    script = modules.parent / "provider.mjs"   # ESM resolves packages beside the script, not from NODE_PATH
    shutil.copy(OIDC_DIR / "provider.mjs", script)
    callbacks = ",".join(f"http://127.0.0.1:{p}/auth/callback" for p in (console_port, restart_port))
    proc = subprocess.Popen(["node", str(script), str(port), CLIENT_ID, callbacks],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline()
    assert line.startswith("ready"), proc.stderr.read()[-2000:]
    yield {"issuer": f"http://127.0.0.1:{port}", "console_port": console_port, "restart_port": restart_port}
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def world(provider, airflow_env, patients, tmp_path_factory):
    """The console on a real uvicorn, over the ledger and approval store the Airflow task writes."""
    from lineage_guard.console.run import bound_port, start_in_thread

    root = tmp_path_factory.mktemp("console_browser")
    key = root / "ledger-signing.key"
    signer = write_key_file(key)
    with pytest.MonkeyPatch.context() as mp:   # module-wide: the task, the console and the tests share them
        mp.setenv("LINEAGE_GUARD_LEDGER_URL", str(root / "ledger.sqlite"))
        mp.setenv("LINEAGE_GUARD_APPROVALS_URL", f"sqlite:///{root}/approvals.sqlite")
        mp.setenv("LINEAGE_GUARD_LEDGER_SIGNING_KEY_FILE", str(key))
        mp.setenv("LINEAGE_GUARD_HOME", str(root / "home"))
        mp.setenv("LINEAGE_GUARD_MASTER_KEY", TEST_MASTER_KEY)
        from lineage_guard.console.app import build_app

        policy = load(console_policy(provider["issuer"], CLIENT_ID))
        make_table(airflow_env.pg_url)
        ledger = Ledger.open()
        store = ApprovalStore.open(config=policy.approvals)
        deny_me = ask(airflow_env.pg_url, policy, ledger, store,
                      "UPDATE console_shipments SET code = $1 WHERE id = 4", [SECRET_PARAM])
        app = build_app(policy, approvals=store, ledger=ledger, secure_cookies=False,
                        public_keys=(signer.public_key,))
        server, thread = start_in_thread(app, host="127.0.0.1", port=provider["console_port"])
        base = f"http://127.0.0.1:{bound_port(server)}"
        yield {"base": base, "store": store, "ledger": ledger, "deny_me": deny_me, "airflow": airflow_env,
               "app": app, "issuer": provider["issuer"], "pg": airflow_env.pg_url, "home": root / "home",
               "root": root, "restart_port": provider["restart_port"]}
        server.should_exit = True
        thread.join(timeout=10)
        ledger.close()


@pytest.fixture(scope="module")
def browser():
    """One Chromium for the module, owned by one worker thread; `run(fn)` runs fn(browser) there."""
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: .ci/run installs Debian's chromium package"
    pool = ThreadPoolExecutor(1)

    def start():
        from playwright.sync_api import sync_playwright

        pw = sync_playwright().start()
        return pw, pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])

    pw, chromium = pool.submit(start).result(timeout=120)

    class Runner:
        def run(self, fn, *args):
            return pool.submit(fn, chromium, *args)

    yield Runner()
    # The browser closes in ~0.1 s; stopping Playwright's driver afterwards took ~40 s in this suite (30 s of
    # which this teardown used to wait out). The results are in by now: wait for the browser only, and let the
    # worker stop the driver while the next tests run. A stalled close is left to the worker, not a failure.
    closing = pool.submit(chromium.close)
    try:
        closing.result(timeout=30)
    except TimeoutError:
        import warnings

        warnings.warn("chromium did not close within 30 s; left to exit with the test process", stacklevel=1)
    pool.submit(pw.stop)
    pool.shutdown(wait=False)


class Pages:
    """A signed-in person's browser tab; every page it shows is screenshotted and checked for raw values."""

    def __init__(self, chromium, world, login: str):
        self.world = world
        self.context = chromium.new_context(accept_downloads=True)
        self.page = self.context.new_page()
        self.page.set_default_timeout(90_000)  # a shared, loaded machine
        self.login = login
        self.seen: list[str] = []

    def sign_in(self, base: str | None = None, identity: str | None = None) -> None:
        """Sign in through the provider as `login`; the header then names `identity` (default: the login)."""
        page = self.page
        base = base or self.world["base"]
        page.goto(base + "/approvals")           # not signed in: sent to the provider
        assert page.url.startswith(self.world["issuer"]), page.url
        page.wait_for_selector("input[name=login]")   # the provider asks for credentials
        self.shot("provider-login")
        page.fill("input[name=login]", self.login)
        page.fill("input[name=password]", "any")
        page.click("button[type=submit]")
        page.wait_for_url(base + "/approvals")
        assert (identity or self.login) in page.inner_text("form.who")

    def sign_out(self, base: str | None = None) -> None:
        """The console's Sign out, then the provider's own sign-out question (RP-initiated logout), answered yes."""
        base = base or self.world["base"]
        self.page.click("form.who button")
        self.page.wait_for_url(self.world["issuer"] + "/**")
        assert "sign-out" in self.page.inner_text("#op-logout")
        self.page.click("button[name=logout][value=yes]")
        self.page.wait_for_url(base + "/signed-out")
        assert "asked to end your session there too" in self.page.inner_text("#signed-out")

    def go(self, path: str) -> None:
        self.page.goto(self.world["base"] + path)

    def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{self.login}-{len(self.seen):02d}-{name}.png"), full_page=True)
        html = self.page.content()
        self.seen.append(name)
        for value in FORBIDDEN:
            assert value not in html, f"{value!r} shown on {name}"

    def close(self) -> None:
        self.context.close()


def wait_for_pending(store: ApprovalStore, requester: str, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [r for r in store.list(status="pending") if r.requester == requester]
        if found:
            return found[0].id
        time.sleep(0.2)
    raise AssertionError(f"no pending request from {requester}")


def test_an_approver_signs_in_and_approves_and_the_deferred_task_finishes(world, browser):
    def approve(chromium):
        me = Pages(chromium, world, "dana")
        try:
            me.sign_in()
            request_id = wait_for_pending(world["store"], "airflow:lg_console.fix_city")
            me.go("/approvals")
            me.shot("inbox")
            me.page.click(f"a[href='/approvals/{request_id}']")
            assert "UPDATE patients SET city = %s WHERE id = %s" in me.page.inner_text("#statement")
            me.shot("request")
            me.page.fill("input[name=reason]", "ticket OPS-12, checked with the owner")
            me.page.click("button.approve")
            me.page.wait_for_selector("#done")
            me.shot("approved")
            return request_id
        except BaseException:
            # dag.test() in the main thread waits for a decision: give it one, so a failure here fails the test
            world["store"].deny(wait_for_pending(world["store"], "airflow:lg_console.fix_city"), "test-harness",
                                "the browser step failed")
            raise
        finally:
            me.close()

    decided = browser.run(approve)
    result = world["airflow"].run("lg_console")         # defers, then resumes when the console approves
    request_id = decided.result(timeout=180)
    assert result.tasks == {"fix_city": "success"}
    req = world["store"].get(request_id)
    assert (req.status, req.approver) == ("used", "dana")
    assert req.note.startswith("ticket OPS-12") and world["issuer"] in req.note
    import psycopg

    with psycopg.connect(world["pg"]) as conn:
        assert conn.execute("SELECT city FROM patients WHERE id = 5").fetchone()[0] == "Bergen"


def test_a_viewer_cannot_decide_and_an_approver_denies(world, browser):
    def viewer_then_approver(chromium):
        vic = Pages(chromium, world, "vic")
        try:
            vic.sign_in()
            vic.go(f"/approvals/{world['deny_me']}")
            assert "cannot decide" in vic.page.inner_text("#cannot-decide")
            assert vic.page.query_selector("#decide") is None
            assert "values not shown" in vic.page.inner_text("#parameters")
            vic.shot("viewer-request")
            csrf = vic.page.get_attribute("form.who input[name=csrf]", "value")
            forced = vic.page.request.post(f"{world['base']}/approvals/{world['deny_me']}/decide",
                                           form={"csrf": csrf, "decision": "approve", "reason": "me"})
            assert forced.status == 403
        finally:
            vic.close()
        assert world["store"].get(world["deny_me"]).status == "pending"
        dana = Pages(chromium, world, "dana")
        try:
            dana.sign_in()
            dana.go(f"/approvals/{world['deny_me']}")
            dana.page.fill("input[name=reason]", "not in this window")
            dana.page.click("button.deny")
            dana.page.wait_for_selector("#done")
            dana.shot("denied")
            dana.go("/approvals?status=denied")
            assert world["deny_me"] in dana.page.inner_text("#requests")
            dana.shot("denied-list")
            # sign-out ends the session: a kept copy of the old cookie no longer signs anyone in
            kept = [c for c in dana.context.cookies() if c["name"] == "lg_console"]
            dana.sign_out()
            dana.shot("signed-out")
            thief = chromium.new_context()
            try:
                thief.add_cookies(kept)
                got = thief.request.get(world["base"] + "/approvals", max_redirects=0)
                assert got.status == 303 and got.headers["location"].startswith("/signin")
            finally:
                thief.close()
            # The provider's session ended too: the same browser is asked for credentials again, not waved through.
            dana.go("/approvals")
            dana.page.wait_for_url(world["issuer"] + "/**")
            dana.page.wait_for_selector("input[name=login]")
            assert dana.page.url.startswith(world["issuer"])
            dana.shot("signed-out-provider-asks-again")
        finally:
            dana.close()

    browser.run(viewer_then_approver).result(timeout=180)
    req = world["store"].get(world["deny_me"])
    assert (req.status, req.approver) == ("denied", "dana")


def test_an_auditor_filters_the_timeline_opens_a_receipt_and_exports(world, browser):
    def audit(chromium):
        sam = Pages(chromium, world, "sam")
        try:
            sam.sign_in()
            cookie = next(c for c in sam.context.cookies() if c["name"] == "lg_console")
            assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
            sam.go("/timeline")
            sam.shot("timeline")
            sam.page.fill("input[name=identity]", "airflow:lg_console.fix_city")
            sam.page.select_option("select[name=outcome]", "success")
            sam.page.click("#filter button[type=submit]")
            rows = sam.page.query_selector_all("#timeline tbody tr")
            assert len(rows) == 1 and "airflow:lg_console.fix_city" in rows[0].inner_text()
            sam.shot("timeline-filtered")
            rows[0].query_selector("a").click()
            sam.page.wait_for_selector("#verdict")
            assert "verified" in sam.page.inner_text("#verdict")
            assert "lg_console.fix_city" in sam.page.inner_text("#lineage")
            sam.shot("receipt")
            sam.go("/timeline?outcome=needs_approval")
            with sam.page.expect_download() as download:
                sam.page.click("#export-csv")
            text = Path(download.value.path()).read_text()
            lines = text.strip().splitlines()
            assert lines[0].startswith("seq,receipt,recorded_at,principal") and len(lines) >= 3
            assert all(",needs_approval," in line for line in lines[1:])
            for value in FORBIDDEN:
                assert value not in text
            sam.go("/columns/public.patients.city")
            sam.shot("column")
            sam.go("/models")
            sam.shot("models")
            return sam.seen
        finally:
            sam.close()

    seen = browser.run(audit).result(timeout=180)
    assert {"timeline", "timeline-filtered", "receipt", "column"} <= set(seen)


def test_sign_in_uses_pkce_and_a_secure_http_only_cookie(world):
    """The same console with Secure cookies (as served over TLS): the redirect to the provider carries an S256
    code challenge and a nonce, and the state cookie is Secure, HttpOnly and SameSite=Lax."""
    from starlette.testclient import TestClient

    from lineage_guard.console.app import build_app

    policy = load(console_policy(world["issuer"], CLIENT_ID))
    app = build_app(policy, approvals=world["store"], ledger=world["ledger"], secure_cookies=True)
    got = TestClient(app, base_url="https://127.0.0.1", follow_redirects=False).get("/signin")
    assert got.status_code == 302 and got.headers["location"].startswith(world["issuer"])
    location = got.headers["location"]
    assert "code_challenge_method=S256" in location and "code_challenge=" in location and "nonce=" in location
    cookie = got.headers["set-cookie"].lower()
    assert "secure" in cookie and "httponly" in cookie and "samesite=lax" in cookie


def test_the_session_cookie_set_after_a_real_sign_in_is_secure_http_only_and_expires(world):
    """The whole code flow against the real provider, without a browser (its login form posted by httpx), into a
    console with Secure cookies: the session cookie holds only the session id and is Secure, HttpOnly,
    SameSite=Lax, with the policy's lifetime. A subject the policy does not map gets no session."""
    import re
    from urllib.parse import urljoin

    import httpx
    from starlette.testclient import TestClient

    from lineage_guard.console.app import build_app

    policy = load(console_policy(world["issuer"], CLIENT_ID))
    port = world["base"].rsplit(":", 1)[1]
    app = build_app(policy, approvals=world["store"], ledger=world["ledger"], secure_cookies=True,
                    public_url=f"http://127.0.0.1:{port}")   # the redirect URI the provider knows
    def sign_in_as(login: str):
        console = TestClient(app, base_url=f"https://127.0.0.1:{port}", follow_redirects=False)
        location = console.get("/signin").headers["location"]
        with httpx.Client(follow_redirects=False, timeout=30) as idp:
            for _ in range(10):
                if location.startswith(f"http://127.0.0.1:{port}/auth/callback"):
                    break
                got = idp.get(location)
                if got.status_code == 200 and 'name="login"' in got.text:
                    action = re.search(r'<form[^>]*action="([^"]+)"', got.text)[1]
                    got = idp.post(urljoin(location, action), data={"prompt": "login", "login": login,
                                                                    "password": "any"})
                assert got.status_code in (302, 303), got.text[:500]
                location = urljoin(location, got.headers["location"])
        assert location.startswith(f"http://127.0.0.1:{port}/auth/callback"), location
        return console.get(location.split(str(port), 1)[1])

    # a subject the policy's console.users does not map: verified by the provider, still refused, no session
    stranger = sign_in_as("mallory")
    assert stranger.status_code == 403 and "does not map your account" in stranger.text
    assert not any(c.startswith("lg_console=") for c in stranger.headers.get_list("set-cookie"))
    done = sign_in_as("sam")
    assert done.status_code == 303, done.text
    cookies = {c.split("=", 1)[0]: c.lower() for c in done.headers.get_list("set-cookie")}
    session = cookies["lg_console"]
    for part in ("secure", "httponly", "samesite=lax", f"max-age={policy.console.session_minutes * 60}", "path=/"):
        assert part in session, session
    sid = done.cookies.get("lg_console") or session.split("=", 1)[1].split(";", 1)[0]
    me = app.state.sessions.get(sid)
    assert me is not None and me.identity == "sam"


MODEL_POLICY = """
version: 1
identities:
  svc-training: {kind: service, groups: [training-jobs]}
groups: [training-jobs]
purposes: [ai_training]
classifications:
  public.console_models_people.email: email
rules:
  - {classifications: [email], groups: [training-jobs], action: mask, mask: {method: tokenize}}
"""
MODEL_SECRETS = [f"person-{i}@models-secret.example" for i in range(1, 13)]


def attested_model(world, root: Path) -> tuple[dict, Path]:
    """Two real governed extracts (email masked by the policy), a real numpy least-squares step on them, and
    `lineage_guard.attest`, which keeps the envelope in the state folder's attestations/ the console reads."""
    import json

    import numpy as np
    import polars as pl
    import psycopg

    import lineage_guard
    from lineage_guard.identity import Identity
    from lineage_guard.policy import parse_policy
    from lineage_guard.session import GovernedSession

    with psycopg.connect(world["pg"], autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS console_models_people; DROP TABLE IF EXISTS console_models_visits")
        conn.execute("CREATE TABLE console_models_people (id int primary key, email text, age int)")
        conn.execute("CREATE TABLE console_models_visits (person_id int, visits int, cost int)")
        conn.cursor().executemany("INSERT INTO console_models_people VALUES (%s, %s, %s)",
                                  [(i, e, 20 + 3 * i) for i, e in enumerate(MODEL_SECRETS, 1)])
        conn.cursor().executemany("INSERT INTO console_models_visits VALUES (%s, %s, %s)",
                                  [(i, 1 + i % 4, 100 + 7 * i + 5 * (1 + i % 4)) for i in range(1, 13)])
    data = root / "data"
    with GovernedSession(world["pg"], parse_policy(MODEL_POLICY), Identity("svc-training"), "ai_training",
                         ledger=world["ledger"]) as s:
        s.extract("SELECT id, email, age FROM console_models_people", to=data / "people.parquet")
        s.extract("SELECT person_id, visits, cost FROM console_models_visits", to=data / "visits.parquet")
    datasets = [data / "people.parquet", data / "visits.parquet"]
    frame = pl.read_parquet(datasets[0]).join(pl.read_parquet(datasets[1]), left_on="id", right_on="person_id")
    assert not set(frame["email"].to_list()) & set(MODEL_SECRETS)   # the extract itself is masked
    x = np.column_stack([frame["age"].to_numpy(), frame["visits"].to_numpy(), np.ones(frame.height)])
    weights, *_ = np.linalg.lstsq(x, frame["cost"].to_numpy().astype(float), rcond=None)
    model = root / "model"
    model.mkdir()
    np.save(model / "weights.npy", weights)
    (model / "config.json").write_text(json.dumps({"features": ["age", "visits"], "target": "cost"}))
    envelope = lineage_guard.attest(model, datasets, ledger=world["ledger"])
    return envelope, model


def test_an_auditor_sees_each_model_attestation_verified_with_its_path_back_to_columns(world, browser,
                                                                                      tmp_path, monkeypatch):
    import base64
    import json

    from lineage_guard import paths

    monkeypatch.setenv("LINEAGE_GUARD_HOME", str(world["home"]))   # the state folder the console was opened on
    envelope, _ = attested_model(world, tmp_path)
    statement = json.loads(base64.b64decode(envelope["payload"]))
    digest = statement["predicate"]["model"]["digest"]
    receipts = [d["receiptId"] for d in statement["predicate"]["datasets"]]
    kept = paths.home_path() / "attestations"
    assert (kept / f"{digest.split(':', 1)[1]}.dsse.json").is_file()
    # A forged copy beside it: the same envelope claiming another model digest, signature untouched.
    forged = json.loads(json.dumps(statement))
    forged["predicate"]["model"]["digest"] = "sha256:" + "f" * 64
    (kept / "forged.dsse.json").write_text(json.dumps(
        {**envelope, "payload": base64.b64encode(json.dumps(forged).encode()).decode()}))

    def look(chromium):
        sam = Pages(chromium, world, "sam")
        try:
            sam.sign_in()
            sam.go("/models")
            real = sam.page.query_selector(f"section.model[data-digest='{digest}']")
            assert real is not None, sam.page.inner_text("main")
            text = real.inner_text()
            assert "verified" in real.query_selector(".verdict").inner_text()
            assert "does not verify" not in text
            assert "public.console_models_people" in text and "public.console_models_visits" in text
            assert "public.console_models_people.email → email: masked (tokenize)" in text
            assert "public.console_models_people.age → age: clear" in text
            assert "svc-training" in text and "ai_training" in text
            bad = sam.page.query_selector("section.model[data-digest='sha256:" + "f" * 64 + "']")
            assert bad is not None and "does not verify: signature" in bad.query_selector(".verdict").inner_text()
            html = sam.page.content()
            for value in MODEL_SECRETS:
                assert value not in html
            sam.shot("models")
            real.query_selector(f"a.receipt[href='/receipts/{receipts[0]}']").click()
            sam.page.wait_for_selector("#verdict")
            assert "verified" in sam.page.inner_text("#verdict")
            assert "console_models_people" in sam.page.inner_text("main")
            sam.shot("model-receipt")
            sam.go("/models")
            sam.page.click(f"section.model[data-digest='{digest}'] a[href='/columns/public.console_models_people.email']")
            sam.page.wait_for_url("**/columns/public.console_models_people.email**")
            html = sam.page.content()
            assert "svc-training" in html
            for value in MODEL_SECRETS:
                assert value not in html
            sam.shot("model-column")
        finally:
            sam.close()

    browser.run(look).result(timeout=180)


def start_console_process(world, policy_file: Path) -> subprocess.Popen:
    """`lineage-guard console` as its own process over the module's ledger and approval store (their env vars)."""
    import httpx

    port = world["restart_port"]
    exe = Path(sys.executable).with_name("lineage-guard")
    proc = subprocess.Popen([str(exe), "console", "--policy", str(policy_file), "--insecure-http",
                             "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("the console process did not start listening")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def test_a_session_survives_a_console_restart_and_ends_when_revoked(world, browser):
    """The real `lineage-guard console` process, stopped and started again: the signed-in browser stays signed in
    (same identity, its CSRF token still accepted); `--end-sessions` while it is down signs that person out."""
    policy_file = world["root"] / "console-policy.yaml"
    policy_file.write_text(console_policy(world["issuer"], CLIENT_ID))
    base = f"http://127.0.0.1:{world['restart_port']}"
    proc = start_console_process(world, policy_file)

    vic_box = {}
    try:
        def first(chromium):
            vic = Pages(chromium, world, "vic")
            vic_box["vic"] = vic
            vic.sign_in(base)
            vic.page.goto(base + "/timeline")
            vic.shot("restart-before")
            return vic.page.get_attribute("form.who input[name=csrf]", "value")

        csrf = browser.run(first).result(timeout=180)
        stop(proc)
        proc = start_console_process(world, policy_file)

        def after_restart(chromium):
            vic = vic_box["vic"]
            vic.page.goto(base + "/timeline")
            assert vic.page.url == base + "/timeline", vic.page.url     # not sent to sign-in
            assert "vic" in vic.page.inner_text("form.who")
            assert vic.page.get_attribute("form.who input[name=csrf]", "value") == csrf
            vic.shot("restart-after")
            vic.sign_out(base)                                          # the old CSRF token still signs out

        browser.run(after_restart).result(timeout=180)

        def again(chromium):
            vic = vic_box["vic"]
            vic.sign_in(base)
            return [c for c in vic.context.cookies() if c["name"] == "lg_console"]

        kept = browser.run(again).result(timeout=180)
        stop(proc)
        ended = subprocess.run([str(Path(sys.executable).with_name("lineage-guard")), "console", "--policy",
                                str(policy_file), "--end-sessions", "vic"], capture_output=True, text=True, timeout=120,
                               check=False)
        import re

        count = re.fullmatch(r"ended (\d+) console session\(s\) of vic\n", ended.stdout)
        assert ended.returncode == 0 and count and int(count[1]) >= 1, (ended.stdout, ended.stderr)
        proc = start_console_process(world, policy_file)

        def revoked(chromium):
            thief = chromium.new_context()
            try:
                thief.add_cookies(kept)
                got = thief.request.get(base + "/timeline", max_redirects=0)
                assert got.status == 303 and got.headers["location"].startswith("/signin")
            finally:
                thief.close()
            vic_box["vic"].close()

        browser.run(revoked).result(timeout=180)
    finally:
        stop(proc)
