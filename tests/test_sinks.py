"""Sinks: Parquet (local and fsspec memory://), Arrow, Postgres table; atomic on failure."""

from __future__ import annotations

import os
import uuid

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import require

from lineage_guard.errors import SinkError
from lineage_guard.sinks import ArrowSink, ParquetSink, PostgresTableSink
from lineage_guard.sinks.naming import file_dataset
from lineage_guard.sources import PostgresSource

SCHEMA = pa.schema([("id", pa.int64()), ("email_token", pa.string())])


def batches(n=3, rows=100):
    for i in range(n):
        ids = list(range(i * rows, (i + 1) * rows))
        yield pa.record_batch([pa.array(ids, pa.int64()), pa.array([f"tok_{x}" for x in ids])], schema=SCHEMA)


class Boom(Exception):
    pass


def fill(sink, fail_after=None):
    with sink:
        sink.open(SCHEMA)
        for i, batch in enumerate(batches()):
            if i == fail_after:
                raise Boom()
            sink.write(batch)
        return sink.commit()


def leftovers(fs, folder):
    return [p for p in fs.ls(folder, detail=False) if ".lg-tmp" in p]


@pytest.mark.parametrize("uri, namespace, name", [
    ("/data/out.parquet", "file", "/data/out.parquet"),
    ("file:///data/out.parquet", "file", "/data/out.parquet"),
    ("s3://bucket/exports/x.parquet", "s3://bucket", "exports/x.parquet"),
    ("gs://bkt/a/b.parquet", "gs://bkt", "a/b.parquet"),
    ("abfss://c@acct.dfs.core.windows.net/p/x.parquet", "abfss://c@acct.dfs.core.windows.net", "p/x.parquet"),
    ("memory://tmp/x.parquet", "memory", "/tmp/x.parquet"),
])
def test_naming(uri, namespace, name):
    assert file_dataset(uri) == (namespace, name)


def test_parquet_local_roundtrip(tmp_path):
    target = tmp_path / "nested" / "out.parquet"
    info = fill(ParquetSink(target))
    assert (info.kind, info.namespace, info.name, info.uri) == ("parquet", "file", str(target), str(target))
    table = pq.read_table(target)
    assert table.num_rows == 300 and table.schema.equals(SCHEMA)
    assert os.path.getsize(target) > 0
    assert os.listdir(target.parent) == ["out.parquet"]


def test_parquet_relative_path_is_made_absolute(tmp_path):
    sink = ParquetSink("rel/out.parquet")  # lg_home chdirs into tmp_path
    assert sink.info.name == str(tmp_path / "rel" / "out.parquet")


def test_parquet_local_failure_leaves_nothing(tmp_path):
    target = tmp_path / "out.parquet"
    with pytest.raises(Boom):
        fill(ParquetSink(target), fail_after=2)
    assert os.listdir(tmp_path) == [] or not [p for p in os.listdir(tmp_path) if "out.parquet" in p]


def test_parquet_failure_keeps_previous_result_whole(tmp_path):
    target = tmp_path / "out.parquet"
    fill(ParquetSink(target))
    with pytest.raises(Boom):
        fill(ParquetSink(target), fail_after=1)
    assert pq.read_table(target).num_rows == 300
    assert [p.name for p in tmp_path.iterdir()] == ["out.parquet"]


def test_parquet_memory_fs():
    folder = f"memory://lg-{uuid.uuid4().hex[:8]}"
    fs = fsspec.filesystem("memory")
    sink = ParquetSink(f"{folder}/ok.parquet")
    info = fill(sink)
    assert info.namespace == "memory" and sink.bytes_written == fs.size(f"{folder}/ok.parquet") > 0
    with fs.open(f"{folder}/ok.parquet", "rb") as f:
        assert pq.read_table(f).num_rows == 300 and sink.rows == 300
    with pytest.raises(Boom):
        fill(ParquetSink(f"{folder}/bad.parquet"), fail_after=2)
    assert not fs.exists(f"{folder}/bad.parquet") and leftovers(fs, folder) == []


def test_exit_without_commit_aborts(tmp_path):
    target = tmp_path / "out.parquet"
    with ParquetSink(target) as sink:
        sink.open(SCHEMA)
        sink.write(next(batches()))
    assert sink.state == "aborted" and list(tmp_path.iterdir()) == []


def test_schema_mismatch_and_misuse(tmp_path):
    sink = ParquetSink(tmp_path / "out.parquet")
    with pytest.raises(SinkError, match="open"):
        sink.write(next(batches()))
    sink.open(SCHEMA)
    with pytest.raises(SinkError, match="schema differs"):
        sink.write(pa.record_batch({"id": [1]}))
    assert sink.state == "aborted" and list(tmp_path.iterdir()) == []
    with pytest.raises(SinkError, match="aborted"):
        sink.commit()


