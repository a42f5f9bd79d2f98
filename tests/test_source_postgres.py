"""PostgresSource against the real test server: types, streaming, read-only, timeout, sanitized errors."""

from __future__ import annotations

import logging
import uuid
from decimal import Decimal

import pyarrow as pa
import pytest
from conftest import require
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lineage_guard.errors import ConfigError, SourceError
from lineage_guard.sources import PostgresSource
from lineage_guard.sources.pg_url import PgUrl

psycopg = require("psycopg", "postgres")  # fails under CI=true instead of skipping
RAW = "931-38-3286"  # a fake SSN that must never surface in an error


@pytest.fixture(scope="module")
def db(pg_url):
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("""
            DROP TABLE IF EXISTS src_people, src_guard;
            CREATE TABLE src_people (id int PRIMARY KEY, ssn text, amount numeric(10, 2));
            INSERT INTO src_people SELECT g, '931-38-' || lpad(g::text, 4, '0'), g * 1.25 FROM generate_series(1, 5000) g;
            CREATE TABLE src_guard (x int); DROP SEQUENCE IF EXISTS src_seq; CREATE SEQUENCE src_seq;
            CREATE SCHEMA IF NOT EXISTS other;
            CREATE TABLE IF NOT EXISTS other.src_people (only_in_other int);
        """)
    return pg_url


def count(url, table="src_guard"):
    with psycopg.connect(url) as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def test_info_and_url():
    src = PostgresSource("postgresql://svc:s3cret@DB.Example.com/sales", environment="production")
    assert (src.info.namespace, src.info.dataset_name("public", "t")) == ("postgres://db.example.com:5432",
                                                                           "sales.public.t")
    assert src.info.environment == "production"
    assert PostgresSource("postgres://u@h:6543/d").info.namespace == "postgres://h:6543"
    assert PgUrl.parse("postgresql://postgres:@/postgres?host=/tmp/sock").host == "localhost"
    assert "s3cret" not in repr(src) and "s3cret" not in src.redacted_url
    assert src.catalog_url == "postgresql://svc:s3cret@DB.Example.com/sales"
    for bad in ("", "mysql://h/d", "postgresql://h:99999999/d"):
        with pytest.raises(ConfigError):
            PostgresSource(bad)
    with pytest.raises(ConfigError):
        PostgresSource("postgresql://h/d", statement_timeout_ms=0)


def test_types(db):
    sql = """SELECT 1::int2 i2, 2::int4 i4, 3::int8 i8, 1.5::real r, 2.5::float8 f, true b, 'x'::text t,
        12.34::numeric(10, 2) n, 1.5::numeric(50, 3) n50, (1 / 3.0)::numeric nfree, '{"a": [1]}'::jsonb jb,
        '{"a":1}'::json js, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid u, '10.1.2.3'::inet ip,
        '10.0.0.0/8'::cidr net, '2001:db8::1/64'::inet ip6, '08:00:2b:01:02:03'::macaddr mac,
        interval '1 day 2 hours' iv, ARRAY[1, 2] ai, ARRAY['a', NULL] at, ARRAY[1.5, NULL]::numeric[] an,
        '2024-01-02 03:04:05+00'::timestamptz tz, '2024-01-02 03:04:05'::timestamp ts, '2024-01-02'::date d,
        '\\x0102'::bytea by"""
    table = PostgresSource(db).read_all(sql)
    types = {f.name: f.type for f in table.schema}
    assert types == {
        "i2": pa.int16(), "i4": pa.int32(), "i8": pa.int64(), "r": pa.float32(), "f": pa.float64(),
        "b": pa.bool_(), "t": pa.string(), "n": pa.decimal128(10, 2), "n50": pa.decimal256(50, 3),
        "nfree": pa.decimal128(38, 10), "jb": pa.string(), "js": pa.string(), "u": pa.string(),
        "ip": pa.string(), "net": pa.string(), "ip6": pa.string(), "mac": pa.string(),
        "iv": pa.month_day_nano_interval(), "ai": pa.list_(pa.int32()), "at": pa.list_(pa.string()),
        "an": pa.list_(pa.decimal128(38, 10)), "tz": pa.timestamp("us", tz="UTC"), "ts": pa.timestamp("us"),
        "d": pa.date32(), "by": pa.binary(),
    }
    row = table.to_pylist()[0]
    assert row["n"] == Decimal("12.34") and row["n50"] == Decimal("1.500")
    assert row["nfree"] == Decimal("0.3333333333")
    assert row["jb"] == '{"a": [1]}' and row["js"] == '{"a":1}'
    assert row["u"] == "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
    assert (row["ip"], row["net"], row["ip6"], row["mac"]) == ("10.1.2.3", "10.0.0.0/8", "2001:db8::1/64",
                                                                "08:00:2b:01:02:03")
    assert row["an"] == [Decimal("1.5"), None] and row["at"] == ["a", None] and row["by"] == b"\x01\x02"
    assert table.schema.field("n").metadata[b"POSTGRESQL:type"] == b"numeric"


