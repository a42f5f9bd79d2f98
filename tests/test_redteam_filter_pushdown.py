"""Red team: caller quals pushed inside a row filter's fence (sql/pushdown.py) tell nothing about hidden rows.

The fence (tests/test_redteam_filter_fence.py) keeps every caller qual off rows the filter rejects; it
also keeps an index from serving `WHERE id = 42`. Conjuncts that only compare this table's columns with
constants through pg_catalog operators the server marks LEAKPROOF now run inside the fence too. The
attacks here hide a leaky expression in or next to such a conjunct (an AND beside it, an OR or NOT around
it, a cast, an IN list, BETWEEN, a COLLATE, an operator the attacker created for `=`), and count how
many hidden-or-absent customer ids the reader tells apart through the governed session: guessing scores
`told - hidden`, an oracle more. The same probes with every conjunct pushed (a naive pushdown, run on
the same database) do tell ids apart, so the probes are live. Counts only are reported.

Marking a function LEAKPROOF takes a superuser (checked below): a reader who can create functions can
make `=` call theirs, but not have it pass for leakproof.
"""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path

import pytest
from conftest import CORPUS, require
from oracle_gen import Generator

from lineage_guard import GovernedSession, Identity
from lineage_guard.errors import AccessDenied, SourceError
from lineage_guard.planner import plan
from lineage_guard.policy import parse_policy
from lineage_guard.sql import analyze
from lineage_guard.sql.catalog import Catalog
from lineage_guard.sql.catalog_cache import schema_version
from lineage_guard.sql.model import TableRef
from lineage_guard.sql.rowfilter import FilterRule, apply_row_filters

ROW_FILTER = """row_filters:
  - {name: free-plan-only, table: public.customers, groups: [training-jobs], predicate: "lower(plan) = 'free'"}
"""
FILTER_SQL = "lower(plan) = 'free'"
# Each WHERE holds a pushable conjunct (or looks like one) and a qual that errors on row k only.
PROBES = {
    "AND beside a point lookup": "id = {k} AND (1 / (id - {k})) IS NOT NULL",
    "AND inside parentheses": "(id = {k} AND 1 / (id - {k}) > -100)",
    "OR around the lookup": "(1 / (id - {k})) IS NULL OR id = {k}",
    "NOT over an OR": "NOT (id <> {k} OR (1 / (id - {k})) IS NULL)",
    "cast in the comparison": "id::text = '{k}' AND (1 / (id - {k})) IS NOT NULL",
    "cast beside a lookup": "id = {k} AND CASE WHEN id = {k} THEN plan::int ELSE 1 END = 1",
    "IN list and overflow": "id IN ({k}, {k}) AND (2147483647 + (id - {k} + 1)) IS NOT NULL",
    "BETWEEN and division": "id BETWEEN {k} AND {k} AND (1 / (id - {k})) IS NOT NULL",
    "IS NOT NULL and division": "id IS NOT NULL AND plan IS NOT NULL AND (1 / (id - {k})) IS NOT NULL",
    "COLLATE beside a lookup": "id = {k} AND plan < 'zz' COLLATE \"C\" AND (1 / (id - {k})) IS NOT NULL",
    "attacker's = operator": "id = {k}.0",
}
# The reader's own `=` for (integer, numeric): no such operator in pg_catalog, so this one is an exact match
# for `id = 7.0` and the server calls it. It errors when the values are equal, and claims to be cheap so
# the planner runs it first. It cannot be LEAKPROOF without a superuser.
ATTACKER_OPERATOR = """
CREATE FUNCTION public.lg_eq_leak(a int, b numeric) RETURNS boolean LANGUAGE plpgsql IMMUTABLE COST 0.0000001
  AS $$ BEGIN IF a::numeric = b THEN RAISE EXCEPTION 'row exists'; END IF; RETURN false; END $$;
CREATE OPERATOR public.= (LEFTARG = int, RIGHTARG = numeric, FUNCTION = public.lg_eq_leak);
"""


def _execute(url: str, sql: str, *, pinned: bool = False) -> list:
    """Run `sql`; `pinned`: under the search_path governed reads use, so operators resolve as they do there."""
    psycopg = require("psycopg", "postgres")
    with psycopg.connect(url, autocommit=True) as conn:
        if pinned:
            conn.execute("SET search_path = pg_catalog, public, pg_temp")
        cur = conn.execute(sql)
        return cur.fetchall() if cur.description else []


