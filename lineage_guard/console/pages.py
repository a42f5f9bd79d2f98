"""The console's pages: approvals inbox and decisions, timeline and exports, receipts, column views, models.

Every page needs a signed-in person (else: to sign-in, or 401 for a form post) and a role (else 403);
every form post needs the session's CSRF token (else 403). Data pages are sync handlers: Starlette
runs them in its thread pool, so a slow store never blocks the event loop.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.templating import Jinja2Templates

from ..approvals.store import ApprovalError, ApprovalStore
from ..audit.index import LedgerIndex, TimelineQuery
from ..audit.ledger import Ledger
from ..audit.query import auth_method, parse_time, who_saw
from ..errors import LineageGuardError
from ..policy.model import Policy
from .auth import OidcSignIn, signed_in
from .charts import column_chart
from .lineage import lineage_strip, marquez_base
from .models import AttestationSource
from .requests import tables_of, treatment, view_of
from .sessions import SignedIn

EXPORT_MAX = 100_000
WHO_SAW_MAX = 2_000
CURSOR_MAX = 2**62   # the timeline's `before` cursor: an entry number, well inside SQLite's 64-bit integers
OUTCOMES = ("success", "denied", "needs_approval", "failed", "open")


class Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


@dataclass
class Console:
    """What the pages read and write: the policy, the approval store, the ledger and its index."""

    policy: Policy
    approvals: ApprovalStore
    ledger: Ledger
    index: LedgerIndex
    templates: Jinja2Templates
    signin: OidcSignIn
    public_keys: tuple[str, ...] = ()
    models: AttestationSource | None = None
    _sync_lock: Any = field(default=None, repr=False)

    # -- helpers -----------------------------------------------------------------------------

    def page(self, request: Request, name: str, me: SignedIn | None, code: int = 200, **context) -> Response:
        return self.templates.TemplateResponse(request, name, {"me": me, **context}, status_code=code)

    def guard(self, request: Request, *roles: str) -> SignedIn:
        me = signed_in(request)
        if me is None:
            raise Refused(401, "sign in first")
        if roles and not me.has(*roles):
            raise Refused(403, f"this page needs the {' or '.join(roles)} role, which your identity "
                               f"{me.identity!r} does not have in the policy's console.roles")
        return me

    def refused(self, request: Request, exc: Refused) -> Response:
        if exc.status == 401 and request.method == "GET":
            return RedirectResponse(f"/signin?next={request.url.path}", status_code=303)
        return self.page(request, "error.html", signed_in(request), code=exc.status, message=exc.message)

    def form_guard(self, request: Request, form, *roles: str) -> SignedIn:
        me = self.guard(request, *roles)
        if not me.check_csrf(form.get("csrf")):
            raise Refused(403, "the form's CSRF token is missing or wrong; reload the page and try again")
        return me

    def synced(self) -> LedgerIndex:
        self.index.sync()
        return self.index

    # -- approvals ---------------------------------------------------------------------------

    def inbox(self, request: Request) -> Response:
        me = self.guard(request, "viewer", "approver", "auditor")
        status = request.query_params.get("status", "pending")
        if status not in ("pending", "approved", "denied", "expired", "used", "all"):
            raise Refused(400, "status must be pending, approved, denied, expired, used or all")
        index = self.synced()
        views = [view_of(r, index, self.policy.search_path)
                 for r in self.approvals.list(status=None if status == "all" else status)[:200]]
        return self.page(request, "inbox.html", me, views=views, status=status,
                         done=self._done(request.query_params.get("done")))

    def _done(self, done: str | None) -> tuple[str, str] | None:
        """The notice after a decision, `(request id, status)`, only for a request that really is in that state:
        a crafted `?done=` link must not make the console announce a decision nobody took."""
        status, _, request_id = (done or "").partition(":")
        if status not in ("approved", "denied") or not request_id:
            return None
        try:
            req = self.approvals.get(request_id)
        except ApprovalError:
            return None
        return (req.id, status) if req.status == status else None

    def request_page(self, request: Request) -> Response:
        me = self.guard(request, "viewer", "approver", "auditor")
        try:
            req = self.approvals.get(request.path_params["request_id"])
        except ApprovalError as exc:
            raise Refused(404, str(exc)) from None
        view = view_of(req, self.synced(), self.policy.search_path)
        why_not = me.may_decide(req.requester, req.environment, view.tables)
        return self.page(request, "request.html", me, view=view, why_not=why_not)

    async def decide(self, request: Request) -> Response:
        form = await request.form()
        return await _in_thread(self._decide, request, form)

    def _decide(self, request: Request, form) -> Response:
        me = self.form_guard(request, form, "approver")
        request_id = request.path_params["request_id"]
        verb = form.get("decision")
        reason = " ".join(str(form.get("reason") or "").split())
        if verb not in ("approve", "deny"):
            raise Refused(400, "decision must be approve or deny")
        if not reason:
            raise Refused(400, "give a reason: it is kept with the decision")
        try:
            req = self.approvals.get(request_id)
        except ApprovalError as exc:
            raise Refused(404, str(exc)) from None
        why_not = me.may_decide(req.requester, req.environment, tables_of(req.statement_shape,
                                                                             self.policy.search_path))
        if why_not:
            raise Refused(403, why_not)
        note = f"{reason} (signed in to the console via {me.issuer})"[:1000]
        try:
            decided = (self.approvals.approve if verb == "approve" else self.approvals.deny)(request_id, me.identity, note)
        except (ApprovalError, LineageGuardError) as exc:
            raise Refused(409, str(exc)) from None
        return RedirectResponse(f"/approvals?done={decided.status}:{decided.id}", status_code=303)

    # -- timeline ----------------------------------------------------------------------------

    def query(self, request: Request) -> TimelineQuery:
        p = request.query_params
        try:
            since = parse_time(p["since"]) if p.get("since") else None
            until = parse_time(p["until"]) if p.get("until") else None
            before = int(p["before"]) if p.get("before") else None
        except (ValueError, LineageGuardError) as exc:
            raise Refused(400, f"bad filter: {exc}") from None
        if before is not None and not 0 <= before <= CURSOR_MAX:
            # an entry number past what the index's SQLite integers hold crashed the query (a 500); it is a bad filter
            raise Refused(400, f"bad filter: before must be an entry number from 0 to {CURSOR_MAX}")
        outcome = p.get("outcome") or None
        if outcome and outcome not in OUTCOMES:
            raise Refused(400, f"decision must be one of {', '.join(OUTCOMES)}")
        treatment_ = p.get("treatment") or None
        if treatment_ and treatment_ not in ("clear", "masked", "used"):
            raise Refused(400, "treatment must be clear, masked or used")
        return TimelineQuery(identity=p.get("identity") or None, table=p.get("table") or None,
                             column=p.get("column") or None, treatment=treatment_, purpose=p.get("purpose") or None,
                             outcome=outcome, text=p.get("q") or None, since=since, until=until, before=before)

    def timeline(self, request: Request) -> Response:
        me = self.guard(request, "viewer", "auditor")
        q = self.query(request)
        page = self.synced().page(q)
        rows = [_row(e) for e in page.entries]
        params = q.params()
        if "text" in params:
            params["q"] = params.pop("text")
        return self.page(request, "timeline.html", me, rows=rows, q=q, params=params, next_before=page.next_before,
                         outcomes=OUTCOMES)

    def export(self, request: Request) -> Response:
        self.guard(request, "auditor")
        fmt = request.path_params["fmt"]
        if fmt not in ("csv", "json"):
            raise Refused(404, "export as export.csv or export.json")
        q = self.query(request)
        entries = self.synced().all_matching(q, EXPORT_MAX)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        if fmt == "json":
            def chunks():
                yield "["
                for i, e in enumerate(entries):
                    yield ("," if i else "") + json.dumps(e, sort_keys=True)
                yield "]\n"
            return StreamingResponse(chunks(), media_type="application/json",
                                     headers={"Content-Disposition": f'attachment; filename="ledger-{stamp}.json"'})

        def lines():
            buf = io.StringIO()
            writer = csv.writer(buf)
            writer.writerow(["seq", "receipt", "recorded_at", "principal", "auth", "purpose", "outcome", "tables",
                             "columns", "rows", "statement_sha256", "approval_id"])
            for e in entries:
                b = e["body"]
                writer.writerow([e["seq"], e["id"], e["recorded_at"], b["who"]["principal"], auth_method(b),
                                 b.get("purpose"), b.get("outcome"), " ".join(b["source"].get("tables") or ()),
                                 "; ".join(f"{c['name']}={treatment(c)}" for c in b.get("columns") or ()),
                                 b.get("delivered_rows", b.get("rows")), (b.get("statement") or {}).get("sha256"),
                                 b.get("approval_id") or ""])
                yield buf.getvalue()
                buf.seek(0)
                buf.truncate()
            yield buf.getvalue()
        return StreamingResponse(lines(), media_type="text/csv",
                                 headers={"Content-Disposition": f'attachment; filename="ledger-{stamp}.csv"'})

    def receipt(self, request: Request) -> Response:
        me = self.guard(request, "auditor")
        receipt_id = request.path_params["receipt_id"]
        entry = self.ledger.get(receipt_id)
        if entry is None:
            raise Refused(404, f"no ledger entry with receipt {receipt_id!r}")
        try:
            check = self.ledger.verify_receipt(receipt_id, self.public_keys)
            verdict = "verified" if check.ok else f"does not verify: {check.reason}"
        except LineageGuardError as exc:
            verdict, check = f"cannot verify: {exc}", None
        return self.page(request, "receipt.html", me, entry=entry, row=_row(entry),
                         verified=bool(check and check.ok), verdict=verdict,
                         signed=json.dumps(entry, indent=2, sort_keys=True),
                         strip=lineage_strip(entry, marquez_base()))

    def column(self, request: Request) -> Response:
        me = self.guard(request, "auditor")
        column = request.path_params["column"]
        if len(column.split(".")) != 3:
            raise Refused(400, "a column is schema.table.column, e.g. public.patients.email")
        try:
            days = max(1, min(int(request.query_params.get("days", "30")), 366))
        except ValueError:
            raise Refused(400, "days must be a whole number") from None
        index = self.synced()
        since = datetime.now(UTC) - timedelta(days=days)
        chart = column_chart(index.column_days(column, since))
        recent = list(index.all_matching(TimelineQuery(column=column, since=since), WHO_SAW_MAX))
        sightings = who_saw(reversed(recent), column)
        return self.page(request, "column.html", me, column=column, days=days, chart=chart, sightings=sightings,
                         sampled=len(recent), cap=WHO_SAW_MAX)

    def models_page(self, request: Request) -> Response:
        me = self.guard(request, "viewer", "auditor")
        items = self.models.attestations(200) if self.models is not None else None
        return self.page(request, "models.html", me, items=items)

    def signed_out(self, request: Request) -> Response:
        return self.page(request, "signed_out.html", None,
                         provider_kept=request.query_params.get("provider") == "kept")

    async def signout(self, request: Request) -> Response:
        form = await request.form()
        try:
            me = await _in_thread(self.form_guard, request, form)
        except Refused as exc:
            return await _in_thread(self.refused, request, exc)
        return await self.signin.signout(request, me)


def _row(entry: dict[str, Any]) -> dict[str, Any]:
    """An entry as a timeline row: who, how authenticated, what, and each column's treatment."""
    b = entry["body"]
    cols = [{"name": c.get("name"), "sources": c.get("sources") or [], "how": treatment(c)} for c in b.get("columns") or ()]
    used = [{"column": u["column"], "how": f"used to filter ({u.get('clause')})"} for u in b.get("used") or ()]
    return {"seq": entry["seq"], "id": entry["id"], "at": entry["recorded_at"][:19].replace("T", " "),
            "who": b["who"]["principal"], "kind": b["who"].get("kind"), "auth": auth_method(b),
            "purpose": b.get("purpose"), "outcome": b.get("outcome"), "tables": b["source"].get("tables") or [],
            "environment": b["source"].get("environment"), "columns": cols, "used": used,
            "rows": b.get("delivered_rows", b.get("rows")), "statement": (b.get("statement") or {}).get("text"),
            "job": (b.get("job") or {}).get("name"), "approval_id": b.get("approval_id")}


async def _in_thread(fn, *args):
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(fn, *args)
