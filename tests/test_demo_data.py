"""Demo data: fake-only values, deterministic, idempotent, readable through the source."""

from __future__ import annotations

import uuid

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from conftest import require

from lineage_guard.demo.data import MARKER, SCHEMA, DemoSchemaRefused, seed, tables
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
    fingerprint = "SELECT md5(string_agg(ssn || email, ',' ORDER BY id)) FROM lineage_guard_demo.customers"
    with psycopg.connect(demo_url) as conn:
        first = conn.execute(fingerprint).fetchone()[0]
    assert seed(demo_url, patients=1500, customers=1000, orders=2500) == counts
    with psycopg.connect(demo_url) as conn:
        conn.execute("SET search_path = lineage_guard_demo")
        assert conn.execute("SELECT (SELECT count(*) FROM customers), (SELECT count(*) FROM orders), "
                            "(SELECT count(*) FROM patients)").fetchone() == (1000, 2500, 1500)
        assert conn.execute(fingerprint).fetchone()[0] == first
        assert conn.execute("SELECT count(*) FROM orders o LEFT JOIN customers c ON c.id = o.customer_id "
                            "WHERE c.id IS NULL").fetchone()[0] == 0
    table = PostgresSource(demo_url, schema=SCHEMA).read_all("SELECT * FROM orders ORDER BY id LIMIT 5")
    assert table.schema.field("amount").type == pa.decimal128(10, 2)
    assert table.schema.field("created_at").type == pa.timestamp("us", tz="UTC")


def test_command_line(demo_url, capsys):
    from lineage_guard.demo.data import main

    main([demo_url, "--patients", "30", "--customers", "20", "--seed", "1"])
    assert capsys.readouterr().out.strip() == "customers: 20 rows, orders: 40 rows, patients: 30 rows"


# --- the demo never touches what it did not create ----------------------------------------------

@pytest.fixture
def fresh_url(new_database):
    return new_database()


def _tables_and_views(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return dict(conn.execute(
            "SELECT table_schema || '.' || table_name, 1 FROM information_schema.tables "
            "WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1").fetchall())


def test_users_own_tables_and_views_survive_a_demo_seed(fresh_url):
    # The attack the old seed failed: a user's public.patients with a view on it, then a demo run
    # (`DROP TABLE IF EXISTS orders, customers, patients CASCADE` took both).
    with psycopg.connect(fresh_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.patients (id int PRIMARY KEY, name text)")
        conn.execute("INSERT INTO public.patients VALUES (1, 'their real row'), (2, 'another')")
        conn.execute("CREATE TABLE public.orders (id int)")
        conn.execute("CREATE VIEW public.patient_names AS SELECT name FROM public.patients")
    assert seed(fresh_url, patients=20, customers=10) == {"customers": 10, "orders": 20, "patients": 20}
    assert seed(fresh_url, patients=20, customers=10)["patients"] == 20  # and a re-run, on the marked schema
    with psycopg.connect(fresh_url) as conn:
        assert conn.execute("SELECT name FROM public.patient_names ORDER BY name").fetchall() == [
            ("another",), ("their real row",)]
        assert conn.execute("SELECT count(*) FROM public.orders").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM lineage_guard_demo.patients").fetchone() == (20,)
        assert conn.execute("SELECT obj_description('lineage_guard_demo'::regnamespace, 'pg_namespace')"
                            ).fetchone() == (MARKER,)


def test_an_unmarked_demo_schema_is_refused_untouched(fresh_url):
    with psycopg.connect(fresh_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {SCHEMA}")
        conn.execute(f"CREATE TABLE {SCHEMA}.patients (id int, mine text)")
        conn.execute(f"INSERT INTO {SCHEMA}.patients VALUES (7, 'keep me')")
    before = _tables_and_views(fresh_url)
    with pytest.raises(DemoSchemaRefused, match="not made by lineage-guard demo.*nothing was changed"):
        seed(fresh_url, patients=5, customers=5)
    assert _tables_and_views(fresh_url) == before
    with psycopg.connect(fresh_url) as conn:
        assert conn.execute(f"SELECT id, mine FROM {SCHEMA}.patients").fetchall() == [(7, "keep me")]
        assert conn.execute(f"SELECT obj_description('{SCHEMA}'::regnamespace, 'pg_namespace')").fetchone() == (None,)


def test_a_view_outside_the_demo_on_a_demo_table_stops_the_reseed(fresh_url):
    seed(fresh_url, patients=5, customers=5)
    with psycopg.connect(fresh_url, autocommit=True) as conn:
        conn.execute(f"CREATE VIEW public.my_report AS SELECT count(*) AS n FROM {SCHEMA}.patients")
    with pytest.raises(DemoSchemaRefused, match=r"public\.my_report.*nothing was changed"):
        seed(fresh_url, patients=9, customers=9)
    with psycopg.connect(fresh_url) as conn:
        assert conn.execute("SELECT n FROM public.my_report").fetchone() == (5,)  # the previous demo data, whole
