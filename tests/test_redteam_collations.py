"""Nondeterministic collations: the two leaks round 7 left open (tests/redteam/RESULTS.md, round 7), closed.

Under `CREATE COLLATION ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false)`, `'acme' =
'ACME'` holds. Two rules followed from byte equality and did not hold there:

1. A row filter `tenant = :identity.tenant` on `tenant text COLLATE ci` gave tenant acme the rows of ACME.
   Now the filter compares bytes: a filtered column under a nondeterministic collation is compared
   `COLLATE "C"` where it is an operand of a comparison, and a filter that uses it anywhere else is refused.
2. An equi-join of two tokenized columns under `ci` paired `Cd5` with `cd5`, whose tokens differ: the join
   showed what the tokens hide. Now an equality (JOIN ON / USING / WHERE a = b / IN (subquery)) or
   count(DISTINCT) on a hidden column under a nondeterministic collation is refused, naming it and its
   collation; GROUP BY, DISTINCT, set operations, PARTITION BY and comparisons with constants were
   already refused on a masked column (sensitive uses) and stay so.

Each attack runs twice: directly with psycopg (it must show the hidden rows / the collation's pairing: the
attack is live), then through the governed session. Counts only, never values. Then the differential
(same rows, the hidden tenants' spellings shuffled: the governed result must not change), and the
legitimate reads that must not change: deterministic filters and joins on tokens.
"""

from __future__ import annotations

import pytest
from conftest import require

from lineage_guard import GovernedSession, Identity
from lineage_guard.errors import AccessDenied, ApprovalRequired

psycopg = require("psycopg", "postgres")

TENANTS = ["acme", "ACME", "Acme", "aCmE", "globex", "GLOBEX"]

SCHEMA = """
CREATE EXTENSION IF NOT EXISTS citext;
CREATE COLLATION ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
CREATE DOMAIN tenant_ci AS text COLLATE ci;
CREATE TYPE pair_ci AS (tenant text COLLATE ci, n int);
CREATE TABLE tenants_ci (id int PRIMARY KEY, tenant text COLLATE ci, note text);
CREATE TABLE tenants_dom (id int PRIMARY KEY, tenant tenant_ci, note text);
CREATE TABLE tenants_in (id int PRIMARY KEY, tenant text COLLATE ci, note text);
CREATE TABLE tenants_arr (id int PRIMARY KEY, tenants text[] COLLATE ci, note text);
CREATE TABLE tenants_part (id int, tenant text COLLATE ci, note text) PARTITION BY RANGE (id);
CREATE TABLE tenants_part_lo PARTITION OF tenants_part FOR VALUES FROM (0) TO (1000);
CREATE TABLE tenants_plain (id int PRIMARY KEY, tenant text, note text);
CREATE TABLE tenants_lower (id int PRIMARY KEY, tenant text COLLATE ci);
CREATE TABLE tenants_pair (id int PRIMARY KEY, owner pair_ci);
CREATE TABLE tenants_citext (id int PRIMARY KEY, tenant citext);
CREATE VIEW v_tenants_ci AS SELECT id, tenant, note FROM tenants_ci;
INSERT INTO tenants_ci SELECT g, (ARRAY{tenants})[1 + g % 6], 'n' || g FROM generate_series(1, 48) g;
INSERT INTO tenants_dom SELECT id, tenant, note FROM tenants_ci;
INSERT INTO tenants_in SELECT id, tenant, note FROM tenants_ci;
INSERT INTO tenants_arr SELECT id, ARRAY[tenant], note FROM tenants_ci;
INSERT INTO tenants_part SELECT id, tenant, note FROM tenants_ci;
INSERT INTO tenants_plain SELECT id, tenant, note FROM tenants_ci;
INSERT INTO tenants_lower SELECT id, tenant FROM tenants_ci;
INSERT INTO tenants_pair SELECT id, ROW(tenant, 1)::pair_ci FROM tenants_ci;
INSERT INTO tenants_citext SELECT id, tenant FROM tenants_ci;

CREATE TABLE members (id int PRIMARY KEY, code text COLLATE ci, plan text COLLATE ci);
INSERT INTO members SELECT g, 'Cd' || (g * 37 % 101), CASE WHEN g % 3 = 0 THEN 'pro' ELSE 'free' END
  FROM generate_series(1, 40) g;
INSERT INTO members SELECT 100 + g, 'CD' || (g * 37 % 101), 'free' FROM generate_series(1, 10) g;
CREATE TABLE contacts (id int PRIMARY KEY, code text COLLATE ci);
INSERT INTO contacts SELECT g, lower('Cd' || (g * 37 % 101)) FROM generate_series(1, 40) g;
-- citext: case-insensitive equality by type, whatever the collation
CREATE TABLE badges (id int PRIMARY KEY, code citext);
CREATE TABLE passes (id int PRIMARY KEY, code citext);
INSERT INTO badges SELECT id, code FROM members;
INSERT INTO passes SELECT id, code FROM contacts;
CREATE TABLE people (id int PRIMARY KEY, email text);
CREATE TABLE orders (id int PRIMARY KEY, email text);
INSERT INTO people SELECT g, 'u' || g || '@x.test' FROM generate_series(1, 30) g;
INSERT INTO orders SELECT g, 'u' || (g % 10 + 1) || '@x.test' FROM generate_series(1, 30) g;
""".format(tenants="['" + "', '".join(TENANTS) + "']")

