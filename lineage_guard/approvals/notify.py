"""Tell approvers about a new request: a generic JSON webhook, a Slack incoming webhook, or a Jira issue.

Messages carry who asks, for what purpose, where, why it needs approval, which DAG run or
task asked (the request's context), the statement's shape (literals replaced), a link to the
request in the web console's inbox when `approvals.console_url` (or `LINEAGE_GUARD_CONSOLE_URL`)
is set, and the exact approve/deny commands; never a raw value, a URL secret or a header value. A failed send is
recorded in the request's `notify_status` (kind of failure only, never the server's reply)
and retried by `lineage-guard approvals notify --retry`.

Example:
    >>> request = store.request(...)          # doctest: +SKIP  (the store notifies new requests itself)
    >>> retry_failed(store)                   # doctest: +SKIP  (what `approvals notify --retry` runs)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import httpx

from ..errors import ConfigError
from .config import NotifierConfig

if TYPE_CHECKING:
    from .store import ApprovalRequest, ApprovalStore

_SUMMARY_MAX = 250  # Jira rejects summaries over 255 characters


def summary(req: ApprovalRequest) -> str:
    """One line: who wants what, where."""
    text = (f"lineage-guard approval needed: {req.requester} for purpose {req.purpose!r} "
            f"on {req.namespace}/{req.database} ({req.environment}) [request {req.id}]")
    return text if len(text) <= _SUMMARY_MAX else text[: _SUMMARY_MAX - 1] + "…"


def _context_line(req: ApprovalRequest) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(req.context.items())) or "(none given)"


def description(req: ApprovalRequest, link: str | None = None) -> str:
    """The plain-text body shared by all formats (`link`: the request's page in the console)."""
    reasons = "\n".join(f"- {r}" for r in req.reasons) or "- (no reason given)"
    shape = req.statement_shape or "(not shown: the statement could not be parsed to remove its literals)"
    review = f"Review in the console: {link}\n\n" if link else ""
    return (
        f"{summary(req)}\n\n"
        f"{review}"
        f"Why:\n{reasons}\n\n"
        f"Asked by: {_context_line(req)}\n"
        f"Statement (literals removed): {shape}\n"
        f"Statement sha256: {req.statement_hash}\n"
        f"Expires: {req.expires_at.isoformat(timespec='seconds')}\n\n"
        f"Approve: {req.approve_command}\n"
        f"Deny:    {req.deny_command}\n"
    )


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def webhook_body(req: ApprovalRequest, link: str | None = None) -> dict:
    """Generic JSON: an event name and the request's public fields (and `console_url`, its console page)."""
    body = {
        "event": "lineage_guard.approval_requested",
        "summary": summary(req),
        "request": {
            "id": req.id, "fingerprint": req.fingerprint, "requester": req.requester, "purpose": req.purpose,
            "environment": req.environment, "namespace": req.namespace, "database": req.database,
            "statement_shape": req.statement_shape, "statement_hash": req.statement_hash,
            "reasons": list(req.reasons), "context": dict(req.context), "status": req.status,
            "created_at": req.created_at.isoformat(), "expires_at": req.expires_at.isoformat(),
            "single_use": req.single_use,
        },
        "approve_command": req.approve_command,
        "deny_command": req.deny_command,
    }
    if link:
        body["console_url"] = link
    return body


def slack_body(req: ApprovalRequest, link: str | None = None) -> dict:
    """Slack incoming-webhook format: `text` (the fallback) and Block Kit `blocks`; with `link`, a
    "Review in the console" button right under the summary (and the link in the fallback text)."""
    e = _slack_escape
    reasons = "\n".join(f"• {e(r)}" for r in req.reasons) or "• (no reason given)"
    shape = e(req.statement_shape or "(not shown: the statement could not be parsed to remove its literals)")
    review = [{"type": "actions", "elements": [{
        "type": "button", "action_id": "lineage_guard_review", "url": link,
        "text": {"type": "plain_text", "text": "Review in the console"}}]}] if link else []
    return {
        "text": summary(req) + (f" <{link}|Review in the console>" if link else ""),
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*{e(summary(req))}*"}},
            *review,
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*Why*\n{reasons}"}},
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*Statement (literals removed)*\n```{shape}```"}},
            {"type": "context", "elements": [
                {"type": "mrkdwn", "text": f"Asked by: {e(_context_line(req))}"},
                {"type": "mrkdwn", "text": f"Expires: {req.expires_at.isoformat(timespec='seconds')}"},
            ]},
            {"type": "section", "text": {"type": "mrkdwn",
                                         "text": f"Approve: `{e(req.approve_command)}`\nDeny: `{e(req.deny_command)}`"}},
        ],
    }


def jira_body(req: ApprovalRequest, cfg: NotifierConfig, link: str | None = None) -> dict:
    """Jira REST v2 create-issue body (`POST /rest/api/2/issue`); Jira turns the console link into a link."""
    return {
        "fields": {
            "project": {"key": cfg.project},
            "summary": summary(req),
            "description": description(req, link),
            "issuetype": {"name": cfg.issue_type},
        }
    }


def body_for(req: ApprovalRequest, cfg: NotifierConfig, link: str | None = None) -> dict:
    if cfg.kind == "slack":
        return slack_body(req, link)
    if cfg.kind == "jira":
        return jira_body(req, cfg, link)
    return webhook_body(req, link)


def send(req: ApprovalRequest, cfg: NotifierConfig, environ: Mapping[str, str] | None = None,
         link: str | None = None) -> str:
    """Post one notification; returns "sent" or "failed: <what kind of failure>" (never raises for the server)."""
    try:
        url, headers = cfg.resolve_url(environ), cfg.resolve_headers(environ)
    except ConfigError as exc:
        return f"failed: {exc}"
    try:
        response = httpx.post(url, json=body_for(req, cfg, link), headers=headers, timeout=cfg.timeout_s)
    except httpx.ConnectError:
        return "failed: cannot connect"
    except httpx.TimeoutException:
        return f"failed: no answer within {cfg.timeout_s:g}s"
    except httpx.HTTPError as exc:
        return f"failed: {type(exc).__name__}"
    # The reply body is not kept: a server may echo the request or its own secrets.
    return "sent" if response.is_success else f"failed: HTTP {response.status_code}"


def notify(store: ApprovalStore, req: ApprovalRequest, environ: Mapping[str, str] | None = None) -> ApprovalRequest:
    """Send to each of the request's notifiers not yet reached; record the outcomes on the request.
    Each message links to the request in the console when the store's config (or the environment) names it."""
    try:
        link = store.config.console_link(req.id, environ)
    except ConfigError as exc:   # a bad LINEAGE_GUARD_CONSOLE_URL: recorded like any send failure, retried later
        return store.record_notify(req.id, {cfg.label: f"failed: {exc}" for cfg in req.notifiers
                                            if req.notify_status.get(cfg.label) != "sent"})
    outcomes = {cfg.label: send(req, cfg, environ, link) for cfg in req.notifiers
                if req.notify_status.get(cfg.label) != "sent"}
    return store.record_notify(req.id, outcomes) if outcomes else req


def retry_failed(store: ApprovalStore, environ: Mapping[str, str] | None = None) -> list[ApprovalRequest]:
    """Re-send failed or never-sent notifications of pending requests; returns the requests retried."""
    retried = []
    for req in store.list(status="pending"):
        if any(req.notify_status.get(cfg.label) != "sent" for cfg in req.notifiers):
            retried.append(notify(store, req, environ))
    return retried