@pytest.fixture(scope="module")
def world(new_database, tmp_path_factory) -> tuple[str, Path, list[int]]:
    url = new_database()
    _execute(url, (CORPUS / "schema.sql").read_text())
    _execute(url, (CORPUS / "schema_extras.sql").read_text())
    _execute(url, "DELETE FROM orders WHERE customer_id % 3 = 0; DELETE FROM customers WHERE id % 3 = 0; ANALYZE")
    _execute(url, ATTACKER_OPERATOR)
    policy = tmp_path_factory.mktemp("redteam-pushdown") / "policy.yaml"
    policy.write_text((CORPUS / "policy.yaml").read_text() + ROW_FILTER)
    hidden_or_absent = [k for (k,) in _execute(url, "SELECT g FROM generate_series(1, 60) g EXCEPT "
                                                    f"SELECT id FROM customers WHERE {FILTER_SQL} ORDER BY 1")]
    return url, policy, hidden_or_absent


def _score(candidates, exists, attempt) -> tuple[int, int]:
    """(ids the probe ran for, ids it classified right as hidden/absent by whether it errored)."""
    told = right = 0
    for k in candidates:
        errored = attempt(k)
        if errored is None:
            continue  # refused outright: tells nothing
        told += 1
        right += errored == (k in exists)
    return told, right


@pytest.mark.parametrize("probe", PROBES)
def test_a_leaky_qual_beside_a_pushable_one_says_nothing_about_hidden_rows(world, probe):
    url, policy, candidates = world
    exists = {k for (k,) in _execute(url, "SELECT id FROM customers")}
    hidden = sum(k in exists for k in candidates)
    sql = "SELECT id FROM customers WHERE " + PROBES[probe]
    psycopg = require("psycopg", "postgres")

    def naive(k: int) -> bool:   # every conjunct inside the fence, next to the filter
        where = PROBES[probe].format(k=k)
        try:
            _execute(url, f"SELECT id FROM (SELECT * FROM customers WHERE ({where}) AND {FILTER_SQL} OFFSET 0) c "
                          f"WHERE {where}", pinned=True)
        except psycopg.Error:
            return True
        return False

    with GovernedSession(url, policy, Identity("svc-training", "service"), "ai_training") as s:
        def governed(k: int) -> bool | None:
            try:
                s.read_arrow(sql.format(k=k))
            except AccessDenied:
                return None
            except SourceError:
                return True
            return False

        told, right = _score(candidates, exists, governed)
    naive_told, naive_right = _score(candidates, exists, naive)
    assert hidden and told                  # there are hidden rows to find, and the probe runs
    print(f"\n{probe}: governed {right - (told - hidden)} of {hidden} hidden ids found; "
          f"naive pushdown {naive_right - (naive_told - hidden)}")
    assert right <= told - hidden, f"{probe}: {right} of {told} hidden-or-absent ids told apart"


def test_the_probes_are_live_without_the_leakproof_rule(world):
    """With every conjunct pushed, most of the probes above find hidden rows: the rule is what stops them."""
    url, _, candidates = world
    psycopg = require("psycopg", "postgres")
    exists = {k for (k,) in _execute(url, "SELECT id FROM customers")}
    hidden = sum(k in exists for k in candidates)
    leaking = []
    for name, where in PROBES.items():
        def naive(k: int, where=where) -> bool:
            w = where.format(k=k)
            try:
                _execute(url, f"SELECT id FROM (SELECT * FROM customers WHERE ({w}) AND {FILTER_SQL} OFFSET 0) c "
                              f"WHERE {w}", pinned=True)
            except psycopg.Error:
                return True
            return False

        told, right = _score(candidates, exists, naive)
        if right > told - hidden:
            leaking.append(name)
    print(f"\nnaive pushdown leaks with {len(leaking)} of {len(PROBES)} probes: {leaking}")
    assert "attacker's = operator" in leaking and "AND beside a point lookup" in leaking
    assert len(leaking) >= len(PROBES) // 2


