"""Spark (local mode) on the governed path, against the real TLS server and the real database.

The driver plans once; each endpoint is read by a Spark task with the caller's token only (the JVM and
its Python workers are started without any lineage_guard key in their environment). Lake Parquet files
are masked by Spark tasks through Flight DoExchange.
"""

from __future__ import annotations

import logging
import os
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import require
from service_helpers import people_service

from lineage_guard.audit import Ledger

GRANTS = """  exchange:
    - {identity: svc-training, tables: [public.people], purposes: [ai_training]}
"""
SQL = "SELECT id, email, ssn, plan FROM people"
ROWS = 4000


@pytest.fixture(scope="module")
def svc(new_database, tmp_path_factory):
    require("jwt", "service")
    with people_service(new_database(), tmp_path_factory.mktemp("spark-svc"), rows=ROWS, extra_policy=GRANTS) as service:
        yield service


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    require("pyspark", "spark")
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    # The JVM and the Python workers it forks inherit this environment: start them with no key in it.
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("LINEAGE_GUARD_")}
    os.environ["PYSPARK_PYTHON"] = os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    try:
        session = (SparkSession.builder.master("local[2,2]").appName("lineage-guard-test")   # 2 attempts per task
                   .config("spark.task.maxFailures", "2").config("spark.ui.enabled", "false")
                   .config("spark.sql.shuffle.partitions", "2").config("spark.driver.memory", "512m")
                   .config("spark.local.dir", str(tmp_path_factory.mktemp("spark-local")))
                   .getOrCreate())
    finally:
        os.environ.update(saved)
    session.sparkContext.setLogLevel("ERROR")
    yield session
    gateway = SparkContext._gateway
    session.stop()
    # stop() keeps the JVM for a next session; this suite has none, so end it now (its memory back for the rest of
    # the run) and keep py4j's connection finalizers, which run after pytest closed its log streams, from logging.
    logging.getLogger("py4j").setLevel(logging.WARNING)
    if gateway is not None:
        gateway.shutdown()
        SparkContext._gateway = SparkContext._jvm = None


def credential(svc):
    from lineage_guard.integrations.spark import ServiceCredential

    return ServiceCredential(svc.url, purpose="ai_training", token=svc.token, tls_root_certs=svc.tls.pem)


def entries(svc) -> list[dict]:
    with Ledger.open(f"sqlite:///{svc.home / 'ledger.sqlite'}", create=False) as led:
        return [e["body"] for e in led.entries()]


def single_extract(svc) -> list[tuple]:
    from lineage_guard.client import connect

    with connect(svc.url, purpose="ai_training", token=svc.token, tls_root_certs=svc.tls.pem) as s:
        table = s.read_arrow(SQL)
    return sorted(zip(*(table.column(n).to_pylist() for n in table.column_names), strict=True))


def test_a_masked_dataframe_with_one_partition_per_endpoint(spark, svc):
    from lineage_guard.integrations.spark import plan_read

    read = plan_read(credential(svc), SQL, partitions=2)
    assert len(read.endpoints) == 2 and read.about["partitions"] == 2
    frame = read.to_dataframe(spark)
    assert frame.rdd.getNumPartitions() == 2
    # One action (each action reads the endpoints again): every row with the partition it came from.
    tagged = frame.rdd.mapPartitionsWithIndex(lambda i, rows: ((i, tuple(r)) for r in rows)).collect()
    assert {i for i, _ in tagged} == {0, 1}
    got = sorted(row for _, row in tagged)
    assert len(got) == ROWS
    assert got == single_extract(svc)        # the same rows and the same tokens as one extract
    assert all(email.startswith("tok_") for _, email, _, _ in got)
    # Each fetched endpoint is an entry naming the read's one parent run.
    parent = read.about["parent_run_id"]
    fetched = [e for e in entries(svc) if (e.get("parent") or {}).get("run_id") == parent and e["outcome"] == "success"
               and e["rows"]]
    assert sum(e["rows"] for e in fetched) >= ROWS
    # The tasks ran with the caller's token only: no key, no database URL in the workers' environment.
    leaked = spark.sparkContext.parallelize([0, 1], 2).map(
        lambda _: sorted(k for k in os.environ if k.startswith("LINEAGE_GUARD_"))).collect()
    assert leaked == [[], []]


