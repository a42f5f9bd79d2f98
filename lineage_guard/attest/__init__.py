"""Training-data attestation: which governed extracts a model was trained on, signed and checkable.

Every governed Parquet file carries its provenance (`provenance.py`), which the ledger
can match to the file's digest.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "read_provenance": "lineage_guard.attest.provenance",
    "policy_digest": "lineage_guard.attest.provenance",
    "ProvenanceError": "lineage_guard.attest.provenance",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'lineage_guard.attest' has no attribute {name!r}")
