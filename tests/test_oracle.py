"""Differential oracle: run generated queries on two copies of the corpus that differ only in sensitive values.

Database A is the corpus; database B is the same corpus with every sensitive value changed in
a way that keeps NULLs, equality and order (text gets a 'Q' prefix, dates move one day). So a
column whose values differ between A and B carries sensitive information, and the plan must
mask it or deny the statement; a query whose error differs between A and B (an error-channel
leak) or whose rows differ must be denied. The plan must never crash.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from conftest import CORPUS, _with_database, require
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lineage_guard.identity import Identity
from lineage_guard.planner import plan
from lineage_guard.policy import load_policy
from lineage_guard.sql.catalog import Catalog

POLICY = Path(__file__).resolve().parent / "corpus" / "policy.yaml"
ME = Identity("svc-training", "service", frozenset({"training-jobs"}))

MUTATE = """
UPDATE customers SET full_name = 'Q' || full_name, email = 'Q' || email, ssn = 'Q' || ssn, phone = 'Q' || phone,
                     zip = 'Q' || zip, birth_date = birth_date + 1;
UPDATE orders SET card_number = 'Q' || card_number;
UPDATE patients SET mrn = 'Q' || mrn, full_name = 'Q' || full_name, diagnosis = 'Q' || diagnosis,
                    notes = 'Q' || notes, birth_date = birth_date + 1;
