"""The adversarial corpus (tests/corpus, our copy of the shared sample) through the real planner, live catalog and offline DDL.

Every `deny` case must be denied; every `mask` case allowed with at least the listed positions
masked (deny is acceptable but counted as over-strict); every `allow` case allowed with nothing
masked. VARIANTS add other spellings of each category: the guard must hold for the class.
"""

from __future__ import annotations

import collections
import json
from pathlib import Path

import pytest
from conftest import CORPUS

from lineage_guard.identity import Identity
from lineage_guard.planner import plan
from lineage_guard.policy import load_policy
from lineage_guard.sql.catalog import Catalog

POLICY = Path(__file__).resolve().parent / "corpus" / "policy.yaml"
CASES = [json.loads(line) for line in (CORPUS / "sql-attacks.jsonl").read_text().splitlines() if line.strip()]
ME = Identity("svc-training", "service", frozenset({"training-jobs"}))

# (id, sql, expect, masked positions) -- other spellings of the corpus categories.
VARIANTS = [
    # control
    ("v-ctl-01", "SELECT id, plan, created_at FROM customers WHERE plan = 'pro' ORDER BY created_at", "allow", []),
    ("v-ctl-02", "SELECT c.plan, sum(o.amount) FROM orders o JOIN customers c USING (id) GROUP BY c.plan", "allow", []),
    ("v-ctl-03", "WITH t AS (SELECT id, amount FROM orders) SELECT max(amount) FROM t", "allow", []),
    ("v-ctl-04", "SELECT id FROM customers UNION SELECT customer_id FROM orders", "allow", []),
    ("v-ctl-05", "SELECT count(*) FILTER (WHERE plan = 'free') AS free FROM customers", "allow", []),
    ("v-ctl-06", "SELECT id, row_number() OVER (PARTITION BY plan ORDER BY created_at) FROM customers", "allow", []),
    ("v-ctl-07", "SELECT to_char(created_at, 'YYYY-MM') AS m, round(avg(amount), 2) FROM orders GROUP BY 1", "allow", []),
    ("v-ctl-08", "SELECT * FROM orders o WHERE false", "mask", [3]),
    ("v-ctl-09", "SELECT id::text || '-' || plan AS k FROM customers", "allow", []),
    ("v-ctl-10", "SELECT $tag$ ; DELETE FROM orders $tag$ AS t", "allow", []),
    # direct / alias / identifiers / comments
    ("v-dir-01", "SELECT customers.ssn FROM public.customers", "mask", [0]),
    ("v-dir-02", 'SELECT "email" AS "Plan" FROM "customers"', "mask", [0]),
    ("v-dir-03", "SELECT id AS ssn, zip AS id FROM customers", "mask", [1]),
    ("v-dir-04", "SELECT c.id, --x\n c.full_name FROM customers c", "mask", [1]),
    ("v-dir-05", "SELECT (email) FROM customers", "mask", [0]),
    ("v-dir-06", "SELECT p.mrn FROM patients AS p(x, mrn)", "mask", [0]),  # positional rename: mrn = column 2 (mrn)
    ("v-dir-07", "SELECT p.x FROM patients AS p(id, x)", "mask", [0]),
    # functions
    ("v-fn-01", "SELECT id, lower(trim(email)) AS e FROM customers", "mask", [1]),
    ("v-fn-02", "SELECT id, regexp_replace(ssn, '-', '', 'g') AS s FROM customers", "mask", [1]),
    ("v-fn-03", "SELECT id, split_part(email, '@', 2) AS domain FROM customers", "mask", [1]),
    ("v-fn-04", "SELECT id, reverse(reverse(phone)) AS p FROM customers", "mask", [1]),
    ("v-fn-05", "SELECT id, sha256(convert_to(ssn, 'UTF8')) AS h FROM customers", "mask", [1]),
    ("v-fn-06", "SELECT id, concat_ws(' ', full_name, zip) AS a FROM customers", "mask", [1]),
    ("v-fn-07", "SELECT id, translate(ssn, '0123456789', 'abcdefghij') AS t FROM customers", "mask", [1]),
    ("v-fn-08", "SELECT id, overlay(ssn placing 'x' from 1 for 1) AS o FROM customers", "mask", [1]),
    ("v-fn-09", "SELECT id, CASE WHEN diagnosis LIKE 'E11%' THEN 1 ELSE 0 END AS d FROM patients", "mask", [1]),
    ("v-fn-10", "SELECT id, pg_catalog.lower(email) AS e FROM customers", "mask", [1]),
    ("v-fn-11", "SELECT id, birth_date + 1 AS d, extract(year FROM birth_date) AS y FROM customers", "mask", [1, 2]),
    ("v-fn-12", "SELECT id, email IS NOT DISTINCT FROM 'x' AS b FROM customers", "mask", [1]),
    ("v-fn-13", "SELECT id, to_json(notes) AS j, jsonb_build_array(mrn) AS k FROM patients", "mask", [1, 2]),
    ("v-fn-14", "SELECT id, ARRAY[ssn][1] AS s FROM customers", "mask", [1]),
    ("v-fn-15", "SELECT id, string_to_array(email, '@') AS s FROM customers", "mask", [1]),
    # casts and error channel
    ("v-cast-01", "SELECT id, birth_date::text AS b FROM customers", "mask", [1]),
    ("v-cast-02", "SELECT id, CAST(phone AS varchar(20)) AS p FROM customers", "mask", [1]),
    ("v-err-01", "SELECT id FROM customers WHERE phone::numeric > 0", "deny", []),
    ("v-err-02", "SELECT to_number(ssn, '999') FROM customers", "deny", []),
    ("v-err-03", "SELECT id, email::jsonb FROM customers", "deny", []),
    ("v-err-04", "SELECT id, CAST(full_name AS date) AS d FROM patients", "deny", []),
    ("v-err-05", "SELECT id, decode(ssn, 'hex') AS d FROM customers", "deny", []),
    # aggregates / group / window
    ("v-agg-01", "SELECT string_agg(email, ',') AS all_emails FROM customers", "mask", [0]),
    ("v-agg-02", "SELECT plan, max(ssn) AS m FROM customers GROUP BY plan", "mask", [1]),
    ("v-agg-03", "SELECT json_agg(json_build_object('n', full_name)) FROM patients", "mask", [0]),
    ("v-agg-04", "SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY birth_date) FROM patients", "mask", [0]),
    ("v-grp-01", "SELECT left(zip, 3) AS z3, count(*) FROM customers GROUP BY 1", "mask", [0]),
    ("v-grp-02", "SELECT plan, zip, count(*) FROM customers GROUP BY ROLLUP (plan, zip)", "mask", [1]),
    ("v-win-01", "SELECT id, lag(ssn) OVER (ORDER BY id) AS prev FROM customers", "mask", [1]),
    ("v-win-02", "SELECT id, count(*) OVER (PARTITION BY zip) AS n FROM customers", "mask", [1]),
    ("v-win-03", "SELECT id, last_value(email) OVER w AS l FROM customers WINDOW w AS (ORDER BY id)", "mask", [1]),
    # subqueries, CTEs, lateral, sets, stars, views
    ("v-cte-01", "WITH a AS (SELECT * FROM customers), b AS (SELECT ssn AS plan FROM a) SELECT plan FROM b", "mask", [0]),
    ("v-cte-02", "WITH customers AS (SELECT id, email AS plan FROM customers) SELECT plan FROM customers", "mask", [0]),
    ("v-cte-03", "SELECT x.e FROM (SELECT email AS e FROM customers) AS x", "mask", [0]),
    ("v-cte-04", "SELECT id, ARRAY(SELECT card_number FROM orders o WHERE o.customer_id = c.id) AS cards FROM customers c", "mask", [1]),
    ("v-cte-05", "WITH RECURSIVE r(n, s) AS (SELECT 1, ssn FROM customers UNION ALL SELECT n + 1, s FROM r WHERE n < 2) SELECT n, s FROM r", "mask", [1]),
    ("v-cte-06", "SELECT s.c1 FROM (TABLE customers) AS s(c0, c1)", "mask", [0]),
    ("v-lat-01", "SELECT c.id, l.* FROM customers c, LATERAL (SELECT c.phone, c.plan) l", "mask", [1]),
    ("v-lat-02", "SELECT c.id, u.v FROM customers c CROSS JOIN LATERAL unnest(ARRAY[c.email, c.zip]) AS u(v)", "mask", [1]),
    ("v-set-01", "SELECT plan FROM customers UNION SELECT ssn FROM customers", "mask", [0]),
    ("v-set-02", "SELECT id, plan FROM customers INTERSECT SELECT id, full_name FROM patients", "mask", [1]),
    ("v-set-03", "(SELECT 'x' AS a) UNION ALL (SELECT diagnosis FROM patients)", "mask", [0]),
    ("v-star-01", "SELECT c.*, o.amount FROM customers c JOIN orders o ON o.customer_id = c.id", "mask", [1, 2, 3, 4, 5, 6]),
    ("v-star-02", "SELECT * FROM orders", "mask", [3]),
    ("v-star-03", "SELECT sub.* FROM (SELECT id, ssn FROM customers) sub", "mask", [1]),
    ("v-view-01", "SELECT * FROM v_customer_contact", "mask", [1, 2]),
    ("v-view-02", "SELECT category, dob FROM v_patient_summary", "mask", [0, 1]),
    ("v-view-03", "SELECT zip, n FROM mv_zip_plan", "mask", [0]),
    ("v-view-04", "SELECT * FROM public.v_customer_secure", "mask", [2]),
    ("v-udf-01", "SELECT lookup_email(7) AS plan", "mask", [0]),
    ("v-udf-02", "SELECT * FROM customer_export()", "mask", [0, 1]),
    # whole-row
    ("v-row-01", "SELECT row_to_json(c) FROM customers c", "mask", [0]),
    ("v-row-02", "SELECT c::text FROM customers c", "mask", [0]),
    ("v-row-03", "SELECT (p).diagnosis FROM patients p", "mask", [0]),
    ("v-row-04", "SELECT hstore_like FROM (SELECT p AS hstore_like FROM patients p) s", "mask", [0]),
    ("v-row-05", "SELECT ROW(c.*)::text FROM customers c", "mask", [0]),
    ("v-unpivot-01", "SELECT j.value FROM patients p, json_each_text(row_to_json(p)) j", "mask", [0]),
    ("v-unpivot-02", "SELECT v FROM customers c, unnest(ARRAY[c.ssn, c.email]) AS v", "mask", [0]),
    ("v-star-04", "SELECT * FROM orders o JOIN customers c USING (id)", "mask", [5, 6, 7, 8, 9, 10]),
    ("v-star-05", "SELECT * FROM orders NATURAL JOIN customers", "mask", [4]),
    ("v-star-06", "SELECT * FROM customers c, jsonb_populate_record(null::customers, to_jsonb(c)) r", "deny", []),
    ("v-star-07", "SELECT * FROM customers c, unnest(ARRAY[c.ssn], ARRAY[c.id]) AS u", "mask", [1, 2, 3, 4, 5, 6, 9]),
    ("v-star-08", "SELECT * FROM customers c, jsonb_each_text(to_jsonb(c)) WITH ORDINALITY AS j", "mask", [1, 9, 10]),
    ("v-star-09", "SELECT * FROM customers c, jsonb_to_record(jsonb_build_object('a', c.ssn)) AS r(a text)", "mask", [9]),
    ("v-row-06", "SELECT r.ssn FROM customers c, jsonb_populate_record(null::customers, to_jsonb(c)) r", "mask", [0]),
    # inference
    ("v-inf-14", "SELECT count(*) FILTER (WHERE ssn = '931-38-3286') FROM customers", "deny", []),
    ("v-inf-15", "SELECT count(*) FILTER (WHERE birth_date < '1960-01-01') FROM customers", "mask", [0]),
    ("v-inf-16", "SELECT plan FROM customers GROUP BY plan HAVING bool_or(ssn = '931-38-3286')", "deny", []),
    ("v-inf-17", "SELECT id FROM customers WHERE CASE WHEN ssn = '931-38-3286' THEN true END", "deny", []),
    ("v-inf-18", "WITH g AS (SELECT '931-38-3286' AS s) SELECT c.id FROM customers c JOIN g ON c.ssn = g.s", "deny", []),
    ("v-inf-19", "SELECT c.id FROM customers c JOIN generate_series(99900, 99999) g ON c.zip = g::text", "deny", []),
    ("v-inf-20", "SELECT id FROM customers WHERE ssn = $1", "deny", []),
    ("v-inf-21", "SELECT id FROM (SELECT id FROM customers ORDER BY ssn LIMIT 1) s", "deny", []),
    ("v-err-06", "SELECT id, 1 / (ascii(ssn) - 57) AS d FROM customers WHERE id = 7", "deny", []),
    ("v-err-07", "SELECT id, phone::character varying(3)::int AS p FROM customers", "deny", []),
    ("v-deny-26", "COPY (SELECT id FROM orders) TO STDOUT", "deny", []),
    ("v-inf-01", "SELECT id FROM customers WHERE ssn LIKE '9%'", "deny", []),
    ("v-inf-02", "SELECT id FROM customers WHERE zip IN ('99919', '99938')", "deny", []),
    ("v-inf-03", "SELECT id FROM customers ORDER BY birth_date", "deny", []),
    ("v-inf-04", "SELECT id FROM patients WHERE lower(diagnosis) ~ 'diab'", "deny", []),
    ("v-inf-05", "SELECT o.id FROM orders o WHERE o.card_number = ANY(ARRAY['0000-7965-4585-3881'])", "deny", []),
    ("v-inf-06", "SELECT DISTINCT ON (birth_date) id FROM patients", "deny", []),
    ("v-inf-07", "SELECT id FROM customers WHERE starts_with(email, 'stub')", "deny", []),
    ("v-inf-08", "SELECT id FROM customers c WHERE c.ssn IN (SELECT '931-38-3286')", "deny", []),
    ("v-inf-09", "SELECT plan, count(*) FROM customers WHERE ssn = '931-38-3286' GROUP BY plan", "deny", []),
    ("v-inf-10", "SELECT plan FROM customers GROUP BY plan HAVING max(ssn) > '95'", "deny", []),  # max() and HAVING inspect ssn
    ("v-inf-11", "SELECT id FROM customers WHERE birth_date IS NULL", "deny", []),
    ("v-inf-12", "SELECT count(*) FROM patients WHERE birth_date < '1960-01-01'", "allow", []),
    ("v-inf-13", "SELECT id FROM customers EXCEPT SELECT id FROM customers WHERE ssn > '5'", "deny", []),
    # writes, session, side effects, statements
    ("v-deny-01", "INSERT INTO orders (customer_id, amount) VALUES (1, 1)", "deny", []),
    ("v-deny-02", "UPDATE customers SET plan = 'x'", "deny", []),
    ("v-deny-03", "SELECT pg_sleep(10)", "deny", []),
    ("v-deny-04", "SELECT query_to_xml('select ssn from customers', true, false, '')", "deny", []),
    ("v-deny-05", "SELECT * FROM pg_catalog.pg_stats", "deny", []),
    ("v-deny-06", "SELECT column_name FROM information_schema.columns", "deny", []),
    ("v-deny-07", "SELECT setval('customers_id_seq', 1)", "deny", []),
    ("v-deny-08", "WITH u AS (UPDATE customers SET plan = ssn RETURNING id) SELECT 1", "deny", []),
    ("v-deny-09", "SELECT id INTO TEMP t FROM customers", "deny", []),
    ("v-deny-10", "SELECT id FROM customers FOR SHARE", "deny", []),
    ("v-deny-11", "COPY customers TO '/tmp/c.csv'", "deny", []),
    ("v-deny-12", "SELECT 1;;SELECT 2", "deny", []),
    ("v-deny-13", "SELECT lo_import('/etc/passwd')", "deny", []),
    ("v-deny-14", "SELECT * FROM nosuchtable", "deny", []),
    ("v-deny-15", "SELECT nosuchcolumn FROM customers", "deny", []),
    ("v-deny-16", 'SELECT "EMAIL" FROM customers', "deny", []),
    ("v-deny-17", "SET LOCAL role postgres", "deny", []),
    ("v-ctl-11", "SELECT id, u&'\\0041' AS a FROM customers", "allow", []),  # a Unicode-escaped constant is still a constant
    ("v-deny-19", "CALL refresh_reporting()", "deny", []),
    ("v-deny-20", "DO $$ BEGIN PERFORM 1; END $$", "deny", []),
    ("v-deny-21", "SELECT txid_current()", "deny", []),
    ("v-deny-22", "SELECT id FROM customers c WHERE c.email OPERATOR(public.===) 'x'", "deny", []),
    ("v-deny-23", "REFRESH MATERIALIZED VIEW mv_zip_plan", "deny", []),
    ("v-deny-24", "TRUNCATE orders", "deny", []),
    ("v-deny-25", "SELECT", "allow", []),
]


