"""What the console's pages say about real governed reads, with the console served by `lineage-guard serve
--console-port` (the same process as the governed reader, its own HTTPS port, the service's certificate, the
same ledger and approval store): per column "clear", "masked (method)", "used to filter" on the timeline and
the receipt, the receipt's verification status (and a tampered entry refused), the per-column chart, the
per-run lineage strip with a Marquez link only when OPENLINEAGE_URL is set, and no asset from anywhere else.

A person is signed in by writing a session into the server's approval store (sessions live there), so the
server process itself answers for that person: no provider is needed for what these pages show.
"""

from __future__ import annotations

import re
import socket
import sqlite3
from pathlib import Path

import httpx
import pytest
from conftest import require
from service_helpers import RAW_SENSITIVE, people_service
from starlette.testclient import TestClient

from lineage_guard.approvals import ApprovalStore
from lineage_guard.audit import Ledger
from lineage_guard.client import connect
from lineage_guard.console.app import COOKIE, build_app
from lineage_guard.policy import load_policy

TRAINER = "system:serviceaccount:ml:trainer"
CONSOLE = """
console:
  issuer: http://127.0.0.1:9/not-contacted
  client_id: lg-console
  users: [{identity: sam, subject: sam}]
  roles: {sam: [{role: auditor}]}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def world(new_database, tmp_path_factory):
    require("jwt", "service")
    port = free_port()
    with people_service(new_database(), tmp_path_factory.mktemp("console-pages"), extra_policy=CONSOLE,
                        extra_args=("--console-port", str(port)), principals=()) as svc:
        with connect(svc.url, purpose="ai_training", token=svc.issuer.token(TRAINER),
                     tls_root_certs=str(svc.tls.cert)) as s:
            s.read_arrow("SELECT id, email, ssn FROM people WHERE id <= 2 ORDER BY id")
        store = ApprovalStore.open(f"sqlite:///{svc.home / 'approvals.sqlite'}")
        app = build_app(load_policy(svc.policy), approvals=store,
                        ledger=Ledger.open(f"sqlite:///{svc.home / 'ledger.sqlite'}", create=False),
                        secure_cookies=False)
        sam = app.state.sessions.create(identity="sam", subject="sam", issuer="http://idp")
        yield {"server": svc.server, "base": f"https://127.0.0.1:{port}", "tls": svc.tls, "sam": sam,
               "home": svc.home, "policy": svc.policy, "store": store}
        assert svc.server.stop() == 0


def fetch(world, path: str) -> httpx.Response:
    return httpx.get(world["base"] + path, verify=str(world["tls"].cert), cookies={COOKIE: world["sam"].sid},
                     follow_redirects=False, timeout=30)


def test_the_serving_process_serves_the_console_over_its_certificate_and_the_same_ledger(world):
    assert httpx.get(world["base"] + "/healthz", verify=str(world["tls"].cert)).text == "ok\n"
    anonymous = httpx.get(world["base"] + "/timeline", verify=str(world["tls"].cert), follow_redirects=False)
    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/signin")
    page = fetch(world, "/timeline?identity=svc-training")
    assert page.status_code == 200
    rows = re.findall(r'<tr data-seq="\d+">(.*?)</tr>', page.text, re.DOTALL)
    # the serving process recorded the read: its intent ("open") and then its outcome, newest first
    assert len(rows) == 2 and all("svc-training" in r for r in rows)
    assert ">success<" in rows[0] and ">open<" in rows[1]
    for value in RAW_SENSITIVE:
        assert value not in page.text


def test_each_column_says_clear_masked_with_its_method_or_used_to_filter(world):
    page = fetch(world, "/timeline?identity=svc-training&outcome=success").text
    assert page.count("<tr data-seq=") == 1
    assert "id: clear" in page
    assert "email: masked (tokenize)" in page and "ssn: masked (partial(keep_last=4))" in page
    assert re.search(r"public\.people\.id: used to filter \(where", page)
    # the treatment filters find the entry by the column's treatment, and only by it
    for query, found in (("column=public.people.email&treatment=masked", 2),
                         ("column=public.people.email&treatment=clear", 0),
                         ("column=public.people.id&treatment=used", 2),
                         ("column=public.people.ssn&treatment=used", 0)):
        assert fetch(world, f"/timeline?{query}").text.count("<tr data-seq=") == found, query


def test_the_column_view_charts_clear_masked_and_filter_use(world):
    page = fetch(world, "/columns/public.people.email").text
    svg = re.search(r"<svg class=\"chart\".*?</svg>", page, re.DOTALL)
    assert svg, page
    assert re.search(r"<title>\d{4}-\d\d-\d\d: 1 masked</title>", svg[0])
    assert "clear</title>" not in svg[0]
    used = fetch(world, "/columns/public.people.id").text
    assert re.search(r"<title>\d{4}-\d\d-\d\d: 1 used to filter</title>", used)
    assert re.search(r"<title>\d{4}-\d\d-\d\d: 1 clear</title>", used)


def receipt_of(world) -> str:
    page = fetch(world, "/timeline?identity=svc-training&outcome=success").text
    return re.search(r'<a href="/receipts/([0-9a-f-]+)">', page)[1]


def test_the_receipt_page_shows_the_signed_entry_its_status_and_the_run_strip(world):
    page = fetch(world, f"/receipts/{receipt_of(world)}").text
    assert 'id="verdict">Signature and hash: verified' in page
    assert "email: masked (tokenize)" in page and "used to filter" in page
    strip = re.search(r'<div class="strip" id="lineage">(.*?)</div>', page, re.DOTALL)[1]
    assert "people" in strip and 'id="marquez"' not in strip       # no OPENLINEAGE_URL in the server's env
    import html

    signed = html.unescape(re.search(r'<pre class="signed" id="signed">(.*?)</pre>', page, re.DOTALL)[1])
    assert '"signature":' in signed and '"hash":' in signed and '"outcome": "success"' in signed


def local_app(world, ledger_path: Path):
    """The console in this process over a copy of the server's ledger (what a second console process would be)."""
    store = ApprovalStore.open(f"sqlite:///{world['home'] / 'approvals.sqlite'}")
    app = build_app(load_policy(world["policy"]), approvals=store,
                    ledger=Ledger.open(f"sqlite:///{ledger_path}", create=False), secure_cookies=False)
    client = TestClient(app, base_url="http://127.0.0.1", follow_redirects=False)
    client.cookies.set(COOKIE, world["sam"].sid)
    return client


