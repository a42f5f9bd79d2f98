"""The opaque-values rule (sql/inference.py) and "the database runs what was analyzed" (executed_sql).

Attacks are proven on the real corpus database first (the query really returns the sensitive fact,
compared with a reference computed from the sensitive column), then shown denied by the plan.
"""

from __future__ import annotations

import dataclasses

import pytest
import sqlglot
from conftest import CORPUS, require
from test_corpus import ME, live, offline, policy  # noqa: F401 (fixtures)

from lineage_guard.planner import plan
from lineage_guard.policy import parse_policy
from lineage_guard.sql import analyze
from lineage_guard.sql.catalog import Catalog


def _plan(sql, catalog, rules):
    return plan(sql, catalog=catalog, policy=rules, identity=ME, purpose="ai_training")


# -- parser differentials: the statement PostgreSQL runs must be the one judged ---------------------

# (attack, reference): equal, non-empty answers on the real database show the attack returned the fact.
DIFFERENTIALS = [
    # prefix @ is absolute value in PostgreSQL; sqlglot reads a parameter and loses the expression inside
    ("SELECT id, @(birth_date - date '1900-01-01') AS d FROM customers ORDER BY id",
     "SELECT id, abs(birth_date - date '1900-01-01') FROM customers ORDER BY id"),
    # a non-LATERAL FROM subquery cannot see its sibling `s`: PostgreSQL binds `ssn` to the outer row
    ("SELECT c.id, (SELECT x.v FROM (SELECT 1 AS ssn) s, (SELECT ssn AS v) x) AS leak FROM customers c ORDER BY c.id",
     "SELECT id, ssn FROM customers ORDER BY id"),
]


@pytest.mark.parametrize("attack, reference", DIFFERENTIALS)
def test_parser_differentials_leak_on_the_database_and_are_closed(corpus_url, live, policy, attack, reference):  # noqa: F811
    psycopg = require("psycopg", "postgres")
    with psycopg.connect(corpus_url) as conn:
        conn.read_only = True
        got, want = conn.execute(attack).fetchall(), conn.execute(reference).fetchall()
        conn.rollback()
    assert got and got == want  # the attack returns the sensitive column itself (compared, never printed)
    decision = _plan(attack, live, policy)
    # Closed: refused, or the sensitive output is masked (the sibling case now resolves to c.ssn).
    assert decision.action == "deny" or decision.columns[1].masked


def test_sibling_subquery_binds_like_postgres(offline):  # noqa: F811
    a = analyze("SELECT c.id, (SELECT x.v FROM (SELECT 1 AS ssn) s, (SELECT ssn AS v) x) AS leak FROM customers c",
                offline)
    assert [str(s) for s in a.columns[1].sources] == ["public.customers.ssn"]
    assert '(SELECT "c".ssn AS v)' in a.executed_sql  # qualified to the outer row, as PostgreSQL binds it


def test_executed_sql_is_qualified_and_expanded(offline):  # noqa: F811
    a = analyze("SELECT * FROM orders o WHERE amount > 5", offline)
    assert a.executed_sql == ('SELECT "o"."id", "o"."customer_id", "o"."amount", "o"."card_number", "o"."created_at" '
                              'FROM orders AS o WHERE "o".amount > 5')
    a = analyze("SELECT id FROM (SELECT id FROM customers) WHERE id > 1", offline)
    assert a.executed_sql == 'SELECT "_lg1".id FROM (SELECT "customers".id FROM customers) AS _lg1 WHERE "_lg1".id > 1'
    a = analyze("SELECT c.id, l.n FROM customers c, LATERAL (SELECT count(*) AS n FROM orders o "
                "WHERE o.customer_id = c.id) l", offline)
    assert a.executed_sql.endswith(") AS l")  # the alias stays on LATERAL, none is added inside
    # USING-merged names stay unqualified (PostgreSQL's merged column); the column count is checked at read
    assert "USING (id)" in analyze("SELECT id FROM orders JOIN customers USING (id)", offline).executed_sql


@pytest.mark.parametrize("sql", ["SELECT @ -3", "SELECT $x FROM customers", "SELECT id FROM customers WHERE id = @id"])
def test_misread_parameters_are_refused(offline, sql):  # noqa: F811
    assert analyze(sql, offline).violations


def test_unknown_constructs_deny(offline):  # noqa: F811
    a = analyze("SELECT id FROM customers ORDER BY zip <-> '1'", offline)
    assert any("SQL construct Distance" in v for v in a.violations)


