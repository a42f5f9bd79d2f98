"""What the opaque-values rule costs legitimate users: >= 100 ordinary analytics / training queries.

Masked projections, joins on ids and on tokens, aggregates by non-sensitive columns, counts of
sensitive columns, CASE / COALESCE carrying a sensitive value into the output, window functions
over clear columns, and cohort predicates the policy declares (tests/redteam/policies/cohort.yaml:
birth-date ranges, diagnosis equals / IN, region IN). Each runs through the real GovernedSession on
the corpus database as svc-training for ai_training; it counts as useful only when it is allowed
AND executes. The share is printed (and written to $LG_REDTEAM_RESULTS) and held above a floor so
a rule that starts refusing ordinary work fails here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import require

from lineage_guard import GovernedSession, Identity
from lineage_guard.errors import AccessDenied, ApprovalRequired, SourceError

POLICY = Path(__file__).resolve().parent / "redteam" / "policies" / "cohort.yaml"
FLOOR = 0.95   # measured share on the new rule must stay at or above this

PROJECTIONS = [
    "SELECT id, email FROM customers",
    "SELECT id, ssn, plan FROM customers",
    "SELECT id, full_name, email, phone FROM customers",
    "SELECT id, birth_date, zip FROM customers",
    "SELECT * FROM customers",
    "SELECT * FROM orders",
    "SELECT * FROM patients",
    "SELECT id, mrn, diagnosis FROM patients",
    "SELECT id, notes FROM patients",
    "SELECT id, card_number, amount FROM orders",
    "SELECT c.id AS customer_id, c.email AS contact FROM customers c",
    "SELECT id, email FROM customers WHERE plan = 'pro'",
    "SELECT id, email FROM customers WHERE created_at >= '2024-01-01'",
    "SELECT id, ssn FROM customers WHERE id BETWEEN 10 AND 20",
    "SELECT id, email FROM customers ORDER BY id",
    "SELECT id, email FROM customers ORDER BY created_at DESC LIMIT 10",
    "SELECT id, diagnosis, birth_date FROM patients ORDER BY id LIMIT 25",
    "SELECT o.id, o.card_number FROM orders o WHERE o.amount > 500",
    "SELECT id, email::text AS email_text FROM customers",
    "SELECT id, plan, email, created_at FROM customers WHERE plan IN ('pro', 'enterprise') ORDER BY id",
    "SELECT id, contact, callback FROM v_customer_contact",
    "SELECT id, plan, created_at FROM v_customer_plans",
    ("WITH recent AS (SELECT id, email, created_at FROM customers WHERE created_at > '2024-06-01') "
    "SELECT id, email FROM recent"),
    "SELECT s.id, s.email FROM (SELECT id, email FROM customers) s",
    "SELECT id, email FROM customers UNION ALL SELECT id, email FROM customers",
    "SELECT id, full_name FROM customers UNION ALL SELECT id, full_name FROM patients",
    "SELECT id, birth_date FROM customers UNION ALL SELECT id, birth_date FROM patients",
    "SELECT id, coalesce(phone, email) AS reach FROM customers",
    "SELECT id, CASE WHEN plan = 'pro' THEN email ELSE NULL END AS pro_email FROM customers",
    "SELECT id, CASE WHEN plan = 'free' THEN 'free' ELSE plan END AS tier, email FROM customers",
]
JOINS = [
    "SELECT o.id, o.amount, c.email FROM orders o JOIN customers c ON c.id = o.customer_id",
    "SELECT o.id, o.amount, c.plan, c.ssn FROM orders o JOIN customers c ON c.id = o.customer_id",
    "SELECT c.id, c.email, o.card_number FROM customers c LEFT JOIN orders o ON o.customer_id = c.id",
    "SELECT p.id, p.diagnosis, c.email FROM patients p JOIN customers c ON c.id = p.id",
    "SELECT c.id AS a, p.id AS b FROM customers c JOIN patients p ON p.birth_date = c.birth_date",
    "SELECT c.id AS a, p.id AS b FROM customers c JOIN patients p ON p.full_name = c.full_name",
    "SELECT c1.id AS a, c2.id AS b FROM customers c1 JOIN customers c2 ON c2.zip = c1.zip AND c2.id <> c1.id",
    "SELECT c1.id, c2.id AS other FROM customers c1 JOIN customers c2 ON c1.email = c2.email",
    "SELECT o.id, c.email FROM orders o JOIN customers c USING (id)",
    ("SELECT c.id, c.email, count(o.id) AS orders FROM customers c LEFT JOIN orders o ON o.customer_id = c.id "
    "GROUP BY c.id, c.email"),
    ("SELECT c.id, c.email, sum(o.amount) AS spend FROM customers c JOIN orders o ON o.customer_id = c.id "
    "GROUP BY c.id, c.email"),
    "SELECT o.id, o.amount, c.plan FROM orders o JOIN customers c ON c.id = o.customer_id WHERE c.plan = 'pro'",
    "SELECT o.id, c.zip FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.amount BETWEEN 100 AND 400",
    ("SELECT c.id, o.id AS order_id, o.created_at FROM customers c JOIN orders o ON o.customer_id = c.id "
    "ORDER BY o.created_at"),
    ("SELECT c.id, c.email, l.n FROM customers c, LATERAL (SELECT count(*) AS n FROM orders o "
    "WHERE o.customer_id = c.id) l"),
    "SELECT c.id, c.email, (SELECT max(o.amount) FROM orders o WHERE o.customer_id = c.id) AS top FROM customers c",
    "SELECT c.id, c.email FROM customers c WHERE EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = c.id)",
    "SELECT c.id, c.email FROM customers c WHERE c.id IN (SELECT customer_id FROM orders WHERE amount > 800)",
    "SELECT v.k, c.email FROM (VALUES (1), (2), (3)) v(k) JOIN customers c ON c.id = v.k",
    ("SELECT o.id, o.card_number, c.email, c.phone FROM orders o JOIN customers c ON c.id = o.customer_id "
    "ORDER BY o.id"),
]
AGGREGATES = [
    "SELECT count(*) FROM customers",
    "SELECT plan, count(*) FROM customers GROUP BY plan",
    "SELECT plan, count(*) AS n FROM customers GROUP BY plan ORDER BY n DESC",
    "SELECT customer_id, sum(amount) FROM orders GROUP BY customer_id",
    "SELECT customer_id, count(*), avg(amount), max(amount), min(amount) FROM orders GROUP BY customer_id",
    "SELECT date_trunc('month', created_at) AS month, sum(amount) FROM orders GROUP BY 1 ORDER BY 1",
    "SELECT extract(dow FROM created_at) AS dow, count(*) FROM orders GROUP BY 1",
    "SELECT plan, date_trunc('year', created_at) AS y, count(*) FROM customers GROUP BY plan, y",
    "SELECT count(email) FROM customers",
    "SELECT count(phone) AS with_phone, count(*) AS total FROM customers",
    "SELECT plan, count(DISTINCT email) FROM customers GROUP BY plan",
    "SELECT plan, count(phone) FROM customers GROUP BY plan",
    "SELECT count(DISTINCT card_number) FROM orders",
    "SELECT count(diagnosis) FROM patients",
    "SELECT avg(amount) FROM orders",
    "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY amount) FROM orders",
    "SELECT stddev(amount), variance(amount) FROM orders",
    "SELECT c.plan, sum(o.amount) FROM orders o JOIN customers c ON c.id = o.customer_id GROUP BY c.plan",
    ("SELECT c.plan, count(DISTINCT o.customer_id) FROM orders o JOIN customers c ON c.id = o.customer_id "
    "GROUP BY c.plan"),
    "SELECT plan, count(*) FROM customers WHERE created_at < '2024-01-01' GROUP BY plan HAVING count(*) > 2",
    "SELECT width_bucket(amount, 0, 1000, 10) AS bucket, count(*) FROM orders GROUP BY 1 ORDER BY 1",
    "SELECT round(amount, -2) AS r, count(*) FROM orders GROUP BY 1",
    "SELECT plan, string_agg(id::text, ',' ORDER BY id) FROM customers GROUP BY plan",
    "SELECT bool_or(amount > 900) FROM orders",
    "SELECT count(*) FILTER (WHERE amount > 500) AS big, count(*) AS all_orders FROM orders",
    "SELECT id, amount, sum(amount) OVER (ORDER BY id) AS running FROM orders",
    "SELECT id, customer_id, row_number() OVER (PARTITION BY customer_id ORDER BY created_at) AS nth FROM orders",
    "SELECT id, amount, rank() OVER (ORDER BY amount DESC) FROM orders",
    "SELECT id, amount, avg(amount) OVER (PARTITION BY customer_id) FROM orders",
    "SELECT id, email, row_number() OVER (ORDER BY created_at) AS seq FROM customers",
    "SELECT id, lag(amount) OVER (ORDER BY created_at) AS prev FROM orders",
    "SELECT plan FROM customers GROUP BY plan",
    "SELECT DISTINCT plan FROM customers",
    "SELECT plan FROM customers UNION SELECT 'trial'",
    "SELECT count(*) FROM (SELECT DISTINCT customer_id FROM orders) s",
]
COHORTS = [
    "SELECT count(*) FROM patients WHERE birth_date < '1970-01-01'",
    "SELECT count(*) FROM patients WHERE birth_date >= '1980-01-01' AND birth_date < '2000-01-01'",
    "SELECT count(*) FROM patients WHERE birth_date BETWEEN '1950-01-01' AND '1990-12-31'",
    "SELECT plan, count(*) FROM customers WHERE birth_date < '1975-01-01' GROUP BY plan",
    "SELECT plan, count(*) FROM customers WHERE birth_date >= '1960-01-01' GROUP BY plan",
    "SELECT count(*) FROM customers WHERE birth_date IS NULL",
    ("SELECT count(*), avg(o.amount) FROM orders o JOIN customers c ON c.id = o.customer_id "
    "WHERE c.birth_date < '1980-01-01'"),
    "SELECT count(*) FROM patients WHERE diagnosis = 'E11.9 type 2 diabetes (FAKE)'",
    "SELECT count(*) FROM patients WHERE diagnosis IN ('I10 hypertension (FAKE)', 'E11.9 type 2 diabetes (FAKE)')",
    ("SELECT count(*) FROM patients WHERE diagnosis IN ('J45.909 asthma (FAKE)', 'M54.5 low back pain (FAKE)') "
    "AND birth_date < '1990-01-01'"),
    ("SELECT count(*) FROM customers WHERE zip IN ('99901', '99909', '99913', '99916', '99919', '99938', '99953', "
    "'99959', '99960', '99965')"),
    ("SELECT plan, count(*) FROM customers WHERE zip IN ('99901', '99909', '99913', '99916', '99919', '99938', "
    "'99953', '99959', '99960', '99965') GROUP BY plan"),
    "SELECT count(*) FROM customers WHERE birth_date > '1950-01-01' AND plan = 'enterprise'",
    "SELECT count(*), count(DISTINCT plan) FROM customers WHERE birth_date < '1985-01-01'",
    "SELECT count(*) FROM patients WHERE birth_date >= '1940-01-01'",
    "SELECT count(*) AS n FROM patients WHERE birth_date < '2000-01-01' AND birth_date >= '1950-01-01'",
]
QUERIES = PROJECTIONS + JOINS + AGGREGATES + COHORTS


@pytest.fixture(scope="module")
def session(corpus_url):
    with GovernedSession(corpus_url, POLICY, Identity("svc-training", "service"), "ai_training") as s:
        yield s


def _outcome(session, sql: str) -> str:
    try:
        session.read_arrow(sql)
    except AccessDenied:
        return "denied"
    except ApprovalRequired:
        return "needs_approval"
    except SourceError:
        return "failed"
    return "allowed"


def test_utility_share(session):
    assert len(QUERIES) >= 100 and len(set(QUERIES)) == len(QUERIES)
    outcomes = {sql: _outcome(session, sql) for sql in QUERIES}
    refused = [f"{o}: {sql}" for sql, o in outcomes.items() if o != "allowed"]
    share = 1 - len(refused) / len(QUERIES)
    per_kind = {name: sum(outcomes[q] == "allowed" for q in qs) for name, qs in
                (("projections", PROJECTIONS), ("joins", JOINS), ("aggregates", AGGREGATES), ("cohorts", COHORTS))}
    summary = (f"utility: {len(QUERIES) - len(refused)} of {len(QUERIES)} legitimate queries allowed "
               f"({share:.1%}); " + ", ".join(f"{k} {v}/{len(q)}" for (k, v), q in
                                                zip(per_kind.items(), (PROJECTIONS, JOINS, AGGREGATES, COHORTS))))
    print(summary)
    if os.environ.get("LG_REDTEAM_RESULTS"):
        with open(os.environ["LG_REDTEAM_RESULTS"], "a") as out:
            out.write(json.dumps({"utility": {"allowed": len(QUERIES) - len(refused), "of": len(QUERIES),
                                              "refused": refused, **per_kind}}) + "\n")
    assert share >= FLOOR, summary + "\n" + "\n".join(refused)


def test_cohort_groups_below_the_floor_are_withheld(session, corpus_url):
    """A declared cohort predicate returns only groups of at least min_group_size rows (checked against the data)."""
    psycopg = require("psycopg", "postgres")
    sql = "SELECT plan, count(*) AS n FROM customers WHERE birth_date < '1990-01-01' GROUP BY plan"
    with psycopg.connect(corpus_url) as conn:
        truth = dict(conn.execute(sql).fetchall())
    got = {r["plan"]: r["n"] for r in session.read_arrow(sql).to_pylist()}
    assert any(n < 10 for n in truth.values()) and any(n >= 10 for n in truth.values())   # the case is real
    assert got == {p: n for p, n in truth.items() if n >= 10}
