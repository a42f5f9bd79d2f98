"""Ray Data on the governed path: a Datasource whose read tasks are the service's endpoints.

The driver plans once (`endpoints.plan_read`); Ray schedules one read task per endpoint (no
scheduler of ours), each fetching its endpoint with the caller's credential only: the master key
and the database password stay in `lineage-guard serve`. The Dataset has one block per endpoint,
the same tokens in every block, and each fetched endpoint is a ledger entry of the server's.

Example:
    >>> from lineage_guard.integrations.ray import ServiceCredential, read_governed       # doctest: +SKIP
    >>> cred = ServiceCredential("grpc+tls://lg.internal:8815", purpose="ai_training",
    ...                          token_file="/var/run/secrets/lineage-guard/token")     # doctest: +SKIP
    >>> ds = read_governed(cred, "SELECT id, email FROM people", partitions=8)         # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lineage_guard.extras import needs_extra

with needs_extra("lineage_guard.integrations.ray", "ray"):
    from ray.data import Datasource, ReadTask
    from ray.data.block import BlockMetadata

from .endpoints import PlannedRead, ServiceCredential, fetch_endpoint, plan_read

if TYPE_CHECKING:  # pragma: no cover
    import ray.data

__all__ = ["GovernedDatasource", "ServiceCredential", "read_governed"]


class GovernedDatasource(Datasource):
    """`ray.data.read_datasource(GovernedDatasource(planned))`: one read task per endpoint of `planned`.

    Ray's requested parallelism is not honoured: the partitioning is the service's (ask for more
    endpoints with `plan_read(..., partitions=N)`), so every block is one key range of one plan.
    """

    def __init__(self, planned: PlannedRead):
        self.planned = planned

    def get_name(self) -> str:
        return "LineageGuard"

    def estimate_inmemory_data_size(self) -> int | None:
        return None

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                       data_context: Any = None) -> list[ReadTask]:
        credential = self.planned.credential

        def task(endpoint: bytes) -> ReadTask:
            return ReadTask(lambda: [fetch_endpoint(credential, endpoint)],
                            BlockMetadata(num_rows=None, size_bytes=None, exec_stats=None, input_files=None),
                            schema=self.planned.schema, per_task_row_limit=per_task_row_limit)

        return [task(endpoint) for endpoint in self.planned.endpoints]


def read_governed(credential: ServiceCredential, sql: str, *, partitions: int = 1,
                  split_key: str | None = None) -> ray.data.Dataset:
    """The masked result of `sql` as a Ray Dataset with one block per endpoint the service returns."""
    import ray.data

    planned = plan_read(credential, sql, partitions=partitions, split_key=split_key)
    return ray.data.read_datasource(GovernedDatasource(planned), override_num_blocks=len(planned.endpoints))
