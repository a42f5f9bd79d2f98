"""`governed_split_assets`: a split read as Dagster partitions, one partition per endpoint of one plan.

Two assets for one statement, service mode only (the Dagster process holds a token, never a key):

- `<name>_plan` (not partitioned) asks `lineage-guard serve` to plan the statement once and split it
  into key ranges. Its materialization's metadata holds the endpoint documents
  (`lineage_guard.integrations.endpoints.EndpointDoc`: keys, plan ids and opaque tickets the
  service honours only for this identity and purpose: no credential, key or value), and it makes
  the endpoint keys the partitions of `<name>_endpoints`, a `DynamicPartitionsDefinition` (the keys
  of an earlier plan are removed: the partitions are always the endpoints of one plan).
- `<name>` (partitioned by those keys) fetches the endpoint of `context.partition_key` and returns
  its masked rows; a service-mode `GovernedIOManager` stores them with the server's provenance footer
  under `<base_path>/<asset key>/<partition>.parquet`.

The plan is one ledger entry (the summary) and one lineage run, emitted by the service with the
plan's Dagster run as parent; each endpoint's governed run names the plan's run as parent and
records the partition's Dagster run (`split.worker_run`). A partition that fails is retried alone
(a `RetryPolicy`, or a re-run of that partition) against the same endpoint, without a new plan: the
service records the attempt and counts its rows once. Endpoints expire 10 minutes after their
last use; materialize `<name>_plan` again to plan anew.

Example:
    >>> plan, people = governed_split_assets("people", "SELECT id, email, plan FROM people", partitions=4)
    >>> plan.key.path, people.key.path, people.partitions_def.name
    (['people_plan'], ['people'], 'people_endpoints')
"""

# No `from __future__ import annotations`: Dagster reads the `context` annotation when the asset is defined.
from collections.abc import Sequence
from typing import Any

import dagster as dg

from lineage_guard.errors import ConfigError

from .failures import governed_failures
from .resource import GovernedPostgresResource

ENDPOINTS_KEY = "lineage_guard/endpoints"
MAX_PARTITIONS = 64   # the service's own bound (lineage_guard.service.partitions.MAX_PARTITIONS)


