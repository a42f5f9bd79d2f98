"""`governed_postgres_asset`: one governed query as one Dagster asset, streamed to masked Parquet.

The asset's body is a single `GovernedSession.extract` into the file its IO manager (a
`GovernedIOManager`) would use, so batches go from PostgreSQL through the masks to Parquet
without the whole table in memory, and downstream assets load it like any other output.
A denial or a pending approval fails the run with a `dagster.Failure` saying why (and
the approval command); nothing is written.

Example:
    >>> patients = governed_postgres_asset(
    ...     "patients_for_training",
    ...     "SELECT id, mrn, full_name, birth_date, diagnosis FROM patients",
    ...     key_prefix=["ml"], group_name="training")
    >>> patients.key.path
    ['ml', 'patients_for_training']
"""


from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg

from lineage_guard.errors import ConfigError

from .failures import governed_failures
from .io_manager import GovernedIOManager, _read_schema
from .metadata import materialization_metadata
from .resource import GovernedPostgresResource


def governed_postgres_asset(
    name: str,
    sql: str,
    *,
    parameters: Sequence[Any] | None = None,
    purpose: str | None = None,
    identity: str | None = None,
    resource_key: str = "governed_postgres",
    io_manager_key: str = "io_manager",
    key_prefix: str | Sequence[str] | None = None,
    deps: Sequence[Any] | None = None,
    group_name: str | None = None,
    description: str | None = None,
    partitions_def: dg.PartitionsDefinition | None = None,
    metadata: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
) -> dg.AssetsDefinition:
    """An asset that runs `sql` through lineage_guard and stores the masked result as Parquet.

    `purpose`/`identity` override the resource's for this asset. `resource_key` names the
    `GovernedPostgresResource`, `io_manager_key` the `GovernedIOManager` that says where the
    file goes (and loads it for downstream assets). With `partitions_def`, the partition key is
    passed as the query's only parameter unless `parameters` is given.
    """
    if not sql or not sql.strip():
        raise ConfigError(f"governed_postgres_asset {name!r}: sql is empty")

    @dg.asset(
        name=name, key_prefix=key_prefix, deps=deps, group_name=group_name, partitions_def=partitions_def,
        description=description or f"Governed read (lineage_guard):\n\n```sql\n{sql}\n```",
        required_resource_keys={resource_key, io_manager_key}, io_manager_key=io_manager_key,
        metadata=dict(metadata or {}), tags=dict(tags or {}), kinds={"postgres", "parquet"},
    )
    def _governed(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        resource = getattr(context.resources, resource_key)
        io = getattr(context.resources, io_manager_key)
        if not isinstance(resource, GovernedPostgresResource) or not isinstance(io, GovernedIOManager):
            raise dg.Failure(f"governed_postgres_asset {name!r} needs a GovernedPostgresResource as "
                             f"{resource_key!r} and a GovernedIOManager as {io_manager_key!r}")
        partition = context.partition_key if context.has_partition_key else None
        params = parameters if parameters is not None else ([partition] if partition is not None else None)
        uri = io.uri_for(context.asset_key, partition)
        with governed_failures():
            with resource.session(context, purpose=purpose, identity=identity) as session:
                result = session.extract(sql, uri, params)
                who, why = session.identity.principal, session.purpose
            schema = _read_schema(result.output_uri)
        context.log.info(f"lineage_guard: {result.rows} rows to {result.output_uri}; masked: "
                         f"{', '.join(result.masked_columns) or 'none'}; receipt {result.receipt_id}")
        return dg.MaterializeResult(metadata=materialization_metadata(
            result, schema, source_prefix=resource.source_asset_prefix, identity=who, purpose=why))

    return _governed


__all__ = ["governed_postgres_asset"]
