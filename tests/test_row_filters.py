"""Row filters on the real database: which rows an identity reads, for every construct, and the attacks.

Each attack is run three ways: unfiltered (it reaches the rows outside the filter: the attack has a
target), through a naive rewrite that appends the predicate to the statement's text as a WHERE
conjunct (the baseline: it leaks), and through the planner (it does not: the result holds only
rows the filter allows, or the plan is denied).
"""

from __future__ import annotations

import re

import psycopg
import pytest

from lineage_guard.errors import AccessDenied
from lineage_guard.identity import Identity
from lineage_guard.planner import plan
from lineage_guard.policy import parse_policy
from lineage_guard.session import GovernedSession
from lineage_guard.sources.pg_params import inline_parameters
from lineage_guard.sql.catalog import Catalog

SCHEMA = """
CREATE TABLE accounts (id int PRIMARY KEY, tenant text NOT NULL, consent boolean, ssn text, score int);
INSERT INTO accounts VALUES (1, 'acme', true, '901-00-0001', 10), (2, 'acme', false, '901-00-0002', 20),
  (3, 'acme', true, '901-00-0003', 30), (4, 'globex', true, '901-00-0004', 40),
  (5, 'globex', false, '901-00-0005', 50), (6, 'initech', true, '901-00-0006', 60);
CREATE TABLE events (id int PRIMARY KEY, account_id int, kind text);
INSERT INTO events SELECT g, 1 + (g % 6), 'k' || (g % 3) FROM generate_series(1, 12) g;
CREATE TABLE measures (id int, tenant text, v int);
CREATE TABLE measures_2025 (extra int) INHERITS (measures);
INSERT INTO measures VALUES (1, 'acme', 1), (2, 'globex', 2);
INSERT INTO measures_2025 VALUES (3, 'acme', 3, 0), (4, 'globex', 4, 0);
CREATE TABLE ledger (id int, tenant text, amount int) PARTITION BY LIST (tenant);
CREATE TABLE ledger_acme PARTITION OF ledger FOR VALUES IN ('acme');
CREATE TABLE ledger_other PARTITION OF ledger FOR VALUES IN ('globex', 'initech');
INSERT INTO ledger VALUES (1, 'acme', 100), (2, 'globex', 200), (3, 'initech', 300);
CREATE TABLE docs (id int, title text);
CREATE TABLE docs_secret (level int) INHERITS (docs);
INSERT INTO docs VALUES (1, 'public');
INSERT INTO docs_secret VALUES (2, 'low', 1), (3, 'top secret', 3);
CREATE VIEW v_accounts AS SELECT id, tenant, score FROM accounts;
CREATE VIEW v_nested AS SELECT id, score FROM v_accounts WHERE score > 0;
CREATE MATERIALIZED VIEW mv_accounts AS SELECT id, tenant FROM accounts;
CREATE FUNCTION all_accounts() RETURNS SETOF accounts LANGUAGE sql STABLE AS $$ SELECT * FROM accounts $$;
CREATE FUNCTION account_total() RETURNS bigint LANGUAGE sql STABLE AS $$ SELECT sum(score) FROM accounts $$;
CREATE VIEW v_via_function AS SELECT id, score FROM all_accounts();
"""

POLICY = """
version: 1
identities:
  ana: {kind: human, groups: [analysts], attributes: {tenant: acme}}
  rex: {kind: service, groups: [researchers], attributes: {tenant: acme}}
  bob: {kind: human, groups: [admins]}
groups: [analysts, researchers, admins]
purposes: [reporting, research]
classifications:
  public.accounts.ssn: national_id
  public.accounts.consent: consent_status
rules:
  - {groups: [admins], action: clear}
  - {classifications: [national_id], action: mask, mask: {method: redact}}
row_filters:
  - {name: own-tenant, table: public.accounts, groups: [analysts, researchers], predicate: "tenant = :identity.tenant"}
  - {name: research-consent, table: public.accounts, groups: [researchers], purposes: [research],
     predicate: "consent IS TRUE"}
  - {name: measures-tenant, table: public.measures, groups: [analysts], predicate: "tenant = :identity.tenant"}
  - {name: ledger-tenant, table: public.ledger, groups: [analysts], predicate: "tenant = :identity.tenant"}
  - {name: docs-low, table: public.docs_secret, groups: [analysts], predicate: "level < 2"}
"""