def _executed(url: str, catalog: Catalog, sql: str) -> str:
    rule = FilterRule("free-plan-only", TableRef("public", "customers"), FILTER_SQL)
    return apply_row_filters(analyze(sql, catalog), catalog, [rule], {}).executed_sql


def _explain(url: str, sql: str) -> str:
    psycopg = require("psycopg", "postgres")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET search_path = pg_catalog, public, pg_temp")
        conn.execute("SET enable_seqscan = off")   # the corpus table is small: ask whether an index CAN serve it
        return "\n".join(r for (r,) in conn.execute(f"EXPLAIN {sql}").fetchall())


def test_a_point_lookup_uses_the_index_through_the_fence(world):
    url, _, _ = world
    catalog = Catalog.from_postgres(url)
    [(k,)] = _execute(url, f"SELECT min(id) FROM customers WHERE {FILTER_SQL} AND id > 20")
    executed = _executed(url, catalog, f"SELECT id, plan FROM customers WHERE id = {k}")
    assert f"Index Cond: (id = {k})" in _explain(url, executed), _explain(url, executed)
    # Fence only (what an offline catalog, which knows nothing leakproof, gets): no index condition.
    offline = dataclasses.replace(catalog, leakproof_operators=None)
    fenced = _executed(url, offline, f"SELECT id, plan FROM customers WHERE id = {k}")
    assert "Index Cond" not in _explain(url, fenced)
    assert _execute(url, executed, pinned=True) == _execute(url, fenced, pinned=True) == [(k, "free")]


def test_nothing_is_pushed_when_leakproofness_is_unknown_or_revoked(new_database):
    url = new_database()
    _execute(url, "CREATE TABLE t (id int PRIMARY KEY, plan text)")
    ddl = Catalog.from_ddl_text("CREATE TABLE t (id int PRIMARY KEY, plan text)")
    assert "_lg_rf1.id = 5" not in _executed(url, ddl, "SELECT id FROM t WHERE id = 5")
    rule = FilterRule("free-plan-only", TableRef("public", "t"), FILTER_SQL)
    live = Catalog.from_postgres(url)
    assert "(_lg_rf1.id = 5)" in apply_row_filters(analyze("SELECT id FROM t WHERE id = 5", live), live, [rule],
                                                   {}).executed_sql
    before = schema_version(url)
    # A superuser makes int4eq NOT LEAKPROOF (in this database's catalog only): the schema version changes,
    # so a cached catalog is reloaded, and the reloaded one no longer pushes the comparison.
    _execute(url, "ALTER FUNCTION pg_catalog.int4eq(int, int) NOT LEAKPROOF")
    assert schema_version(url) != before
    revoked = Catalog.from_postgres(url)
    assert "_lg_rf1.id = 5" not in apply_row_filters(analyze("SELECT id FROM t WHERE id = 5", revoked), revoked,
                                                     [rule], {}).executed_sql


def test_only_a_superuser_can_mark_a_function_leakproof(world):
    url, _, _ = world
    psycopg = require("psycopg", "postgres")
    role = f"lg_attacker_{uuid.uuid4().hex[:8]}"
    _execute(url, f"CREATE ROLE {role} NOLOGIN; GRANT CREATE ON SCHEMA public TO {role}")
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"SET ROLE {role}")
            conn.execute("CREATE FUNCTION public.lg_mine(a int, b int) RETURNS boolean LANGUAGE sql "
                         "AS 'SELECT a = b'")   # a plain function: allowed
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("CREATE FUNCTION public.lg_sneaky(a int, b int) RETURNS boolean LANGUAGE sql "
                             "LEAKPROOF AS 'SELECT a = b'")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("ALTER FUNCTION public.lg_mine(int, int) LEAKPROOF")
    finally:
        _execute(url, f"DROP FUNCTION IF EXISTS public.lg_mine(int, int); REVOKE CREATE ON SCHEMA public FROM {role}; "
                      f"DROP ROLE {role}")


