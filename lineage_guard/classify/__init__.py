"""Zero-configuration detection of sensitive columns (step 3, for what the policy does not declare).

    >>> import pyarrow as pa
    >>> from lineage_guard.classify import classify_column
    >>> classify_column("notes", "text", pa.array(["ann@example.org"] * 20)).label
    'email'

`DetectionCatalog` samples a PostgreSQL source (read-only, bounded) and caches the
labels per table and schema version; `DetectionConfig` is the policy's `detection:`
section. Policy-declared labels always win over detected ones.
"""

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