ANA = Identity("ana")
# What each filtered table holds that ana (tenant acme) may not read: a leak is one of these in a result.
OUTSIDE = {"accounts": {4, 5, 6}, "measures": {2, 4}, "ledger": {2, 3}, "docs_secret": {3}}


@pytest.fixture(scope="module")
def db(new_database):
    url = new_database()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SCHEMA)
    return url


@pytest.fixture(scope="module")
def catalog(db):
    return Catalog.from_postgres(db)


@pytest.fixture(scope="module")
def policy():
    return parse_policy(POLICY)


def _rows(url: str, sql: str, params=()) -> list[tuple]:
    with psycopg.connect(url) as conn:
        conn.execute("SET TRANSACTION READ ONLY")
        return conn.execute(inline_parameters(sql, list(params)) if params else sql).fetchall()


def _ids(rows) -> set:
    return {r[0] for r in rows}


def governed(db, catalog, policy, sql: str, who=ANA, purpose="reporting"):
    """The planner's way: plan, then run exactly the executed SQL with its parameters (the session's path)."""
    decision = plan(sql, catalog=catalog, policy=policy, identity=who, purpose=purpose)
    if decision.action != "allow":
        return decision, None
    analysis = decision.analysis
    return decision, _rows(db, analysis.executed_sql, analysis.row_filter_values)


_KEYWORDS = {"where", "join", "on", "order", "group", "union", "limit", "left", "inner", "cross", "natural"}


def naive(sql: str, table: str, column: str = "tenant", value: str = "'acme'") -> str:
    """The baseline: a string rewrite. Find the first `FROM/JOIN <table> [alias]`, AND `alias.column = value`
    to the statement's last WHERE (or add one); a statement that does not name the table is left as it is."""
    m = re.search(rf"\b(?:FROM|JOIN)\s+(?:public\.)?{table}\b(?:\s+(?:AS\s+)?(\w+))?", sql, re.IGNORECASE)
    if m is None:
        return sql
    alias = m.group(1) if m.group(1) and m.group(1).lower() not in _KEYWORDS else table
    predicate = f"{alias}.{column} = {value}"
    if " WHERE " in sql:
        head, _, tail = sql.rpartition(" WHERE ")
        return f"{head} WHERE ({predicate}) AND {tail}"
    return f"{sql} WHERE {predicate}"


# -- the same identity, with and without a filter --------------------------------------------------

def test_same_identity_reads_different_rows_with_and_without_a_filter(db, catalog, policy):
    sql = "SELECT id, tenant FROM accounts ORDER BY id"
    unfiltered = parse_policy(POLICY.split("row_filters:")[0])
    _, without = governed(db, catalog, unfiltered, sql)
    decision, with_filter = governed(db, catalog, policy, sql)
    assert _ids(without) == {1, 2, 3, 4, 5, 6}
    assert _ids(with_filter) == {1, 2, 3}
    applied = decision.to_json()["row_filters"]
    assert applied == [{"table": "public.accounts", "filters": ["own-tenant"], "combine": "all",
                        "digest": applied[0]["digest"], "attributes": ["tenant"],
                        "columns": ["public.accounts.tenant"], "references": 1}]
    assert "acme" not in decision.analysis.executed_sql  # the value is a bound parameter, never in the text


def test_filters_combine_all_by_default_and_any_when_the_policy_says(db, catalog, policy):
    sql = "SELECT id FROM accounts ORDER BY id"
    _, research = governed(db, catalog, policy, sql, Identity("rex"), "research")
    assert _ids(research) == {1, 3}  # own tenant AND consented
    _, reporting = governed(db, catalog, policy, sql, Identity("rex"), "reporting")
    assert _ids(reporting) == {1, 2, 3}  # the consent filter is for research only
    any_of = parse_policy(POLICY + "row_filters_combine: any\n")
    _, either = governed(db, catalog, any_of, sql, Identity("rex"), "research")
    assert _ids(either) == {1, 2, 3, 4, 6}  # own tenant OR consented


