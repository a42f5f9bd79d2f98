"""Airflow integration: `GovernedPostgresOperator`, `GovernedAttestOperator`, `GovernedPostgresHook`,
`GovernedServiceHook`, `GovernedSplitReadOperator`, `ApprovalTrigger`, `ServiceApprovalTrigger`.

Installed as `lineage_guard.operators`; needs the `[airflow]` extra. Names load on first use,
so Airflow reading `lineage_guard.operators.provider` at start-up imports nothing heavy.

Example:
    >>> from lineage_guard.operators import GovernedPostgresOperator   # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["ApprovalTrigger", "GovernedAttestOperator", "GovernedPostgresHook", "GovernedPostgresOperator",
           "GovernedServiceHook", "GovernedSplitReadOperator", "ServiceApprovalTrigger"]
_WHERE = {"ApprovalTrigger": ".triggers", "GovernedAttestOperator": ".attest", "GovernedPostgresHook": ".hooks",
          "GovernedPostgresOperator": ".operator", "GovernedServiceHook": ".service", "GovernedSplitReadOperator": ".split",
          "ServiceApprovalTrigger": ".triggers"}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from lineage_guard.extras import needs_extra

    with needs_extra("lineage_guard.operators", "airflow"):
        module = importlib.import_module(_WHERE[name], __name__)
    return getattr(module, name)
