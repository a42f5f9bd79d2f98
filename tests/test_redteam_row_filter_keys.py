"""Red team: a row-filtered writer learns which hidden rows exist from unique and foreign-key checks.

The writer is the corpus's identity (svc-training, ai_training) allowed to write, with one row filter:
it sees only the customers on the free plan. The filter scopes reads, UPDATE and DELETE, but a unique
index and a foreign key are checked against every row of the table: inserting id k conflicts exactly
when customer k exists outside the filter, and an order for customer k fails exactly when none does.
Each attack talks only through the GovernedSession; the truth (which ids, of those the writer cannot
see, exist) is read with psycopg; only counts are reported. The rule: `write_rule.key_probes`
(planner._key_probes).
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

PROBED = tuple(range(1, 71))
ROW_FILTER = """writes:
  allowed_groups: [training-jobs]
row_filters:
  - {name: free-plan-only, table: public.customers, groups: [training-jobs], predicate: "plan = 'free'"}
"""


def _execute(url: str, *sql: str) -> list:
    psycopg = require("psycopg", "postgres")
    with psycopg.connect(url, autocommit=True) as conn:
        out = []
        for statement in sql:
            cur = conn.execute(statement)
            out = cur.fetchall() if cur.description else out
        return out


@pytest.fixture(scope="module")
def policy(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("redteam-row-filter-keys") / "filtered_writer.yaml"
    path.write_text((CORPUS / "policy.yaml").read_text() + ROW_FILTER)
    return path


def _database(new_database) -> str:
    url = new_database()
    _execute(url, (CORPUS / "schema.sql").read_text(), (CORPUS / "schema_extras.sql").read_text(),
             # some ids never existed or were deleted: existence is a real question
             "DELETE FROM orders WHERE customer_id % 3 = 0", "DELETE FROM customers WHERE id % 3 = 0")
    return url


def visible(w: Writer) -> set[int]:
    """The customer ids the row filter shows the attacker."""
    w.statements += 1
    return {r["id"] for r in w.session.read_arrow("SELECT id FROM customers").to_pylist()}


def unique_violation(w: Writer, k: int) -> bool:
    return w.fails(f"INSERT INTO customers (id, plan) VALUES ({k}, 'free')")


def on_conflict_count(w: Writer, k: int) -> bool:
    return w.write(f"INSERT INTO customers (id, plan) VALUES ({k}, 'free') ON CONFLICT DO NOTHING") == 0


def insert_select_key(w: Writer, k: int) -> bool:
    return w.fails(f"INSERT INTO customers (id, plan) SELECT g, 'free' FROM generate_series({k}, {k}) AS g")


def update_to_key(w: Writer, k: int) -> bool:
    ordered = {r["customer_id"] for r in w.session.read_arrow("SELECT customer_id FROM orders").to_pylist()}
    mine = min(visible(w) - ordered)   # a row of mine no order references: its key may move
    if w.fails(f"UPDATE customers SET id = {k} WHERE id = {mine}"):
        return True
    w.write(f"UPDATE customers SET id = {mine} WHERE id = {k}")   # put my row back
    return False


def foreign_key(w: Writer, k: int) -> bool:
    return not w.fails(f"INSERT INTO orders (customer_id, amount) VALUES ({k}, 1)")


def foreign_key_update(w: Writer, k: int) -> bool:
    return not w.fails(f"UPDATE orders SET customer_id = {k} WHERE id = (SELECT min(id) FROM orders)")


@dataclass(frozen=True)
class Attack:
    name: str
    probe: Callable[[Writer, int], bool]   # True: "customer k exists"


ATTACKS = (Attack("unique_violation", unique_violation), Attack("on_conflict_do_nothing_count", on_conflict_count),
           Attack("insert_select_key", insert_select_key), Attack("update_key_conflict", update_to_key),
           Attack("foreign_key_violation", foreign_key), Attack("foreign_key_update", foreign_key_update))


def _record(line: dict) -> None:
    path = os.environ.get("LG_REDTEAM_RESULTS")
    if path:
        with open(path, "a") as out:
            out.write(json.dumps(line) + "\n")


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: a.name)
def test_key_checks_do_not_show_hidden_rows(attack: Attack, new_database, policy):
    url = _database(new_database)
    exists = {k for (k,) in _execute(url, "SELECT id FROM customers")}
    w = Writer(url, policy)
    values: dict[int, Any] = {}
    refused = None
    seen = visible(w)
    hidden_keys = [k for k in PROBED if k not in seen]   # the writer asks only about what it cannot see
    try:
        for k in hidden_keys:
            values[k] = attack.probe(w, k)
    except Refused as why:
        refused = str(why)
    finally:
        w.session.close()
    truth = {k: k in exists for k in PROBED}
    correct = 0 if len(set(values.values())) <= 1 else sum(1 for k, v in values.items() if truth[k] == v)
    of = len(hidden_keys)
    _record({"attack": attack.name, "class": "row-filter key existence", "target": "customers.hidden_exists",
             "recovered": correct, "of": of, "refused": refused, "queries": w.statements})
    assert correct == 0, f"{attack.name} told {correct} of {of} hidden ids apart (exists or not)"


def test_the_filtered_writer_still_writes(new_database, policy):
    """Utility: keys left to their DEFAULT, and keys read from the filtered table, are allowed."""
    url = _database(new_database)
    _execute(url, "SELECT setval('customers_id_seq', 1000)")
    w = Writer(url, policy)
    try:
        assert w.write("INSERT INTO customers (plan) VALUES ('free')") == 1            # id from the sequence
        assert w.write("INSERT INTO orders (customer_id, amount) SELECT id, 5 FROM customers WHERE id = 1") == 1
        assert w.write("UPDATE customers SET created_at = now() WHERE id = 1") == 1
        assert w.write("INSERT INTO orders (amount) VALUES (3)") == 1                   # NULL customer
    finally:
        w.session.close()
