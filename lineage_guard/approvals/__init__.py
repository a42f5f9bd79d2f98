"""Step 5: human approvals. Requests are stored first, then announced; an approval covers one fingerprint
(who, statement, purpose, source, plan, parameter values) and, when a run asked, that run only.

Example:
    >>> from lineage_guard.approvals import ApprovalStore, fingerprint     # doctest: +SKIP
    >>> store = ApprovalStore.open(config=policy.approvals)                 # doctest: +SKIP
    >>> granted = store.consume(fingerprint(identity, sql, purpose, source_info))  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .binding import ParameterBinding, bind_parameters, plan_digest
    from .config import ApprovalsConfig, NotifierConfig
    from .notify import notify, retry_failed
    from .store import (
        ApprovalError,
        ApprovalRequest,
        ApprovalStore,
        approve_command,
        fingerprint,
        normalize_principal,
    )

# The policy model imports `approvals.config`; loading the store (and its SQL and HTTP clients) lazily
# keeps `import lineage_guard.policy` light.
_WHERE = {
    "ApprovalsConfig": "config", "NotifierConfig": "config", "notify": "notify", "retry_failed": "notify",
    "ApprovalError": "store", "ApprovalRequest": "store", "ApprovalStore": "store", "approve_command": "store",
    "fingerprint": "store", "normalize_principal": "store",
    "ParameterBinding": "binding", "bind_parameters": "binding", "plan_digest": "binding",
}
__all__ = [
    "ApprovalError", "ApprovalRequest", "ApprovalStore", "ApprovalsConfig", "NotifierConfig",
    "ParameterBinding", "approve_command", "bind_parameters", "fingerprint", "normalize_principal", "notify",
    "plan_digest", "retry_failed",
]


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
