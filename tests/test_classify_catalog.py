"""DetectionCatalog against the real PostgreSQL: bounded read-only samples, cache keyed by schema version."""

from __future__ import annotations

import json
import sqlite3
from urllib.parse import urlsplit, urlunsplit

import pytest
from conftest import require

from lineage_guard.classify import DetectionCatalog, DetectionConfig
from lineage_guard.classify.sampling import read_only, sample_queries, table_columns
from lineage_guard.errors import ConfigError, SourceError
from lineage_guard.sources.pg_url import compose_url, url_parts
from lineage_guard.sql.model import ColumnRef, TableRef

psycopg = require("psycopg", "postgres")

CORPUS_SENSITIVE = {
    "customers": {"full_name": "person_name", "email": "email", "ssn": "national_id", "phone": "phone",
                  "birth_date": "date_of_birth", "zip": "postal_code"},
    "orders": {"card_number": "payment_card"},
    "patients": {"mrn": "medical_record_number", "full_name": "person_name", "diagnosis": "clinical_note",
                 "notes": "clinical_note", "birth_date": "date_of_birth"},
}


@pytest.fixture(scope="module")
def detect_url(corpus_url):
    """The corpus plus a 60k-row table whose names lie and a table for schema changes."""
    with psycopg.connect(corpus_url, autocommit=True) as conn:
        conn.execute("""
            DROP SCHEMA IF EXISTS detect CASCADE; CREATE SCHEMA detect;
            CREATE TABLE detect.big AS
              SELECT g AS id,
                     'user' || g || '@example.org' AS col_a,
                     lpad((100 + g % 800)::text, 3, '0') || '-' || lpad((10 + g % 89)::text, 2, '0') || '-'
                       || lpad((1000 + g % 8999)::text, 4, '0') AS col_b,
                     'ORD-' || g AS ref,
                     (g % 2 = 0) AS flag
              FROM generate_series(1, 60000) g;
            ANALYZE detect.big;
            CREATE TABLE detect.odd ("Mixed Case" text, born date, seen timestamptz, tags text[], doc jsonb, pic bytea);
            INSERT INTO detect.odd SELECT 'x' || g || '@example.com', DATE '1950-01-01' + g * 250,
                   now() - g * interval '1 day', ARRAY['a'], '{"k": 1}', '\\x00' FROM generate_series(1, 60) g;
            INSERT INTO detect.odd (born, seen) VALUES ('infinity', '-infinity');
            CREATE VIEW detect.contacts AS SELECT "Mixed Case" AS mail FROM detect.odd;
            CREATE TABLE detect.changing (id int, contact text);
            INSERT INTO detect.changing SELECT g, 'person' || g || '@example.net' FROM generate_series(1, 40) g;
        """)
    return corpus_url


def test_scan_labels_the_corpus_from_names_and_values(detect_url):
    found = DetectionCatalog().scan(detect_url, ["customers", "public.orders", "patients"])
    sensitive = {(c.table, c.column): v.label for c, v in found.items() if v.is_sensitive(0.8)}
    expected = {(t, col): lab for t, cols in CORPUS_SENSITIVE.items() for col, lab in cols.items()}
    assert sensitive == expected
    assert found[ColumnRef("public", "customers", "plan")].label == "not_sensitive"


def test_lying_names_in_a_big_table_via_tablesample(detect_url):
    cat = DetectionCatalog()
    found = cat.scan(detect_url, ["detect.big"], sample_rows=200)
    labels = {c.column: v.label for c, v in found.items()}
    assert labels == {"id": "not_sensitive", "col_a": "email", "col_b": "national_id", "ref": "not_sensitive",
                      "flag": "not_sensitive"}
    assert all(v.evidence["sampled"] <= 200 for v in found.values())
    # the sample is bounded and page-sampled: the plan is a Sample Scan under a Limit, never a full scan
    with read_only(detect_url) as conn:
        info = table_columns(conn, [TableRef("detect", "big")])[TableRef("detect", "big")]
        first = sample_queries(info, 200)[0]
        plan = "\n".join(r[0] for r in conn.execute(b"EXPLAIN " + first.as_bytes(conn)).fetchall())
    assert "Sample Scan" in plan and "Limit" in plan and "Seq Scan" not in plan


def test_odd_types_quoted_names_and_views(detect_url):
    found = DetectionCatalog().scan(detect_url, ["detect.odd", "detect.contacts"])
    labels = {f"{c.table}.{c.column}": v.label for c, v in found.items() if v.is_sensitive()}
    assert labels == {"odd.Mixed Case": "email", "odd.born": "date_of_birth", "contacts.mail": "email"}
    assert found[ColumnRef("detect", "odd", "born")].evidence["non_null"] == 60      # infinity sampled as NULL
    assert found[ColumnRef("detect", "odd", "doc")].evidence["non_null"] == 0        # json: name and type only


