"""`GovernedIOManager`: asset outputs masked per policy, stored as Parquet, every write recorded.

`handle_output` takes a pyarrow Table, a Polars or a pandas DataFrame, works out where each
column comes from (see `provenance`), masks it for the resource's identity and purpose
*before* anything is written, writes Parquet atomically under `base_path` (a local folder or
an fsspec URL), records a ledger receipt and emits OpenLineage (the Postgres tables and
upstream Parquet files as inputs, the file as output, the Dagster run as parent). The
materialization carries `dagster/column_schema`, `dagster/column_lineage`,
`dagster/row_count`, `dagster/uri` and the receipt id. `load_input` returns the type the
input is annotated with (pa.Table, pl.DataFrame, pl.LazyFrame, pd.DataFrame; Arrow if none),
masked for the consuming asset's identity (a governed read with its own receipt).

Files: `<base_path>/<asset/key/path>.parquet`, or `<base_path>/<asset/key/path>/<partition>.parquet`.

With a service-mode resource (`service_url=`) nothing is masked here (the process has no key):
the output's columns must be passed through from what the server served in the step, and the
file's footer is the server's provenance document (see `served`); anything else is refused.

Example:
    >>> clinic = GovernedPostgresResource(url="postgresql://127.0.0.1/clinic", policy="policy.yaml",
    ...                                   purpose="ai_training", identity="svc-training")
    >>> io = GovernedIOManager(governed=clinic, base_path="/lake/governed")
    >>> io.uri_for(dg.AssetKey(["ml", "patients"]))
    '/lake/governed/ml/patients.parquet'
"""

from __future__ import annotations

import posixpath
from typing import Any

import dagster as dg
import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field

from lineage_guard.errors import ConfigError
from lineage_guard.lineage import dataset_for_uri
from lineage_guard.mask.spec import MaskSpec
from lineage_guard.sinks import ArrowSink
from lineage_guard.sql.model import ColumnRef, OutputColumn

from .failures import governed_failures
from .frames import from_arrow, to_arrow
from .lineage import IN_MEMORY, LOADED
from .metadata import materialization_metadata
from .provenance import COLUMNS_KEY, STEP_INPUTS, Loaded, declared_sources, output_columns, provenance_of
from .resource import GovernedPostgresResource


