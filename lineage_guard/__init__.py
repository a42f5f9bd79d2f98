"""lineage_guard: governed, masked, audited reads of production data, with OpenLineage.

    >>> from lineage_guard import GovernedSession, Identity
    >>> s = GovernedSession("postgresql://127.0.0.1/clinic", "policy.yaml",
    ...                     identity=Identity("svc-training", "service"), purpose="ai_training")  # doctest: +SKIP
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# Public names, imported on first use so `import lineage_guard` stays cheap.
_EXPORTS = {
    "GovernedSession": "lineage_guard.session",
    "ExtractResult": "lineage_guard.session",
    "WriteResult": "lineage_guard.session",
    "Identity": "lineage_guard.identity",
    "Decision": "lineage_guard.decision",
    "ColumnDecision": "lineage_guard.decision",
    "MaskSpec": "lineage_guard.mask.spec",
    "Policy": "lineage_guard.policy",
    "load_policy": "lineage_guard.policy",
    "plan": "lineage_guard.planner",
    "AccessDenied": "lineage_guard.errors",
    "ApprovalRequired": "lineage_guard.errors",
    "LineageGuardError": "lineage_guard.errors",
}

# Spelled out (not derived from _EXPORTS) so linters and IDEs see the public names; tests/test_client_imports
# checks the two agree.
__all__ = ["AccessDenied", "ApprovalRequired", "ColumnDecision", "Decision", "ExtractResult", "GovernedSession",
           "Identity", "LineageGuardError", "MaskSpec", "Policy", "WriteResult", "attest", "load_policy", "plan"]

if TYPE_CHECKING:  # pragma: no cover
    from .decision import ColumnDecision, Decision
    from .errors import AccessDenied, ApprovalRequired, LineageGuardError
    from .identity import Identity
    from .mask.spec import MaskSpec
    from .planner import plan
    from .policy import Policy, load_policy
    from .session import ExtractResult, GovernedSession, WriteResult


def __getattr__(name: str):
    if name == "attest":  # a callable package: `lineage_guard.attest(model, datasets, ...)`
        return import_module("lineage_guard.attest")
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'lineage_guard' has no attribute {name!r}")
