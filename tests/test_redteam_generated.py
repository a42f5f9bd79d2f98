"""Red team: generated columns computed from a sensitive column, read as if nobody had classified them.

A real schema often stores a convenience column the owner computes from a sensitive one
(`is_hiv boolean GENERATED ALWAYS AS (diagnosis LIKE 'B20%') STORED`, an age in days, the last four
digits of a card). The policy classifies `diagnosis`; the generated column is a column of its own,
so before this rule the planner gave it the lineage of a stored, unclassified column: clear. It is a
function of the sensitive column exactly as a view's `left(diagnosis, 3)` is, and gets that lineage
now (`lineage._generated_lin`): a derived value (non-linkable mask, no equi-join, no predicate).

The attacker is the corpus's masked identity (svc-training, ai_training) through the real
GovernedSession; the truth is read with psycopg; only counts are reported. `LG_REDTEAM_RESULTS=path`
appends one JSON line per attack. The differential oracle runs every allowed generated statement
on two databases whose sensitive values are shuffled between rows (generated columns recompute):
an allowed statement's clear output must be the same on both.
"""

from __future__ import annotations

import datetime
import json
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from conftest import CORPUS, require
from test_oracle_shuffled import _rewrite, shuffle_rows

from lineage_guard import GovernedSession, Identity
from lineage_guard.errors import AccessDenied, ApprovalRequired, SourceError
from lineage_guard.planner import plan
from lineage_guard.policy import load_policy
from lineage_guard.sql.catalog import Catalog

POLICY = CORPUS / "policy.yaml"
ALL = tuple(range(1, 51))
EPOCH = datetime.date(2025, 1, 1)

# Objects a real schema has; the policy (tests/corpus/policy.yaml) classifies only their sources.
GENERATED_DDL = (
    "ALTER TABLE patients ADD COLUMN is_hiv boolean GENERATED ALWAYS AS (diagnosis LIKE 'B20%') STORED",
    "ALTER TABLE patients ADD COLUMN dx_category text GENERATED ALWAYS AS (left(diagnosis, 3)) STORED",
    "ALTER TABLE customers ADD COLUMN age_days int GENERATED ALWAYS AS (date '2025-01-01' - birth_date) STORED",
    "ALTER TABLE customers ADD COLUMN ssn_digits text GENERATED ALWAYS AS (replace(ssn, '-', '')) STORED",
    "ALTER TABLE customers ADD COLUMN email_domain text GENERATED ALWAYS AS (split_part(email, '@', 2)) STORED",
    "ALTER TABLE orders ADD COLUMN card_last4 text GENERATED ALWAYS AS (right(card_number, 4)) STORED",
)
GENERATED = {"patients": ("is_hiv", "dx_category"), "customers": ("age_days", "ssn_digits", "email_domain"),
             "orders": ("card_last4",)}

TRUTH_SQL = {
    "patients.hiv": "SELECT id, diagnosis LIKE 'B20%' FROM patients",
    "patients.category": "SELECT id, left(diagnosis, 3) FROM patients",
    "customers.birth_date": "SELECT id, birth_date FROM customers",
    "customers.ssn": "SELECT id, ssn FROM customers",
    "customers.email_domain": "SELECT id, split_part(email, '@', 2) FROM customers",
    "orders.card_last4": "SELECT id, right(card_number, 4) FROM orders",
}


def _days(v: Any) -> Any:
    return EPOCH - datetime.timedelta(days=v) if isinstance(v, int) else None


def _ssn(v: Any) -> Any:
    return f"{v[:3]}-{v[3:5]}-{v[5:]}" if isinstance(v, str) and len(v) == 9 and v.isdigit() else None


def _column(col: str, decode: Callable[[Any], Any] = lambda v: v) -> Callable[[list[dict]], dict[int, Any]]:
    return lambda rows: {r["id"]: decode(r[col]) for r in rows if decode(r[col]) is not None}


def _members(rows: list[dict]) -> dict[int, Any]:
    """`SELECT id ... WHERE flag`: the ids returned have the flag, the others do not."""
    hit = {r["id"] for r in rows}
    return {k: k in hit for k in ALL} if hit else {}