class GovernedIOManager(dg.ConfigurableIOManager):
    """Stores asset outputs as masked Parquet; every write is a governed, audited run."""

    governed: GovernedPostgresResource = Field(description="identity, purpose, policy and source of the writes")
    base_path: str = Field(description="local folder or fsspec URL (s3://bucket/prefix) the files go under")

    def uri_for(self, asset_key: dg.AssetKey, partition_key: str | None = None) -> str:
        """Where the asset (partition) is stored."""
        if not self.base_path:
            raise ConfigError("GovernedIOManager: base_path is empty; give a folder or an fsspec URL")
        bad = [p for p in [*asset_key.path, partition_key or ""] if p in ("..", ".") or "/" in p or "\\" in p]
        if bad:
            raise ConfigError(f"GovernedIOManager: asset key or partition {bad} would leave base_path")
        base = posixpath.join(self.base_path, *asset_key.path)
        return posixpath.join(base, f"{partition_key}.parquet") if partition_key else f"{base}.parquet"

    # -- writes ----------------------------------------------------------------------------------

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if obj is None and context.dagster_type.is_nothing:
            return
        if not context.has_asset_key:
            raise dg.Failure("GovernedIOManager stores asset outputs; this op output has no asset key")
        uri = self.uri_for(context.asset_key, _one_partition(context))
        if self.governed.service_mode:
            self._store_served(context, obj, uri)
            return
        with governed_failures():
            table = to_arrow(obj)
            declared = declared_sources(context.definition_metadata)
            loaded = STEP_INPUTS.get(context.run_id, context.step_key)
            columns, premasked, inherited = output_columns(table, declared, loaded)
            upstream = [(*dataset_for_uri(item.uri), item.fields) for item in loaded if item.asset_key is not None]
            with self.governed.session(context, upstream=upstream) as session:
                result = session.mask_table(table, columns, uri, premasked=premasked,
                                            statement=IN_MEMORY + context.asset_key.to_user_string())
                identity = session.identity.principal
                purpose = session.purpose
            schema = _read_schema(result.output_uri)
        opaque = [c.name for c in columns if c.opaque]
        if opaque:
            context.log.warning(
                f"lineage_guard: column(s) {', '.join(opaque)} of unknown provenance were masked with the policy's "
                "default mask; declare their sources in the asset's metadata 'lineage_guard/column_sources', or "
                "read them through the resource with context=context")
        context.add_output_metadata(materialization_metadata(
            result, schema, source_prefix=self.governed.source_asset_prefix, inherited=inherited,
            identity=identity, purpose=purpose) | {"lineage_guard/opaque_columns": opaque})

    def _store_served(self, context: dg.OutputContext, obj: Any, uri: str) -> None:
        from .served import footer_for, write_parquet

        with governed_failures():
            table = to_arrow(obj)
            footer, receipts = footer_for(table, STEP_INPUTS.get(context.run_id, context.step_key))
            size = write_parquet(table, uri, footer)
        masked = [c["name"] for c in footer["columns"] if c.get("treatment") == "masked"]
        context.add_output_metadata(_served_metadata(table, footer, uri, size, masked,
                                                     self.governed.source_asset_prefix, receipts))

    # -- reads -----------------------------------------------------------------------------------

    def load_input(self, context: dg.InputContext) -> Any:
        """The upstream file(s), masked for the *consuming* asset's identity: a governed read with a receipt.

        A file written for another identity (a per-asset identity of `governed_postgres_asset`)
        may hold columns this identity must not see: the policy is applied again on load, with
        the file's recorded provenance; masks already applied are not repeated.
        """
        if not context.has_asset_key:
            raise dg.Failure("GovernedIOManager loads asset inputs; this input has no upstream asset key")
        if self.governed.service_mode:
            return self._load_served(context)
        key = context.asset_key
        keys = list(context.asset_partition_keys) if context.has_asset_partitions else [None]
        step = context.step_context
        consumer = _consumer(step)
        with governed_failures():
            uris = [self.uri_for(key, k) for k in keys]
            tables = [_read_table(u) for u in uris]
            table = pa.concat_tables(tables, promote_options="default") if len(tables) > 1 else tables[0]
            recorded = {c["name"]: c for c in _recorded_columns(context, key)}
            columns, premasked = _as_recorded(table.column_names, recorded)
            upstream = [(*dataset_for_uri(u), tuple((f.name, str(f.type)) for f in t.schema))
                        for u, t in zip(uris, tables)]
            sink = ArrowSink()
            with self.governed.session(context, upstream=upstream, asset=consumer) as session:
                result = session.mask_table(table, columns, sink, premasked=premasked,
                                            statement=LOADED + key.to_user_string())
            masked = sink.table
            STEP_INPUTS.add(step.run_id, step.step.key, Loaded(
                key, uris[0], tuple((f.name, str(f.type)) for f in masked.schema),
                tuple(provenance_of(result.decision)), masked))
            context.log.info(f"lineage_guard: loaded {key.to_user_string()} ({result.rows} rows) for "
                             f"{session.identity.principal}; masked: {', '.join(result.masked_columns) or 'none'}; "
                             f"receipt {result.receipt_id}")
            return from_arrow(masked, _wanted(context))


    def _load_served(self, context: dg.InputContext) -> Any:
        """Service mode: the upstream file as stored, if it was written for this credential's identity."""
        from .served import file_input, read_footer

        key = context.asset_key
        keys = list(context.asset_partition_keys) if context.has_asset_partitions else [None]
        step = context.step_context
        with governed_failures():
            with self.governed.session(context) as session:
                me = session.whoami()["principal"]
            uris = [self.uri_for(key, k) for k in keys]
            tables = [_read_table(u) for u in uris]
            for uri, table in zip(uris, tables, strict=True):
                doc = read_footer(uri, table.schema.metadata)
                owner = ((doc or {}).get("identity") or {}).get("principal")
                if owner != me:
                    raise ConfigError(
                        f"GovernedIOManager (service mode): {uri} was written for {owner or 'no governed identity'}, "
                        f"not for {me} (this credential's identity); masking it again for {me} needs the keys, "
                        "which only the server holds: read the data through the resource instead")
                STEP_INPUTS.add(step.run_id, step.step.key, file_input(key, uri, table, doc))
            table = pa.concat_tables(tables, promote_options="default") if len(tables) > 1 else tables[0]
            context.log.info(f"lineage_guard: loaded {key.to_user_string()} ({table.num_rows} rows) as written for "
                             f"{me} (service mode)")
            return from_arrow(table, _wanted(context))