def test_a_binding_difference_becomes_an_error_not_a_leak(corpus_url, offline):  # noqa: F811
    # The plan resolves bare `plan` to the only FROM item that has it; qualified, PostgreSQL must agree or fail.
    psycopg = require("psycopg", "postgres")
    a = analyze("SELECT (SELECT plan FROM orders o LIMIT 1) FROM customers c", offline)
    assert '(SELECT "c".plan FROM orders' in a.executed_sql
    with psycopg.connect(corpus_url) as conn:
        assert conn.execute(a.executed_sql).fetchone() is not None
        conn.rollback()


# -- masks: deterministic only on values as stored --------------------------------------------


@pytest.mark.parametrize("sql, method", [
    ("SELECT ssn FROM customers", "tokenize"),
    ("SELECT ssn::text FROM customers", "tokenize"),                        # injective cast: still stored
    ("SELECT s FROM (SELECT ssn AS s FROM customers) q", "tokenize"),       # projection layers
    ("SELECT ssn FROM customers UNION ALL SELECT '123-45-6789'", "redact"),  # chosen plaintext beside it
    ("SELECT zip FROM customers UNION ALL SELECT ssn FROM customers", "redact"),  # two classifications
    ("SELECT CASE WHEN plan = 'pro' THEN ssn END FROM customers", "redact"),      # carried: derived
    ("SELECT coalesce(ssn, '000-00-0000') FROM customers", "redact"),
    ("SELECT count(ssn) FROM customers", "redact"),
])
def test_deterministic_masks_only_on_stored_values(offline, policy, sql, method):  # noqa: F811
    decision = _plan(sql, offline, policy)
    assert decision.action == "allow", decision.reasons
    assert decision.columns[0].mask.method == method


# -- declared sensitive uses and the group-size floor ------------------------------------------

COHORT = "SELECT plan, count(*) AS n FROM customers WHERE birth_date < '1980-01-01' GROUP BY plan"


def test_declared_range_is_honoured_with_the_floor(offline, policy):  # noqa: F811
    decision = _plan(COHORT, offline, policy)
    assert decision.action == "allow", decision.reasons
    assert decision.analysis.executed_sql.endswith("HAVING COUNT(*) >= 10")
    assert any("declared range predicate on date_of_birth" in r for r in decision.reasons)


@pytest.mark.parametrize("sql, why", [
    ("SELECT id FROM customers WHERE birth_date < '1980-01-01'", "not a GROUP BY key"),
    ("SELECT max(id) FROM customers WHERE birth_date < '1980-01-01'", "row value"),
    ("SELECT sum(id) FROM customers WHERE birth_date < '1980-01-01'", "identifying column"),
    ("SELECT count(*) FROM customers c JOIN generate_series(1, 10) g ON true WHERE c.birth_date < '1980-01-01'",
     "no join"),
    ("SELECT count(*) FILTER (WHERE plan = 'pro') FROM customers WHERE birth_date < '1980-01-01'", "FILTER"),
    ("SELECT count(*) FROM customers WHERE birth_date = '1980-01-01'", "used in WHERE"),  # equals: not declared
    ("SELECT count(*) FROM customers WHERE ssn < '5'", "used in WHERE"),                   # not date_of_birth
    ("SELECT count(*) FROM customers WHERE birth_date < '1980-01-01' OR plan = 'pro'", "used in WHERE"),
    # trackers: count(cohort) - count(cohort AND id <> k) is k's membership, both above the floor
    ("SELECT count(*) FROM customers WHERE birth_date < '1980-01-01' AND id <> 7", "differencing"),
    (("SELECT plan, count(*) FROM customers WHERE birth_date < '1980-01-01' AND created_at < '2024-03-01' "
      "GROUP BY plan"), "differencing"),
])
def test_declared_range_elsewhere_is_still_a_sensitive_use(offline, policy, sql, why):  # noqa: F811
    decision = _plan(sql, offline, policy)
    assert decision.action == "deny" and any(why in r for r in decision.reasons), decision.reasons


def test_the_floor_holds_on_the_database(corpus_url, live, policy):  # noqa: F811
    # A cohort narrowed to a handful of people comes back empty, however the predicate was chosen.
    from lineage_guard import GovernedSession

    narrow = "SELECT count(*) AS n FROM customers WHERE birth_date BETWEEN '1980-01-01' AND '1980-12-31'"
    psycopg = require("psycopg", "postgres")
    with psycopg.connect(corpus_url) as conn:
        raw = conn.execute(narrow).fetchone()[0]
        conn.rollback()
    assert raw < 10  # the raw answer is a small group
    with GovernedSession(corpus_url, policy, ME, "ai_training") as s:
        assert s.read_arrow(narrow).num_rows == 0
        assert s.read_arrow("SELECT count(*) AS n FROM customers WHERE birth_date < '2100-01-01'").num_rows == 1