def _grouped(rows: list[dict]) -> dict[int, Any]:
    return {k: r["flag"] for r in rows if isinstance(r.get("ids"), list) for k in r["ids"]}


@dataclass(frozen=True)
class Attack:
    name: str
    target: str
    sql: str
    decode: Callable[[list[dict]], dict[int, Any]]


ATTACKS = (
    Attack("project_flag", "patients.hiv", "SELECT id, is_hiv FROM patients", _column("is_hiv")),
    Attack("filter_on_flag", "patients.hiv", "SELECT id FROM patients WHERE is_hiv", _members),
    Attack("group_by_flag", "patients.hiv",
           "SELECT is_hiv AS flag, array_agg(id) AS ids FROM patients GROUP BY is_hiv", _grouped),
    Attack("star_over_flag", "patients.hiv", "SELECT * FROM patients", _column("is_hiv")),
    Attack("project_category", "patients.category", "SELECT id, dx_category FROM patients", _column("dx_category")),
    Attack("project_age_days", "customers.birth_date", "SELECT id, age_days FROM customers",
           _column("age_days", _days)),
    Attack("join_age_days_to_series", "customers.birth_date",
           "SELECT c.id, g.n AS age_days FROM customers c JOIN generate_series(0, 40000) AS g(n) ON g.n = c.age_days",
           _column("age_days", _days)),
    Attack("project_ssn_digits", "customers.ssn", "SELECT id, ssn_digits FROM customers", _column("ssn_digits", _ssn)),
    Attack("project_email_domain", "customers.email_domain", "SELECT id, email_domain FROM customers",
           _column("email_domain")),
    Attack("project_card_last4", "orders.card_last4", "SELECT id, card_last4 FROM orders", _column("card_last4")),
)


def _setup(url: str) -> None:
    psycopg = require("psycopg", "postgres")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute((CORPUS / "schema.sql").read_text())
        conn.execute((CORPUS / "schema_extras.sql").read_text())
        for ddl in GENERATED_DDL:
            conn.execute(ddl)


@pytest.fixture(scope="module")
def db(new_database):
    url = new_database()
    _setup(url)
    return url


class Truth(dict):
    def __repr__(self) -> str:  # pytest prints fixtures on failure: never the values
        return f"<ground truth of {len(self)} targets>"


@pytest.fixture(scope="module")
def truth(db):
    import psycopg

    with psycopg.connect(db) as conn:
        return Truth({name: dict(conn.execute(sql).fetchall()) for name, sql in TRUTH_SQL.items()})


@pytest.fixture(scope="module")
def session(db):
    s = GovernedSession(db, POLICY, Identity("svc-training", "service"), "ai_training")
    yield s
    s.close()


def score(values: dict[int, Any], real: dict[int, Any]) -> int:
    """Rows recovered exactly; the same answer for every row is no information (scores 0)."""
    if len({repr(v) for v in values.values()}) <= 1:
        return 0
    return sum(1 for k, v in values.items() if k in real and real[k] == v)


def _record(line: dict) -> None:
    path = os.environ.get("LG_REDTEAM_RESULTS")
    if path:
        with open(path, "a") as out:
            out.write(json.dumps(line) + "\n")


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: a.name)
def test_generated_column_gives_nothing(attack: Attack, session, truth):
    refused = None
    try:
        values = attack.decode(session.read_arrow(attack.sql).to_pylist())
    except (AccessDenied, ApprovalRequired, SourceError) as err:
        values, refused = {}, type(err).__name__
    correct = score(values, truth[attack.target])
    _record({"attack": attack.name, "class": "generated column", "target": attack.target, "recovered": correct,
             "of": len(truth[attack.target]), "refused": refused, "queries": 1})
    assert correct == 0, f"{attack.name} recovered {correct} of {len(truth[attack.target])} values of {attack.target}"