def _served_metadata(table: pa.Table, footer: dict, uri: str, size: int, masked: list[str],
                     prefix: list[str], receipts: list[str]) -> dict[str, Any]:
    """The materialization's metadata in service mode: the same keys as embedded mode, from the footer."""
    from lineage_guard.sql.model import ColumnRef

    from .metadata import file_uri, source_asset_key

    columns, deps = [], {}
    for f, col in zip(table.schema, footer["columns"], strict=True):
        is_masked = col.get("treatment") == "masked"
        columns.append(dg.TableColumn(
            name=f.name, type=str(f.type), description=f"masked: {col.get('method')}" if is_masked else "clear",
            tags={"lineage_guard/access": "masked" if is_masked else "clear"}))
        refs = [ColumnRef.parse(s) for s in col.get("sources", [])]
        if refs:
            deps[f.name] = [dg.TableColumnDep(asset_key=source_asset_key(prefix, r), column_name=r.column)
                            for r in refs]
    return {
        "dagster/column_schema": dg.TableSchema(columns=columns),
        "dagster/column_lineage": dg.TableColumnLineage(deps_by_column=deps),
        "dagster/row_count": dg.MetadataValue.int(table.num_rows),
        "dagster/uri": dg.MetadataValue.text(file_uri(uri)),
        "lineage_guard/receipt_id": dg.MetadataValue.text(receipts[0]),
        "lineage_guard/receipt_ids": dg.MetadataValue.json(receipts),
        "lineage_guard/openlineage_run_id": dg.MetadataValue.text(footer.get("run_id") or ""),
        "lineage_guard/masked_columns": dg.MetadataValue.json(masked),
        "lineage_guard/identity": dg.MetadataValue.text(footer["identity"]["principal"]),
        "lineage_guard/purpose": dg.MetadataValue.text(footer["purpose"]),
        "lineage_guard/bytes": dg.MetadataValue.int(size),
        "lineage_guard/written_by": dg.MetadataValue.text("client (service mode)"),
    }


def _consumer(step: Any) -> str | None:
    """The asset the loading step materializes ("a/b"), if it is exactly one."""
    assets_def = getattr(step, "assets_def", None)
    keys = list(assets_def.keys) if assets_def is not None else []
    return "/".join(keys[0].path) if len(keys) == 1 else None


def _as_recorded(names: list[str], recorded: dict[str, dict]) -> tuple[list[OutputColumn], dict[int, MaskSpec]]:
    """The file's columns as its writer recorded them; a column it did not record is opaque."""
    columns, premasked = [], {}
    for position, name in enumerate(names):
        col = recorded.get(name)
        if col is None:
            columns.append(OutputColumn(position, name, opaque=True))
            continue
        columns.append(OutputColumn(position, name, tuple(ColumnRef.parse(s) for s in col["sources"]),
                                    direct=bool(col["direct"])))
        if col["mask"]:
            m = col["mask"]
            premasked[position] = MaskSpec(m["method"], dict(m.get("params") or {}), m.get("scope", "global"),
                                           classification=m.get("classification"))
    return columns, premasked


def _one_partition(context: dg.OutputContext) -> str | None:
    if not context.has_asset_partitions:
        return None
    keys = list(context.asset_partition_keys)
    if len(keys) != 1:
        raise ConfigError("GovernedIOManager writes one partition per output; run a backfill per partition "
                          f"(this run targets {len(keys)})")
    return keys[0]


def _wanted(context: dg.InputContext) -> Any:
    typing_type = context.dagster_type.typing_type
    return None if context.dagster_type.is_any or typing_type is Any else typing_type


def _read_table(uri: str) -> pa.Table:
    fs, path = fsspec.core.url_to_fs(uri)
    if not fs.exists(path):
        raise ConfigError(f"GovernedIOManager: {uri} does not exist; materialize the upstream asset first")
    with fs.open(path, "rb") as fh:
        return pq.read_table(fh)


def _read_schema(uri: str) -> pa.Schema:
    fs, path = fsspec.core.url_to_fs(uri)
    with fs.open(path, "rb") as fh:
        return pq.read_schema(fh)


def _recorded_columns(context: dg.InputContext, key: dg.AssetKey) -> list[dict]:
    """The upstream's recorded column provenance (its latest materialization); none means opaque."""
    event = context.instance.get_latest_materialization_event(key)
    materialization = event.asset_materialization if event is not None else None
    value = materialization.metadata.get(COLUMNS_KEY) if materialization is not None else None
    data = getattr(value, "value", value)
    return [c for c in data if isinstance(c, dict) and {"name", "sources", "direct", "mask"} <= set(c)] \
        if isinstance(data, list) else []