def test_needs_approval_when_declared_so(offline):  # noqa: F811
    text = (CORPUS / "policy.yaml").read_text().replace("    action: allow\n", "    action: needs_approval\n")
    decision = _plan(COHORT, offline, parse_policy(text))
    assert decision.action == "needs_approval" and "requires approval" in decision.reasons[0]


def test_entitled_columns_are_not_sensitive_for_their_reader():
    # Who may see ssn in the clear may filter on it: the rule protects values a reader may not see.
    cat = Catalog.from_ddl_text("CREATE TABLE t (id int PRIMARY KEY, ssn text)")
    text = ("version: 1\nidentities: {auditor: {}, someone: {}}\nclassifications: {public.t.ssn: national_id}\nrules:\n"
            "  - {classifications: [national_id], identities: [auditor], action: clear}\n")
    from lineage_guard.identity import Identity

    p = parse_policy(text)
    sql = "SELECT id FROM t WHERE ssn LIKE '9%'"
    assert plan(sql, catalog=cat, policy=p, identity=Identity("auditor"), purpose="audit").action == "allow"
    assert plan(sql, catalog=cat, policy=p, identity=Identity("someone"), purpose="audit").action == "deny"


# -- the live binding check: the server's own binding (EXPLAIN VERBOSE) must agree with the plan -------


def _explained(url, sql):
    psycopg = require("psycopg", "postgres")
    with psycopg.connect(url) as conn:
        conn.read_only = True
        plan_json = conn.execute(f"EXPLAIN (VERBOSE, FORMAT JSON) {sql}").fetchone()[0]
        conn.rollback()
    return plan_json


def _allowed_corpus_statements(live, policy):  # noqa: F811
    """Every statement of the corpus and its class variants that the plan allows."""
    import json

    from test_corpus import VARIANTS
    from test_corpus_classes import CASES as CLASSES
    from test_corpus_redteam import CASES as REDTEAM

    statements = [json.loads(line)["sql"] for line in (CORPUS / "sql-attacks.jsonl").read_text().splitlines()]
    statements += [v[1] for v in VARIANTS]
    statements += [line.split(" ", 2)[2] for line in CLASSES.strip().splitlines() if line.strip()]
    statements += [line.split(" ", 3)[3] for line in REDTEAM.strip().splitlines() if line.strip()]
    for sql in statements:
        decision = _plan(sql, live, policy)
        if decision.action == "allow" and decision.analysis.executed_sql:
            yield decision


def test_the_binding_check_agrees_on_every_allowed_corpus_statement(corpus_url, live, policy):  # noqa: F811
    from lineage_guard.sql.explain import binding_disagreements, planned, scan_names

    psycopg = require("psycopg", "postgres")
    checked = 0
    for decision in _allowed_corpus_statements(live, policy):
        known, outputs = planned(decision.analysis)
        try:
            explained = _explained(corpus_url, decision.analysis.executed_sql)
        except psycopg.Error:
            continue  # the server refuses it (a cross-database name...): nothing is read
        assert binding_disagreements(explained, known=known, outputs=outputs, sensitive=decision.sensitive,
                                     names=scan_names(decision.analysis)) == [], decision.statement
        checked += 1
    assert checked >= 100  # the masked and clear cases of the corpus and its variants


@pytest.mark.parametrize("judged, ran, why", [
    # the plan believed output 2 was `plan`; the server computes it from ssn (a binding the planner missed)
    ("SELECT id, plan FROM customers", "SELECT id, ssn AS plan FROM customers", "output column 2"),
    ("SELECT c.id, (SELECT 1) AS x FROM customers c",
     "SELECT c.id, (SELECT c.ssn) AS x FROM customers c", "public.customers.ssn"),
    ("SELECT id FROM customers WHERE plan = 'pro'", "SELECT id FROM customers WHERE ssn = 'pro'",
     "did not see the statement read"),
])
def test_the_binding_check_refuses_a_disagreement(corpus_url, live, policy, judged, ran, why):  # noqa: F811
    from lineage_guard.sql.explain import binding_disagreements, planned, scan_names

    decision = _plan(judged, live, policy)
    known, outputs = planned(decision.analysis)
    reasons = binding_disagreements(_explained(corpus_url, ran), known=known, outputs=outputs,
                                    sensitive=decision.sensitive, names=scan_names(decision.analysis))
    assert reasons and any(why in r for r in reasons) and not any("'" in r for r in reasons)