POLICY = """
version: 1
identities:
  ana: {kind: human, groups: [analysts], attributes: {tenant: acme}}
groups: [analysts]
purposes: [reporting]
detection: {enabled: false}
classifications:
  public.members.code: case_code
  public.contacts.code: case_code
  public.badges.code: case_code
  public.passes.code: case_code
  public.people.email: email
  public.orders.email: email
rules:
  - {classifications: [case_code, email], action: mask, mask: {method: tokenize}}
row_filters:
  - {name: ci-tenant, table: public.tenants_ci, groups: [analysts], predicate: "tenant = :identity.tenant"}
  - {name: dom-tenant, table: public.tenants_dom, groups: [analysts], predicate: "tenant = :identity.tenant"}
  - {name: in-tenant, table: public.tenants_in, groups: [analysts], predicate: "tenant IN (:identity.tenant, 'nobody')"}
  - {name: arr-tenant, table: public.tenants_arr, groups: [analysts], predicate: "tenants = ARRAY[:identity.tenant]"}
  - {name: part-tenant, table: public.tenants_part, groups: [analysts], predicate: "tenant = :identity.tenant"}
  - {name: plain-tenant, table: public.tenants_plain, groups: [analysts], predicate: "tenant = :identity.tenant"}
  - {name: lower-tenant, table: public.tenants_lower, groups: [analysts], predicate: "lower(tenant) = :identity.tenant"}
  - {name: pair-tenant, table: public.tenants_pair, groups: [analysts], predicate: "owner = ROW('acme', 1)"}
  - {name: citext-tenant, table: public.tenants_citext, groups: [analysts], predicate: "tenant = :identity.tenant"}
"""

ANA = Identity("ana")
PURPOSE = "reporting"


def _direct(url: str, sql: str) -> list[tuple]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(sql)
        return cur.fetchall() if cur.description else []


def _governed(session, sql: str) -> list[tuple] | None:
    """The rows the governed session returns, or None when it refuses the statement."""
    try:
        table = session.read_arrow(sql)
    except (AccessDenied, ApprovalRequired):
        return None
    return list(zip(*(table.column(c).to_pylist() for c in table.column_names), strict=True))


def _load(new_database, tmp_path_factory, schema: str = SCHEMA):
    url = new_database()
    _direct(url, schema)
    policy = tmp_path_factory.mktemp("redteam-collations") / "policy.yaml"
    policy.write_text(POLICY)
    return url, policy


