"""Dagster metadata for a governed materialization: what the asset page, catalog and column lineage show.

Standard keys (`dagster/column_schema`, `dagster/column_lineage`, `dagster/row_count`,
`dagster/uri`) plus lineage_guard's: the ledger receipt id, the OpenLineage run id, the
masked columns and the columns' provenance (what downstream steps inherit). Masked
columns are named in the schema (description and `lineage_guard/access` tag). Nothing
here holds a value or a key.

Example:
    >>> source_asset_key(["postgres"], "public.patients.mrn").path
    ['postgres', 'public', 'patients']
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa

from lineage_guard.sql.model import ColumnRef

from .provenance import COLUMNS_KEY, provenance_of


def source_asset_key(prefix: Sequence[str], ref: str | ColumnRef) -> dg.AssetKey:
    """The asset key naming a Postgres source table in column lineage: `<prefix>/<schema>/<table>`."""
    ref = ColumnRef.parse(ref) if isinstance(ref, str) else ref
    return dg.AssetKey([*prefix, ref.schema, ref.table])


def file_uri(uri: str) -> str:
    """A URI for `dagster/uri`: `file:///abs/path` for a local path, the fsspec URL otherwise."""
    return Path(os.path.abspath(uri)).as_uri() if "://" not in uri else uri


def materialization_metadata(result: Any, schema: pa.Schema, *, source_prefix: Sequence[str],
                             inherited: Mapping[str, Sequence[tuple[dg.AssetKey, str]]] | None = None,
                             identity: str, purpose: str) -> dict[str, Any]:
    """The metadata of one governed write (`result`: an `ExtractResult`; `schema`: what landed)."""
    inherited = inherited or {}
    by_name = {c.name: c for c in result.decision.columns}
    columns, deps = [], {}
    for f in schema:
        col = by_name.get(f.name)
        masked = col is not None and col.masked
        columns.append(dg.TableColumn(
            name=f.name, type=str(f.type),
            description=f"masked: {col.mask.describe()}" if masked else ("clear" if col is not None else None),
            tags={"lineage_guard/access": "masked" if masked else "clear",
                  **({"lineage_guard/method": col.mask.method} if masked else {})}))
        if f.name in inherited:
            deps[f.name] = [dg.TableColumnDep(asset_key=k, column_name=c) for k, c in inherited[f.name]]
        elif col is not None and col.sources:
            deps[f.name] = [dg.TableColumnDep(asset_key=source_asset_key(source_prefix, s), column_name=s.column)
                            for s in col.sources]
    return {
        "dagster/column_schema": dg.TableSchema(columns=columns),
        "dagster/column_lineage": dg.TableColumnLineage(deps_by_column=deps),
        "dagster/row_count": dg.MetadataValue.int(result.rows),
        "dagster/uri": dg.MetadataValue.text(file_uri(result.output_uri)),
        "lineage_guard/receipt_id": dg.MetadataValue.text(result.receipt_id),
        "lineage_guard/openlineage_run_id": dg.MetadataValue.text(result.run_id),
        "lineage_guard/masked_columns": dg.MetadataValue.json(list(result.masked_columns)),
        "lineage_guard/identity": dg.MetadataValue.text(identity),
        "lineage_guard/purpose": dg.MetadataValue.text(purpose),
        "lineage_guard/bytes": dg.MetadataValue.int(result.bytes),
        COLUMNS_KEY: dg.MetadataValue.json(provenance_of(result.decision)),
    }