HAND_WRITTEN = [
    "SELECT o.id, o.amount FROM orders o WHERE o.customer_id = 4 AND o.id > 10",
    "SELECT c.id, o.id FROM customers c JOIN orders o ON o.customer_id = c.id WHERE c.id IN (1, 2, 4, 5) AND o.id <> 3",
    "SELECT c.id, o.id FROM customers c LEFT JOIN orders o ON o.customer_id = c.id WHERE o.id IS NULL",
    "SELECT c.id, o.id FROM customers c LEFT JOIN orders o ON o.customer_id = c.id WHERE c.id < 30 AND o.id IS NULL",
    "SELECT c.id, o.id FROM orders o RIGHT JOIN customers c ON o.customer_id = c.id WHERE o.id IS NULL OR o.id < 5",
    "SELECT c.id, o.id FROM orders o FULL JOIN customers c ON o.customer_id = c.id WHERE c.id > 3 AND o.id < 40",
    "SELECT count(*) FROM patients WHERE id BETWEEN 3 AND 30 AND id IS NOT NULL",
    "SELECT id FROM customers WHERE plan = 'pro' OR plan = 'free'",
    "SELECT id FROM customers WHERE NOT (id < 10) AND plan <> 'basic'",
    "SELECT id FROM customers WHERE created_at > '2023-05-01' AND id >= -2147483648",
    "SELECT p.id FROM patients p WHERE p.id = 7 UNION ALL SELECT c.id FROM customers c WHERE c.id = 7",
    "SELECT id FROM customers WHERE id IN (SELECT customer_id FROM orders WHERE id > 5) AND id < 40",
    "SELECT c.id FROM customers c, orders o WHERE o.customer_id = c.id AND c.id < 20 AND o.id > 2",
    "SELECT id FROM (SELECT id FROM customers WHERE id > 5) s WHERE id < 30",
    "SELECT c.id, (SELECT count(*) FROM orders o WHERE o.customer_id = c.id AND o.id > 4) FROM customers c WHERE c.id < 45",
    "SELECT id FROM customers WHERE id = 4000000000 OR id = 9.5 OR id = NULL OR plan IN ('pro', NULL)",
]


def test_pushed_conjuncts_never_change_a_result(world):
    """Generated statements over the filtered tables: pushdown on and off give the same rows and errors."""
    url, _, _ = world
    psycopg = require("psycopg", "postgres")
    text = (CORPUS / "policy.yaml").read_text().replace(
        "svc-training: {kind: service, groups: [training-jobs]}",
        "svc-training: {kind: service, groups: [training-jobs], attributes: {plan: enterprise}}")
    policy = parse_policy(text + """
row_filters:
  - {name: customers-plan, table: public.customers, groups: [training-jobs], predicate: "plan <> :identity.plan"}
  - {name: even-orders, table: public.orders, groups: [training-jobs], predicate: "id % 2 = 0"}
  - {name: patients-cohort, table: public.patients, purposes: [ai_training], predicate: "id % 3 <> 0"}
""")
    live = Catalog.from_postgres(url)
    offline = dataclasses.replace(live, leakproof_operators=None)
    me = Identity("svc-training")
    from lineage_guard.sources.pg_params import inline_parameters

    def run(conn, decision):
        analysis = decision.analysis
        sql = inline_parameters(analysis.executed_sql, list(analysis.row_filter_values)) \
            if analysis.row_filter_values else analysis.executed_sql
        try:
            with conn.transaction(force_rollback=True):
                conn.execute("SET LOCAL statement_timeout = '5s'")
                return sorted(map(repr, conn.execute(sql).fetchall())), None
        except psycopg.Error as err:
            return None, err.sqlstate

    pushed = differ = 0
    with psycopg.connect(url) as conn:
        for sql in Generator(20261203).statements(500) + HAND_WRITTEN + [
                f"SELECT id, plan FROM customers WHERE id {op} {k}" for op in ("=", "<", ">=", "<>") for k in (5, 40)]:
            with_push = plan(sql, catalog=live, policy=policy, identity=me, purpose="ai_training")
            if with_push.action != "allow":
                continue
            fence_only = plan(sql, catalog=offline, policy=policy, identity=me, purpose="ai_training")
            if with_push.analysis.executed_sql == fence_only.analysis.executed_sql:
                continue
            pushed += 1
            differ += run(conn, with_push) != run(conn, fence_only)
    print(f"\n{pushed} statements had conjuncts pushed; {differ} results differ")
    assert pushed >= 20, f"only {pushed} statements had a conjunct pushed: the check would prove little"
    assert differ == 0