@pytest.fixture(scope="module")
def world(new_database, tmp_path_factory):
    return _load(new_database, tmp_path_factory)


@pytest.fixture(scope="module")
def session(world):
    url, policy = world
    with GovernedSession(url, policy, ANA, PURPOSE) as s:
        yield s


def _hidden(url: str, table: str = "tenants_ci") -> set[int]:
    """The ids whose tenant is not, byte for byte, the identity's."""
    return {i for (i,) in _direct(url, f"SELECT id FROM {table} WHERE tenant COLLATE \"C\" <> 'acme'")}


# --- 1. row filters compare bytes ------------------------------------------------------------------------------

# (what the attacker runs through the guard, what the policy's filter would run as written, the hidden ids' table)
FILTER_ATTACKS = {
    "column under ci": ("SELECT id, tenant FROM tenants_ci", "SELECT id FROM tenants_ci WHERE tenant = 'acme'"),
    "domain over text COLLATE ci": ("SELECT id, tenant FROM tenants_dom",
                                    "SELECT id FROM tenants_dom WHERE tenant = 'acme'"),
    "IN list filter": ("SELECT id, tenant FROM tenants_in",
                       "SELECT id FROM tenants_in WHERE tenant IN ('acme', 'nobody')"),
    "array of text COLLATE ci": ("SELECT id, note FROM tenants_arr",
                                 "SELECT id FROM tenants_arr WHERE tenants = ARRAY['acme']"),
    "partition of a filtered parent": ("SELECT id, tenant FROM tenants_part_lo",
                                       "SELECT id FROM tenants_part_lo WHERE tenant = 'acme'"),
    "view over the table": ("SELECT id, tenant FROM v_tenants_ci", "SELECT id FROM tenants_ci WHERE tenant = 'acme'"),
    # The caller's `tenant = 'ACME'` is leakproof and pushed into the fence next to the filter (under ci).
    "pushed term in the other spelling": ("SELECT id, tenant FROM tenants_ci WHERE tenant = 'ACME'",
                                          "SELECT id FROM tenants_ci WHERE tenant = 'acme' AND tenant = 'ACME'"),
    "pushed IN list of spellings": ("SELECT id FROM tenants_ci WHERE tenant IN ('ACME', 'Acme') AND id > 0",
                                    "SELECT id FROM tenants_ci WHERE tenant = 'acme' AND tenant IN ('ACME', 'Acme')"),
}


@pytest.mark.parametrize("attack", FILTER_ATTACKS)
def test_a_row_filter_under_a_nondeterministic_collation_compares_bytes(attack, world, session):
    url, _ = world
    sql, as_written = FILTER_ATTACKS[attack]
    hidden = _hidden(url)
    live = len({r[0] for r in _direct(url, as_written)} & hidden)
    rows = _governed(session, sql)
    got = {r[0] for r in rows or ()}
    print(f"\n{attack}: {live} hidden rows under the filter as written directly, {len(got & hidden)} through "
          f"lineage_guard ({'refused' if rows is None else f'{len(got)} rows'})")
    assert live > 0, f"{attack}: the attack is dead without the guard"
    assert rows is not None, f"{attack}: refused (the filter should be rewritten, not refused)"
    assert not got & hidden, f"{attack}: {len(got & hidden)} hidden rows through lineage_guard"
    # Consistent with the pushdown: exactly the byte-exact filter AND the caller's WHERE, nothing dropped.
    where = as_written.split(" WHERE ", 1)[1].replace("tenant = 'acme'", "tenant COLLATE \"C\" = 'acme'", 1) \
        .replace("tenants = ARRAY['acme']", "tenants COLLATE \"C\" = ARRAY['acme']") \
        .replace("tenant IN ('acme', 'nobody')", "tenant COLLATE \"C\" IN ('acme', 'nobody')")
    table = as_written.split(" FROM ", 1)[1].split(" ", 1)[0]
    expected = {i for (i,) in _direct(url, f"SELECT id FROM {table} WHERE {where}")}
    assert got == expected, f"{attack}: {len(got)} rows, the byte-exact filter gives {len(expected)}"


