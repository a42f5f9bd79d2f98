"""Where the columns of an in-memory asset output come from, so the policy can decide them.

A table an asset computes in Python shows nothing of what it read. Each output column's
source columns are found, in order:

1. declared on the asset: `metadata={"lineage_guard/column_sources": {"email": ["public.customers.email"],
   "score": []}}` (an empty list: derived from no source column, e.g. a model score);
2. inherited from a governed upstream asset loaded in the same step, by column name (its
   sources, and the mask already applied, so a token is not tokenized twice);
3. otherwise unknown: the column is *opaque* and masked with the policy's default mask.

Every materialization records its columns' provenance as `lineage_guard/columns` metadata,
which is what step 2 reads back.

Example:
    >>> cols, premasked, deps = output_columns(["n"], {"n": []}, [])
    >>> cols[0].sources, cols[0].opaque
    ((), False)
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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
                                                           "scope": col.mask.scope}})
    return out


@dataclass(frozen=True)
class Loaded:
    """A governed upstream asset a step loaded: its key, file, and its columns' provenance."""

    asset_key: Any                     # dagster.AssetKey; None for a direct read through the resource
    uri: str                           # the file; memory://<run id> for a direct read
    fields: tuple[tuple[str, str], ...]
    columns: tuple[dict[str, Any], ...] = ()


class StepInputs:
    """What each running step has loaded, keyed by (Dagster run id, step key); bounded."""

    def __init__(self, capacity: int = 1024) -> None:
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


def output_columns(names: Sequence[str], declared: Mapping[str, Sequence[str]], loaded: Sequence[Loaded]) -> tuple[
        list[OutputColumn], dict[int, MaskSpec], dict[str, list[tuple[Any, str]]]]:
    """(OutputColumns for `mask_table`, already-applied masks by position, Dagster column deps by name)."""
    columns, premasked, deps = [], {}, {}
    for position, name in enumerate(names):
        if name in declared:
            refs = tuple(ColumnRef.parse(r) for r in declared[name])
            columns.append(OutputColumn(position, name, refs, notes=("declared",)))  # computed, not passed through
            continue
        matches = [(item, col) for item in loaded for col in item.columns if col["name"] == name]
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
            premasked[position] = MaskSpec(m["method"], dict(m.get("params") or {}), m.get("scope", "global"))
    return columns, premasked, deps


def _spec_key(mask: Mapping[str, Any] | None) -> str:
    if not mask:
        return ""
    return f"{mask['method']}|{sorted((mask.get('params') or {}).items())!r}|{mask.get('scope')}"