def test_identity_without_a_matching_filter_reads_every_row(db, catalog, policy):
    _, rows = governed(db, catalog, policy, "SELECT id FROM accounts", Identity("bob"))
    assert _ids(rows) == {1, 2, 3, 4, 5, 6}


def test_a_sensitive_filter_column_is_not_the_callers_use(db, catalog, policy):
    # consent is classified: a caller's `WHERE consent IS TRUE` would be judged; the policy's own is not.
    decision, rows = governed(db, catalog, policy, "SELECT id, ssn FROM accounts ORDER BY id", Identity("rex"),
                              "research")
    assert decision.action == "allow" and _ids(rows) == {1, 3}
    assert [c.masked for c in decision.columns] == [False, True]
    caller, _ = governed(db, catalog, policy, "SELECT id FROM accounts WHERE consent IS TRUE", Identity("rex"),
                         "research")
    assert caller.action == "deny"


# -- every construct ----------------------------------------------------------------------------

CONSTRUCTS = {
    "join": ("SELECT a.id, e.id FROM events e JOIN accounts a ON a.id = e.account_id", {1, 2, 3}),
    "left join keeps the filter inside": (("SELECT e.account_id, a.id FROM events e LEFT JOIN accounts a "
                                          "ON a.id = e.account_id WHERE a.id IS NOT NULL"), {1, 2, 3}),
    "subquery": ("SELECT s.id FROM (SELECT id FROM accounts) s", {1, 2, 3}),
    "cte": ("WITH x AS (SELECT id FROM accounts) SELECT id FROM x", {1, 2, 3}),
    "set operation": ("SELECT id FROM accounts WHERE score > 25 UNION SELECT id FROM accounts WHERE score < 15",
                      {1, 3}),
    "lateral": ("SELECT l.id FROM events e, LATERAL (SELECT a.id FROM accounts a WHERE a.id = e.account_id) l",
                {1, 2, 3}),
    "scalar subquery": ("SELECT (SELECT max(a.id) FROM accounts a) FROM events e", {3}),
    "view": ("SELECT id FROM v_accounts", {1, 2, 3}),
    "view of a view": ("SELECT id FROM v_nested", {1, 2, 3}),
    "recursive cte": (("WITH RECURSIVE r(id) AS (SELECT min(id) FROM accounts UNION ALL "
                      "SELECT a.id FROM accounts a JOIN r ON a.id = r.id + 1) SELECT id FROM r"), {1, 2, 3}),
    "exists": ("SELECT e.account_id FROM events e WHERE EXISTS (SELECT 1 FROM accounts a WHERE a.id = e.account_id)",
               {1, 2, 3}),
    "in subquery": ("SELECT e.account_id FROM events e WHERE e.account_id IN (SELECT a.id FROM accounts a)",
                    {1, 2, 3}),
    "cte named like the table": ("WITH accounts AS (SELECT * FROM public.accounts) SELECT id FROM accounts",
                                 {1, 2, 3}),
    "parenthesized join": ("SELECT a.id FROM (accounts a JOIN events e ON e.account_id = a.id)", {1, 2, 3}),
    "aggregate": ("SELECT count(*) FROM accounts", {3}),
    "partitioned parent": ("SELECT id FROM ledger", {1}),
    "inheritance parent": ("SELECT id FROM measures", {1, 3}),
}


@pytest.mark.parametrize("name", sorted(CONSTRUCTS))
def test_every_reference_is_filtered(db, catalog, policy, name):
    sql, expected = CONSTRUCTS[name]
    unfiltered = _ids(_rows(db, sql))
    assert unfiltered != expected, "the construct must reach rows outside the filter unfiltered"
    decision, rows = governed(db, catalog, policy, sql)
    assert decision.action == "allow", decision.reasons
    assert _ids(rows) == expected


# -- attacks ------------------------------------------------------------------------------------

