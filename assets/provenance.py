"""Where the columns of an in-memory asset output come from, so the policy can decide them.

A table an asset computes in Python shows nothing of what it read. Each output column's
source columns are found, in order:

1. declared on the asset: `metadata={"lineage_guard/column_sources": {"email": ["public.customers.email"],
   "score": []}}` (an empty list: derived from no source column, e.g. a model score);
2. inherited from a governed input loaded in the same step (an upstream asset stored by the
   IO manager, or a read through the resource): same name, *and* every non-null value is one of
   that input column's values, i.e. the column was passed through (selected, filtered, joined,
   grouped). It takes the input column's sources and the mask already applied, so a token is
   not tokenized twice. A same-named column holding anything else is not trusted;
3. otherwise unknown: the column is *opaque* and masked with the policy's default mask.

Every materialization records its columns' provenance as `lineage_guard/columns` metadata,
which is what step 2 reads back.

Example:
    >>> import pyarrow as pa
    >>> cols, premasked, deps = output_columns(pa.table({"n": [1]}), {"n": []}, [])
    >>> cols[0].sources, cols[0].opaque
    ((), False)
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from lineage_guard.decision import Decision
from lineage_guard.errors import ConfigError
from lineage_guard.mask.spec import MaskSpec
from lineage_guard.sql.model import ColumnRef, OutputColumn

SOURCES_KEY = "lineage_guard/column_sources"
COLUMNS_KEY = "lineage_guard/columns"


def provenance_of(decision: Decision) -> list[dict[str, Any]]:
    """The written columns' provenance (JSON-ready, value- and key-free): what downstream steps inherit."""
    out = []
    for col in decision.columns:
        if col.mask is not None and col.mask.method == "drop":
            continue
        out.append({"name": col.name, "sources": [str(s) for s in col.sources], "direct": col.direct,
                    "mask": None if col.mask is None else {"method": col.mask.method, "params": col.mask.params,
                                                           "scope": col.mask.scope,
                                                           "classification": col.mask.classification}})
    return out


@dataclass(frozen=True)
class Loaded:
    """A governed input a step loaded: its key, file, columns' provenance, and the table as delivered."""

    asset_key: Any                     # dagster.AssetKey; None for a direct read through the resource
    uri: str                           # the file; memory://<run id> for a direct read
    fields: tuple[tuple[str, str], ...]
    columns: tuple[dict[str, Any], ...] = ()
    table: pa.Table | None = None      # what the asset's code received (masked for its identity)

    def values(self, name: str) -> pa.Array | None:
        """The distinct values of column `name` as this input delivered them (None: not known)."""
        if self.table is None or name not in self.table.column_names:
            return None
        return pc.unique(self.table.column(name))


class StepInputs:
    """What each running step has loaded, keyed by (Dagster run id, step key).

    Bounded (it holds the loaded tables): steps run one after another in a process, so a step's
    entry is only evicted long after its outputs were handled; an evicted entry only makes
    columns opaque (masked), never clear.
    """

    def __init__(self, capacity: int = 8) -> None:
        self._lock = threading.Lock()
        self._steps: OrderedDict[tuple[str, str], list[Loaded]] = OrderedDict()
        self._capacity = capacity

    def add(self, run_id: str, step_key: str, loaded: Loaded) -> None:
        with self._lock:
            items = self._steps.setdefault((run_id, step_key), [])
            if all(x.uri != loaded.uri for x in items):
                items.append(loaded)
            self._steps.move_to_end((run_id, step_key))
            while len(self._steps) > self._capacity:
                self._steps.popitem(last=False)

    def get(self, run_id: str, step_key: str) -> list[Loaded]:
        with self._lock:
            return list(self._steps.get((run_id, step_key), ()))


STEP_INPUTS = StepInputs()


def declared_sources(metadata: Mapping[str, Any] | None) -> dict[str, list[str]]:
    """The asset's `lineage_guard/column_sources` declaration, validated."""
    raw = (metadata or {}).get(SOURCES_KEY)
    raw = getattr(raw, "value", raw)  # Dagster wraps definition metadata in MetadataValue objects
    if raw is None:
        return {}
    if not isinstance(raw, Mapping) or not all(isinstance(v, (list, tuple)) for v in raw.values()):
        raise ConfigError(f"asset metadata {SOURCES_KEY!r} must map each column to a list of source columns "
                          '("schema.table.column"), e.g. {"email": ["public.customers.email"], "score": []}')
    out = {}
    for name, refs in raw.items():
        for ref in refs:
            try:
                ColumnRef.parse(str(ref))
            except ValueError:
                raise ConfigError(f"asset metadata {SOURCES_KEY!r}: column {name!r} names {ref!r}; give source "
                                  "columns as schema.table.column") from None
        out[str(name)] = [str(r) for r in refs]
    return out


def output_columns(table: pa.Table, declared: Mapping[str, Sequence[str]], loaded: Sequence[Loaded]) -> tuple[
        list[OutputColumn], dict[int, MaskSpec], dict[str, list[tuple[Any, str]]]]:
    """(OutputColumns for `mask_table`, already-applied masks by position, Dagster column deps by name)."""
    columns, premasked, deps = [], {}, {}
    for position, name in enumerate(table.column_names):
        if name in declared:
            refs = tuple(ColumnRef.parse(r) for r in declared[name])
            columns.append(OutputColumn(position, name, refs, notes=("declared",)))  # computed, not passed through
            continue
        matches = [(item, col) for item in loaded for col in item.columns
                   if col["name"] == name and _passed_through(table.column(position), item, name)]
        if not matches:
            columns.append(OutputColumn(position, name, opaque=True, notes=("provenance unknown",)))
            continue
        refs = tuple(sorted({ColumnRef.parse(s) for _, col in matches for s in col["sources"]}))
        direct = len(matches) == 1 and bool(matches[0][1]["direct"])
        columns.append(OutputColumn(position, name, refs, direct=direct, notes=("inherited",)))
        if any(item.asset_key is not None for item, _ in matches):
            deps[name] = [(item.asset_key, name) for item, _ in matches if item.asset_key is not None]
        masks = {_spec_key(col["mask"]) for _, col in matches}
        if len(masks) == 1 and matches[0][1]["mask"]:
            m = matches[0][1]["mask"]
            premasked[position] = MaskSpec(m["method"], dict(m.get("params") or {}), m.get("scope", "global"),
                                           classification=m.get("classification"))
    return columns, premasked, deps


def _passed_through(column: pa.ChunkedArray, item: Loaded, name: str) -> bool:
    """Whether every non-null value of `column` is one of the input column's values."""
    try:
        values = item.values(name)
        if values is None:
            return False
        present = pc.drop_null(column)
        if values.type != present.type:
            values = values.cast(present.type)
        return len(present) == 0 or bool(pc.all(pc.is_in(present, value_set=values)).as_py())
    except (pa.ArrowException, ValueError, TypeError):
        return False  # cannot compare (e.g. nested types): not trusted as a pass-through


def _spec_key(mask: Mapping[str, Any] | None) -> str:
    if not mask:
        return ""
    return (f"{mask['method']}|{sorted((mask.get('params') or {}).items())!r}|{mask.get('scope')}"
            f"|{mask.get('classification')}")
