"""Red team: what a table runs when it is written (CHECK, indexes, triggers, rules) as a channel for masked values.

The write rule (lineage_guard/write_rule.py) judged the statement through its read twin, but the
server also runs the table's own code on every row written: a CHECK constraint, an index expression
or predicate, a unique index's comparison with the other rows, a trigger, a rule. Each is a real
schema's ordinary object (an audit trigger, a sanity check, a partial unique index); none was in
the plan. The writer is the corpus's masked identity (svc-training, ai_training), allowed to write;
each attack talks only through the GovernedSession, the truth is read with psycopg, and only counts
are reported. The rule (`write_rule.attached_code`, catalog `Relation.on_write` / `triggers`): a
table with a trigger or rule is not written while anything is masked for the writer; a check, index
or generated column reading a masked column and a column the write sets is refused (row-local ones
only where rows are changed, unique ones for INSERT too, NOT VALID checks whatever is set).

The differential oracle runs writes over the same objects on two databases whose sensitive values
are shuffled between rows: an allowed write's count, error and clear aftermath must be the same.
"""

from __future__ import annotations

import datetime
import json
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import CORPUS, require
from redteam_writer import Refused, Writer
from test_oracle_shuffled import _rewrite, shuffle_rows

from lineage_guard import Identity
from lineage_guard.planner import plan
from lineage_guard.policy import load_policy
from lineage_guard.sql.catalog import Catalog

ALL = tuple(range(1, 51))
SEARCH_KEYS = tuple(range(1, 13))   # birth dates by binary search: ~16 writes each
HIV_KEYS = tuple(range(1, 21))

TRUTH_SQL = {
    "customers.birth_date": "SELECT id, birth_date FROM customers",
    "customers.zip_below_99950": "SELECT id, zip < '99950' FROM customers",
    "patients.hiv": "SELECT id, diagnosis LIKE 'B20%' FROM patients",
    "patients.diagnosis": "SELECT id, diagnosis FROM patients",
    "orders.card_number": "SELECT id, card_number FROM orders",
    "customers.ssn": "SELECT id, ssn FROM customers",
}

# The objects, as a schema would have them. Tables nobody classified hold what triggers and rules log.
AUDIT_TABLES = (
    "CREATE TABLE IF NOT EXISTS order_audit (order_id int, old_row text)",
    "CREATE TABLE IF NOT EXISTS patient_audit (patient_id int, old_value text)",
    "CREATE TABLE IF NOT EXISTS customer_audit (customer_id int, old_row text)",
    "ALTER TABLE patients ADD COLUMN IF NOT EXISTS room int",
    """CREATE OR REPLACE FUNCTION audit_row() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         IF TG_TABLE_NAME = 'orders' THEN INSERT INTO order_audit VALUES (OLD.id, row_to_json(OLD)::text);
         ELSE INSERT INTO customer_audit VALUES (OLD.id, row_to_json(OLD)::text); END IF;
         RETURN COALESCE(NEW, OLD);
       END $$""",
)
OBJECTS = {
    "check": ("ALTER TABLE customers ADD CONSTRAINT signup_after_birth CHECK (created_at > birth_date)",),
    "not_valid": ("ALTER TABLE customers ADD CONSTRAINT zip_in_region CHECK (zip < '99950') NOT VALID",),
    "partial_unique": ("CREATE UNIQUE INDEX one_b20_per_room ON patients (room) WHERE diagnosis LIKE 'B20%'",),
    "rule": (("CREATE RULE patients_log AS ON UPDATE TO patients DO ALSO "
             "INSERT INTO patient_audit VALUES (OLD.id, OLD.diagnosis)"),),
    "trigger_orders": ("CREATE TRIGGER orders_audit AFTER UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION audit_row()",),
    "trigger_customers": (("CREATE TRIGGER customers_audit BEFORE DELETE ON customers FOR EACH ROW "
                           "EXECUTE FUNCTION audit_row()"),),
}


