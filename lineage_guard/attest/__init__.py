"""Training-data attestation: which governed extracts a model was trained on, signed and checkable.

`lineage_guard.attest(model, datasets, ...)` writes an in-toto Statement v1 in a DSSE
envelope signed with the ledger's key; `lineage_guard.attest.verify(...)` checks one.
Every governed Parquet file carries its provenance (`provenance.py`), which the ledger
can match to the file's digest.

The package is itself callable (`lineage_guard.attest(...)`): a subpackage and a function
cannot share the name `lineage_guard.attest`, so the module answers the call.
"""

from __future__ import annotations

import sys
import types
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


class _CallableModule(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return import_module("lineage_guard.attest.attestation").attest(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