def _server_has_xml(url: str) -> bool:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        try:
            conn.execute("SELECT '<a/>'::xml")
        except psycopg.errors.FeatureNotSupported:   # built without libxml (the embedded pgserver build)
            return False
    return True


def test_xml_reads_as_text_or_fails_clearly_where_the_server_has_no_xml(db):
    # Not a skip: on a server built without libxml the read must fail with the SQLSTATE, not crash.
    if _server_has_xml(db):
        table = PostgresSource(db).read_all("SELECT '<a/>'::xml x")
        assert table.schema.field("x").type == pa.string() and table.column("x").to_pylist() == ["<a/>"]
    else:
        with pytest.raises(SourceError, match="0A000 feature_not_supported"):
            PostgresSource(db).read_all("SELECT '<a/>'::xml x")


def test_uuid_nulls_and_many_values(db):
    ids = [str(uuid.uuid4()) for _ in range(50)]
    values = ", ".join(f"('{i}'::uuid)" for i in ids) + ", (NULL::uuid)"
    table = PostgresSource(db).read_all(f"SELECT * FROM (VALUES {values}) v(u)")
    assert table.column("u").to_pylist() == ids + [None]


def test_unconvertible_types_fail_with_the_cast_to_add(db):
    with pytest.raises(SourceError, match=r"'p'.*point.*p::text"):
        PostgresSource(db).read_all("SELECT point(1, 2) AS p")
    assert PostgresSource(db).read_all("SELECT point(1, 2)::text AS p").column("p").to_pylist() == ["(1,2)"]
    with pytest.raises(SourceError, match=r"'n'.*numeric\(p, s\)") as exc:
        PostgresSource(db).read_all("SELECT 'NaN'::numeric AS n")
    assert "nan" not in str(exc.value).lower().replace("nan, infinity", "")


def test_streams_in_batches(db):
    src = PostgresSource(db, batch_rows=1000)
    with src.stream("SELECT id, amount FROM src_people ORDER BY id") as batches:
        assert batches.schema.field("amount").type == pa.decimal128(10, 2)
        sizes = [b.num_rows for b in batches]
    assert sizes == [1000] * 5 and batches.rows == 5000
    # A generator-style use cleans up on exhaustion too.
    assert sum(b.num_rows for b in src.stream("SELECT id FROM src_people")) == 5000


def test_parameters(db):
    table = PostgresSource(db).read_all("SELECT id FROM src_people WHERE id <= $1 ORDER BY id", [3])
    assert table.column("id").to_pylist() == [1, 2, 3]


def test_abandoned_stream_releases_its_connection(db):
    src = PostgresSource(db, batch_rows=10)
    for _ in range(5):
        with src.stream("SELECT g AS abandoned FROM generate_series(1, 300000) g") as batches:
            assert next(batches).num_rows == 10
        assert batches._conn is None
    with psycopg.connect(db, autocommit=True) as conn:
        for _ in range(50):  # the server notices the cancel asynchronously: wait for it, not for a time
            left = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%AS abandoned%' "
                                "AND pid <> pg_backend_pid()").fetchone()[0]
            if not left:
                break
            conn.execute("SELECT pg_sleep(0.1)")
    assert left == 0


