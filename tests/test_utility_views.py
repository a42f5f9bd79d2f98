"""Views, materialized views, CTEs and FROM subqueries read by their non-sensitive columns (held-out utility set).

A column of a FROM item the outer query never references is not computed by PostgreSQL: a flattened
subquery's column is substituted where it is used, and a planned one has its unused outputs replaced
by NULL (`remove_unused_subquery_outputs`), unless the output returns a set or calls a volatile
function (or, here, is a window function), the subquery is a set operation or SELECT DISTINCT, or it is a CTE PostgreSQL materializes
(MATERIALIZED, referenced twice, recursive). So `SELECT count(*) FROM v_patient_summary` does not
compute the view's `left(diagnosis, 3)`, and the opaque-values rule no longer counts it (lineage.Pending).
The view's and subquery's own WHERE / GROUP BY / ORDER BY still count: they shape the rows returned.

Each case runs through the real GovernedSession on the corpus database as svc-training
(tests/redteam/policies/cohort.yaml), like tests/test_utility.py: `allow` must be allowed with nothing
masked and execute; `mask` allowed with exactly those positions masked (or denied: over-strict, tallied);
`deny` must be denied. `test_unreferenced_outputs_are_not_computed` checks the premise on the server with
EXPLAIN VERBOSE, and `test_volatile_list_matches_the_server` the volatile functions against pg_proc.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import require

from lineage_guard import GovernedSession, Identity
from lineage_guard.errors import AccessDenied, ApprovalRequired, SourceError
from lineage_guard.sql.model import ColumnRef

POLICY = Path(__file__).resolve().parent / "redteam" / "policies" / "cohort.yaml"

# expect | masked positions | sql
CASES = r"""
allow||SELECT id FROM v_patient_summary
allow||SELECT count(*) FROM v_patient_summary
allow||SELECT count(id) FROM v_patient_summary
allow||SELECT id FROM v_customer_contact
allow||SELECT id, plan FROM v_customer_contact
allow||SELECT plan, count(*) FROM v_customer_contact GROUP BY plan
allow||SELECT count(*) FROM v_customer_contact
allow||SELECT id, plan FROM v_customer_secure
allow||SELECT count(*) FROM v_customer_secure
allow||SELECT plan, count(*) FROM v_customer_secure GROUP BY plan
allow||SELECT id, plan FROM v_customer_plans WHERE plan = 'pro' ORDER BY created_at
allow||SELECT v.id, o.amount FROM v_customer_plans v JOIN orders o ON o.customer_id = v.id
allow||SELECT v.id, o.amount FROM v_patient_summary v JOIN orders o ON o.customer_id = v.id
allow||SELECT s.id, s.plan FROM v_customer_contact s JOIN v_customer_plans p USING (id)
allow||SELECT id FROM customers WHERE id IN (SELECT id FROM v_patient_summary)
allow||SELECT (SELECT count(*) FROM v_patient_summary) AS n
allow||SELECT id FROM v_customer_plans UNION SELECT id FROM v_patient_summary
allow||WITH x AS (SELECT id, email, plan FROM customers) SELECT id, plan FROM x
allow||WITH x AS (SELECT id, lower(email) AS e, plan FROM customers) SELECT plan, count(*) FROM x GROUP BY plan
allow||WITH x AS (SELECT id, ssn, plan FROM customers) SELECT count(*) FROM x
allow||WITH a AS (SELECT id, email FROM customers), b AS (SELECT id FROM a) SELECT count(*) FROM b
allow||SELECT s.id FROM (SELECT id, upper(full_name) AS n FROM patients) s
allow||SELECT count(*) FROM (SELECT id, left(diagnosis, 3) AS d FROM patients) s
allow||SELECT s.plan FROM (SELECT plan, md5(email) AS h FROM customers) s
allow||SELECT count(*) FROM (SELECT * FROM customers) s
allow||SELECT s.id FROM (SELECT * FROM patients) s ORDER BY s.id
allow||SELECT id, plan FROM (SELECT * FROM customers) s WHERE plan <> 'free'
allow||SELECT id FROM (SELECT * FROM (SELECT id, length(ssn) AS n FROM customers) a) b
allow||SELECT x.id FROM (SELECT c.id, (SELECT count(*) FROM patients p WHERE p.diagnosis LIKE 'F%' AND p.id = c.id) AS k FROM customers c) x
allow||SELECT s.id FROM customers c JOIN (SELECT id, lower(email) AS e FROM customers) s USING (id)
allow||SELECT o.id, c.plan FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.amount > 100
allow||SELECT c.plan, count(o.id) FROM customers c LEFT JOIN orders o ON o.customer_id = c.id GROUP BY c.plan
allow||SELECT plan, date_trunc('month', created_at) AS m, count(*) FROM customers GROUP BY 1, 2 ORDER BY 1, 2
allow||SELECT customer_id, sum(amount) FROM orders GROUP BY customer_id HAVING sum(amount) > 1000
allow||SELECT id, amount, dense_rank() OVER (PARTITION BY customer_id ORDER BY amount DESC) FROM orders
allow||SELECT id, plan, count(*) OVER (PARTITION BY plan) FROM customers
allow||SELECT id, ntile(4) OVER (ORDER BY created_at) FROM customers
allow||SELECT id FROM customers UNION SELECT id FROM patients
allow||SELECT plan AS k FROM customers UNION ALL SELECT 'order' FROM orders
allow||SELECT id, plan FROM customers EXCEPT SELECT id, plan FROM customers WHERE plan = 'free'
allow||SELECT upper(plan), length(plan), id % 10 AS b FROM customers
allow||SELECT id, created_at::date AS d, amount::int AS a FROM orders
allow||SELECT id, CAST(id AS text) AS t FROM customers
allow||SELECT id, coalesce(plan, 'none') AS p FROM customers
allow||SELECT id, nullif(plan, 'free') AS p FROM customers
allow||SELECT id, CASE WHEN amount > 500 THEN 'big' ELSE 'small' END AS size FROM orders
allow||SELECT id, CASE plan WHEN 'pro' THEN 1 WHEN 'enterprise' THEN 2 ELSE 0 END AS tier FROM customers
allow||SELECT json_build_object('id', id, 'plan', plan) AS j FROM customers
allow||SELECT jsonb_agg(jsonb_build_object('id', id, 'amount', amount)) FROM orders
allow||SELECT id, to_char(created_at, 'YYYY') AS y FROM customers
allow||SELECT count(*) FROM customers c WHERE EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = c.id)
mask|1|SELECT id, dob FROM v_patient_summary
mask|1|SELECT id, callback FROM v_customer_contact
mask|1|WITH x AS (SELECT id, email, plan FROM customers) SELECT id, email FROM x
mask|1|SELECT s.id, s.ssn FROM (SELECT id, ssn, lower(email) AS e FROM customers) s
mask|1|SELECT id, email, plan FROM customers WHERE plan = 'pro' ORDER BY id
mask|1|SELECT o.id, c.email FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.amount > 100
mask|1|SELECT id, coalesce(email, phone) AS reach FROM customers
mask|1,2|SELECT v.id, v.contact, v.callback FROM v_customer_contact v JOIN v_customer_plans p USING (id)
mask|0|SELECT tax_ref FROM v_customer_secure
mask|1|SELECT id, tax_ref FROM v_customer_secure
mask|2|SELECT v.id, v.plan, v.tax_ref FROM v_customer_secure v WHERE v.id > 3
deny||SELECT id FROM v_patient_summary WHERE category = 'E11'
deny||SELECT id FROM v_patient_summary ORDER BY dob
deny||SELECT id FROM v_customer_contact WHERE contact LIKE '%nobody%'
deny||SELECT n FROM mv_zip_plan WHERE zip = '99901'
deny||SELECT plan, n FROM mv_zip_plan ORDER BY zip
deny||WITH x AS (SELECT id, ssn FROM customers WHERE ssn LIKE '9%') SELECT id FROM x
deny||SELECT s.id FROM (SELECT id, email FROM customers ORDER BY email LIMIT 1) s
deny||SELECT s.id FROM (SELECT id, ssn::int AS n FROM customers) s
deny||SELECT id FROM (SELECT id, length(ssn) AS n FROM customers) s WHERE n > 9
deny||SELECT id FROM (SELECT id, length(ssn) AS n FROM customers) s ORDER BY n
deny||SELECT s FROM (SELECT id, length(ssn) AS n FROM customers) s
deny||SELECT row_to_json(s) FROM (SELECT id, length(ssn) AS n FROM customers) s
deny||SELECT * FROM (SELECT id, length(ssn) AS n FROM customers) s
deny||SELECT n FROM (SELECT * FROM (SELECT id, length(ssn) AS n FROM customers) a) b
deny||SELECT (SELECT max(n) FROM (SELECT length(ssn) AS n FROM customers) a) AS m
deny||SELECT count(*) FROM (SELECT lower(email) AS e FROM customers) s GROUP BY e
deny||SELECT a.id FROM (SELECT id, lower(email) AS e FROM customers) a JOIN customers b ON a.e = b.email
deny||SELECT id FROM (SELECT id, rank() OVER (ORDER BY ssn) AS r FROM customers) s ORDER BY r
deny||SELECT id FROM (SELECT id, rank() OVER (ORDER BY ssn) AS r FROM customers) s
deny||SELECT x.k FROM (SELECT c.id, (SELECT count(*) FROM patients p WHERE p.diagnosis LIKE 'F%' AND p.id = c.id) AS k FROM customers c) x
deny||SELECT l.x FROM customers c, LATERAL (SELECT length(c.ssn) AS x) l
deny||WITH x AS (SELECT id, length(ssn) AS n FROM customers) SELECT a.id FROM x a JOIN x b USING (id)
deny||WITH x AS MATERIALIZED (SELECT id, length(ssn) AS n FROM customers) SELECT id FROM x
deny||SELECT id FROM (SELECT id, generate_series(1, length(ssn)) AS n FROM customers) s
deny||SELECT id FROM (SELECT id, random() * length(ssn) AS n FROM customers) s
deny||SELECT id FROM (SELECT id, length(ssn) AS n FROM customers UNION ALL SELECT id, 1 FROM orders) s
deny||SELECT id FROM (SELECT DISTINCT id, length(ssn) AS n FROM customers) s
deny||SELECT id FROM (SELECT id, length(ssn) AS n FROM customers ORDER BY 2) s
deny||SELECT id FROM (SELECT id, length(ssn) AS n FROM customers GROUP BY id, 2) s
"""
ROWS = [line.split("|", 2) for line in CASES.strip().splitlines()]
CASE_LIST = [(expect, [int(p) for p in pos.split(",") if p], sql) for expect, pos, sql in ROWS]


@pytest.fixture(scope="module")
def session(corpus_url):
    with GovernedSession(corpus_url, POLICY, Identity("svc-training", "service"), "ai_training") as s:
        yield s


def _outcome(session, sql: str) -> tuple[str, list[int]]:
    """(allow | mask | deny | needs_approval | failed, masked positions) as the caller gets it."""
    decision = session.plan(sql)
    try:
        session.read_arrow(sql)
    except AccessDenied:
        return "deny", []
    except ApprovalRequired:
        return "needs_approval", []
    except SourceError:
        return "failed", []
    masked = [c.position for c in decision.columns if c.masked]
    return ("mask" if masked else "allow"), masked


def test_held_out_views_and_subqueries(session):
    assert len({sql for _, _, sql in CASE_LIST}) == len(CASE_LIST)
    wrong, over_strict, allowed = [], [], 0
    for expect, positions, sql in CASE_LIST:
        got, masked = _outcome(session, sql)
        legitimate = expect in ("allow", "mask")
        allowed += legitimate and got in ("allow", "mask")
        if expect == "mask" and got == "deny":
            over_strict.append(sql)
        elif got != expect or (expect == "mask" and masked != positions):
            wrong.append(f"expected {expect}{positions or ''}, got {got}{masked or ''}: {sql}")
    legit = sum(e != "deny" for e, _, _ in CASE_LIST)
    summary = f"held-out views/subqueries: {allowed} of {legit} legitimate queries allowed; {len(over_strict)} over-strict"
    print(summary)
    if os.environ.get("LG_REDTEAM_RESULTS"):
        with open(os.environ["LG_REDTEAM_RESULTS"], "a") as out:
            out.write(json.dumps({"utility_views": {"allowed": allowed, "of": legit, "wrong": wrong}}) + "\n")
    assert not wrong and not over_strict, summary + "\n" + "\n".join(wrong + over_strict)


# The premise, on the server: unreferenced outputs are not computed (the function never runs on the value).
UNCOMPUTED = [
    ("SELECT id FROM v_patient_summary", "left("),
    ("SELECT count(*) FROM v_patient_summary", "left("),
    ("SELECT v_customer_secure.id FROM v_customer_secure", "ssn"),   # security_barrier: planned, not flattened
    ("WITH x AS (SELECT id, lower(email) AS e, plan FROM customers) SELECT plan, count(*) FROM x GROUP BY plan",
     "lower("),
    ("SELECT count(*) FROM (SELECT id, left(diagnosis, 3) AS d FROM patients ORDER BY id) s", "left("),
    (("SELECT x.id FROM (SELECT c.id, (SELECT count(*) FROM patients p WHERE p.diagnosis LIKE 'F%' AND p.id = c.id)"
      " AS k FROM customers c) x"), "diagnosis"),
]
# ... and the shapes lineage.Pending does not defer are computed (so they stay judged).
COMPUTED = [
    ("WITH x AS MATERIALIZED (SELECT id, length(ssn) AS n FROM customers) SELECT id FROM x", "length("),
    ("WITH x AS (SELECT id, length(ssn) AS n FROM customers) SELECT a.id FROM x a JOIN x b USING (id)", "length("),
    ("SELECT id FROM (SELECT id, random() * length(ssn) AS n FROM customers) s", "length("),
    ("SELECT id FROM (SELECT id, generate_series(1, length(ssn)) AS n FROM customers) s", "length("),
    ("SELECT id FROM (SELECT id, length(ssn) AS n FROM customers UNION ALL SELECT id, 1 FROM orders ORDER BY 1 LIMIT 3) s",
     "length("),
]


def _explained(corpus_url, sql: str) -> str:
    psycopg = require("psycopg", "postgres")
    with psycopg.connect(corpus_url) as conn:
        rows = conn.execute(f"EXPLAIN (VERBOSE, COSTS OFF) {sql}").fetchall()
    # A table scan below the top may list every column of the row (a physical tlist): what is computed
    # shows in the expressions, so only non-scan lines and expressions are read.
    return "\n".join(r[0] for r in rows)


@pytest.mark.parametrize("sql,marker", UNCOMPUTED)
def test_unreferenced_outputs_are_not_computed(corpus_url, sql, marker):
    text = _explained(corpus_url, sql)
    computed = [line for line in text.splitlines() if marker in line and "Output:" in line
                and not _physical_tlist(line)]
    assert not computed, text


@pytest.mark.parametrize("sql,marker", COMPUTED)
def test_kept_outputs_are_computed(corpus_url, sql, marker):
    assert marker in _explained(corpus_url, sql)


def _physical_tlist(line: str) -> bool:
    """A scan emitting the stored columns as they are (no expression): `Output: c.id, c.ssn, ...`."""
    body = line.split("Output:", 1)[1]
    return "(" not in body


def test_volatile_list_matches_the_server(corpus_url):
    """Every allowed built-in PostgreSQL marks volatile is in lineage.VOLATILE_FUNCTIONS (else it would be deferred)."""
    psycopg = require("psycopg", "postgres")
    from lineage_guard.sql.allowlist import ALLOWED_FUNCTIONS, FUNCTION_CASTS
    from lineage_guard.sql.lineage import VOLATILE_FUNCTIONS

    with psycopg.connect(corpus_url) as conn:
        volatile = {r[0] for r in conn.execute(
            "SELECT DISTINCT proname FROM pg_proc WHERE provolatile = 'v' AND proname = ANY(%s)",
            [sorted(ALLOWED_FUNCTIONS | FUNCTION_CASTS)]).fetchall()}
    assert volatile and volatile <= VOLATILE_FUNCTIONS, sorted(volatile - VOLATILE_FUNCTIONS)


def test_binding_check_follows_a_security_barrier_view_by_position():
    """A security_barrier view is a subquery scan in EXPLAIN: its columns are followed by position (they were
    all-or-nothing, so `SELECT id, tax_ref FROM v_customer_secure` was refused live), and a column the plan
    did not attribute to the output is still caught."""
    from lineage_guard.sql.explain import binding_disagreements

    ssn, cid = ColumnRef("public", "customers", "ssn"), ColumnRef("public", "customers", "id")
    explained = [{"Plan": {"Node Type": "Subquery Scan", "Alias": "v", "Output": ["v.id", "v.tax_ref"], "Plans": [
        {"Node Type": "Seq Scan", "Relation Name": "customers", "Schema": "public", "Alias": "customers",
         "Parent Relationship": "Subquery", "Output": ["customers.id", "NULL::text", "customers.ssn"]}]}}]
    names = {"v": ["id", "plan", "tax_ref"]}
    assert binding_disagreements(explained, known={ssn, cid}, outputs=[{cid}, {ssn}], sensitive={ssn},
                                 names=names) == []
    assert binding_disagreements(explained, known={ssn, cid}, outputs=[{ssn}, set()], sensitive={ssn},
                                 names=names) != []   # the ssn column planned clear: caught
    assert binding_disagreements(explained, known={ssn, cid}, outputs=[{cid}, {ssn}], sensitive={ssn}) != []