# (name, SQL, the table whose filtered-out rows it tries to reach, the first column holds its ids)
ATTACKS = [
    ("alias and a second reference", "SELECT b.id FROM accounts a, accounts b WHERE a.id = 1", "accounts"),
    ("self-join", "SELECT b.id FROM accounts a JOIN accounts b ON b.id <> a.id WHERE a.id = 1", "accounts"),
    ("second branch of a union", "SELECT id FROM accounts WHERE id = 1 UNION SELECT id FROM accounts", "accounts"),
    ("subquery in FROM", "SELECT x.m FROM accounts a, (SELECT max(id) AS m FROM accounts) x WHERE a.id = 1",
     "accounts"),
    ("scalar subquery", "SELECT (SELECT max(id) FROM accounts) FROM accounts WHERE id = 1", "accounts"),
    ("recursive CTE", ("WITH RECURSIVE r(id) AS (SELECT a.id FROM accounts a WHERE a.id = 1 UNION ALL "
                      "SELECT b.id FROM accounts b JOIN r ON b.id = r.id + 1) SELECT id FROM r"), "accounts"),
    ("view", "SELECT id FROM v_accounts WHERE id > 0", "accounts"),
    ("ONLY parent of an inherited table", "SELECT id FROM ONLY measures WHERE id > 0", "measures"),
    ("child of a filtered parent read directly", "SELECT id FROM measures_2025 WHERE id > 0", "measures"),
    ("partition of a filtered table read directly", "SELECT id FROM ledger_other WHERE id > 0", "ledger"),
]


@pytest.mark.parametrize("name, sql, table", ATTACKS, ids=[a[0] for a in ATTACKS])
def test_attack_leaks_on_a_naive_rewrite_not_on_ours(db, catalog, policy, name, sql, table):
    assert _ids(_rows(db, sql)) & OUTSIDE[table], "unfiltered, the attack reaches rows outside the filter"
    baseline = naive(sql, table)
    assert _ids(_rows(db, baseline)) & OUTSIDE[table], f"the naive rewrite {baseline!r} leaks"
    decision, rows = governed(db, catalog, policy, sql)
    assert decision.action == "allow", decision.reasons
    assert not (_ids(rows) & OUTSIDE[table]), decision.analysis.executed_sql


# A rewrite keyed on the filtered table's name finds no reference to it in these: it leaves them as they
# are, and they read the rows outside the filter (ids 4-6 of accounts; the sum of every score; docs 3).
DENIED = [
    ("set-returning function reading the table", "SELECT id FROM all_accounts()", "accounts",
     "function all_accounts", lambda rows: _ids(rows) & {4, 5, 6}),
    ("scalar function reading the table", "SELECT account_total()", "accounts", "function account_total",
     lambda rows: rows[0][0] != 60),
    ("view over a function reading the table", "SELECT id FROM v_via_function", "accounts",
     "function all_accounts", lambda rows: _ids(rows) & {4, 5, 6}),
    ("materialized view of the table", "SELECT id FROM mv_accounts", "accounts", "materialized view",
     lambda rows: _ids(rows) & {4, 5, 6}),
    ("parent of a filtered child without ONLY", "SELECT id, title FROM docs", "docs_secret", "without ONLY",
     lambda rows: 3 in _ids(rows)),
]


@pytest.mark.parametrize("name, sql, table, reason, leaks", DENIED, ids=[d[0] for d in DENIED])
def test_unrewritable_reads_are_denied(db, catalog, policy, name, sql, table, reason, leaks):
    assert not re.search(rf"\b{table}\b", sql)  # so a name-keyed rewrite leaves the statement unchanged...
    assert leaks(_rows(db, sql))                # ...and it leaks
    decision, _ = governed(db, catalog, policy, sql)
    assert decision.action == "deny"
    assert any(reason in r for r in decision.reasons), decision.reasons


def test_only_on_the_parent_of_a_filtered_child_reads_just_the_parent(db, catalog, policy):
    decision, rows = governed(db, catalog, policy, "SELECT id FROM ONLY docs")
    assert decision.action == "allow" and _ids(rows) == {1}
    decision, rows = governed(db, catalog, policy, "SELECT id FROM docs_secret")
    assert _ids(rows) == {2}


