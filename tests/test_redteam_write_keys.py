"""Red team: writes whose target, or the keys around it, the write rule did not see.

Three channels a masked writer had, each through an ordinary schema object, each closed by a rule:

- **a detected column written with a chosen value.** Detection labelled only the tables a statement
  *reads*; `INSERT INTO shipping_labels (zip) VALUES ('99901')` reads none, so the detected
  postal-code column counted as clear and took the chosen plaintext, whose token (one key per
  classification) is then matched against `customers.zip` tokens: a codebook. Rule: detection covers
  the tables a statement writes too (`planner.plan`).
- **a foreign key to a masked column.** `tax_forms.filer REFERENCES customers (ssn)`: inserting a
  guessed SSN succeeds exactly when some customer has it, and the column (named so nothing detects
  it) read the guesses back in clear; through a two-column key `(customer_id, filer) REFERENCES
  customers (id, ssn)` the guess is confirmed for one named person (the catalog knew only
  single-column keys). Rule: a column that references a classified column holds its
  values by construction, so it carries that classification (`planner._through_foreign_keys`); the
  write rule then lets it store only NULL / DEFAULT, and reads mask it.
- **a parent's key checked against hidden children.** A writer who sees every customer but, by row
  filter, only orders under 500 deletes (or re-keys) customer k: the foreign key of `orders` fails
  exactly when k has an order, visible or hidden, and `ON DELETE CASCADE` silently deletes rows the
  filter hides; through an updatable view the same. Rule: a DELETE, or an UPDATE of a referenced
  column, of a table that a row-filtered (or masked) foreign key references, directly or through a
  view, is refused (`write_rule.parent_key_checks`).

The writer is the corpus's identity (svc-training, ai_training) with `writes` allowed; attacks talk
only through the GovernedSession; the truth is read with psycopg; only counts are reported.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import CORPUS, require
from redteam_writer import Refused, Writer

from lineage_guard import Identity

WRITER = """writes:
  allowed_groups: [training-jobs]
row_filters:
  - {name: small-orders, table: public.orders, groups: [training-jobs], predicate: "amount < 500"}
  - {name: no-tickets, table: public.tickets, groups: [training-jobs], predicate: "false"}
"""
OBJECTS = (
    # an application's label table, filled from customers: detection calls its zip a postal code
    "CREATE TABLE shipping_labels (id int PRIMARY KEY, zip text)",
    "INSERT INTO shipping_labels SELECT id + 100, zip FROM customers",
    # a form keyed by the filer's SSN: the column's name says nothing a detector would read
    "ALTER TABLE customers ADD CONSTRAINT customers_ssn_key UNIQUE (ssn)",
    "CREATE TABLE tax_forms (id serial PRIMARY KEY, filer text REFERENCES customers (ssn), year int)",
    # the same through a two-column key: row k and a guess pass together exactly when it is k's SSN
    "ALTER TABLE customers ADD CONSTRAINT customers_id_ssn_key UNIQUE (id, ssn)",
    ("CREATE TABLE filings (id serial PRIMARY KEY, customer_id int, filer text, "
     "FOREIGN KEY (customer_id, filer) REFERENCES customers (id, ssn))"),
    # support tickets the writer may not see at all, deleted with their customer
    "CREATE TABLE tickets (id serial PRIMARY KEY, customer_id int REFERENCES customers (id) ON DELETE CASCADE, body text)",
    "INSERT INTO tickets (customer_id, body) SELECT id, 'ticket' FROM customers WHERE id % 4 = 0",
)
TRUTH_SQL = {
    "customers.zip": "SELECT id, zip FROM customers",
    "customers.ssn": "SELECT id, ssn FROM customers",
    # customers none of whose orders the writer sees: does one of the hidden ones reference them?
    "customers.has_hidden_order": """SELECT c.id, EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = c.id)
                                        FROM customers c WHERE NOT EXISTS (
                                          SELECT 1 FROM orders o WHERE o.customer_id = c.id AND o.amount < 500)""",
    "tickets.hidden_rows_deleted": "SELECT id, false FROM tickets",
}


def _execute(url: str, *sql: str) -> list:
    psycopg = require("psycopg", "postgres")
    with psycopg.connect(url, autocommit=True) as conn:
        out: list = []
        for statement in sql:
            cur = conn.execute(statement)
            out = cur.fetchall() if cur.description else out
        return out


def codebook_into_detected_column(w: Writer, truth) -> dict[int, Any]:
    """Every zip of the corpus's range written into the detected column; its tokens decode customers.zip."""
    values = ", ".join(f"({1000 + g}, '999{g:02d}')" for g in range(100))
    w.write(f"INSERT INTO shipping_labels (id, zip) VALUES {values}")
    book = {r["zip"]: f"999{r['id'] - 1000:02d}" for r in w.rows("SELECT id, zip FROM shipping_labels WHERE id >= 1000")}
    return {r["id"]: book.get(r["zip"]) for r in w.rows("SELECT id, zip FROM customers")}