def test_the_executed_filter_compares_collate_c(world, session):
    executed = session.plan("SELECT id FROM tenants_ci WHERE tenant = 'ACME'").analysis.executed_sql
    assert '_lg_rf1.tenant COLLATE "C" = $1' in executed
    assert "(_lg_rf1.tenant = 'ACME')" in executed   # the pushed term, under the column's collation, only narrows


@pytest.mark.parametrize(("table", "why"), [("tenants_lower", "not a direct operand of a comparison"),
                                            ("tenants_pair", "is not collatable"),
                                            ("tenants_citext", "is not collatable")])
def test_a_filter_that_cannot_be_made_byte_exact_is_refused(table, why, world, session):
    url, _ = world
    live = {"tenants_lower": "SELECT id FROM tenants_lower WHERE lower(tenant) = 'acme'",
            "tenants_pair": "SELECT id FROM tenants_pair WHERE owner = ROW('acme', 1)::pair_ci",
            "tenants_citext": "SELECT id FROM tenants_citext WHERE tenant = 'acme'"}[table]
    assert {i for (i,) in _direct(url, live)} & _hidden(url, "tenants_ci"), "the filter as written leaks"
    decision = session.plan(f"SELECT id FROM {table}")
    assert decision.action == "deny"
    reason = " ".join(decision.reasons)
    assert why in reason and ("public.ci" in reason or "citext" in reason) and "nondeterministic" in reason, reason
    assert _governed(session, f"SELECT id FROM {table}") is None


SHUFFLE = """
UPDATE tenants_ci SET tenant = s.t FROM (
  SELECT id, (ARRAY['ACME', 'Acme', 'aCmE', 'AcMe', 'globex', 'GLOBEX'])[1 + (id * {seed}) % 6] AS t FROM tenants_ci
) s WHERE tenants_ci.id = s.id AND tenants_ci.tenant COLLATE "C" <> 'acme';
"""


def test_differential_shuffled_hidden_spellings_change_nothing(new_database, tmp_path_factory):
    """Same rows, the hidden tenants' spellings reshuffled: what acme reads is the same, byte for byte."""
    seen, live = [], []
    for seed in (5, 7):
        url, policy = _load(new_database, tmp_path_factory)
        _direct(url, SHUFFLE.format(seed=seed))
        live.append(sorted(i for (i,) in _direct(url, "SELECT id FROM tenants_ci WHERE tenant = 'acme'")))
        with GovernedSession(url, policy, ANA, PURPOSE) as s:
            seen.append(sorted(_governed(s, "SELECT id, tenant, note FROM tenants_ci")))
    print(f"\ndifferential: {len(live[0])} vs {len(live[1])} rows under the filter as written, "
          f"{len(seen[0])} vs {len(seen[1])} through lineage_guard")
    assert live[0] != live[1], "the shuffle changes nothing without the guard"
    assert seen[0] == seen[1] and seen[0] and all(t == "acme" for _, t, _ in seen[0])


# --- 2. an equality on a masked column under a nondeterministic collation --------------------------------------

