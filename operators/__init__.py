"""Airflow integration: `GovernedPostgresOperator`, `GovernedPostgresHook`, `ApprovalTrigger`.

Installed as `lineage_guard.operators` (needs the `[airflow]` extra).

Example:
    >>> from lineage_guard.operators import GovernedPostgresOperator   # doctest: +SKIP
"""

from .hooks import GovernedPostgresHook
from .operator import GovernedPostgresOperator
from .triggers import ApprovalTrigger

__all__ = ["ApprovalTrigger", "GovernedPostgresHook", "GovernedPostgresOperator"]