def test_parquet_refuses_intervals(tmp_path):
    with pytest.raises(SinkError, match="interval columns \\(iv\\).*iv::text|extract"):
        ParquetSink(tmp_path / "x.parquet").open(pa.schema([("iv", pa.month_day_nano_interval())]))
    assert list(tmp_path.iterdir()) == []


def test_arrow_sink():
    sink = ArrowSink("preview")
    info = fill(sink)
    assert (info.kind, info.namespace, info.name) == ("memory", "memory", "preview")
    assert sink.table.num_rows == 300 and sink.bytes_written > 0
    failed = ArrowSink()
    with pytest.raises(Boom):
        fill(failed, fail_after=1)
    assert failed.table is None and failed.state == "aborted"


def test_source_to_parquet(pg_url, tmp_path):
    src = PostgresSource(pg_url, batch_rows=1000)
    target = tmp_path / "series.parquet"
    with src.stream("SELECT g AS id, (g * 1.5)::numeric(12, 2) AS amount, now() AS at "
                    "FROM generate_series(1, 4500) g") as stream, ParquetSink(target) as sink:
        sink.open(stream.schema)
        for batch in stream:
            sink.write(batch)
        sink.commit()
    table = pq.read_table(target)
    assert table.num_rows == 4500 and table.schema.field("amount").type == pa.decimal128(12, 2)


def test_postgres_table_sink(pg_url):
    psycopg = require("psycopg", "postgres")
    table = f"sink_{uuid.uuid4().hex[:8]}"
    info = fill(PostgresTableSink(pg_url, table))
    assert info.kind == "postgres" and info.name.endswith(f".public.{table}")
    assert info.namespace == PostgresSource(pg_url).info.namespace
    with psycopg.connect(pg_url) as conn:
        assert conn.execute(f"SELECT count(*), count(DISTINCT email_token) FROM {table}").fetchone() == (300, 300)
    failed = f"sink_{uuid.uuid4().hex[:8]}"
    with pytest.raises(Boom):
        fill(PostgresTableSink(pg_url, failed), fail_after=2)
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT to_regclass(%s)", [failed]).fetchone()[0] is None
    fill(PostgresTableSink(pg_url, table, mode="replace"))
    with pytest.raises(Boom):
        fill(PostgresTableSink(pg_url, table, mode="append"), fail_after=2)
    with psycopg.connect(pg_url) as conn:
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 300
    with pytest.raises(SinkError, match="42P07"):
        fill(PostgresTableSink(pg_url, table, mode="create"))


def test_seal_gives_exact_size_before_publishing(tmp_path):
    target = tmp_path / "out.parquet"
    sink = ParquetSink(target)
    sink.open(SCHEMA)
    for batch in batches():
        sink.write(batch)
    staged = sink.bytes_written
    sink.seal()
    assert 0 < staged < sink.bytes_written and not target.exists()
    with pytest.raises(SinkError, match="sealed"):
        sink.write(next(batches()))
    sink.commit()
    assert sink.bytes_written == target.stat().st_size


def test_source_failure_mid_stream_leaves_no_parquet(pg_url, tmp_path):
    target = tmp_path / "bad.parquet"
    src = PostgresSource(pg_url, batch_rows=100_000)
    # The driver's batches are ~16 MB: the failing row must come after the first one.
    sql = "SELECT g, CASE WHEN g = 2900000 THEN ('x' || g)::int END AS boom FROM generate_series(1, 3000000) g"
    with pytest.raises(Exception, match="22P02"), src.stream(sql) as stream, ParquetSink(target) as sink:
        sink.open(stream.schema)
        for batch in stream:
            sink.write(batch)
        sink.commit()
    assert sink.rows > 0 and list(tmp_path.iterdir()) == []


def test_parquet_dictionary_only_for_repeated_columns_and_sha256_of_the_written_bytes(tmp_path):
    import hashlib

    batch = pa.record_batch({"token": [f"tok_{i:024x}" for i in range(20_000)],
                             "code": [f"B{i % 7}" for i in range(20_000)]})
    target = tmp_path / "out.parquet"
    sink = ParquetSink(str(target))
    sink.open(batch.schema)
    sink.write(batch)
    sink.seal()
    sink.commit()
    column = {pq.ParquetFile(target).metadata.row_group(0).column(i).path_in_schema:
              pq.ParquetFile(target).metadata.row_group(0).column(i).encodings for i in range(2)}
    assert "RLE_DICTIONARY" in column["code"] and "RLE_DICTIONARY" not in column["token"]
    assert sink.sha256 == hashlib.sha256(target.read_bytes()).hexdigest()
    assert sink.bytes_written == target.stat().st_size