# A binding difference inside a CTE, a FROM subquery, a UNION branch or a recursive CTE: the plan judged
# `judged`; the server runs `ran`, which swaps ssn and plan in there. The statement still reads ssn
# (check 1 is satisfied) and the outer query is the same: only following the plan into the CTE scan,
# the subquery scan or the Append shows that output 3 (believed `plan`, clear) is computed from ssn.
NESTED_MISREADS = [
    ("WITH x AS MATERIALIZED (SELECT id, ssn, plan FROM customers) SELECT id, ssn, plan FROM x",
     "WITH x AS MATERIALIZED (SELECT id, plan AS ssn, ssn AS plan FROM customers) SELECT id, ssn, plan FROM x"),
    ("SELECT s.id, s.ssn, s.plan FROM (SELECT id, ssn, plan FROM customers ORDER BY id LIMIT 5) s WHERE s.id > 1",
     ("SELECT s.id, s.ssn, s.plan FROM (SELECT id, plan AS ssn, ssn AS plan FROM customers ORDER BY id LIMIT 5) s "
      "WHERE s.id > 1")),
    ("SELECT id, ssn, plan FROM customers UNION ALL SELECT id, ssn, plan FROM customers",
     "SELECT id, ssn, plan FROM customers UNION ALL SELECT id, plan, ssn FROM customers"),
    (("SELECT id, ssn, plan FROM customers WHERE id < 5 UNION ALL SELECT id, ssn, plan FROM customers WHERE id > 45 "
      "ORDER BY 1 LIMIT 9"),
     ("SELECT id, ssn, plan FROM customers WHERE id < 5 UNION ALL SELECT id, plan, ssn FROM customers WHERE id > 45 "
      "ORDER BY 1 LIMIT 9")),
    (("WITH RECURSIVE r(n, s, p) AS (SELECT 1, ssn, plan FROM customers UNION ALL SELECT n + 1, s, p FROM r "
      "WHERE n < 2) SELECT n, s, p FROM r"),
     ("WITH RECURSIVE r(n, s, p) AS (SELECT 1, ssn, plan FROM customers UNION ALL SELECT n + 1, p, s FROM r "
      "WHERE n < 2) SELECT n, s, p FROM r")),
]


@pytest.mark.parametrize("judged, ran", NESTED_MISREADS)
def test_the_binding_check_follows_ctes_subqueries_and_set_operations(corpus_url, live, policy, judged, ran):  # noqa: F811
    from lineage_guard.sql import explain

    decision = _plan(judged, live, policy)
    assert decision.action == "allow" and not decision.columns[2].masked  # output 3 is clear: `plan`
    known, outputs = explain.planned(decision.analysis)
    server = _explained(corpus_url, ran)
    # On the real database the server reads ssn for output 3, and the plan attributed it to output 2 only.
    assert explain.binding_disagreements(server, known=known, outputs=outputs, sensitive=decision.sensitive,
                                         names=explain.scan_names(decision.analysis)) == [
        ("the server computes output column 3 from public.customers.ssn, which the plan did not attribute to it; "
         "the read was refused")]
    # Before it followed scans, the check compared output 3 as the outer plan node names it (`x.plan`,
    # `s.plan`, `customers.plan` after the first UNION branch, or nothing under an Append): no ssn there.
    texts = server[0]["Plan"].get("Output") or []
    assert len(texts) < 3 or "ssn" not in texts[2]


def test_the_binding_check_refuses_a_scan_it_cannot_map():
    from lineage_guard.sql.explain import binding_disagreements
    from lineage_guard.sql.model import ColumnRef

    ssn = ColumnRef("public", "customers", "ssn")
    plan_json = [{"Plan": {"Node Type": "Custom Scan", "Alias": "z", "Output": ["z.a"], "Plans": [
        {"Node Type": "Seq Scan", "Relation Name": "customers", "Schema": "public", "Alias": "customers",
         "Parent Relationship": "Outer", "Output": ["customers.ssn"]}]}}]
    reasons = binding_disagreements(plan_json, known={ssn}, outputs=[{ssn}], sensitive={ssn})
    assert reasons == [("the server's plan reads through 1 scan(s) the binding check cannot map to their sources; "
                        "the read was refused")]


def test_a_read_runs_the_check_before_any_row(corpus_url, policy, monkeypatch):  # noqa: F811
    # The session refuses the read when the server disagrees: simulate the planner having misread a statement.
    import lineage_guard.session as session_module
    from lineage_guard import GovernedSession
    from lineage_guard.errors import AccessDenied

    with GovernedSession(corpus_url, policy, ME, "ai_training") as s:
        decision = s.plan("SELECT id, plan FROM customers")
        ran = sqlglot.parse_one("SELECT id, ssn AS plan FROM customers", dialect="postgres")
        swapped = dataclasses.replace(decision.analysis, tree=ran)
        monkeypatch.setattr(s, "plan", lambda sql: dataclasses.replace(decision, analysis=swapped))
        with pytest.raises(AccessDenied, match="output column 2"):
            s.read_arrow("SELECT id, plan FROM customers")
    assert session_module.binding_check(decision) is not None