def foreign_key_confirms_guess(w: Writer, truth) -> dict[int, Any]:
    """Two candidate SSNs per person (the true one and a neighbour): the foreign key accepts the one that exists."""
    out = {}
    for k, ssn in truth["customers.ssn"].items():
        decoy = ssn[:-1] + str((int(ssn[-1]) + 1) % 10)
        for guess in (decoy, ssn) if k % 2 else (ssn, decoy):   # the order must not give the answer away
            if not w.fails(f"INSERT INTO tax_forms (filer, year) VALUES ('{guess}', 2024)"):
                out[k] = guess
                break
    return out


def foreign_key_column_read_clear(w: Writer, truth) -> dict[int, Any]:
    """The application files every customer's form; the referencing column reads back in clear."""
    _execute(w.url, "INSERT INTO tax_forms (filer, year) SELECT ssn, 2023 FROM customers")
    by_ssn = {v: k for k, v in truth["customers.ssn"].items()}
    return {by_ssn[r["filer"]]: r["filer"] for r in w.rows("SELECT filer FROM tax_forms") if r["filer"] in by_ssn}


def composite_foreign_key_confirms_guess(w: Writer, truth) -> dict[int, Any]:
    """FOREIGN KEY (customer_id, filer) REFERENCES customers (id, ssn): row k and a guess pass exactly when it is k's SSN."""
    out = {}
    for k, ssn in truth["customers.ssn"].items():
        decoy = ssn[:-1] + str((int(ssn[-1]) + 1) % 10)
        for guess in (decoy, ssn) if k % 2 else (ssn, decoy):
            if not w.fails(f"INSERT INTO filings (customer_id, filer) VALUES ({k}, '{guess}')"):
                out[k] = guess
                break
    return out


def _rekey_fails(w: Writer, k: int) -> bool:
    if w.fails(f"UPDATE customers SET id = id + 1000 WHERE id = {k}"):
        return True
    w.write(f"UPDATE customers SET id = id - 1000 WHERE id = {k + 1000}")
    return False


def parent_rekey_hidden_children(w: Writer, truth) -> dict[int, Any]:
    """UPDATE customers SET id = ...: the orders' foreign key fails exactly when k has a (hidden) order."""
    return {k: _rekey_fails(w, k) for k in truth["customers.has_hidden_order"]}


def parent_delete_hidden_children(w: Writer, truth) -> dict[int, Any]:
    """DELETE FROM customers WHERE id = k: the same answer, as a DELETE the row filter allows."""
    return {k: w.fails(f"DELETE FROM customers WHERE id = {k}") for k in truth["customers.has_hidden_order"]}


def view_delete_hidden_children(w: Writer, truth) -> dict[int, Any]:
    """The same DELETE through the updatable view v_customer_plans: the base table's foreign keys run."""
    return {k: w.fails(f"DELETE FROM v_customer_plans WHERE id = {k}") for k in truth["customers.has_hidden_order"]}


def view_rekey_hidden_children(w: Writer, truth) -> dict[int, Any]:
    """UPDATE v_customer_plans SET id = ...: re-keying through the view."""
    out = {}
    for k in truth["customers.has_hidden_order"]:
        out[k] = w.fails(f"UPDATE v_customer_plans SET id = id + 1000 WHERE id = {k}")
        if not out[k]:
            w.write(f"UPDATE v_customer_plans SET id = id - 1000 WHERE id = {k + 1000}")
    return out


def cascade_into_hidden_rows(w: Writer, truth) -> dict[int, Any]:
    """ON DELETE CASCADE: deleting visible customers deletes tickets the writer may not see at all.

    Scored as 'recovered' = hidden rows this writer changed (the truth marks each ticket not deleted).
    """
    before = {k for (k,) in _execute(w.url, "SELECT id FROM tickets")}
    for k in (8, 12, 28):   # customers with tickets and no orders
        w.fails(f"DELETE FROM customers WHERE id = {k}")
    after = {k for (k,) in _execute(w.url, "SELECT id FROM tickets")}
    return {k: True for k in before - after} | {k: False for k in list(after)[:1]}


@dataclass(frozen=True)
class Attack:
    name: str
    target: str
    run: Callable[[Writer, Any], dict[int, Any]]


ATTACKS = (
    Attack("codebook_into_detected_column", "customers.zip", codebook_into_detected_column),
    Attack("foreign_key_confirms_guess", "customers.ssn", foreign_key_confirms_guess),
    Attack("foreign_key_column_read_clear", "customers.ssn", foreign_key_column_read_clear),
    Attack("composite_foreign_key_confirms_guess", "customers.ssn", composite_foreign_key_confirms_guess),
    Attack("parent_rekey_hidden_children", "customers.has_hidden_order", parent_rekey_hidden_children),
    Attack("parent_delete_hidden_children", "customers.has_hidden_order", parent_delete_hidden_children),
    Attack("view_delete_hidden_children", "customers.has_hidden_order", view_delete_hidden_children),
    Attack("view_rekey_hidden_children", "customers.has_hidden_order", view_rekey_hidden_children),
    Attack("cascade_into_hidden_rows", "tickets.hidden_rows_deleted", cascade_into_hidden_rows),
)