def test_lake_parquet_files_masked_by_spark_tasks(spark, svc, tmp_path):
    import psycopg
    from lineage_guard.integrations.spark import mask_lake_files

    with psycopg.connect(svc.db) as conn:
        rows = conn.execute("SELECT id, email, ssn, plan FROM people ORDER BY id LIMIT 300").fetchall()
    lake = tmp_path / "lake"
    lake.mkdir()
    files = []
    for part in range(3):
        chunk = rows[part * 100:(part + 1) * 100]
        path = lake / f"part-{part}.parquet"
        pq.write_table(pa.table({n: [r[i] for r in chunk] for i, n in enumerate(["id", "email", "ssn", "plan"])},
                                schema=pa.schema([("id", pa.int32()), ("email", pa.string()), ("ssn", pa.string()),
                                                  ("plan", pa.string())])), path)
        files.append(path)
    results = mask_lake_files(spark, credential(svc), files, tmp_path / "masked", table="people")
    assert sorted(r["rows"] for r in results) == [100, 100, 100]
    masked = pa.concat_tables([pq.read_table(tmp_path / "masked" / f.name) for f in files])
    expected = [r for r in single_extract(svc) if r[0] <= 300]
    got = sorted(zip(*(masked.column(n).to_pylist() for n in ["id", "email", "ssn", "plan"]), strict=True))
    assert got == expected   # tokens join with the database's
    raw = {v for r in rows for v in r[1:3]}
    assert not raw & {str(v) for col in masked.columns for v in col.to_pylist()}
    recorded = {e["exchange"]["input"]: e for e in entries(svc) if e.get("exchange") and e["outcome"] == "success"}
    for result, path in zip(sorted(results, key=lambda r: r["input"]), files, strict=True):
        assert result["input"] == path.as_uri()
        assert recorded[path.as_uri()]["sink"]["uri"] == (tmp_path / "masked" / path.name).as_uri()
        footer = pq.read_metadata(tmp_path / "masked" / path.name).metadata
        assert footer[b"lineage_guard.receipt_id"].decode() == result["receipt_id"]



def test_a_task_killed_mid_partition_is_retried_without_duplicates(spark, svc, tmp_path):
    """The first attempt of one task dies (its Python worker exits) after handing Spark part of its
    partition; Spark retries that task alone (spark.task.maxFailures / local[2,2]) against the same
    endpoint, without planning again, and the result has every row once."""
    from lineage_guard.integrations.spark import plan_read

    marker = tmp_path / "killed-once"
    read = plan_read(credential(svc), SQL, partitions=2)
    frame = read.to_dataframe(spark)

    def die_once(batches):
        for batch in batches:
            half = batch.num_rows // 2
            yield batch.slice(0, half)
            if half and not marker.exists():
                marker.write_text("attempt 1 died here")
                os._exit(1)   # no cleanup, as a killed executor
            yield batch.slice(half)

    got = sorted(tuple(r) for r in frame.mapInArrow(die_once, frame.schema).collect())
    assert marker.exists()                 # the first attempt really died mid-partition
    assert got == single_extract(svc)      # every row exactly once
    # The retry fetched the same endpoint again (no new plan): recorded as attempt 2 of that endpoint.
    parent = read.about["parent_run_id"]
    mine = [e for e in entries(svc) if (e.get("parent") or {}).get("run_id") == parent and e.get("split")]
    retried = [e for e in mine if e["split"].get("attempt", 1) > 1 and e["outcome"] == "success"]
    assert len(retried) == 1 and retried[0]["split"].get("retry_of")