def test_cache_is_reused_until_the_schema_changes(detect_url, lg_home):
    cat = DetectionCatalog()
    db = lg_home / "catalog.sqlite"

    def scanned_at():
        with sqlite3.connect(db) as c:
            return c.execute("SELECT scanned_at FROM detections WHERE table_name = 'changing'").fetchone()[0]

    first = cat.labels_for(detect_url, [TableRef("detect", "changing")])
    assert first[ColumnRef("detect", "changing", "contact")].label == "email"
    t0 = scanned_at()
    assert cat.labels_for(detect_url, ["detect.changing"]) == first and scanned_at() == t0   # from the cache
    assert DetectionCatalog().cached(detect_url) == first                                      # no connection needed
    with psycopg.connect(detect_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE detect.changing ADD COLUMN ssn text")
    try:
        again = cat.labels_for(detect_url, ["detect.changing"])
        assert scanned_at() > t0
        assert again[ColumnRef("detect", "changing", "ssn")].label == "national_id"   # empty column: the name decides
        assert cat.scan(detect_url, ["detect.changing"], refresh=True).keys() == again.keys()
    finally:
        with psycopg.connect(detect_url, autocommit=True) as conn:
            conn.execute("ALTER TABLE detect.changing DROP COLUMN ssn")
    assert cat.forget(detect_url) >= 1 and cat.cached(detect_url) == {}


def test_cache_holds_no_values_and_no_credentials(detect_url, lg_home):
    with psycopg.connect(detect_url, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS lg_scan_reader; CREATE ROLE lg_scan_reader LOGIN PASSWORD 'pw-Zq81-secret'")
        conn.execute("GRANT USAGE ON SCHEMA public TO lg_scan_reader; GRANT SELECT ON public.customers TO lg_scan_reader")
    try:
        where = url_parts(detect_url)
        url = compose_url(host=where["host"], port=where["port"], database=where["database"],
                          user="lg_scan_reader", password="pw-Zq81-secret")
        DetectionCatalog().scan(url, ["customers"])
        raw = (lg_home / "catalog.sqlite").read_bytes()
        assert b"pw-Zq81-secret" not in raw and b"lg_scan_reader" not in raw
        for value in (b"931-38-3286", b"fakey.mcfake45@fake-01.invalid", b"Fakey McFake 01", b"+1-555-0186"):
            assert value not in raw
        # no privilege on a table: a sanitized SourceError naming what to fix
        with pytest.raises(SourceError) as err:
            DetectionCatalog().scan(url, ["orders"])
        assert err.value.sqlstate == "42501" and "SELECT" in str(err.value)
    finally:
        with psycopg.connect(detect_url, autocommit=True) as conn:
            conn.execute("REVOKE ALL ON public.customers FROM lg_scan_reader; REVOKE ALL ON SCHEMA public FROM lg_scan_reader")
            conn.execute("DROP ROLE lg_scan_reader")


def test_reads_are_read_only_with_a_timeout(detect_url):
    with read_only(detect_url, statement_timeout_ms=1234) as conn:
        assert conn.execute("SHOW transaction_read_only").fetchone()[0] == "on"
        assert conn.execute("SHOW statement_timeout").fetchone()[0] == "1234ms"
    with pytest.raises(SourceError) as err, read_only(detect_url) as conn:
        conn.execute("CREATE TABLE detect.should_not_exist (x int)")
    assert err.value.sqlstate == "25006" and "read-only" in str(err.value)
    with pytest.raises(SourceError) as err, read_only(detect_url, statement_timeout_ms=50) as conn:
        conn.execute("SELECT pg_sleep(2)")
    assert err.value.sqlstate == "57014"


def test_errors_are_clear_and_sanitized(detect_url):
    cat = DetectionCatalog()
    with pytest.raises(ConfigError, match="not found in the source: public.nope"):
        cat.scan(detect_url, ["nope"])
    assert cat.labels_for(detect_url, ["nope", "customers"])  # the planner's call skips what is not a table
    with pytest.raises(ConfigError, match="schema.table"):
        cat.scan(detect_url, ["a.b.c"])
    bad = urlunsplit(urlsplit(detect_url)._replace(path="/lg_no_such_db_zz"))
    with pytest.raises(SourceError) as err:
        cat.scan(bad)
    assert "lg_no_such_db_zz" not in str(err.value) and "SQLSTATE" in str(err.value)


def test_sensitive_labels_applies_threshold_and_per_source_switch(detect_url):
    cat = DetectionCatalog()
    tables = ["customers"]
    strict = cat.sensitive_labels(detect_url, tables, DetectionConfig(threshold=0.95))
    loose = cat.sensitive_labels(detect_url, tables, DetectionConfig(threshold=0.8))
    assert set(strict) < set(loose)
    assert ColumnRef("public", "customers", "email") in strict
    assert ColumnRef("public", "customers", "full_name") in loose and ColumnRef("public", "customers", "full_name") not in strict
    off = DetectionConfig(disabled_sources=[detect_url])
    assert cat.sensitive_labels(detect_url, tables, off) == {}
    assert json.dumps({str(k): v for k, v in loose.items()})  # plain strings for the planner