def test_with_openlineage_url_set_the_strip_links_to_marquez(world, tmp_path, monkeypatch):
    copy = tmp_path / "ledger.sqlite"
    with sqlite3.connect(world["home"] / "ledger.sqlite") as src, sqlite3.connect(copy) as dst:
        src.backup(dst)
    monkeypatch.delenv("MARQUEZ_WEB_URL", raising=False)
    monkeypatch.setenv("OPENLINEAGE_URL", "http://user:pw@marquez.internal:5000/?x=1")
    client = local_app(world, copy)
    page = client.get(f"/receipts/{receipt_of(world)}").text
    link = re.search(r'<a id="marquez" href="([^"]+)">', page)
    assert link and link[1].startswith("http://marquez.internal:5000/lineage/job/")
    assert "pw" not in link[1] and "x=1" not in link[1]                # no credentials or query in a link


def test_a_tampered_entry_is_shown_as_not_verifying(world, tmp_path):
    copy = tmp_path / "ledger.sqlite"
    with sqlite3.connect(world["home"] / "ledger.sqlite") as src, sqlite3.connect(copy) as dst:
        src.backup(dst)
    receipt = receipt_of(world)
    with sqlite3.connect(copy) as conn:   # someone with write access to the database file, not our code
        conn.execute("DROP TRIGGER ledger_entries_no_update")
        (raw,), = conn.execute("SELECT entry FROM ledger_entries WHERE id = ?", (receipt,)).fetchall()
        forged = bytes(raw).replace(b'"ai_training"', b'"treatment"')
        assert forged != bytes(raw)
        conn.execute("UPDATE ledger_entries SET entry = ? WHERE id = ?", (forged, receipt))
    page = local_app(world, copy).get(f"/receipts/{receipt}").text
    verdict = re.search(r'id="verdict">Signature and hash: ([^<]+)<', page)[1]
    assert verdict.startswith(("does not verify", "cannot verify")) and verdict != "verified", verdict


def test_no_asset_comes_from_anywhere_else(world):
    """Every asset ships in the package: no template or stylesheet names another host, and the pages link only
    their own /static files (the content security policy would block anything else anyway)."""
    import lineage_guard.console as pkg

    folder = Path(pkg.__file__).parent
    for path in [*folder.glob("templates/*.html"), *folder.glob("static/*")]:
        text = path.read_text()
        assert not re.search(r"(src|href)=\"(https?:)?//", text), path
        assert "@import" not in text and "url(http" not in text, path
    page = fetch(world, "/timeline").text
    assert re.findall(r'(?:src|href)="(/static/[^"]+)"', page) == ["/static/console.css"]
    assert fetch(world, "/static/console.css").status_code == 200
