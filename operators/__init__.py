"""Airflow integration: `GovernedPostgresOperator`, `GovernedPostgresHook`, `ApprovalTrigger`.

Installed as `lineage_guard.operators`; needs the `[airflow]` extra.

Example:
    >>> from lineage_guard.operators import GovernedPostgresOperator   # doctest: +SKIP
"""

try:
    import airflow.sdk  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("lineage_guard.operators needs Apache Airflow 3: pip install 'lineage-guard[airflow]'") from exc

from .hooks import GovernedPostgresHook
from .operator import GovernedPostgresOperator
from .triggers import ApprovalTrigger

__all__ = ["ApprovalTrigger", "GovernedPostgresHook", "GovernedPostgresOperator"]