class Truth(dict):
    def __repr__(self) -> str:  # pytest prints fixtures on failure: never the values
        return f"<ground truth of {len(self)} targets>"


def _score(got: dict[int, Any], real: dict[int, Any], target: str) -> int:
    if target == "tickets.hidden_rows_deleted":
        return sum(1 for v in got.values() if v is True)
    if len(real) > 1 and len({repr(got.get(k)) for k in real}) <= 1:
        return 0   # one answer for every row says nothing about any of them
    return sum(1 for k, v in real.items() if k in got and got[k] == v)


@pytest.fixture(scope="module")
def policy(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("redteam-write-keys") / "writer.yaml"
    path.write_text((CORPUS / "policy.yaml").read_text() + WRITER)
    return path


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: a.name)
def test_writes_answer_nothing_about_hidden_values(attack: Attack, new_database, policy):
    url = new_database()
    _execute(url, (CORPUS / "schema.sql").read_text(), (CORPUS / "schema_extras.sql").read_text(), *OBJECTS)
    psycopg = require("psycopg", "postgres")
    with psycopg.connect(url) as conn:
        truth = Truth({name: dict(conn.execute(sql).fetchall()) for name, sql in TRUTH_SQL.items()})
    w = Writer(url, policy)
    refused = None
    try:
        got = attack.run(w, truth)
    except Refused as why:
        got, refused = {}, str(why)
    correct = _score(got, truth[attack.target], attack.target)
    line = {"attack": attack.name, "class": "write keys and targets", "target": attack.target, "recovered": correct,
            "of": len(truth[attack.target]), "refused": refused, "queries": w.statements}
    if os.environ.get("LG_REDTEAM_RESULTS"):
        with open(os.environ["LG_REDTEAM_RESULTS"], "a") as out:
            out.write(json.dumps(line) + "\n")
    assert correct == 0, f"{attack.name} recovered {correct} of {len(truth[attack.target])} in {w.statements} statements"


def test_ordinary_writes_still_run(new_database, policy):
    """The rules cost what they must only: writes that touch no hidden key or value still run."""
    url = new_database()
    _execute(url, (CORPUS / "schema.sql").read_text(), (CORPUS / "schema_extras.sql").read_text(), *OBJECTS)
    w = Writer(url, policy)
    assert w.write("INSERT INTO shipping_labels (id, zip) VALUES (900, NULL)") == 1        # NULL into a masked column
    assert w.write("INSERT INTO tax_forms (filer, year) VALUES (NULL, 2024)") == 1          # and into the foreign key
    assert w.write("UPDATE customers SET plan = 'pro' WHERE id = 3") == 1                  # no referenced key changed
    assert w.write("INSERT INTO orders (customer_id, amount) VALUES (3, 10)") == 1         # a visible parent key
    assert w.write("UPDATE orders SET amount = 20 WHERE customer_id = 3 AND amount = 10") == 1
    assert w.write("DELETE FROM orders WHERE customer_id = 3 AND amount = 20") == 1        # a child, not a parent
    assert w.write("DELETE FROM shipping_labels WHERE id = 900") == 1                      # nothing references it


@pytest.mark.parametrize("sql", [
    "INSERT INTO tax_forms (filer, year) VALUES ('900-00-0000', 2024)",
    "INSERT INTO filings (customer_id, filer) VALUES (1, '900-00-0000')",
    "UPDATE customers SET id = id + 1000 WHERE id = 1",
    "DELETE FROM customers WHERE id = 8",
    "DELETE FROM v_customer_plans WHERE id = 8",
    "UPDATE v_customer_plans SET id = 1008 WHERE id = 8",
])
def test_offline_plans_know_the_keys(sql, policy):
    """`plan --schema-file` judges the same writes the same way: the DDL's REFERENCES / UNIQUE are read offline."""
    from lineage_guard.planner import plan
    from lineage_guard.policy import load_policy
    from lineage_guard.sql.catalog import Catalog

    catalog = Catalog.from_ddl_text("\n;\n".join([(CORPUS / "schema.sql").read_text(),
                                                 (CORPUS / "schema_extras.sql").read_text(), *OBJECTS]))
    decision = plan(sql, catalog=catalog, policy=load_policy(policy), identity=Identity("svc-training", "service"),
                    purpose="ai_training")
    assert decision.action == "deny", decision.reasons
    read = plan("SELECT id, filer FROM tax_forms", catalog=catalog, policy=load_policy(policy),
                identity=Identity("svc-training", "service"), purpose="ai_training")
    assert read.action == "allow" and [c.masked for c in read.columns] == [False, True]