@pytest.mark.parametrize("sql", [
    "INSERT INTO src_guard VALUES (1)",
    "CREATE TEMP TABLE t_evil (x int)",
    "CREATE TABLE t_evil (x int)",
    "SELECT set_config('transaction_read_only', 'off', false)",
    "SET TRANSACTION READ WRITE",
    "WITH w AS (INSERT INTO src_guard VALUES (1) RETURNING x) SELECT * FROM w",
    "COMMIT; INSERT INTO src_guard VALUES (1)",
    "SELECT nextval('src_seq')",
])
def test_read_path_cannot_write(db, sql):
    with pytest.raises(SourceError):
        PostgresSource(db).read_all(sql)
    assert count(db) == 0
    with psycopg.connect(db) as conn:
        assert conn.execute("SELECT to_regclass('t_evil')").fetchone()[0] is None


def test_session_settings_do_not_survive_or_lift_the_timeout(db):
    src = PostgresSource(db, statement_timeout_ms=300)
    # Changing the timeout from inside the statement does not disarm it for that statement.
    with pytest.raises(SourceError, match="57014 query_canceled.*300 ms"):
        src.read_all("SELECT set_config('statement_timeout', '0', false), pg_sleep(3)")
    src.read_all("SELECT set_config('search_path', 'other', false)")
    assert src.read_all("SELECT current_setting('statement_timeout') s, current_setting('search_path') p,"
                        " current_setting('transaction_read_only') ro").to_pylist() == [
        {"s": "300ms", "p": "pg_catalog, public, pg_temp", "ro": "on"}]


def test_schema_pins_search_path(db):
    assert PostgresSource(db).read_all("SELECT * FROM src_people LIMIT 1").column_names == ["id", "ssn", "amount"]
    assert PostgresSource(db, schema="other").read_all("SELECT * FROM src_people").column_names == ["only_in_other"]


def test_execute_write(db):
    src = PostgresSource(db)
    assert src.execute_write("INSERT INTO src_guard SELECT generate_series(1, 3)") == 3
    assert src.execute_write("DELETE FROM src_guard WHERE x > $1", [1]) == 2
    assert count(db) == 1
    with pytest.raises(SourceError, match="22P02"):
        src.execute_write(f"INSERT INTO src_guard VALUES ('{RAW}'::int)")
    src.execute_write("DELETE FROM src_guard")
    assert count(db) == 0


def test_a_write_batch_is_one_transaction_under_one_timeout(db):
    src = PostgresSource(db, statement_timeout_ms=800)
    with pytest.raises(SourceError, match="22P02"):   # row 3 fails: rows 1 and 2 are rolled back with it
        src.execute_write_batch("INSERT INTO src_guard VALUES ($1::int)", [["1"], ["2"], [RAW]])
    assert count(db) == 0
    # Each row alone is well inside the timeout; together they are not: the batch stops, nothing written.
    with pytest.raises(SourceError, match="57014.*800 ms"):
        src.execute_write_batch("INSERT INTO src_guard SELECT $1::int FROM pg_sleep(0.3)", [[1], [2], [3], [4]])
    assert count(db) == 0
    assert src.execute_write_batch("INSERT INTO src_guard VALUES ($1::int)", [[1], [2], [3]]) == 3
    src.execute_write("DELETE FROM src_guard")
    assert count(db) == 0


def test_reads_share_one_database_handle_and_renew_it_for_a_type_created_since(db):
    from lineage_guard.sources import adbc_databases

    src = PostgresSource(db)
    src.read_all("SELECT 1 AS one")
    [(uri, first)] = [(k, e) for k, e in adbc_databases._HANDLES.items() if k.startswith(db)]
    src.read_all("SELECT 2 AS two")
    assert adbc_databases._HANDLES[uri] is first and first.users == 0   # reused, each lease released
    mood = f"src_mood_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(f"CREATE TYPE {mood} AS ENUM ('ok', 'sad')")
    try:
        # The handle's type table predates the enum: without renewal the column would be opaque bytes
        # (and TypePlan would refuse it); the read is redone on a new handle and gets text.
        table = src.read_all(f"SELECT 'sad'::{mood} AS m, ARRAY['ok'::{mood}] AS ms")
    finally:
        with psycopg.connect(db, autocommit=True) as conn:
            conn.execute(f"DROP TYPE {mood}")
    assert table.to_pylist() == [{"m": "sad", "ms": ["ok"]}]
    renewed = adbc_databases._HANDLES[uri]
    assert renewed is not first and first.retired and renewed.users == 0


