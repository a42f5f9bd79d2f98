"""The `approvals:` section of a policy: how long requests live, where they are kept, who is told.

Secrets never sit in the policy: a notifier's headers and (for Slack, whose webhook URL is
itself a secret) its URL are given as the *names* of environment variables, read only when
a notification is sent.

`console_url` is the web console's base URL as approvers reach it (env
`LINEAGE_GUARD_CONSOLE_URL` overrides it): every notification then links to the request's page
in the console's inbox, `{console_url}/approvals/{request id}`.

Example:
    >>> cfg = ApprovalsConfig.model_validate({
    ...     "ttl_seconds": 3600,
    ...     "notifiers": [
    ...         {"kind": "slack", "url_env": "SLACK_APPROVALS_WEBHOOK"},
    ...         {"kind": "jira", "url": "https://jira.example.com", "project": "DATA",
    ...          "headers": {"Authorization": "JIRA_AUTH_HEADER"}},
    ...     ],
    ...     "console_url": "https://lineage-guard.example.com",
    ... })
    >>> [n.label for n in cfg.notifiers]
    ['slack', 'jira']
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Literal
from urllib.parse import quote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..errors import ConfigError

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
ENV_CONSOLE_URL = "LINEAGE_GUARD_CONSOLE_URL"
_LOOPBACK = ("127.0.0.1", "::1", "localhost")


def check_console_url(url: str, where: str = "approvals.console_url") -> str:
    """The console's base URL without a trailing slash; ConfigError unless https://host[/path] (http only
    on a loopback address), with no credentials, query or fragment (it is pasted into messages)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{where} must be https://host[/path] (the console as approvers reach it), got {url!r}")
    if parts.scheme == "http" and parts.hostname not in _LOOPBACK:
        raise ConfigError(f"{where} must use https:// (the console sets Secure cookies); http:// is only for a "
                          "loopback address")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ConfigError(f"{where} must not carry credentials, a query or a fragment")
    return url.rstrip("/")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NotifierConfig(_Strict):
    """One place to announce new approval requests: a JSON webhook, Slack, or Jira."""

    kind: Literal["webhook", "slack", "jira"]
    name: str | None = None
    url: str | None = None                 # literal URL (must not carry a secret)
    url_env: str | None = None             # or the name of the env var holding it
    headers: dict[str, str] = Field(default_factory=dict)  # header name -> env var name holding its value
    project: str | None = None             # jira: project key
    issue_type: str = "Task"               # jira: issue type name
    timeout_s: float = Field(default=5.0, gt=0, le=120)

    @field_validator("url")
    @classmethod
    def _http(cls, v: str | None) -> str | None:
        if v is None:
            return v
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"notifier url must be http(s)://host/..., got scheme {parts.scheme or 'none'!r}")
        if parts.password or parts.query:
            raise ValueError("notifier url must not carry credentials or a query string; "
                             "put secrets in env vars (url_env, headers)")
        return v

    @field_validator("url_env")
    @classmethod
    def _env_name(cls, v: str | None) -> str | None:
        if v is not None and not _ENV_NAME.match(v):
            raise ValueError(f"url_env must be an environment variable name (e.g. SLACK_WEBHOOK_URL), got {v!r}")
        return v

    @field_validator("headers")
    @classmethod
    def _header_envs(cls, v: dict[str, str]) -> dict[str, str]:
        for header, env in v.items():
            if not _ENV_NAME.match(env):
                raise ValueError(f"header {header!r} must name an environment variable holding its value "
                                 f"(e.g. WEBHOOK_TOKEN), not a literal value")
        return v

    @model_validator(mode="after")
    def _complete(self) -> NotifierConfig:
        if (self.url is None) == (self.url_env is None):
            raise ValueError("a notifier needs exactly one of 'url' or 'url_env'")
        if self.kind == "slack" and self.url is not None:
            raise ValueError("a Slack webhook URL is a secret: give 'url_env' (the env var holding it), not 'url'")
        if self.kind == "jira" and not self.project:
            raise ValueError("a jira notifier needs 'project' (the project key, e.g. DATA)")
        return self

    @property
    def label(self) -> str:
        """How the notifier is named in `notify_status` (never its URL)."""
        return self.name or self.kind

    def resolve_url(self, environ: Mapping[str, str] | None = None) -> str:
        """The URL to post to; for Jira, the create-issue endpoint under the base URL."""
        env = os.environ if environ is None else environ
        url = self.url if self.url is not None else env.get(self.url_env or "", "")
        if not url:
            raise ConfigError(f"notifier {self.label!r}: environment variable {self.url_env} is not set")
        if self.kind == "jira":
            url = url.rstrip("/") + "/rest/api/2/issue"
        return url

    def resolve_headers(self, environ: Mapping[str, str] | None = None) -> dict[str, str]:
        env = os.environ if environ is None else environ
        out = {}
        for header, name in self.headers.items():
            if not env.get(name):
                raise ConfigError(f"notifier {self.label!r}: environment variable {name} (header {header}) is not set")
            out[header] = env[name]
        return out


class ApprovalsConfig(_Strict):
    """The `approvals:` section. `store` is a URL (env LINEAGE_GUARD_APPROVALS_URL overrides it)."""

    ttl_seconds: int = Field(default=24 * 3600, gt=0)
    single_use: bool = True
    store: str | None = None
    notifiers: list[NotifierConfig] = Field(default_factory=list)
    console_url: str | None = None         # the web console, as approvers reach it: messages link to the request

    @field_validator("console_url")
    @classmethod
    def _console_url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            return check_console_url(v)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None

    def console_link(self, request_id: str, environ: Mapping[str, str] | None = None) -> str | None:
        """The request's page in the console (`LINEAGE_GUARD_CONSOLE_URL`, else `console_url`), or None."""
        env = os.environ if environ is None else environ
        base = env.get(ENV_CONSOLE_URL) or self.console_url
        if not base:
            return None
        return f"{check_console_url(base, ENV_CONSOLE_URL if env.get(ENV_CONSOLE_URL) else 'approvals.console_url')}" \
               f"/approvals/{quote(request_id, safe='')}"

    @model_validator(mode="after")
    def _unique_labels(self) -> ApprovalsConfig:
        labels = [n.label for n in self.notifiers]
        dupes = sorted({x for x in labels if labels.count(x) > 1})
        if dupes:
            raise ValueError(f"notifiers need distinct names; give 'name' to the repeated {', '.join(dupes)}")
        return self
