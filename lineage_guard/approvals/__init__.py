"""Step 5: human approvals. Requests are stored first, then announced; an approval covers one fingerprint.

Example:
    >>> from lineage_guard.approvals import ApprovalStore, fingerprint     # doctest: +SKIP
    >>> store = ApprovalStore.open(config=policy.approvals)                 # doctest: +SKIP
    >>> granted = store.consume(fingerprint(identity, sql, purpose, source_info))  # doctest: +SKIP
"""

from .config import ApprovalsConfig, NotifierConfig
from .notify import notify, retry_failed
from .store import ApprovalError, ApprovalRequest, ApprovalStore, approve_command, fingerprint

__all__ = [
    "ApprovalError", "ApprovalRequest", "ApprovalStore", "ApprovalsConfig", "NotifierConfig",
    "approve_command", "fingerprint", "notify", "retry_failed",
]
