"""`GovernedSplitReadOperator`: plan a governed read once on `lineage-guard serve`, split into endpoints.

The upstream task of a mapped read. It asks the service (service mode only: the workers never hold
a key or a database password) to plan the statement once and split it into `partitions` key ranges
of one plan; its XCom is the list of endpoint documents (`lineage_guard.integrations.endpoints
.EndpointDoc`: key, index, plan ids and an opaque ticket the service honours only for this
connection's identity and purpose). Map `GovernedPostgresOperator` over it; nobody writes a
`WHERE id BETWEEN` per task:

    plan = GovernedSplitReadOperator(task_id="plan", service_conn_id="lg_service",
                                     sql="SELECT id, email, plan FROM people", purpose="ai_training",
                                     partitions=4)
    GovernedPostgresOperator.partial(task_id="read", service_conn_id="lg_service", purpose="ai_training",
                                     output="/lake/people/{{ ds }}/part-{{ ti.map_index }}.parquet",
                                     retries=2).expand(endpoint=plan.output)

The plan is one ledger entry (the summary) and one lineage run (START/COMPLETE, emitted by the
service, its parent this task's run): every endpoint's governed run names it as parent. A mapped
task instance that fails is retried alone against the same endpoint (no new plan; the service
records the attempt and counts its rows once). Endpoints expire 10 minutes after their last use:
clearing this task plans again.

Example:
    >>> GovernedSplitReadOperator(task_id="plan", service_conn_id="lg", sql="SELECT id FROM t",
    ...                           purpose="ai_training", partitions=4).partitions
    4
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from lineage_guard.errors import AccessDenied, ApprovalRequired, ConfigError
from lineage_guard.timeouts import SERVICE_TIMEOUT_S

MAX_PARTITIONS = 64   # the service's own bound (lineage_guard.service.partitions.MAX_PARTITIONS)


class GovernedSplitReadOperator(BaseOperator):
    """Plan `sql` once on the service and return its endpoints (a list of JSON documents) for mapped tasks.

    `service_conn_id` (a `lineage_guard_service` connection; the mapped tasks must use one for the same
    identity), `sql` and `parameters` (psycopg style, as `GovernedPostgresOperator`), `purpose`
    (required, not templated), `partitions` (2 to 64 key ranges; templated, fewer when the key has
    fewer values), `split_key` (a clear integer output column; default the statement's clear integer
    primary or unique key), `service_timeout_s` (default 900 s, as `GovernedPostgresOperator`'s and the
    Dagster resource's: the longest wait for the service's answer; `None`: no bound).
    """

    template_fields: Sequence[str] = ("sql", "parameters", "partitions", "split_key")
    template_ext: Sequence[str] = (".sql",)
    template_fields_renderers: ClassVar[dict] = {"sql": "sql", "parameters": "json"}
    ui_color = "#a1d99b"

    def __init__(self, *, service_conn_id: str, sql: str, purpose: str, partitions: int | str = 4,
                 split_key: str | None = None, parameters: Mapping | Sequence | None = None,
                 service_timeout_s: float | None = SERVICE_TIMEOUT_S, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        where = f"GovernedSplitReadOperator {self.task_id!r}"
        if not service_conn_id:
            raise ConfigError(f"{where}: service_conn_id= is required: a split read is planned by lineage-guard "
                              "serve, which holds the keys the workers must not")
        if not purpose:
            raise ConfigError(f"{where}: purpose= is required (why the data is read, one of the policy's purposes)")
        if not isinstance(sql, str) or not sql.strip():
            raise ConfigError(f"{where}: sql= is one SELECT statement")
        self.service_conn_id = service_conn_id
        self.sql = sql
        self.purpose = purpose
        self.partitions = partitions
        self.split_key = split_key
        self.parameters = parameters
        self.service_timeout_s = service_timeout_s
        self._lineage: list[dict] = []
        from .lineage import own_lineage_only

        own_lineage_only(self)  # its events carry only the plan's datasets, never another hook's SQL

    def _partitions(self) -> int:
        try:
            value = int(self.partitions)
        except (TypeError, ValueError):
            raise ConfigError(f"partitions must be an integer from 2 to {MAX_PARTITIONS}, got {self.partitions!r}") \
                from None
        if not 2 <= value <= MAX_PARTITIONS:
            raise ConfigError(f"partitions must be from 2 to {MAX_PARTITIONS}, got {value}")
        return value

    def execute(self, context) -> list[dict]:
        import json

        from lineage_guard.integrations.endpoints import endpoint_docs

        from .operator import run_context as task_run
        from .params import numbered
        from .service import GovernedServiceHook

        self._lineage = []
        try:
            parts = self._partitions()
            sql, params = numbered(self.sql, self.parameters)
            ctx = task_run(context, self.dag_id, self.task_id)
            with GovernedServiceHook(self.service_conn_id).get_session(self.purpose, run_context=ctx,
                                                                          timeout_s=self.service_timeout_s) as s:
                self._lineage = s.lineage
                with s._prepared(sql, params) as descriptor:
                    info = s.flight_info(descriptor, partitions=parts, split_key=self.split_key or None)
        except AccessDenied as exc:
            raise AirflowFailException(
                f"lineage_guard denied the statement: {'; '.join(exc.reasons)} (receipt {exc.receipt_id})") from None
        except ApprovalRequired as exc:
            raise AirflowFailException(
                f"lineage_guard: the statement needs an approval (request {exc.request_id}); a split read is planned "
                f"only once allowed: {exc.approve_command}, then clear this task") from None
        except ConfigError as exc:
            raise AirflowFailException(f"lineage_guard: {exc}") from None
        about = json.loads(info.app_metadata or b"{}").get("lineage_guard", {})
        if about.get("lineage"):
            self._lineage.append(about["lineage"])
        docs = endpoint_docs([e.serialize() for e in info.endpoints], about)
        self.log.info("Planned run %s: %d endpoint(s) split on %s (summary receipt %s)", about.get("parent_run_id"),
                      len(docs), about.get("split_key"), about.get("summary_receipt_id"))
        return [dict(d) for d in docs]

    # -- lineage for Airflow's OpenLineage provider: the plan's inputs and who-saw-what facets --------

    def get_openlineage_facets_on_start(self):
        from .lineage import remote_operator_lineage

        return remote_operator_lineage([], None, "START")

    def get_openlineage_facets_on_complete(self, task_instance):
        from .lineage import remote_operator_lineage

        return remote_operator_lineage(self._lineage, None, "COMPLETE")

    def get_openlineage_facets_on_failure(self, task_instance):
        from .lineage import remote_operator_lineage

        return remote_operator_lineage(self._lineage, None, "FAIL")