# (attack, its byte-exact twin): live when the two differ, i.e. the collation pairs values whose tokens differ.
EQUALITY_ATTACKS = {
    "JOIN ON": ("SELECT m.id, m.code, c.code AS other FROM members m JOIN contacts c ON m.code = c.code",
                "SELECT m.id, m.code, c.code AS other FROM members m JOIN contacts c ON m.code COLLATE \"C\" = c.code"),
    "JOIN USING": ("SELECT id, code FROM members JOIN contacts USING (id, code)",
                   "SELECT id, m.code FROM members m JOIN contacts c USING (id) WHERE m.code COLLATE \"C\" = c.code"),
    "NATURAL JOIN": ("SELECT id, code FROM members NATURAL JOIN contacts",
                     "SELECT id, m.code FROM members m JOIN contacts c USING (id) WHERE m.code COLLATE \"C\" = c.code"),
    "WHERE a = b": ("SELECT m.id, c.id AS cid FROM members m, contacts c WHERE m.code = c.code",
                    "SELECT m.id, c.id AS cid FROM members m, contacts c WHERE m.code COLLATE \"C\" = c.code"),
    "IN (subquery)": ("SELECT id FROM members WHERE code IN (SELECT code FROM contacts)",
                      "SELECT id FROM members WHERE code COLLATE \"C\" IN (SELECT code FROM contacts)"),
    "self-join": ("SELECT a.id, b.id AS bid FROM members a JOIN members b ON a.code = b.code AND a.id <> b.id",
                  "SELECT a.id, b.id AS bid FROM members a JOIN members b ON a.code COLLATE \"C\" = b.code AND a.id <> b.id"),
    "count(DISTINCT)": ("SELECT count(DISTINCT code) AS n FROM members",
                        "SELECT count(DISTINCT code COLLATE \"C\") AS n FROM members"),
    # Refused before this fix too (a sensitive use of a masked column); they must stay refused.
    "GROUP BY": ("SELECT min(id) AS id, count(*) AS n FROM members GROUP BY code",
                 "SELECT min(id) AS id, count(*) AS n FROM members GROUP BY code COLLATE \"C\""),
    "SELECT DISTINCT": ("SELECT DISTINCT code FROM members", "SELECT DISTINCT code COLLATE \"C\" FROM members"),
    "UNION": ("SELECT code FROM members UNION SELECT code FROM contacts",
              "SELECT code COLLATE \"C\" FROM members UNION SELECT code FROM contacts"),
    "INTERSECT": ("SELECT code FROM members INTERSECT SELECT code FROM contacts",
                  "SELECT code COLLATE \"C\" FROM members INTERSECT SELECT code FROM contacts"),
    "EXCEPT": ("SELECT code FROM contacts EXCEPT SELECT code FROM members",
               "SELECT code COLLATE \"C\" FROM contacts EXCEPT SELECT code FROM members"),
    "PARTITION BY": ("SELECT id, count(*) OVER (PARTITION BY code) AS n FROM members",
                     "SELECT id, count(*) OVER (PARTITION BY code COLLATE \"C\") AS n FROM members"),
    "citext JOIN ON (no collation: the type's =)": (
        "SELECT b.id, p.id AS pid FROM badges b JOIN passes p ON b.code = p.code",
        "SELECT b.id, p.id AS pid FROM badges b JOIN passes p ON b.code::text = p.code::text"),
    "equality with a literal": ("SELECT id FROM members WHERE code = 'cd37'",
                                "SELECT id FROM members WHERE code COLLATE \"C\" = 'cd37'"),
}


@pytest.mark.parametrize("attack", EQUALITY_ATTACKS)
def test_an_equality_on_a_masked_collated_column_is_refused(attack, world, session):
    url, _ = world
    sql, exact = EQUALITY_ATTACKS[attack]
    collated, byte_exact = _direct(url, sql), _direct(url, exact)
    live = sorted(map(repr, collated)) != sorted(map(repr, byte_exact))
    rows = _governed(session, sql)
    print(f"\n{attack}: {len(collated)} rows under ci vs {len(byte_exact)} byte-exact directly, "
          f"{'refused' if rows is None else f'{len(rows)} rows'} through lineage_guard")
    assert live, f"{attack}: the collation pairs nothing the bytes do not: the attack is dead"
    assert rows is None, f"{attack}: ran through lineage_guard"