def test_errors_never_carry_values(db, caplog):
    caplog.set_level(logging.DEBUG)
    src = PostgresSource(db)
    cases = {
        "SELECT ssn::int FROM src_people": "22P02 invalid_text_representation",
        f"SELECT '{RAW}'::int": "22P02 invalid_text_representation",
        f"SELECT 1 / (length('{RAW}') - 11)": "22012 division_by_zero",
        f"SELECT \"{RAW}\" FROM src_people": "42703 undefined_column",
        f"SELECT * FROM \"{RAW}\"": "42P01 undefined_table",
    }
    for sql, expected in cases.items():
        with pytest.raises(SourceError) as exc:
            src.read_all(sql)
        err = exc.value
        assert expected in str(err) and err.sqlstate == expected[:5]
        assert "931-38" not in str(err) and "931-38" not in repr(err)
        assert err.__cause__ is None and err.__context__ is None
    assert "931-38" not in caplog.text


@pytest.mark.parametrize("url, expected", [
    ("postgresql://postgres:hunter2pw@127.0.0.1:1/postgres", "host 127.0.0.1, port 1.*connection refused"),
    ("postgresql://postgres:hunter2pw@127.0.0.1:5432/lg_no_such_db", "'lg_no_such_db'.*does not exist"),
    ("postgresql://postgres:hunter2pw@lg-no-such-host.invalid:5432/x", "could not be resolved"),
])
def test_connection_errors_name_the_target_not_the_password(url, expected, caplog):
    with pytest.raises(SourceError, match=expected) as exc:
        PostgresSource(url).read_all("SELECT 1")
    assert "hunter2pw" not in str(exc.value) and "hunter2pw" not in repr(exc.value)
    assert "hunter2pw" not in caplog.text and exc.value.__context__ is None


def test_error_while_streaming_is_sanitized(db, caplog):
    src = PostgresSource(db, batch_rows=1000)
    sql = "SELECT id, CASE WHEN id = 4900 THEN ssn::int END AS boom FROM src_people ORDER BY id"
    with src.stream(sql) as s, pytest.raises(SourceError, match="22P02 invalid_text_representation") as exc:
        for _ in s:
            pass
    assert "931-38" not in str(exc.value) + repr(exc.value) + caplog.text and exc.value.__context__ is None


def test_parameters_stream_and_are_quoted(db):
    src = PostgresSource(db, batch_rows=500)
    hostile = "x'); DROP TABLE src_guard; --"
    table = src.read_all("SELECT $1::text AS s, $2::int - $3 AS n, $4::date AS d, '$1' AS lit, $5::text AS nul",
                         [hostile, 1, -5, __import__("datetime").date(2024, 2, 29), None])
    assert table.to_pylist() == [{"s": hostile, "n": 6, "d": __import__("datetime").date(2024, 2, 29),
                                  "lit": "$1", "nul": None}]
    assert count(db) == 0
    with src.stream("SELECT id FROM src_people WHERE id > $1", [1000]) as s:
        assert [b.num_rows for b in s] == [500] * 8
    for bad in ([1, 2], [], "12"):
        with pytest.raises(ConfigError, match="parameter"):
            src.read_all("SELECT $1::int AS x", bad)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=40),
       number=st.integers(min_value=-2**63, max_value=2**63 - 1))
def test_inlined_parameters_roundtrip_exactly(db, text, number):
    row = PostgresSource(db).read_all("SELECT $1::text AS t, $2::int8 AS n, $1 = $1 AS same", [text, number])
    assert row.to_pylist() == [{"t": text, "n": number, "same": True}]


def test_nul_in_a_text_parameter_is_refused(db):
    with pytest.raises((ConfigError, SourceError)):
        PostgresSource(db).read_all("SELECT $1::text AS t", ["a\x00b"])
