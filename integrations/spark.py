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

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame, SparkSession

    from ..client import RemoteSession


@dataclass(frozen=True)
class ServiceCredential:
    """What a Spark task needs to reach the service as the caller: its URL, purpose and credential.

    It is pickled into every task, so it carries a bearer token (or a token file path the executors
    can read, re-read per task: rotated tokens) and the service's CA certificate: nothing else.
    """

    url: str
    purpose: str
    token: str | None = None
    token_file: str | None = None
    tls_root_certs: bytes | None = None

    def __post_init__(self) -> None:
        if bool(self.token) == bool(self.token_file):
            raise ConfigError("ServiceCredential: give token= or token_file= (one of them): Spark tasks connect "
                              "with the caller's credential")

    def __repr__(self) -> str:   # Spark logs task closures and errors: the token never shows
        return f"ServiceCredential(url={self.url!r}, purpose={self.purpose!r}, token=***)"

    def session(self) -> RemoteSession:
        from ..client import RemoteSession

        return RemoteSession(self.url, purpose=self.purpose, token=self.token, token_file=self.token_file,
                             tls_root_certs=self.tls_root_certs)


@dataclass(frozen=True)
class GovernedRead:
    """A statement planned once on the service: its endpoints (serialized), result schema and plan document
    (`about`: the plan, and for a split read its `parent_run_id`, `split_key`, `partitions`)."""

    credential: ServiceCredential
    endpoints: tuple[bytes, ...]
    schema: pa.Schema
    about: dict[str, Any]

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
    """Plan `sql` once (on the driver): the service's endpoints for it, `partitions` key ranges of one plan."""
    import json

    from pyarrow import flight

    from ..service import flightsql as fs

    command = fs.pack(fs.MESSAGES.CommandStatementQuery(query=sql))
    with credential.session() as session:
        info = session.flight_info(flight.FlightDescriptor.for_command(command), partitions=partitions,
                                   split_key=split_key)
    about = json.loads(info.app_metadata or b"{}").get("lineage_guard", {})
    return GovernedRead(credential, tuple(e.serialize() for e in info.endpoints), info.schema, about)


def read_governed(spark: SparkSession, credential: ServiceCredential, sql: str, *, partitions: int = 1,
                  split_key: str | None = None) -> DataFrame:
    """The masked result of `sql` as a Spark DataFrame with one partition per endpoint the service returns.

    The driver asks the service for the plan and the endpoints once (`RemoteSession.flight_info`);
    each endpoint travels serialized (`FlightEndpoint.serialize()`) to the task that reads it.
    """
    return plan_read(credential, sql, partitions=partitions, split_key=split_key).to_dataframe(spark)


def _read_endpoints(credential: ServiceCredential, schema: pa.Schema,
                    seeds: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """In a Spark task: fetch the endpoints of this partition's rows as the caller (`RemoteSession.fetch`)."""
    from pyarrow import flight

    blobs = [blob for batch in seeds for blob in batch.column("endpoint").to_pylist()]
    if not blobs:
        return
    with credential.session() as session:
        for blob in blobs:
            table, _receipt = session.fetch(flight.FlightEndpoint.deserialize(blob))
            for batch in table.to_batches():
                yield _conform(batch, schema)


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
