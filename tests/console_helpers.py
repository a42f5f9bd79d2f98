"""Shared by the console tests: a policy with a console section, pending requests made through the one path
(GovernedSession on the real PostgreSQL), and a session for a person signed in (HTTP-level tests)."""

from __future__ import annotations

import psycopg

from lineage_guard.errors import ApprovalRequired
from lineage_guard.identity import Identity
from lineage_guard.policy import parse_policy
from lineage_guard.session import GovernedSession

SECRET_CITY = "Tromsø-Nord"      # a value typed into statements and parameters: it must never reach a page
SECRET_PARAM = "ssn-123-45-6789"


def console_policy(issuer: str, client_id: str = "lg-console") -> str:
    return f"""
purposes: [fulfilment]
groups: [data-eng]
identities:
  svc-etl: {{kind: service, groups: [data-eng]}}
writes:
  allowed_groups: [data-eng]
  approvals:
    - {{environments: [production], tables: [public.console_shipments]}}
approvals:
  ttl_seconds: 3600
console:
  issuer: {issuer}
  client_id: {client_id}
  session_minutes: 30
  users:
    - {{identity: dana, subject: dana}}
    - {{identity: sam, subject: sam}}
    - {{identity: vic, subject: vic}}
    - {{identity: stan, subject: stan}}
    - {{identity: " SVC-ETL", subject: etl-owner}}
  roles:
    dana: [{{role: approver, environments: [production], tables: ["public.*"]}}, {{role: auditor}}]
    sam: [{{role: auditor}}]
    vic: [{{role: viewer}}]
    stan: [{{role: approver, environments: [staging]}}]
    " SVC-ETL": [{{role: approver}}]
"""


def make_table(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS console_shipments")
        conn.execute("CREATE TABLE console_shipments (id int primary key, city text, code text)")
        conn.execute("INSERT INTO console_shipments SELECT g, 'Oslo', 'c' || g FROM generate_series(1, 6) g")


def ask(pg_url: str, policy, ledger, store, sql: str, parameters=None, **session) -> str:
    """Run a write that needs approval through the one path; returns the pending request's id.
    `session`: more GovernedSession arguments (e.g. job_name, approval_context)."""
    with GovernedSession(pg_url, policy, Identity("svc-etl"), "fulfilment", environment="production",
                         ledger=ledger, approvals=store, **session) as s:
        try:
            s.execute(sql, parameters)
        except ApprovalRequired as asked:
            return asked.request_id
    raise AssertionError("the write was expected to need an approval")


def run_write(pg_url: str, policy, ledger, store, sql: str, parameters=None):
    with GovernedSession(pg_url, policy, Identity("svc-etl"), "fulfilment", environment="production",
                         ledger=ledger, approvals=store) as s:
        return s.execute(sql, parameters)


def sign_in_directly(app, identity: str, subject: str | None = None, issuer: str = "http://idp"):
    """A session as the OpenID callback would make it (HTTP-level tests: no provider in the loop)."""
    return app.state.sessions.create(identity=identity, subject=subject or identity, issuer=issuer)


def load(text: str):
    return parse_policy(text)
