"""`GovernedPostgresOperator`: `SQLExecuteQueryOperator` for PostgreSQL, through lineage_guard's one path.

It takes every argument `SQLExecuteQueryOperator` takes for PostgreSQL, templated the same
way, so changing the import is enough to put a DAG's queries under the policy. Each
statement runs through a `GovernedSession` (plan, approvals, read-only source, masking,
sink, ledger): reads return masked rows (below `max_rows`) or, with `output`, write masked
Parquet and return a value-free summary; writes pass the policy's guardrails. A denial fails
the task with the policy's reasons; a statement that needs an approval defers the task to
`ApprovalTrigger` until a human decides. Lineage goes to Airflow's OpenLineage provider
(`get_openlineage_facets_on_*`), so there is one event stream per task.

Example:
    >>> from lineage_guard.operators import GovernedPostgresOperator
    >>> extract = GovernedPostgresOperator(                                  # doctest: +SKIP
    ...     task_id="extract_patients", conn_id="clinic_db",
    ...     sql="SELECT id, full_name, diagnosis, city FROM patients",
    ...     purpose="ai_training", policy="policy.yaml",
    ...     output="s3://lake/training/patients/{{ ds }}.parquet",
    ... )
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.providers.common.sql.hooks.handlers import fetch_all_handler, return_single_query_results
from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from lineage_guard.errors import AccessDenied, ApprovalRequired, ConfigError, LineageGuardError
from lineage_guard.identity import Identity
from lineage_guard.timeouts import SERVICE_TIMEOUT_S

from .hooks import GovernedPostgresHook
from .recording import AirflowHandOff, RecordingLedger
from .triggers import ApprovalTrigger, ServiceApprovalTrigger

if TYPE_CHECKING:  # pragma: no cover
    from lineage_guard.integrations.endpoints import EndpointDoc

    from lineage_guard.client import RemoteSession
    from lineage_guard.policy import Policy
    from lineage_guard.session import GovernedSession

POLICY_ENV = "LINEAGE_GUARD_POLICY"
DEFAULT_MAX_ROWS = 10_000


class GovernedPostgresOperator(BaseOperator):
    """Run SQL on PostgreSQL as a governed identity, for a purpose, under a policy.

    Arguments shared with `SQLExecuteQueryOperator` keep their meaning: `sql` (str, list, or a
    `.sql` template file), `parameters` (`%s` / `%(name)s` style), `handler`, `return_last`,
    `split_statements`, `output_processor`, `conn_id`, `database`, `hook_params`. `autocommit`
    is accepted; every governed write is committed on its own.

    Added (not templated): `identity` (default: service `airflow:{dag_id}.{task_id}`), `purpose` (required),
    `policy` (a path, relative to the DAG file, or a `Policy`; default `$LINEAGE_GUARD_POLICY`),
    `output` (Parquet path or fsspec URL; the XCom is then `ExtractResult.summary()`; kept as the
    templated attribute `output_uri`, since `BaseOperator.output` is Airflow's XComArg), `max_rows`
    (largest result returned as rows without `output`), `approval_poll_interval` (seconds) and
    `approval_timeout` for deferred approvals.

    Service mode: `service_conn_id` names a `lineage_guard_service` connection (see
    `GovernedServiceHook`); every statement then runs on `lineage-guard serve`, which holds the policy,
    the database credentials and the keys, and establishes the identity from the connection's token.
    The task process needs neither a policy nor a key, and may not name an identity. Embedded mode
    (`conn_id`, the path in the task process) stays for development. `service_timeout_s` (default
    900 s, as the Dagster resource's) is the longest wait for the service's next message: a call's
    answer, a stream's next batch. A stalled stream then fails with a retriable `ServiceUnavailable`
    (Airflow's `retries` retry it) instead of waiting forever; it bounds the gap between batches, never a
    stream with data flowing. `None`: no bound (the client's keepalive pings still end a dead connection).

    Split reads (service mode): `endpoint` is one endpoint document of a `GovernedSplitReadOperator`'s plan,
    mapped as `GovernedPostgresOperator.partial(...).expand(endpoint=plan.output)`; each mapped task
    instance fetches its key range (no `sql`: the statement is the plan's) and returns its rows or, with
    `output`, the file's summary and `endpoint` {key, index, of, parent_run_id}.
    """

    # Who reads, why, and under which policy are fixed in DAG code, not templated: a run's conf or
    # params must not be able to change them.
    template_fields: Sequence[str] = ("sql", "parameters", "conn_id", "database", "hook_params", "output_uri",
                                      "max_rows")
    template_ext: Sequence[str] = (".sql", ".json")
    template_fields_renderers: ClassVar[dict] = {"sql": "sql", "parameters": "json", "hook_params": "json"}
    ui_color = "#c7e9c0"

    def __init__(
        self,
        *,
        sql: str | list[str] | None = None,
        autocommit: bool = False,
        parameters: Mapping | Iterable | None = None,
        handler: Callable[[Any], Any] | None = fetch_all_handler,
        output_processor: Callable[[list[Any], list[Sequence[Sequence] | None]], Any] | None = None,
        conn_id: str | None = None,
        database: str | None = None,
        split_statements: bool | None = None,
        return_last: bool = True,
        show_return_value_in_logs: bool = False,
        requires_result_fetch: bool = False,
        hook_params: dict | None = None,
        retry_on_failure: bool = True,
        identity: Identity | str | None = None,
        purpose: str | None = None,
        policy: str | Path | Policy | None = None,
        output: str | None = None,
        max_rows: int | str = DEFAULT_MAX_ROWS,
        approval_poll_interval: float = 30.0,
        approval_timeout: timedelta | None = None,
        service_conn_id: str | None = None,
        endpoint: EndpointDoc | None = None,
        service_timeout_s: float | None = SERVICE_TIMEOUT_S,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.sql = sql
        self.autocommit = autocommit
        self.parameters = parameters
        self.handler = handler
        self._output_processor = output_processor or (lambda results, descriptions: results)
        self.conn_id = conn_id or GovernedPostgresHook.default_conn_name
        self.database = database
        self.split_statements = split_statements
        self.return_last = return_last
        self.show_return_value_in_logs = show_return_value_in_logs
        self.requires_result_fetch = requires_result_fetch
        self.hook_params = hook_params or {}
        self.retry_on_failure = retry_on_failure
        self.identity = identity
        self.purpose = purpose
        self.policy = policy
        self.output_uri = output
        self.max_rows = max_rows
        self.approval_poll_interval = approval_poll_interval
        self.approval_timeout = approval_timeout
        self.service_conn_id = service_conn_id
        self.endpoint = endpoint
        self.service_timeout_s = service_timeout_s
        self._handoff = AirflowHandOff()
        self._remote_lineage: list[dict] = []   # service mode: the lineage parts the service sent back
        from .lineage import own_lineage_only

        own_lineage_only(self)  # its events carry only its own runs' datasets, never another hook's SQL
        self._check_at_parse()

    def _check_at_parse(self) -> None:
        """Refuse, when the DAG file is parsed, what would only fail (or silently mask everything) at run time.

        Airflow shows an exception raised here as the DAG's import error, naming the file, before
        any run: no purpose, no policy at all, a policy that does not load, a purpose the policy
        does not list, or an undeclared identity under `require_declared_identities`. A policy
        file that is not there at parse time is looked for again at run time (it may be deployed
        next to the workers only).
        """
        where = f"GovernedPostgresOperator {self.task_id!r}"
        if not self.purpose:
            raise ConfigError(f"{where}: purpose= is required (why the data is read, one of the policy's purposes)")
        if self.endpoint is not None:
            self._check_endpoint(where)
        elif self.sql is None:
            raise ConfigError(f"{where}: sql= is required (or endpoint=, one endpoint of a GovernedSplitReadOperator's "
                              "plan, mapped with .expand(endpoint=plan.output))")
        if self.service_conn_id:
            self._check_service_mode(where)
            return
        chosen = self.policy or os.environ.get(POLICY_ENV)
        if not chosen:
            raise ConfigError(f"{where}: no policy: pass policy='policy.yaml' (relative to the DAG file) or set "
                              f"{POLICY_ENV}")
        from lineage_guard.policy import Policy

        if isinstance(chosen, Policy):
            policy = chosen
        else:
            path = Path(str(chosen))
            if not path.is_absolute():
                fileloc = self.dag.fileloc if self.has_dag() else None
                if not fileloc:
                    return
                path = Path(fileloc).parent / path
            if not path.is_file():
                return
            policy = _load_policy_cached(str(path), path.stat().st_mtime_ns)
        if policy.purposes and self.purpose not in policy.purposes:
            raise ConfigError(f"{where}: purpose {self.purpose!r} is not one of the policy's purposes "
                              f"({', '.join(policy.purposes)}); every read would be denied")
        if (self.identity is None and self.has_dag()) or isinstance(self.identity, str):
            try:
                identity = self._identity()
            except LineageGuardError:
                return  # a malformed identity is reported with its reason at run time
            principal = identity.principal
            if identity.kind == "human":
                return  # refused at run time with the specific reason: a task never runs as a person
            if principal not in policy.identities:
                if policy.require_declared_identities:
                    raise ConfigError(f"{where}: identity {principal!r} is not declared in the policy, which "
                                      "requires declared identities: add it under identities: with its groups")
                self.log.warning("%s: identity %r is not declared in the policy: no group's rules apply to it, so "
                                 "its sensitive columns get the default mask", where, principal)

    def _check_endpoint(self, where: str) -> None:
        """A mapped read of one endpoint: the statement, its parameters and the split are the plan's."""
        from lineage_guard.integrations.endpoints import check_doc

        if not self.service_conn_id:
            raise ConfigError(f"{where}: endpoint= is an endpoint held by lineage-guard serve: give service_conn_id= "
                              "(the connection the plan was made with: only its identity may fetch it)")
        if self.sql is not None or self.parameters is not None:
            raise ConfigError(f"{where}: give endpoint= or sql=/parameters=, not both: an endpoint's statement is "
                              "the one its plan split")
        check_doc(self.endpoint, f"{where}: endpoint")

    def _check_service_mode(self, where: str) -> None:
        """In service mode the server decides who reads and under which policy: DAG code names neither."""
        if self.identity not in (None, ""):
            raise ConfigError(f"{where}: identity= is not accepted with service_conn_id: the service establishes the "
                              "identity from the connection's token (map its subject to an identity in the "
                              "server's policy)")
        if self.hook_params:
            raise ConfigError(f"{where}: hook_params {sorted(self.hook_params)} configure embedded mode; with "
                              "service_conn_id the server holds the source, the timeouts and the keys")

    # -- building the session --------------------------------------------------------------------

    def prepare_template(self) -> None:
        """Like SQLExecuteQueryOperator: parameters given as a rendered string are a Python literal."""
        import ast

        if isinstance(self.parameters, str):
            self.parameters = ast.literal_eval(self.parameters)

    def get_hook(self) -> GovernedPostgresHook:
        """The hook for `conn_id`; `hook_params` may set statement_timeout_ms and master_key_conn_id.

        The source environment and search path come from the connection only (see GovernedPostgresHook).
        """
        allowed = {"statement_timeout_ms", "master_key_conn_id"}
        unknown = sorted(set(self.hook_params) - allowed)
        if unknown:
            raise ConfigError(f"hook_params {unknown} are not accepted; valid: {', '.join(sorted(allowed))} "
                              f"(environment and search_path are set on the connection, by its administrator)")
        return GovernedPostgresHook(self.conn_id, database=self.database, **self.hook_params)

    def _identity(self) -> Identity:
        """The task's identity: a service (or agent). DAG code cannot claim to be a person."""
        if self.identity is None or self.identity == "":
            return Identity(principal=f"airflow:{self.dag_id}.{self.task_id}", kind="service")
        if isinstance(self.identity, Identity):
            chosen = self.identity
        else:
            text = str(self.identity).strip()
            chosen = Identity.parse(text)
            if chosen.kind == "human" and not text.startswith(("human:", "{")):
                # A bare name from a DAG names a service account, not a person.
                chosen = Identity(chosen.principal, "service", chosen.groups, chosen.attributes)
        return chosen

    def _policy(self, context) -> Policy:
        from lineage_guard.policy import Policy, load_policy

        chosen = self.policy or os.environ.get(POLICY_ENV)
        if not chosen:
            raise ConfigError(f"no policy: pass policy='policy.yaml' (relative to the DAG file) or set {POLICY_ENV}")
        if isinstance(chosen, Policy):
            return chosen
        path = Path(str(chosen))
        if not path.is_absolute():
            dag = context.get("dag") if context else None
            base = Path(dag.fileloc).parent if dag is not None and getattr(dag, "fileloc", None) else Path.cwd()
            path = base / path
        return load_policy(path)

    def _max_rows(self) -> int:
        try:
            value = int(self.max_rows)
        except (TypeError, ValueError):
            raise ConfigError(f"max_rows must be a positive integer, got {self.max_rows!r}") from None
        if value <= 0:
            raise ConfigError(f"max_rows must be a positive integer, got {value}")
        return value

    def _session(self, context) -> GovernedSession | RemoteSession:
        if self.service_conn_id:
            from .service import GovernedServiceHook

            session = GovernedServiceHook(self.service_conn_id).get_session(
                self.purpose, run_context=self._run_context(context), timeout_s=self.service_timeout_s)
            self._remote_lineage = session.lineage   # filled by each receipt and refusal; read by the provider
            return session
        from lineage_guard.audit import Ledger
        from lineage_guard.run import ParentRun
        from lineage_guard.session import GovernedSession

        hook = self.get_hook()
        policy = self._policy(context)
        if hook.search_path and list(policy.search_path[:1]) != [hook.search_path]:
            raise ConfigError(
                f"connection {self.conn_id!r} pins search_path {hook.search_path!r} but the policy resolves "
                f"unqualified names in {policy.search_path}; make them agree")
        identity = policy.resolve_identity(self._identity())
        if identity.kind == "human":
            raise ConfigError(
                f"identity {identity.principal!r} is a person (kind human in the policy or the DAG); an Airflow "
                f"task runs as a service or agent identity: declare one in the policy and pass it as identity=")
        keyring = hook.get_keyring()
        namespace, parent = _airflow_run(context, self.dag_id, self.task_id)
        ti = context.get("ti") if context else None
        return GovernedSession(
            hook.get_conn(), policy, identity, self.purpose,
            keyring=keyring,
            ledger=RecordingLedger(Ledger.open(), self._handoff),  # the worker's own ledger signing key
            lineage=self._handoff,
            environment=hook.environment,
            job_name=f"{self.dag_id}.{self.task_id}",
            job_namespace=namespace,
            parent=ParentRun(**parent) if parent else None,
            approval_run=f"airflow:{self.dag_id}/{getattr(ti, 'run_id', '') or ''}/{self.task_id}",
            approval_context={
                "dag_id": str(self.dag_id), "task_id": str(self.task_id),
                "run_id": str(getattr(ti, "run_id", "") or ""), "try_number": str(getattr(ti, "try_number", "") or ""),
            },
        )

    def _run_context(self, context) -> dict:
        return run_context(context, self.dag_id, self.task_id)

    # -- running ---------------------------------------------------------------------------------

    def _statements(self) -> list[str]:
        from airflow.providers.common.sql.hooks.sql import DbApiHook

        if isinstance(self.sql, str):
            statements = DbApiHook.split_sql_string(self.sql) if self.split_statements else [self.sql]
            statements = [s for s in statements if s.strip()]
        else:
            statements = [s for s in self.sql]
        if not statements:
            raise ValueError("List of SQL statements is empty")
        if self.output_uri and len(statements) != 1:
            raise ConfigError("output= writes the result of one statement; give a single SELECT")
        return statements

    def execute(self, context) -> Any:
        self._handoff.runs.clear()  # a retry in the same process starts a fresh account of the task's runs
        self._remote_lineage = []
        if self.endpoint is not None:
            return self._run_endpoint(context)
        return self._run(context, start_at=0)

    def _run_endpoint(self, context) -> Any:
        """Fetch one endpoint of a split read (a mapped task instance): no plan here, the plan was made once.

        A retry of this task instance fetches the same endpoint again: the service records it as the next
        attempt of that endpoint (`split.attempt`, `split.retry_of`) and counts its rows once.
        """
        from lineage_guard.integrations.endpoints import endpoint_from_doc

        from lineage_guard.client import UnknownTicket

        doc = self.endpoint
        where = {"key": doc["key"], "index": doc["index"], "of": doc["of"], "parent_run_id": doc["parent_run_id"]}
        try:
            endpoint = endpoint_from_doc(doc)
            with self._session(context) as session:
                self.log.info("Fetching endpoint %s (%d of %d) of the split read planned as run %s", doc["key"],
                              doc["index"] + 1, doc["of"], doc["parent_run_id"])
                if self.output_uri:
                    result = session.extract_endpoint(endpoint, self._local_output())
                    self.log.info("%s row(s) written to %s; masked: %s; receipt %s", result.rows, result.output_uri,
                                  ", ".join(result.masked_columns) or "(none)", result.receipt_id)
                    return {**result.summary(), "endpoint": where}
                table, receipt = self._fetch_capped(session, endpoint)
        except AccessDenied as exc:
            raise AirflowFailException(
                f"lineage_guard denied the endpoint: {'; '.join(exc.reasons)} (receipt {exc.receipt_id})") from None
        except ConfigError as exc:
            raise AirflowFailException(f"lineage_guard: {exc}") from None
        except UnknownTicket:   # retrying cannot bring it back: say how to plan again
            raise AirflowFailException(
                f"lineage_guard: the service no longer holds endpoint {doc['key']} (an endpoint expires "
                "10 minutes after its last use, and with a restart of the service): clear the planning task "
                "to plan the read again") from None
        from .cursor import ArrowCursor

        masked = set(receipt.masked_columns)
        cursor = ArrowCursor(table, masked={i for i, name in enumerate(table.column_names) if name in masked})
        if not (self.do_xcom_push or self.requires_result_fetch) or self.handler is None:
            return None
        return self._process_output([self.handler(cursor)], [cursor.description])[-1]

    def _local_output(self) -> str:
        """Service mode writes a local path (the thin client writes the file itself)."""
        if "://" in self.output_uri and not self.output_uri.startswith("file://"):
            raise ConfigError("in service mode output= is a local path (the thin client writes the file "
                              f"itself); got {self.output_uri!r}")
        return self.output_uri.removeprefix("file://")

    def _fetch_capped(self, session: RemoteSession, endpoint):
        import pyarrow as pa

        cap = self._max_rows()
        batches: list[pa.RecordBatch] = []
        rows = 0
        with session.stream_endpoint(endpoint) as stream:
            for batch in stream:
                rows += batch.num_rows
                if rows > cap:
                    raise ConfigError(
                        f"the endpoint has more than max_rows={cap} rows; rows are returned through XCom only "
                        f"below that cap: set output='/data/part-{{{{ ti.map_index }}}}.parquet' to write them, "
                        f"or raise max_rows")
                batches.append(batch)
        return pa.Table.from_batches(batches, schema=stream.schema), stream.receipt

    def execute_complete(self, context, event: dict[str, Any] | None = None) -> Any:
        """Resume after `ApprovalTrigger` fired: run again if approved (the session consumes the approval)."""
        event = event or {}
        status = event.get("status")
        request = event.get("request_id", "?")
        if status != "approved":
            why = {"denied": f"was denied by {event.get('approver') or 'an approver'}",
                   "expired": "expired before anyone decided it",
                   "used": "was already used by another run",
                   "error": f"could not be read from the approval store ({event.get('error', 'error')})"}
            raise AirflowFailException(f"lineage_guard approval request {request} {why.get(status, f'ended {status!r}')}; "
                                       "the statement was not run")
        self.log.info("approval request %s approved by %s; running the statement", request, event.get("approver"))
        return self._run(context, start_at=int(event.get("statement_index", 0)))

    def _run(self, context, start_at: int) -> Any:
        results: list[Any] = []
        descriptions: list[Any] = []
        index = start_at
        session = None
        try:
            statements = self._statements()
            session = self._session(context)
            with session:
                self._deny_early(session, statements[start_at:])
                for index in range(start_at, len(statements)):
                    result, description = self._one(session, statements[index], index)
                    results.append(result)
                    descriptions.append(description)
        except ApprovalRequired as exc:
            self._defer_for(session, exc, index)
        except AccessDenied as exc:
            raise AirflowFailException(
                f"lineage_guard denied the statement: {'; '.join(exc.reasons)} (receipt {exc.receipt_id})") from None
        except ConfigError as exc:  # retrying cannot fix a configuration: fail without retries
            raise AirflowFailException(f"lineage_guard: {exc}") from None
        if self.output_uri:
            return results[-1]
        if not (self.do_xcom_push or self.requires_result_fetch) or self.handler is None:
            return None
        if return_single_query_results(self.sql, self.return_last, self.split_statements):
            return self._process_output([results[-1]], [descriptions[-1]])[-1]
        return self._process_output(results, descriptions)

    def _process_output(self, results: list[Any], descriptions: list[Any]) -> Any:
        if self.show_return_value_in_logs:
            self.log.info("Operator output (masked) is: %s", results)
        return self._output_processor(results, descriptions)

    def _deny_early(self, session: GovernedSession, statements: list[str]) -> None:
        """Plan every statement before running any: a denied one runs first, so it is recorded and nothing else ran."""
        if len(statements) < 2:
            return
        from .params import numbered

        for statement in statements:
            sql, _ = numbered(statement, self.parameters)
            if session.plan(sql).action == "deny":
                self._one(session, statement, 0)

    def _one(self, session: GovernedSession, statement: str, index: int) -> tuple[Any, Any]:
        # Imported here, not at module level: a DAG file importing the operator must parse fast
        # (pyarrow, sqlglot and the lineage text helpers load in the task process only).
        from .cursor import ArrowCursor
        from .params import numbered

        sql, params = numbered(statement, self.parameters)
        if self.service_conn_id and not self.output_uri and _looks_like_read(sql):
            served = self._read_served(session, sql, params)
            if served is not None:
                return served
        decision = session.plan(sql)
        if self.service_conn_id:   # the service's plan gives the statement's shape (literals replaced)
            shown = getattr(decision, "shape", None) or "(statement shape not given by the service)"
        else:
            from lineage_guard.lineage.sql_text import shareable_sql

            shown = _shape(shareable_sql, sql)
        self.log.info("Executing (literals hidden): %s -> plan %s", shown, decision.action)
        is_read = _is_read(decision)
        if not is_read:
            if self.output_uri and decision.action != "deny":
                raise ConfigError("output= is for a SELECT; this statement writes. Remove output= to run the write")
            written = session.execute(sql, params)
            self.log.info("%s row(s) affected; receipt %s", written.rows_affected,
                          getattr(written, "receipt_id", None) or "(in the service's ledger)")
            cursor = ArrowCursor(None, rowcount=written.rows_affected)
            return (self.handler(cursor) if self.handler else None), cursor.description
        if self.output_uri:
            target = self._local_output() if self.service_conn_id else self.output_uri
            result = session.extract(sql, to=target, parameters=params)
            self.log.info("%s row(s) written to %s; masked: %s; receipt %s", result.rows, result.output_uri,
                          ", ".join(result.masked_columns) or "(none)", result.receipt_id)
            return result.summary(), None
        table = self._read_capped(session, sql, params)
        cursor = ArrowCursor(table, masked={c.position for c in decision.columns if c.masked})
        return (self.handler(cursor) if self.handler else None), cursor.description

    def _read_served(self, session: RemoteSession, sql: str, params) -> tuple[Any, Any] | None:
        """Service mode, a statement that looks like a read: one round trip fewer than plan-then-read.

        The server plans the statement when the read is opened (GetFlightInfo) and sends the plan
        with it, so no separate plan call is needed. The look is only a routing hint: the server
        decides; if it says the statement writes, None sends it down the plan-then-write path.
        """
        import pyarrow as pa

        from lineage_guard.client import ServiceError

        from .cursor import ArrowCursor

        cap = self._max_rows()
        batches: list[pa.RecordBatch] = []
        rows = 0
        try:
            with session.stream(sql, params) as stream:
                plan = stream.plan
                self.log.info("Executing (literals hidden): %s -> plan %s",
                              (plan.shape if plan else None) or "(statement shape not given by the service)",
                              plan.action if plan else "allow")
                for batch in stream:
                    rows += batch.num_rows
                    if rows > cap:
                        raise ConfigError(
                            f"the result has more than max_rows={cap} rows; rows are returned through XCom only "
                            f"below that cap: set output='s3://.../file.parquet' to write them, or raise max_rows")
                    batches.append(batch)
                schema = stream.schema
        except ServiceError as exc:
            if "this statement writes" in str(exc):   # the session's own words for a write sent as a read
                return None
            raise
        table = pa.Table.from_batches(batches, schema=schema)
        cursor = ArrowCursor(table, masked={c.position for c in (plan.columns if plan else ()) if c.masked})
        return (self.handler(cursor) if self.handler else None), cursor.description

    def _read_capped(self, session: GovernedSession, sql: str, params):
        import pyarrow as pa

        cap = self._max_rows()
        batches: list[pa.RecordBatch] = []
        rows = 0
        with session.stream(sql, params) as stream:
            for batch in stream:
                rows += batch.num_rows
                if rows > cap:  # deterministic: a retry would fail the same way, so no retry (ConfigError)
                    raise ConfigError(
                        f"the result has more than max_rows={cap} rows; rows are returned through XCom only "
                        f"below that cap: set output='s3://.../file.parquet' to write them, or raise max_rows")
                batches.append(batch)
        if batches:
            return pa.Table.from_batches(batches)
        return pa.table({c.name: pa.array([], pa.null()) for c in session.plan(sql).columns})

    def _defer_for(self, session: GovernedSession | RemoteSession, exc: ApprovalRequired, index: int) -> None:
        if self.service_conn_id:
            # The approval store lives with the service: the triggerer asks the service, with this task's credential.
            self.log.info("statement %d needs an approval (request %s): %s. Deferring until it is decided; "
                          "an approver runs (where the service's approval store is): %s", index + 1, exc.request_id,
                          "; ".join(exc.reasons), exc.approve_command)
            self.defer(
                trigger=ServiceApprovalTrigger(request_id=exc.request_id, service_conn_id=self.service_conn_id,
                                               purpose=str(self.purpose), poll_interval=self.approval_poll_interval,
                                               statement_index=index),
                method_name="execute_complete",
                timeout=self.approval_timeout,
            )
        try:
            store_url = session.approvals.get(exc.request_id).store_arg
        except LineageGuardError:
            store_url = None
        self.log.info("statement %d needs an approval (request %s): %s. Deferring until it is decided; "
                      "an approver runs: %s", index + 1, exc.request_id, "; ".join(exc.reasons), exc.approve_command)
        self.defer(
            trigger=ApprovalTrigger(request_id=exc.request_id, store_url=store_url,
                                    poll_interval=self.approval_poll_interval, statement_index=index),
            method_name="execute_complete",
            timeout=self.approval_timeout,
        )

    # -- lineage for Airflow's OpenLineage provider -------------------------------------------------

    def get_openlineage_facets_on_start(self):
        """At start only the output is known (inputs come from the plan, at completion)."""
        if self.service_conn_id:
            from .lineage import remote_operator_lineage

            return remote_operator_lineage(self._remote_lineage, self.output_uri, "START")
        from .lineage import operator_lineage

        return operator_lineage([], self.output_uri, "START")

    def get_openlineage_facets_on_complete(self, task_instance):
        """Inputs, output, column lineage with masking, and the `lineageGuard_*` facets of this task's runs."""
        if self.service_conn_id:
            from .lineage import remote_operator_lineage

            return remote_operator_lineage(self._remote_lineage, self.output_uri, "COMPLETE")
        from .lineage import operator_lineage

        return operator_lineage(self._handoff.runs, self.output_uri, "COMPLETE")

    def get_openlineage_facets_on_failure(self, task_instance):
        if self.service_conn_id:
            from .lineage import remote_operator_lineage

            # A mapped endpoint read was allowed when it was planned: its failure is a fault (a cut connection, a
            # restarted worker) that a retry repairs. Its FAIL repeats the output its START named, as a terminal
            # event must (Marquez would otherwise drop the job's edge to the file); nothing was written (atomic).
            return remote_operator_lineage(self._remote_lineage, self.output_uri, "FAIL",
                                           repeat_declared=self.endpoint is not None)
        from .lineage import operator_lineage

        return operator_lineage(self._handoff.runs, self.output_uri, "FAIL")


def _looks_like_read(sql: str) -> bool:
    """A routing hint only (the server decides): the first word, past comments and parentheses."""
    import re

    text = re.sub(r"--[^\n]*|/\*.*?\*/", " ", sql, flags=re.DOTALL).lstrip(" \t\r\n(")
    return re.match(r"(?i)(select|with|values|table)\b", text) is not None


def _is_read(decision) -> bool:
    """Whether a plan reads: a `Decision` knows from its analysis, the service's plan says it outright."""
    if hasattr(decision, "is_read"):
        return bool(decision.is_read)
    return decision.analysis is None or decision.analysis.is_read


def _shape(shareable, sql: str) -> str:
    try:
        return shareable(sql)
    except Exception:  # noqa: BLE001 - an unparseable statement is refused by the plan; log nothing of it
        return "(unparseable statement)"


def _airflow_run(context, dag_id: str, task_id: str) -> tuple[str, dict | None]:
    """The OpenLineage namespace and this task instance's OpenLineage run (the ledger entry's parent)."""
    namespace = os.environ.get("OPENLINEAGE_NAMESPACE", "default")
    try:
        from airflow.providers.openlineage import conf
    except ImportError:  # the OpenLineage provider is optional
        return namespace, None
    namespace = conf.namespace()
    ti = context.get("ti") if context else None
    # With OpenLineage off there is no task run to name as parent; and the provider's adapter (which
    # the run id needs) costs a fresh task process ~1.3 s of imports that a plain task does not pay.
    if ti is None or conf.is_disabled():
        return namespace, None
    try:
        from airflow.providers.openlineage.plugins import macros

        run_id = macros.lineage_run_id(ti)
    except Exception:  # noqa: BLE001 - lineage must never fail the task
        return namespace, None
    return namespace, {"run_id": run_id, "job_namespace": namespace, "job_name": f"{dag_id}.{task_id}"}


def run_context(context, dag_id: str, task_id: str) -> dict:
    """What the service is told of a task's run: its OpenLineage run (the governed run's parent), the run
    an approval binds to, and what an approver sees. Value-free; the identity is the token's."""
    _, parent = _airflow_run(context, dag_id, task_id)
    ti = context.get("ti") if context else None
    approval_context = {"dag_id": str(dag_id), "task_id": str(task_id), "run_id": str(getattr(ti, "run_id", "") or ""),
                        "try_number": str(getattr(ti, "try_number", "") or "")}
    map_index = getattr(ti, "map_index", -1)
    if isinstance(map_index, int) and map_index >= 0:
        approval_context["map_index"] = str(map_index)
    return {"parent": parent, "approval_run": f"airflow:{dag_id}/{approval_context['run_id']}/{task_id}",
            "approval_context": approval_context}


@functools.lru_cache(maxsize=32)
def _load_policy_cached(path: str, mtime_ns: int) -> Policy:
    """One parse per policy file version in a DAG-processing process (every task of a DAG names it)."""
    from lineage_guard.policy import load_policy

    return load_policy(path)
