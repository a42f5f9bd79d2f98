"""Step 5: human approvals. Requests are stored first, then announced; an approval covers one fingerprint.

Example:
    >>> from lineage_guard.approvals import ApprovalStore, fingerprint     # doctest: +SKIP
    >>> store = ApprovalStore.open(config=policy.approvals)                 # doctest: +SKIP
    >>> granted = store.consume(fingerprint(identity, sql, purpose, source_info))  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import ApprovalsConfig, NotifierConfig
    from .notify import notify, retry_failed
    from .store import ApprovalError, ApprovalRequest, ApprovalStore, approve_command, fingerprint

# The policy model imports `approvals.config`; loading the store (and its SQL and HTTP clients) lazily
# keeps `import lineage_guard.policy` light.
_WHERE = {
    "ApprovalsConfig": "config", "NotifierConfig": "config", "notify": "notify", "retry_failed": "notify",
    "ApprovalError": "store", "ApprovalRequest": "store", "ApprovalStore": "store", "approve_command": "store",
    "fingerprint": "store",
}
__all__ = [
    "ApprovalError", "ApprovalRequest", "ApprovalStore", "ApprovalsConfig", "NotifierConfig",
    "approve_command", "fingerprint", "notify", "retry_failed",
]


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
