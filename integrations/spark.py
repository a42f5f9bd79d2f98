"""Spark on the governed path: a masked DataFrame read by Spark tasks, and lake files masked by Spark tasks.

Both run the governed path on `lineage-guard serve`; the Spark driver and executors hold only the
caller's credential (a token or a token file), never the master key or a database password.

`read_governed` plans once on the driver: the service splits the statement into endpoints (key
ranges of one plan, one key scope: the same tokens in every partition) and each endpoint is read by
one Spark task through `mapInArrow`, so the DataFrame has one partition per endpoint. Each fetched
endpoint is a ledger entry of the server's.

`mask_lake_files` masks Parquet files that are not in PostgreSQL: one Spark task per file sends its
batches to the service (Flight DoExchange) as the columns of a governed table and writes the masked
file atomically, with the ledger receipt in its footer.

Example:
    >>> from lineage_guard.integrations.spark import ServiceCredential, read_governed   # doctest: +SKIP
    >>> cred = ServiceCredential("grpc+tls://lg.internal:8815", purpose="ai_training",
    ...                          token_file="/var/run/secrets/lineage-guard/token")     # doctest: +SKIP
    >>> df = read_governed(spark, cred, "SELECT id, email FROM people", partitions=8)  # doctest: +SKIP
    >>> df.rdd.getNumPartitions()                                                      # doctest: +SKIP
    8
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ..errors import ConfigError
from . import endpoints
from .endpoints import PlannedRead, ServiceCredential

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["GovernedRead", "ServiceCredential", "mask_lake_files", "plan_read", "read_governed"]


@dataclass(frozen=True)
class GovernedRead(PlannedRead):
    """A `PlannedRead` (planned once, on the driver) that becomes a Spark DataFrame."""

    def to_dataframe(self, spark: SparkSession) -> DataFrame:
        """One Spark partition per endpoint; each task fetches its endpoint with the caller's credential."""
        spark_schema = _spark_schema(self.schema)
        arrow_schema = _arrow_schema(spark_schema)
        credential = self.credential
        seeds = spark.sparkContext.parallelize(list(enumerate(self.endpoints)), numSlices=len(self.endpoints))
        frame = spark.createDataFrame(seeds, "endpoint_index int, endpoint binary")

        def read(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
            return _read_endpoints(credential, arrow_schema, batches)

        return frame.mapInArrow(read, spark_schema)


def plan_read(credential: ServiceCredential, sql: str, *, partitions: int = 1,
              split_key: str | None = None) -> GovernedRead:
    """Plan `sql` once on the driver: the service's endpoints for it (`partitions` key ranges of one plan)."""
    planned = endpoints.plan_read(credential, sql, partitions=partitions, split_key=split_key)
    return GovernedRead(planned.credential, planned.endpoints, planned.schema, planned.about)


def read_governed(spark: SparkSession, credential: ServiceCredential, sql: str, *, partitions: int = 1,
                  split_key: str | None = None) -> DataFrame:
    """The masked result of `sql` as a Spark DataFrame with one partition per endpoint the service returns.

    The driver asks the service for the plan and the endpoints once (`RemoteSession.flight_info`);
    each endpoint travels serialized (`FlightEndpoint.serialize()`) to the task that reads it.
    """
    return plan_read(credential, sql, partitions=partitions, split_key=split_key).to_dataframe(spark)


def _read_endpoints(credential: ServiceCredential, schema: pa.Schema,
                    seeds: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """In a Spark task: fetch the endpoints of this partition's rows as the caller."""
    for batch in seeds:
        for blob in batch.column("endpoint").to_pylist():
            for masked in endpoints.fetch_endpoint(credential, blob).to_batches():
                yield _conform(masked, schema)


def mask_lake_files(spark: SparkSession, credential: ServiceCredential, files: Sequence[str | os.PathLike],
                    out_dir: str | os.PathLike, *, table: str,
                    columns: Mapping[str, str | None] | None = None) -> list[dict[str, Any]]:
    """Mask lake Parquet files on the service as `table`'s columns, one Spark task per file; returns one
    summary per file (input, output, rows, masked columns, receipt id). A task that fails is retried by
    Spark; a masked file appears whole or not at all.
    """
    sources = [str(Path(f).expanduser().resolve()) for f in files]
    names = [Path(f).name for f in sources]
    if len(set(names)) != len(names):
        raise ConfigError("mask_lake_files: two files share a name; their masked files would collide in out_dir")
    target = str(Path(out_dir).expanduser().resolve())
    mapping = dict(columns or {})

    def mask(path: str) -> dict[str, Any]:
        with credential.session() as session:
            result = session.mask_file(path, Path(target) / Path(path).name, table=table, columns=mapping)
        return {"input": Path(path).as_uri(), **result.summary()}

    if not sources:
        return []
    return spark.sparkContext.parallelize(sources, numSlices=len(sources)).map(mask).collect()


def _spark_schema(schema: pa.Schema):
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(pa.schema([pa.field(f.name, f.type, True) for f in schema]))


def _arrow_schema(spark_schema) -> pa.Schema:
    from pyspark.sql.pandas.types import to_arrow_schema

    return to_arrow_schema(spark_schema)


def _conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """The batch in the exact Arrow types Spark derives from the DataFrame's schema (e.g. string vs large)."""
    if batch.schema.equals(schema, check_metadata=False):
        return batch
    return pa.RecordBatch.from_arrays([batch.column(i).cast(f.type) for i, f in enumerate(schema)], schema=schema)