def test_generated_columns_are_known_to_the_catalog(db):
    """Live and offline catalogs agree on what each generated column is computed from."""
    live = Catalog.from_postgres(db)
    ddl = Catalog.from_ddl_text("\n;\n".join([(CORPUS / "schema.sql").read_text(), *GENERATED_DDL]))
    for table, cols in GENERATED.items():
        for col in cols:
            assert live.relation(table).generated_from(col), (table, col)
            assert ddl.relation(table).generated_from(col) == live.relation(table).generated_from(col), (table, col)
    assert live.relation("customers").generated_from("plan") == frozenset()


def test_reading_the_table_beside_it_stays_clear(session):
    """Utility: the rule touches only the generated columns, not the table's clear ones."""
    decision = session.plan("SELECT id, plan, created_at FROM customers")
    assert decision.action == "allow" and not any(c.masked for c in decision.columns)
    assert session.read_arrow("SELECT id, plan FROM customers").num_rows == 50


# --- differential oracle -----------------------------------------------------------------------------

def oracle_statements() -> list[str]:
    """Every shape a caller might put a generated column in, over each generated column."""
    out = []
    for table, cols in GENERATED.items():
        for g in cols:
            out += [
                f"SELECT id, {g} FROM {table}",
                f"SELECT id, {g} FROM {table} WHERE id < 10",
                f"SELECT * FROM {table}",
                f"SELECT id FROM {table} WHERE {g} IS NOT NULL",
                f"SELECT id FROM {table} WHERE {g} IS NULL",
                f"SELECT {g}, count(*) FROM {table} GROUP BY {g}",
                f"SELECT id FROM {table} ORDER BY {g}, id LIMIT 5",
                f"SELECT count(DISTINCT {g}) FROM {table}",
                f"SELECT count({g}) FROM {table}",
                f"SELECT a.id, b.id FROM {table} a JOIN {table} b ON a.{g} = b.{g}",
                f"SELECT id, CASE WHEN {g} IS NULL THEN 0 ELSE 1 END AS k FROM {table}",
                f"WITH t AS (SELECT id, {g} AS v FROM {table}) SELECT id, v FROM t",
                f"SELECT s.id FROM (SELECT id, {g} FROM {table}) s WHERE s.{g} IS NOT NULL",
                f"SELECT id, lag({g}) OVER (ORDER BY id) FROM {table}",
                f"SELECT id, rank() OVER (ORDER BY {g}) FROM {table}",
                f"SELECT min({g}), max({g}) FROM {table}",
            ]
    return out


def _rows(conn, sql: str, clear: list[int]) -> tuple:
    try:
        rows = conn.execute(sql).fetchall()
    except Exception as err:  # noqa: BLE001 - the oracle compares failures too (by SQLSTATE)
        return ("error", getattr(err, "sqlstate", None))
    return ("rows", sorted(repr(tuple(r[i] for i in clear)) for r in rows))


def test_allowed_statements_do_not_depend_on_who_owns_a_value(new_database):
    psycopg = require("psycopg", "postgres")
    a, s = new_database(), new_database()
    for url in (a, s):
        _setup(url)
    _rewrite(s, shuffle_rows(random.Random(7)))
    catalog, policy = Catalog.from_postgres(a), load_policy(POLICY)
    identity = policy.resolve_identity(Identity("svc-training", "service"))
    statements = oracle_statements()
    allowed = failures = 0
    with psycopg.connect(a, autocommit=True) as ca, psycopg.connect(s, autocommit=True) as cs:
        for sql in statements:
            decision = plan(sql, catalog=catalog, policy=policy, identity=identity, purpose="ai_training")
            if decision.action != "allow":
                continue
            allowed += 1
            clear = [c.position for c in decision.columns if not c.masked]
            executed = decision.analysis.executed_sql
            if _rows(ca, executed, clear) != _rows(cs, executed, clear):
                failures += 1
    _record({"oracle": "generated columns, shuffled twin", "statements": len(statements), "allowed": allowed,
             "failures": failures})
    assert allowed >= len(GENERATED) * 3, f"only {allowed} of {len(statements)} allowed: the oracle compares nothing"
    assert failures == 0, f"{failures} of {allowed} allowed statements gave other clear output on the shuffled twin"