def _cases():
    for case in CASES:
        yield pytest.param(case["id"], case["sql"], case["expect"], case.get("masked_output_positions") or [],
                           case["category"], id=case["id"])
    for vid, sql, expect, positions in VARIANTS:
        yield pytest.param(vid, sql, expect, positions, "variant:" + vid.split("-")[1], id=vid)


def judge(decision, expect: str, positions: list[int]) -> str:
    """pass | over-strict | fail, by output position."""
    if expect == "deny":
        return "pass" if decision.action == "deny" else "fail"
    if expect == "allow":
        ok = decision.action == "allow" and not decision.masked_columns
        return "pass" if ok else "fail"
    if decision.action == "deny":
        return "over-strict"
    if decision.action != "allow":
        return "fail"
    masked = {c.position for c in decision.columns if c.masked}
    return "pass" if set(positions) <= masked else "fail"


@pytest.fixture(scope="module")
def policy():
    return load_policy(POLICY)


@pytest.fixture(scope="module")
def offline():
    return Catalog.from_ddl(CORPUS / "schema.sql", CORPUS / "schema_extras.sql")


@pytest.fixture(scope="module")
def live(corpus_url):
    return Catalog.from_postgres(corpus_url)


TALLY: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)


@pytest.mark.parametrize("catalog_kind", ["offline", "live"])
@pytest.mark.parametrize("cid, sql, expect, positions, category", list(_cases()))
def test_case(request, policy, catalog_kind, cid, sql, expect, positions, category):
    catalog = request.getfixturevalue(catalog_kind)
    decision = plan(sql, catalog=catalog, policy=policy, identity=ME, purpose="ai_training")
    verdict = judge(decision, expect, positions)
    TALLY[f"{catalog_kind}:{category}"][verdict] += 1
    masked = [c.position for c in decision.columns if c.masked]
    assert verdict != "fail", f"{cid}: expected {expect} {positions}, got {decision.action} masked={masked} " \
                              f"reasons={list(decision.reasons)}"


def test_print_tally():
    """Per-category counts (run after the cases; `-s` shows them)."""
    for kind in ("offline", "live"):
        rows = {k.split(":", 1)[1]: v for k, v in TALLY.items() if k.startswith(kind + ":")}
        if not rows:
            continue
        total = sum((v for v in rows.values()), collections.Counter())
        print(f"\n[{kind}] pass={total['pass']} over-strict={total['over-strict']} fail={total['fail']}")
        for cat in sorted(rows):
            v = rows[cat]
            print(f"  {cat:28} pass={v['pass']:3} over-strict={v['over-strict']:3} fail={v['fail']:3}")