def test_a_missing_attribute_is_a_load_error_or_a_deny(db, catalog):
    from lineage_guard.errors import PolicyError

    with pytest.raises(PolicyError, match=r"<policy>:\d+: row_filters.0 \(own-tenant\).predicate: identity 'ana' "
                                          r"matches this filter but has no attribute\(s\) tenant"):
        parse_policy(POLICY.replace("attributes: {tenant: acme}}\n  rex", "attributes: {}}\n  rex"))
    open_policy = parse_policy(POLICY + "require_declared_identities: false\n".replace("groups: [analysts, researchers]",
                                                                                       "identities: ['*']"))
    eve = open_policy.resolve_identity(Identity("eve"))
    lenient = open_policy.model_copy(update={"row_filters": [open_policy.row_filters[0].model_copy(
        update={"groups": ["*"]})]})
    decision = plan("SELECT id FROM accounts", catalog=catalog, policy=lenient, identity=eve, purpose="reporting")
    assert decision.action == "deny" and any("attribute 'tenant'" in r for r in decision.reasons)


# -- the governed session: parameters bound, the caller's parameters first -------------------------

def test_session_reads_filtered_rows_with_caller_parameters(db, policy, lg_home):
    with GovernedSession(db, policy, ANA, "reporting") as s:
        table = s.read_arrow("SELECT id, ssn FROM accounts WHERE score > $1 ORDER BY id", [15])
    assert table.column("id").to_pylist() == [2, 3]


def test_session_binding_check_accepts_a_sensitive_filter_column(db, policy, lg_home):
    with GovernedSession(db, policy, Identity("rex"), "research") as s:
        table = s.read_arrow("SELECT id, ssn FROM accounts ORDER BY id")
    assert table.column("id").to_pylist() == [1, 3]


# -- writes ------------------------------------------------------------------------------------

def test_update_and_delete_touch_only_filtered_rows(new_database, lg_home):
    url = new_database()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SCHEMA)
    writer = parse_policy(POLICY + "writes: {allowed_groups: [analysts]}\n")
    with GovernedSession(url, writer, ANA, "reporting") as s:
        updated = s.execute("UPDATE accounts SET score = 0 WHERE score > 15")
        deleted = s.execute("DELETE FROM accounts AS a WHERE a.id > 2")
        with pytest.raises(AccessDenied, match="ON CONFLICT DO UPDATE"):
            s.execute("INSERT INTO accounts (id, tenant) VALUES (4, 'acme') ON CONFLICT (id) DO UPDATE SET score = 1")
    assert updated.rows_affected == 2 and deleted.rows_affected == 1  # ids 2, 3 updated; id 3 deleted; globex rows untouched
    assert _rows(url, "SELECT id, score FROM accounts ORDER BY id") == [
        (1, 10), (2, 0), (4, 40), (5, 50), (6, 60)]


# -- the record: plan --json, ledger, OpenLineage --------------------------------------------------

def test_ledger_records_filter_names_digest_and_attribute_names_not_values(db, policy, tmp_path, lg_home):
    import json

    from lineage_guard.audit import Ledger

    ledger = Ledger.open(str(tmp_path / "ledger.sqlite"))
    with GovernedSession(db, policy, ANA, "reporting", ledger=ledger) as s:
        s.read_arrow("SELECT a.id, e.kind FROM accounts a JOIN events e ON e.account_id = a.id")
    entries = list(ledger.entries())
    body = entries[-1]["body"]
    assert body["outcome"] == "success"
    [recorded] = body["row_filters"]
    assert recorded["table"] == "public.accounts" and recorded["filters"] == ["own-tenant"]
    assert recorded["attributes"] == ["tenant"] and recorded["digest"].startswith("sha256:")
    assert "acme" not in json.dumps(entries)  # the bound value is in no entry
    assert ledger.verify().ok


def test_openlineage_inputs_carry_the_filter(db, catalog, policy):
    from lineage_check import assert_valid_events, check_events, sample_run

    from lineage_guard.lineage import build_event

    decision = plan("SELECT a.id, a.ssn FROM accounts a", catalog=catalog, policy=policy, identity=Identity("rex"),
                    purpose="research")
    run = sample_run(decision=decision, sql=decision.statement, input_schemas={}, key_ids={}, output_schema=[])
    events = [build_event(run, "START"), build_event(run, "COMPLETE")]
    assert assert_valid_events(events, forbid=["acme"]).endswith("0 problems")
    [accounts] = [d for d in events[1]["inputs"] if d["name"].endswith("public.accounts")]
    facet = accounts["inputFacets"]["lineageGuard_rowFilter"]
    assert facet["filters"] == ["own-tenant", "research-consent"] and facet["combine"] == "all"
    assert facet["attributes"] == ["tenant"] and facet["columns"] == ["public.accounts.tenant",
                                                                       "public.accounts.consent"]
    lineage = events[1]["outputs"][0]["facets"]["columnLineage"]["dataset"]
    filters = {i["field"] for i in lineage if any(t["subtype"] == "FILTER" for t in i["transformations"])}
    assert filters == {"tenant", "consent"}
    facet["predicate"] = "tenant = 'acme'"  # a field the facet's schema does not allow: the checker sees it
    code, out = check_events(events)
    assert code == 1 and "lineageGuard_rowFilter" in out


