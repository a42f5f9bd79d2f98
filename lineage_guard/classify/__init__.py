"""Zero-configuration detection of sensitive columns (step 3, for what the policy does not declare).

    >>> import pyarrow as pa
    >>> from lineage_guard.classify import classify_column
    >>> classify_column("notes", "text", pa.array(["ann@example.org"] * 20)).label
    'email'

`DetectionCatalog` samples a PostgreSQL source (read-only, bounded) and caches the
labels per table and schema version; `DetectionConfig` is the policy's `detection:`
section. Policy-declared labels always win over detected ones.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

# Names load on first use: the policy model needs only `DetectionConfig`, and must not load the
# detectors' lexicons and pattern tables into every process that reads a policy.
_EXPORTS = {
    "DetectionCatalog": ".catalog", "parse_table": ".catalog", "Classification": ".classifier",
    "classify_column": ".classifier", "classify_table": ".classifier", "DetectionConfig": ".config",
    "source_key": ".config", "LABELS": ".labels", "NOT_SENSITIVE": ".labels",
}

if TYPE_CHECKING:  # pragma: no cover
    from .catalog import DetectionCatalog, parse_table
    from .classifier import Classification, classify_column, classify_table
    from .config import DetectionConfig, source_key
    from .labels import LABELS, NOT_SENSITIVE

__all__ = [
    "LABELS",
    "NOT_SENSITIVE",
    "Classification",
    "DetectionCatalog",
    "DetectionConfig",
    "classify_column",
    "classify_table",
    "parse_table",
    "source_key",
]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