def governed_split_assets(
    name: str,
    sql: str,
    *,
    partitions: int = 4,
    split_key: str | None = None,
    resource_key: str = "governed_postgres",
    io_manager_key: str = "io_manager",
    key_prefix: str | Sequence[str] | None = None,
    group_name: str | None = None,
    retry_policy: dg.RetryPolicy | None = None,
) -> tuple[dg.AssetsDefinition, dg.AssetsDefinition]:
    """(`<name>_plan`, `<name>`): plan `sql` once on the service, and one partition per endpoint.

    `partitions` key ranges (2-64) of `split_key` (a clear integer output column; default the
    statement's clear integer primary or unique key). `resource_key` names a service-mode
    `GovernedPostgresResource`; `io_manager_key` the (service-mode `GovernedIOManager`) that stores
    each partition; `retry_policy` retries a failed partition alone.
    """
    if not sql or not sql.strip():
        raise ConfigError(f"governed_split_assets {name!r}: sql is empty")
    if not isinstance(partitions, int) or not 2 <= partitions <= MAX_PARTITIONS:
        raise ConfigError(f"governed_split_assets {name!r}: partitions must be an integer from 2 to {MAX_PARTITIONS}")
    endpoints = dg.DynamicPartitionsDefinition(name=f"{name}_endpoints")
    prefix = [key_prefix] if isinstance(key_prefix, str) else list(key_prefix or [])
    plan_key = dg.AssetKey([*prefix, f"{name}_plan"])

    @dg.asset(name=f"{name}_plan", key_prefix=prefix or None, group_name=group_name,
              required_resource_keys={resource_key}, kinds={"postgres"},
              description=f"The plan of a split governed read (lineage_guard), {partitions} endpoints:\n\n"
                          f"```sql\n{sql}\n```")
    def _plan(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        resource = _resource(context, resource_key, name)
        with governed_failures():
            docs = plan_endpoints(resource, sql, partitions=partitions, split_key=split_key, context=context)
        keys = [d["key"] for d in docs]
        stale = [k for k in context.instance.get_dynamic_partitions(endpoints.name) if k not in keys]
        for key in stale:
            context.instance.delete_dynamic_partition(endpoints.name, key)
        context.instance.add_dynamic_partitions(endpoints.name, keys)
        context.log.info(f"lineage_guard: planned run {docs[0]['parent_run_id']}: {len(docs)} endpoint(s) as "
                         f"partitions of {endpoints.name}")
        return dg.MaterializeResult(metadata={
            ENDPOINTS_KEY: dg.MetadataValue.json(docs),
            "lineage_guard/parent_run_id": docs[0]["parent_run_id"],
            "lineage_guard/summary_receipt_id": docs[0]["summary_receipt_id"],
        })

    @dg.asset(name=name, key_prefix=prefix or None, group_name=group_name, partitions_def=endpoints,
              deps=[plan_key], required_resource_keys={resource_key, io_manager_key},
              io_manager_key=io_manager_key, retry_policy=retry_policy, kinds={"postgres", "parquet"},
              description=f"One endpoint of `{plan_key.to_user_string()}` per partition (lineage_guard).")
    def _endpoint(context: dg.AssetExecutionContext) -> Any:
        resource = _resource(context, resource_key, name)
        doc = endpoint_for(context.instance, plan_key, context.partition_key)
        with governed_failures():
            table, receipt = fetch_endpoint_doc(resource, doc, context=context)
        context.log.info(f"lineage_guard: endpoint {doc['key']} ({doc['index'] + 1} of {doc['of']}): "
                         f"{table.num_rows} rows; receipt {receipt.receipt_id}")
        context.add_output_metadata({"lineage_guard/endpoint": dg.MetadataValue.json(
            {"key": doc["key"], "index": doc["index"], "of": doc["of"], "parent_run_id": doc["parent_run_id"],
             "receipt_id": receipt.receipt_id})})
        return table

    return _plan, _endpoint


def plan_endpoints(resource: GovernedPostgresResource, sql: str, *, partitions: int, split_key: str | None = None,
                   context: Any = None) -> list[dict]:
    """Plan `sql` once on the service as the resource's identity; its endpoint documents (JSON-ready)."""
    import json

    from lineage_guard.integrations.endpoints import endpoint_docs
    from pyarrow import flight

    from lineage_guard.service import flightsql as fs

    command = fs.pack(fs.MESSAGES.CommandStatementQuery(query=sql))
    with _session(resource, context) as session:
        info = session.flight_info(flight.FlightDescriptor.for_command(command), partitions=partitions,
                                   split_key=split_key)
    about = json.loads(info.app_metadata or b"{}").get("lineage_guard", {})
    return [dict(d) for d in endpoint_docs([e.serialize() for e in info.endpoints], about)]


def endpoint_for(instance: dg.DagsterInstance, plan_key: dg.AssetKey, partition_key: str) -> dict:
    """The endpoint document of `partition_key` in the latest materialization of `plan_key`."""
    from lineage_guard.integrations.endpoints import check_doc

    event = instance.get_latest_materialization_event(plan_key)
    meta = event.asset_materialization.metadata if event is not None and event.asset_materialization else {}
    value = meta.get(ENDPOINTS_KEY)
    docs = value.value if value is not None else None
    if not isinstance(docs, list):
        raise dg.Failure(f"lineage_guard: {plan_key.to_user_string()} has no plan; materialize it first")
    for doc in docs:
        if isinstance(doc, dict) and doc.get("key") == partition_key:
            return dict(check_doc(doc, f"partition {partition_key!r}"))
    raise dg.Failure(f"lineage_guard: partition {partition_key!r} is not an endpoint of the latest plan of "
                     f"{plan_key.to_user_string()}; materialize the plan again, then its partitions")


def fetch_endpoint_doc(resource: GovernedPostgresResource, doc: dict, *, context: Any = None):
    """(table, receipt) of one endpoint, fetched as the resource's identity; inside an asset step the
    served rows are remembered for the step's `GovernedIOManager` (which stores them with the footer)."""
    from lineage_guard.integrations.endpoints import endpoint_from_doc

    from .resource import _remember_served

    endpoint = endpoint_from_doc(doc)
    with _session(resource, context) as session:
        table, receipt = session.fetch(endpoint, provenance=context is not None)
    if context is not None:
        _remember_served(context, receipt, table)
    return table, receipt


def _session(resource: GovernedPostgresResource, context: Any):
    if not resource.service_mode:
        raise ConfigError("governed_split_assets: a split read is planned and served by lineage-guard serve; give "
                          "the resource service_url= and a token (the workers must not hold the keys)")
    return resource.session(context, run_context=_run_context(resource, context))


def _run_context(resource: GovernedPostgresResource, context: Any) -> dict | None:
    """The Dagster run as the parent the service records (the plan's parent; an endpoint's worker run)."""
    run_id = getattr(context, "run_id", None) if context is not None else None
    run_id = run_id or resource._run[0]
    job = None
    try:
        job = context.job_name if context is not None else None
    except Exception:  # noqa: BLE001 - contexts outside a run have no job
        job = None
    job = job or resource._run[1]
    if not run_id or not job:
        return None
    import os

    namespace = resource.job_namespace or os.environ.get("OPENLINEAGE_NAMESPACE") or "lineage_guard"
    return {"parent": {"run_id": str(run_id), "job_namespace": namespace, "job_name": str(job)}}


def _resource(context: dg.AssetExecutionContext, key: str, name: str) -> GovernedPostgresResource:
    resource = getattr(context.resources, key)
    if not isinstance(resource, GovernedPostgresResource):
        raise dg.Failure(f"governed_split_assets {name!r} needs a GovernedPostgresResource as {key!r}")
    return resource


__all__ = ["governed_split_assets"]
