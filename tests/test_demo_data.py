"""Demo data: fake-only values, deterministic, idempotent, readable through the source."""

from __future__ import annotations

import uuid

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from conftest import require

from lineage_guard.demo.data import seed, tables
from lineage_guard.errors import ConfigError
from lineage_guard.sources import PostgresSource

psycopg = require("psycopg", "postgres")  # fails under CI=true instead of skipping


@pytest.fixture(scope="module")
def demo_url(pg_server_url):
    # Its own database: the session database holds the corpus tables of the same names.
    name = f"lg_demo_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    from urllib.parse import urlsplit, urlunsplit

    yield urlunsplit(urlsplit(pg_server_url)._replace(path="/" + name))
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def luhn_ok(number: str) -> bool:
    digits = [int(d) for d in number][::-1]
    return sum(d if i % 2 == 0 else (d * 2 - 9 if d * 2 > 9 else d * 2) for i, d in enumerate(digits)) % 10 == 0


def test_values_are_fake_and_shaped():
    data = tables(patients=3000, customers=2000, seed=3)
    cust, orders, pat = data["customers"], data["orders"], data["patients"]
    assert (cust.num_rows, orders.num_rows, pat.num_rows) == (2000, 4000, 3000)
    assert cust.column_names == ["id", "full_name", "email", "phone", "ssn", "birth_date", "zip", "plan", "created_at"]
    assert pat.column_names == ["id", "mrn", "full_name", "email", "phone", "birth_date", "zip", "diagnosis",
                                "notes", "admitted_at"]
    assert pc.all(pc.match_substring_regex(cust["ssn"], r"^9\d\d-\d\d-\d{4}$")).as_py()
    for t in (cust, pat):
        assert pc.all(pc.match_substring_regex(t["email"], r"^[a-z0-9.]+\d+@[a-z-]+\.invalid$")).as_py()
        assert pc.all(pc.match_substring_regex(t["phone"], r"^\+1-555-01\d\d$")).as_py()
        assert pc.all(pc.match_substring_regex(t["zip"], r"^\d{5}$")).as_py()
    assert pc.count_distinct(cust["email"]).as_py() == 2000 and pc.count_distinct(pat["mrn"]).as_py() == 3000
    cards = orders["card_number"].to_pylist()
    assert all(c.startswith("9999") and len(c) == 16 and luhn_ok(c) for c in cards)
    assert orders["amount"].type == pa.decimal128(10, 2) and pc.min(orders["amount"]).as_py() > 0
    assert 1 <= pc.min(orders["customer_id"]).as_py() and pc.max(orders["customer_id"]).as_py() <= 2000
    assert pc.count_distinct(cust["full_name"]).as_py() > 1000
    assert set(cust["plan"].to_pylist()) == {"free", "basic", "pro", "enterprise"}


def test_deterministic_per_seed():
    a, b, c = (tables(patients=500, customers=500, seed=s) for s in (7, 7, 8))
    assert all(a[t].equals(b[t]) for t in a)
    assert not a["customers"].equals(c["customers"])


def test_bad_sizes():
    with pytest.raises(ConfigError, match="patients"):
        tables(patients=-1)
    with pytest.raises(ConfigError, match="customers"):
        tables(customers=0, orders=5)


def test_seed_is_idempotent_and_readable(demo_url):
    counts = seed(demo_url, patients=1500, customers=1000, orders=2500)
    assert counts == {"customers": 1000, "orders": 2500, "patients": 1500}
    fingerprint = "SELECT md5(string_agg(ssn || email, ',' ORDER BY id)) FROM customers"
    with psycopg.connect(demo_url) as conn:
        first = conn.execute(fingerprint).fetchone()[0]
    assert seed(demo_url, patients=1500, customers=1000, orders=2500) == counts
    with psycopg.connect(demo_url) as conn:
        assert conn.execute("SELECT (SELECT count(*) FROM customers), (SELECT count(*) FROM orders), "
                            "(SELECT count(*) FROM patients)").fetchone() == (1000, 2500, 1500)
        assert conn.execute(fingerprint).fetchone()[0] == first
        assert conn.execute("SELECT count(*) FROM orders o LEFT JOIN customers c ON c.id = o.customer_id "
                            "WHERE c.id IS NULL").fetchone()[0] == 0
    table = PostgresSource(demo_url).read_all("SELECT * FROM orders ORDER BY id LIMIT 5")
    assert table.schema.field("amount").type == pa.decimal128(10, 2)
    assert table.schema.field("created_at").type == pa.timestamp("us", tz="UTC")


def test_command_line(demo_url, capsys):
    from lineage_guard.demo.data import main

    main([demo_url, "--patients", "30", "--customers", "20", "--seed", "1"])
    assert capsys.readouterr().out.strip() == "customers: 20 rows, orders: 40 rows, patients: 30 rows"