REFRESH MATERIALIZED VIEW mv_zip_plan;
"""

# Building blocks; {c} is the customers alias, {o} orders (joined on customer), {p} patients (joined on id).
COLUMNS = ["{c}.id", "{c}.full_name", "{c}.email", "{c}.ssn", "{c}.phone", "{c}.birth_date", "{c}.zip",
           "{c}.created_at", "{c}.plan", "{o}.amount", "{o}.card_number", "{p}.mrn", "{p}.diagnosis", "{p}.notes",
           "{p}.birth_date", "{v}.contact", "{v}.callback", "{s}.tax_ref", "{s}.plan"]
ROW_EXPRS = [
    "{x}", "upper({x}::text)", "lower({x}::text)", "length({x}::text)", "md5({x}::text)", "{x}::text",
    "substr({x}::text, 2, 3)", "left({x}::text, 2) || right({x}::text, 2)", "concat({x}, '-', {y})",
    "coalesce({x}::text, {y}::text)", "nullif({x}::text, '')", "CASE WHEN {x}::text > '5' THEN 1 ELSE 0 END",
    "({x}::text > '950')::int", "greatest({x}::text, {y}::text)", "format('%s|%s', {x}, {y})",
    "array_to_string(ARRAY[{x}::text, {y}::text], ',')", "json_build_object('k', {x})::text", "({x} IS NULL)",
    "reverse({x}::text)", "translate({x}::text, '0123456789', 'abcdefghij')", "encode(convert_to({x}::text, 'UTF8'), 'base64')",
    "first_value({x}) OVER (ORDER BY {c}.id)", "lag({x}::text) OVER (ORDER BY {c}.id)",
    "rank() OVER (ORDER BY {x})", "count(*) OVER (PARTITION BY {x})",
    "(SELECT {x}::text)", "{x}::text COLLATE \"C\"", "ascii(substr({x}::text, 3, 1))", "{x}::text || ''",
    "to_jsonb({c}) ->> 'ssn'", "row_to_json({c})::text", "{c}::text", "{x}::int",
    "date_part('year', {c}.birth_date)", "{c}.birth_date + 1", "split_part({x}::text, '-', 2)",
    "(SELECT o2.card_number FROM orders o2 WHERE o2.customer_id = {c}.id ORDER BY o2.id LIMIT 1)",
    "lookup_email({c}.id)", "(SELECT string_agg(j.value, ',') FROM jsonb_each_text(to_jsonb({c})) j)",
    "(SELECT l.x FROM (SELECT {x}::text AS x) l)", "(SELECT e.handle FROM customer_export() e WHERE e.cid = {c}.id)",
    "ARRAY(SELECT unnest(ARRAY[{x}::text, {y}::text]))::text",
]
AGG_EXPRS = [
    "count(*)", "count(DISTINCT {x})", "max({x}::text)", "min({x}::text)", "string_agg({x}::text, ',' ORDER BY {c}.id)",
    "avg(length({x}::text))", "array_agg({x} ORDER BY {c}.id)::text", "sum(CASE WHEN {x} IS NULL THEN 1 ELSE 0 END)",
    "mode() WITHIN GROUP (ORDER BY {x})", "bool_or({x}::text LIKE '9%')", "count(*) FILTER (WHERE {c}.plan = 'pro')",
]
SAFE_PREDICATES = ["{c}.id % 3 = 0", "{c}.plan = 'pro'", "{c}.created_at > '2024-01-01'", "{c}.id BETWEEN 5 AND 40"]
SENSITIVE_PREDICATES = ["{c}.ssn LIKE '9%'", "{c}.birth_date < '1970-01-01'", "{c}.zip = '99919'",
                        "length({c}.email) > 33", "{c}.phone IS NULL", "{c}.email ~ 'nobody'",
                        "EXISTS (SELECT 1 FROM patients p2 WHERE p2.birth_date = {c}.birth_date)",
                        "{c}.ssn IN (SELECT '931-38-3286')"]
JOINS = {
    "none": ("FROM customers c", "c.id"),
    "orders": ("FROM customers c JOIN orders o ON o.customer_id = c.id", "c.id, o.id"),
    "patients": ("FROM customers c JOIN patients p ON p.id = c.id", "c.id"),
    "views": ("FROM customers c JOIN v_customer_contact v ON v.id = c.id LEFT JOIN v_customer_secure s ON s.id = c.id",
              "c.id"),
}


def _fill(template: str, x: str, y: str) -> str:
    return template.format(x=x, y=y, c="c", o="o", p="p", v="v", s="s")


@st.composite
def queries(draw) -> str:
    join = draw(st.sampled_from(sorted(JOINS)))
    source, order = JOINS[join]
    allowed = [c for c in COLUMNS if ("{o}" not in c or join == "orders") and ("{p}" not in c or join == "patients")
               and (("{v}" not in c and "{s}" not in c) or join == "views")]
    cols = [c.format(c="c", o="o", p="p", v="v", s="s") for c in allowed]
    pick = st.sampled_from(cols)
    shape = draw(st.sampled_from(["row", "row", "agg", "group_sensitive"]))
    if shape == "row":
        exprs = [_fill(draw(st.sampled_from(ROW_EXPRS)), draw(pick), draw(pick)) for _ in range(draw(st.integers(1, 3)))]
        preds = draw(st.sampled_from([[], [], SAFE_PREDICATES, SENSITIVE_PREDICATES]))
        where = f" WHERE {draw(st.sampled_from(preds)).format(c='c')}" if preds else ""
        select = ", ".join(f"{e} AS e{i}" for i, e in enumerate(exprs))
        sql = f"SELECT c.id AS k, {select} {source}{where} ORDER BY {order}"
    elif shape == "agg":
        exprs = [_fill(draw(st.sampled_from(AGG_EXPRS)), draw(pick), draw(pick)) for _ in range(draw(st.integers(1, 3)))]
        where = f" WHERE {draw(st.sampled_from(SAFE_PREDICATES)).format(c='c')}" if draw(st.booleans()) else ""
        select = ", ".join(f"{e} AS e{i}" for i, e in enumerate(exprs))
        sql = f"SELECT c.plan, {select} {source}{where} GROUP BY c.plan ORDER BY c.plan"
    else:
        key = draw(pick)
        sql = f"SELECT {key} AS g, count(*) AS n {source} GROUP BY {key} ORDER BY {key} NULLS FIRST"
    wrap = draw(st.sampled_from(["plain", "plain", "cte", "subquery", "union"]))
    if wrap == "cte":
        sql = f"WITH q AS ({sql}) SELECT * FROM q"
    elif wrap == "subquery" and shape == "row":
        sql = f"SELECT s.* FROM ({sql}) AS s ORDER BY s.k"
    elif wrap == "union" and shape == "row":
        sql = f"SELECT * FROM (({sql}) UNION ALL ({sql})) AS u ORDER BY 1"
    return sql


def _run(conn, sql: str):
    """(rows, error text) in a rolled-back read-only transaction; the error text only ever goes to `==`."""
    psycopg = require("psycopg", "postgres")
    try:
        with conn.transaction(force_rollback=True):
            conn.execute("SET TRANSACTION READ ONLY")
            conn.execute("SET LOCAL statement_timeout = '5s'")
            return conn.execute(sql).fetchall(), None
    except psycopg.Error as err:
        return None, (type(err).__name__, err.diag.message_primary)


@pytest.fixture(scope="module")
def twin(corpus_url, pg_server_url):
    """A second database: the corpus with every sensitive value changed (NULLs, equality and order kept)."""
    psycopg = require("psycopg", "postgres")
    name = f"lg_oracle_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = _with_database(pg_server_url, name)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute((CORPUS / "schema.sql").read_text())
            conn.execute((CORPUS / "schema_extras.sql").read_text())
            conn.execute(MUTATE)
        with psycopg.connect(corpus_url, autocommit=True) as a, psycopg.connect(url, autocommit=True) as b:
            yield a, b, Catalog.from_postgres(corpus_url)
    finally:
        with psycopg.connect(pg_server_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def check(twin, sql: str) -> str:
    """Plan `sql`, run it on both twins, assert the oracle; returns the plan's action."""
    a, b, catalog = twin
    decision = plan(sql, catalog=catalog, policy=load_policy(POLICY), identity=ME, purpose="ai_training")
    if decision.action != "allow":
        return decision.action
    rows_a, err_a = _run(a, sql)
    rows_b, err_b = _run(b, sql)
    assert err_a == err_b, f"allowed, but the error differs between the twins (error channel): {sql}"
    if err_a:
        return "allow"
    assert len(rows_a) == len(rows_b), f"allowed, but the row count depends on sensitive values: {sql}"
    masked = {c.position for c in decision.columns if c.masked}
    width = len(rows_a[0]) if rows_a else len(decision.columns)
    assert width == len(decision.columns), f"the analysis has {len(decision.columns)} columns, the result {width}: {sql}"
    for pos in range(width):
        if any(ra[pos] != rb[pos] for ra, rb in zip(rows_a, rows_b)):
            assert pos in masked, f"column {pos} differs between the twins but is returned clear: {sql}"
    return "allow"


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(sql=queries())
def test_differing_columns_are_masked_or_denied(twin, sql):
    check(twin, sql)


@pytest.mark.parametrize("sql, action", [
    ("SELECT c.id, c.email, c.plan FROM customers c ORDER BY c.id", "allow"),
    ("SELECT c.id AS k, c FROM customers c ORDER BY c.id", "allow"),
    ("SELECT * FROM orders o JOIN customers c USING (id) ORDER BY id", "allow"),
    ("SELECT zip AS g, count(*) FROM customers GROUP BY zip ORDER BY zip", "deny"),  # GROUP BY inspects zip
    ("SELECT c.id FROM customers c WHERE c.ssn LIKE '9%' ORDER BY c.id", "deny"),
    ("SELECT c.id, c.zip::int FROM customers c ORDER BY c.id", "deny"),
    ("SELECT c.id FROM customers c ORDER BY c.birth_date", "deny"),
])
def test_oracle_on_known_queries(twin, sql, action):
    """Fixed examples: the oracle passes on them and the plan takes the expected action."""
    assert check(twin, sql) == action