# -- validation at load ------------------------------------------------------------------------------

BASE = """version: 1
identities: {ana: {kind: human, groups: [analysts], attributes: {tenant: acme}}}
groups: [analysts]
purposes: [reporting]
row_filters:
  - name: f
    table: public.accounts
    predicate: "{predicate}"
"""


@pytest.mark.parametrize("predicate, message", [
    ("id IN (SELECT id FROM other)", "may not contain a subquery or name another table"),
    ("pg_read_file('x') = ''", "function pg_read_file is not on the allow-list"),
    ("tenant = :tenant", "unknown placeholder"),
    ("other.tenant = 'a'", "is qualified"),
    ("tenant = 'a'; DROP TABLE accounts", "one PostgreSQL boolean expression"),
    ("count(*) > 1", "may not aggregate"),
])
def test_bad_predicates_are_load_errors_with_file_and_line(predicate, message):
    from lineage_guard.errors import PolicyError

    with pytest.raises(PolicyError, match=r"<policy>:\d+: row_filters\.0\.predicate: ") as err:
        parse_policy(BASE.replace("{predicate}", predicate))
    assert message in str(err.value)


def test_catalog_check_names_missing_tables_and_columns(tmp_path):
    from lineage_guard.errors import PolicyError
    from lineage_guard.policy.validate import check_against_catalog

    path = tmp_path / "p.yaml"
    path.write_text(BASE.replace("{predicate}", "tenant_id = :identity.tenant")
                    + "  - {name: g, table: public.nowhere, predicate: 'true'}\n")
    policy = parse_policy(path.read_text(), str(path))
    ddl = Catalog.from_ddl_text("CREATE TABLE accounts (id int, tenant text)")
    with pytest.raises(PolicyError) as err:
        check_against_catalog(policy, path, ddl, "the schema file")
    text = str(err.value)
    assert f"{path}:8: row_filters.0 (f).predicate: public.accounts has no column 'tenant_id' (did you mean " \
           "'tenant'?)" in text
    assert f"{path}:9: row_filters.1 (g).table: there is no table public.nowhere in the schema file" in text


def test_writes_the_filter_cannot_scope_are_denied(db, catalog, policy):
    writer = parse_policy(POLICY + "writes: {allowed_groups: [analysts]}\n")
    for sql, reason in [
        ("UPDATE v_accounts SET score = 0", "through a view"),
        ("MERGE INTO accounts a USING events e ON a.id = e.account_id WHEN MATCHED THEN UPDATE SET score = 0",
         "MERGE into public.accounts"),
        ("UPDATE measures SET v = 0 WHERE id > 0", None),
        ("TRUNCATE accounts", "only SELECT, INSERT, UPDATE and DELETE"),
        ("UPDATE docs SET title = 'x' WHERE id > 0", "without ONLY"),
    ]:
        decision = plan(sql, catalog=catalog, policy=writer, identity=ANA, purpose="reporting")
        if reason is None:
            assert decision.action == "allow" and '"measures".tenant = $1' in decision.analysis.executed_sql
        else:
            assert decision.action == "deny" and any(reason in r for r in decision.reasons), (sql, decision.reasons)


def test_a_filter_naming_a_view_denies_rather_than_reading_it_unfiltered(db, catalog, policy):
    on_view = policy.model_copy(update={"row_filters": [policy.row_filters[0].model_copy(
        update={"table": "public.v_accounts"})]})
    decision = plan("SELECT id FROM v_accounts", catalog=catalog, policy=on_view, identity=ANA, purpose="reporting")
    assert decision.action == "deny" and "which is a view" in decision.reasons[0]
