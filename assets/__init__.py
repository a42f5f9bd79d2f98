"""Dagster integration: governed reads as a resource, masked Parquet assets, an asset factory, split reads as partitions, an attestation check.

Installed as `lineage_guard.assets` (needs the `[dagster]` extra).

Example:
    >>> from lineage_guard.assets import GovernedIOManager, GovernedPostgresResource, governed_postgres_asset
"""

from lineage_guard.extras import needs_extra

with needs_extra("lineage_guard.assets", "dagster"):
    from .attest import governed_attestation_check
    from .factory import governed_postgres_asset
    from .failures import as_failure
    from .io_manager import GovernedIOManager
    from .lineage import DagsterLineage
    from .metadata import source_asset_key
    from .resource import GovernedPostgresResource
    from .split import governed_split_assets

__all__ = ["DagsterLineage", "GovernedIOManager", "GovernedPostgresResource", "as_failure",
           "governed_attestation_check", "governed_postgres_asset", "governed_split_assets", "source_asset_key"]