def _execute(url: str, *sql: str) -> None:
    psycopg = require("psycopg", "postgres")
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in sql:
            conn.execute(statement)


def _base(url: str) -> None:
    _execute(url, (CORPUS / "schema.sql").read_text(), (CORPUS / "schema_extras.sql").read_text(), *AUDIT_TABLES)


def writer_policy(folder: Path) -> Path:
    path = folder / "writer.yaml"
    path.write_text((CORPUS / "policy.yaml").read_text() + "writes:\n  allowed_groups: [training-jobs]\n")
    return path


# --- attacks ----------------------------------------------------------------------------------------------

def check_binary_search(w: Writer, truth) -> dict[int, Any]:
    """CHECK (created_at > birth_date): setting created_at = d succeeds exactly when d is after the birth date."""
    out = {}
    for k in SEARCH_KEYS:
        lo, hi = datetime.date(1900, 1, 1), datetime.date(2025, 1, 1)   # fails at lo, succeeds at hi
        while (hi - lo).days > 1:
            mid = lo + datetime.timedelta(days=(hi - lo).days // 2)
            if w.fails(f"UPDATE customers SET created_at = '{mid.isoformat()}' WHERE id = {k}"):
                lo = mid
            else:
                hi = mid
        out[k] = lo   # the last day that failed: created_at = birth_date is not after it
    return out


def not_valid_check(w: Writer, truth) -> dict[int, Any]:
    """A NOT VALID CHECK holds for new rows only; an UPDATE of an old row re-checks it: any UPDATE answers it."""
    return {k: not w.fails(f"UPDATE customers SET plan = plan WHERE id = {k}") for k in ALL}


def partial_unique_index(w: Writer, truth) -> dict[int, Any]:
    """UNIQUE (room) WHERE diagnosis LIKE 'B20%': with one known HIV patient in room 1, a second conflicts."""
    known = next(k for k in HIV_KEYS if truth["patients.hiv"][k])   # side knowledge of ONE record
    w.write(f"UPDATE patients SET room = 1 WHERE id = {known}")
    return {k: w.fails(f"UPDATE patients SET room = 1 WHERE id = {k}") for k in HIV_KEYS if k != known}


def rule_copy(w: Writer, truth) -> dict[int, Any]:
    """A DO ALSO rule logs OLD.diagnosis into a table nobody classified.

    The log is read once while empty first: value detection then finds nothing in it, and its labels are
    kept for the schema version (the data changing does not change that version).
    """
    w.rows("SELECT patient_id, old_value FROM patient_audit")
    w.write("UPDATE patients SET room = room WHERE id > 0")
    return {r["patient_id"]: r["old_value"] for r in w.rows("SELECT patient_id, old_value FROM patient_audit")}


def _json_field(rows: list[dict], key: str, field: str) -> dict[int, Any]:
    out = {}
    for r in rows:
        try:
            out[r[key]] = json.loads(r["old_row"])[field]
        except (TypeError, ValueError, KeyError):
            continue
    return out


def trigger_copy_orders(w: Writer, truth) -> dict[int, Any]:
    """An audit trigger logs row_to_json(OLD): every masked column of the row, in a clear text column."""
    w.rows("SELECT order_id, old_row FROM order_audit")   # while empty: see rule_copy
    w.write("UPDATE orders SET amount = amount WHERE id > 0")
    return _json_field(w.rows("SELECT order_id, old_row FROM order_audit"), "order_id", "card_number")


def trigger_copy_on_delete(w: Writer, truth) -> dict[int, Any]:
    """The same on DELETE: a delete the write rule allows (its WHERE reads a clear column) logs the whole row."""
    w.rows("SELECT customer_id, old_row FROM customer_audit")   # while empty: see rule_copy
    w.write("DELETE FROM orders WHERE customer_id > 0")   # the customers' orders first (foreign key)
    w.write("DELETE FROM customers WHERE id > 0")
    return _json_field(w.rows("SELECT customer_id, old_row FROM customer_audit"), "customer_id", "ssn")


@dataclass(frozen=True)
class Attack:
    name: str
    objects: str
    target: str
    run: Callable[[Writer, Any], dict[int, Any]]


ATTACKS = (
    Attack("check_binary_search", "check", "customers.birth_date", check_binary_search),
    Attack("not_valid_check", "not_valid", "customers.zip_below_99950", not_valid_check),
    Attack("partial_unique_index", "partial_unique", "patients.hiv", partial_unique_index),
    Attack("rule_copy", "rule", "patients.diagnosis", rule_copy),
    Attack("trigger_copy_orders", "trigger_orders", "orders.card_number", trigger_copy_orders),
    Attack("trigger_copy_on_delete", "trigger_customers", "customers.ssn", trigger_copy_on_delete),
)


class Truth(dict):
    def __repr__(self) -> str:  # pytest prints fixtures on failure: never the values
        return f"<ground truth of {len(self)} targets>"


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    return writer_policy(tmp_path_factory.mktemp("redteam-attached"))


def _truth(url: str) -> Truth:
    import psycopg

    with psycopg.connect(url) as conn:
        return Truth({name: dict(conn.execute(sql).fetchall()) for name, sql in TRUTH_SQL.items()})


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
def test_attached_code_gives_nothing(attack: Attack, new_database, policy):
    url = new_database()   # each attack on its own copy: attacks change rows
    _base(url)
    truth = _truth(url)
    _execute(url, *OBJECTS[attack.objects])
    w = Writer(url, policy)
    refused = None
    values: dict[int, Any] = {}
    try:
        values = attack.run(w, truth)
    except Refused as why:
        refused = str(why)
    finally:
        w.session.close()
    real = truth[attack.target]
    correct = score(values, real)
    _record({"attack": attack.name, "class": "attached code on write", "target": attack.target,
             "recovered": correct, "of": len(real), "refused": refused, "queries": w.statements})
    assert correct == 0, f"{attack.name} recovered {correct} of {len(real)} values of {attack.target} " \
                         f"in {w.statements} statements"


def test_the_catalog_knows_what_a_write_runs(new_database):
    url = new_database()
    _base(url)
    _execute(url, *(s for sqls in OBJECTS.values() for s in sqls),
             "CREATE INDEX plain_zip ON customers (zip)")
    cat = Catalog.from_postgres(url)
    customers, patients, orders = (cat.relation(t) for t in ("customers", "patients", "orders"))
    by_name = {w.name: w for w in customers.on_write + patients.on_write}
    assert by_name["constraint signup_after_birth"].columns == {"created_at", "birth_date"}
    assert by_name["constraint signup_after_birth"].kind == "check"
    assert by_name["constraint zip_in_region"].kind == "unvalidated"
    assert by_name["index one_b20_per_room"].kind == "unique"
    assert by_name["index one_b20_per_room"].columns == {"room", "diagnosis"}
    assert "index plain_zip" not in by_name           # a plain index evaluates nothing
    assert "index customers_pkey" in by_name          # a unique key compares rows
    assert patients.triggers == ("rule patients_log",)
    assert orders.triggers == ("trigger orders_audit",) and customers.triggers == ("trigger customers_audit",)
    ddl = Catalog.from_ddl_text("\n;\n".join([(CORPUS / "schema.sql").read_text(), *AUDIT_TABLES[:4],
                                              *(s for sqls in OBJECTS.values() for s in sqls)]))
    assert {w.name for w in ddl.relation("customers").on_write} >= {"check"}
    assert ddl.relation("patients").triggers == ("rule patients_log",)
    assert ddl.relation("orders").triggers == ("trigger orders_audit",)
    # offline as live: the primary key is a unique key too (its conflicts compare rows)
    assert [w.columns for w in ddl.relation("patients").on_write] == [frozenset({"id"}), frozenset({"room", "diagnosis"})]


def test_writes_the_objects_do_not_see_are_still_allowed(new_database, policy):
    """Utility: an INSERT under a row-local CHECK, and a write to a table with no code, stay allowed."""
    url = new_database()
    _base(url)
    _execute(url, *OBJECTS["check"])
    w = Writer(url, policy)
    try:
        assert w.write("INSERT INTO customers (id, plan, created_at) VALUES (1001, 'free', now())") == 1
        assert w.write("UPDATE customers SET plan = 'pro' WHERE id = 3") == 1   # the check reads no column set here
        assert w.write("INSERT INTO order_audit (order_id) VALUES (1)") == 1
    finally:
        w.session.close()


# --- differential oracle ------------------------------------------------------------------------------------

def oracle_writes() -> list[str]:
    out = []
    for k in (1, 4, 7, 12, 23, 38):
        for d in ("1950-06-01", "1970-01-01", "1985-03-15", "2000-01-01", "2030-01-01"):
            out.append(f"UPDATE customers SET created_at = '{d}' WHERE id = {k}")
        out += [f"UPDATE customers SET plan = plan WHERE id = {k}",
                f"UPDATE customers SET plan = 'x' WHERE id = {k}",
                f"UPDATE patients SET room = 1 WHERE id = {k}",
                f"UPDATE patients SET room = {k} WHERE id = {k}",
                f"UPDATE orders SET amount = amount WHERE id = {k}",
                f"DELETE FROM orders WHERE id = {k}",
                f"INSERT INTO patients (id, room) VALUES ({1000 + k}, 1)",
                f"INSERT INTO customers (id, plan, created_at) VALUES ({1000 + k}, 'x', '1971-01-01')",
                f"INSERT INTO order_audit (order_id) VALUES ({k})",
                f"UPDATE patients SET room = room WHERE id < {k}"]
    return out


_OBSERVE = ["SELECT id, plan, created_at FROM customers ORDER BY id", "SELECT id, room FROM patients ORDER BY id",
            "SELECT id, amount FROM orders ORDER BY id", "SELECT * FROM order_audit ORDER BY 1, 2",
            "SELECT * FROM patient_audit ORDER BY 1, 2", "SELECT * FROM customer_audit ORDER BY 1, 2"]


def _observed(conn, sql: str):
    """The writer's view of one write: row count or SQLSTATE, then every clear table it could read after."""
    psycopg = require("psycopg", "postgres")
    conn.execute("BEGIN")
    try:
        conn.execute("UPDATE patients SET room = id")   # one room each: moving k into room 1 conflicts iff both HIV
        conn.execute("DELETE FROM patient_audit")
        try:
            count = conn.execute(sql).rowcount
        except psycopg.Error as err:
            return ("error", err.sqlstate)
        return ("ok", count, [conn.execute(q).fetchall() for q in _OBSERVE])
    finally:
        conn.execute("ROLLBACK")


def test_no_allowed_write_depends_on_who_owns_a_value(new_database, policy):
    psycopg = require("psycopg", "postgres")
    a, s = new_database(), new_database()
    for url in (a, s):
        _base(url)
    _rewrite(s, shuffle_rows(random.Random(5)))
    for url in (a, s):   # made after the shuffle: the shuffle's own writes run none of it
        _execute(url, *(x for sqls in OBJECTS.values() for x in sqls))
    catalog, pol = Catalog.from_postgres(a), load_policy(policy)
    me = pol.resolve_identity(Identity("svc-training", "service"))
    writes = oracle_writes()
    allowed = failures = 0
    with psycopg.connect(a, autocommit=True) as ca, psycopg.connect(s, autocommit=True) as cs:
        for sql in writes:
            decision = plan(sql, catalog=catalog, policy=pol, identity=me, purpose="ai_training")
            if decision.action != "allow":
                continue
            allowed += 1
            failures += _observed(ca, sql) != _observed(cs, sql)
    _record({"write_oracle": "attached code, shuffled twin", "writes": len(writes), "allowed": allowed,
             "failures": failures})
    assert allowed >= 6, f"only {allowed} of {len(writes)} writes allowed: the oracle compares nothing"
    assert failures == 0, f"{failures} of {allowed} allowed writes differ on the shuffled twin"