def test_the_refusal_names_the_column_and_its_collation(session):
    decision = session.plan("SELECT m.id, m.code FROM members m JOIN contacts c ON m.code = c.code")
    assert decision.action == "deny"
    reason = " ".join(decision.reasons)
    assert "public.members.code" in reason and "public.contacts.code" in reason
    assert "nondeterministic collation public.ci" in reason, reason


def test_round7_join_pairs_differ_in_tokens_directly(world):
    """The open round-7 case, measured: every pair the ci join makes has two different byte values."""
    url, _ = world
    pairs = _direct(url, "SELECT m.code, c.code FROM members m JOIN contacts c ON m.code = c.code")
    assert pairs and all(a != b for a, b in pairs)


# --- legitimate reads ------------------------------------------------------------------------------------------

def test_legit_a_deterministic_filter_is_unchanged(world, session):
    url, _ = world
    decision = session.plan("SELECT id, tenant FROM tenants_plain")
    assert decision.action == "allow"
    assert "COLLATE" not in decision.analysis.executed_sql
    rows = _governed(session, "SELECT id, tenant FROM tenants_plain")
    assert sorted(r[0] for r in rows) == sorted(i for (i,) in _direct(url, "SELECT id FROM tenants_plain "
                                                                             "WHERE tenant = 'acme'"))
    assert {r[1] for r in rows} == {"acme"}


def test_legit_joins_and_counts_on_tokens_under_the_default_collation(world, session):
    url, _ = world
    joined = _governed(session, "SELECT p.id, p.email, o.email AS oe FROM people p JOIN orders o ON p.email = o.email")
    assert joined is not None and len(joined) == len(_direct(url, "SELECT 1 FROM people p JOIN orders o "
                                                                  "ON p.email = o.email"))
    assert all(a == b and a.startswith("tok_") for _, a, b in joined)
    assert _governed(session, "SELECT id FROM people WHERE email IN (SELECT email FROM orders)") is not None
    assert _governed(session, "SELECT count(DISTINCT email) AS n FROM orders") is not None  # runs (its count masked)


def test_legit_a_collated_column_that_is_not_masked_still_groups_and_joins(session):
    """plan is under ci but not sensitive: GROUP BY and joins on it are the caller's own business."""
    rows = _governed(session, "SELECT plan, count(*) AS n FROM members GROUP BY plan")
    assert rows is not None and len(rows) == 2
    assert _governed(session, "SELECT a.id FROM members a JOIN members b ON a.plan = b.plan AND a.id = b.id") \
        is not None
    assert _governed(session, "SELECT id, code FROM members") is not None   # returning it, masked, is fine


def test_the_catalog_knows_which_columns_compare_bytes(world):
    """Live (pg_collation) and offline (the same DDL as schema file) agree on every column of the tables above."""
    from lineage_guard.sql.catalog import Catalog

    url, _ = world
    live, offline = Catalog.from_postgres(url), Catalog.from_ddl_text(SCHEMA)
    expected = {"tenants_ci": {"tenant": True}, "tenants_dom": {"tenant": True}, "tenants_arr": {"tenants": True},
                "tenants_part_lo": {"tenant": True}, "tenants_plain": {}, "tenants_pair": {"owner": False},
                "members": {"code": True, "plan": True}, "people": {}, "badges": {"code": False},
                "tenants_citext": {"tenant": False}}
    for cat in (live, offline):
        for table, columns in expected.items():
            rel = cat.relation(table)
            got = {c: collatable for c, _, collatable in rel.nondeterministic}
            assert got == columns, (cat.source, table, rel.nondeterministic)
            assert all(collation.startswith(("public.ci", "citext")) for _, collation, _ in rel.nondeterministic)
    # Offline, a collation the schema files do not create is not provably deterministic; "C" and pg_catalog's are.
    other = Catalog.from_ddl_text('CREATE TABLE t (a text COLLATE elsewhere, b text COLLATE "C", c text, '
                                  'd text COLLATE pg_catalog."en-x-icu")')
    assert [c for c, _, _ in other.relation("t").nondeterministic] == ["a"]
