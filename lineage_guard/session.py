"""The one governed path every request takes (DESIGN.md steps 1-10), as a session object.

A `GovernedSession` binds a source, a policy, an identity and a purpose. Every call plans
first (steps 1-4, no data touched), then, if allowed, reads Arrow batches (6), masks each
batch (7), writes the sink atomically (8), records a ledger receipt (9) and emits
OpenLineage START/COMPLETE or FAIL through a durable outbox (10). Integrations (CLI,
Airflow, Dagster) call this class; none re-implements a step.

Example:
    >>> with GovernedSession("postgresql://127.0.0.1/clinic", "policy.yaml",
    ...                      identity="svc-training", purpose="ai_training") as s:   # doctest: +SKIP
    ...     s.plan("SELECT id, email FROM customers").action
    ...     result = s.extract("SELECT * FROM patients", to="patients.parquet")
    ...     result.rows, result.masked_columns, result.receipt_id
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pyarrow as pa

from .decision import Decision
from .errors import (
    AccessDenied,
    ApprovalRequired,
    ConfigError,
    LineageGuardError,
    WriteNotRecorded,
    WriteUnrecorded,
)
from .identity import Identity
from .planner import plan as plan_statement
from .policy import Policy, load_policy
from .run import ParentRun, Receipt, RunRecord, SinkInfo, new_run_id, utcnow

if TYPE_CHECKING:  # pragma: no cover
    import polars as pl

    from .attest.floor import FloorCheck
    from .sinks import Sink

# Masks that use a key: their output columns carry a key id in the ledger and lineage.
KEYED_METHODS = {"tokenize", "pseudonymize", "shift_date", "format_preserving"}


@dataclass(frozen=True)
class ExtractResult:
    """What `extract` returns: counts, masked columns, where the result went, the receipt."""

    run_id: str
    receipt_id: str
    output_uri: str
    rows: int
    bytes: int
    masked_columns: tuple[str, ...]
    decision: Decision
    timings: dict[str, float] = field(default_factory=dict)  # seconds per step: plan, read_mask_write, record

    def summary(self) -> dict[str, Any]:
        """A small, value-free summary (what an Airflow XCom carries)."""
        return {
            "output_uri": self.output_uri,
            "rows": self.rows,
            "bytes": self.bytes,
            "masked_columns": list(self.masked_columns),
            "receipt_id": self.receipt_id,
            "run_id": self.run_id,
        }


@dataclass(frozen=True)
class WriteResult:
    """What `execute` returns for a guarded write."""

    run_id: str
    receipt_id: str
    rows_affected: int
    decision: Decision


class GovernedSession:
    """Governed reads (and guarded writes) as one identity, for one purpose.

    `source` is a Postgres URL or a `PostgresSource`; `policy` a path or a `Policy`;
    `identity` an `Identity`, a name, or None for `LINEAGE_GUARD_IDENTITY`.
    `schema_files` plans offline against DDL instead of the live catalog.
    `approval_wait` (seconds) waits for a pending approval instead of raising `ApprovalRequired`.
    `approval_run` names the requesting run an approval is bound to (the Airflow operator passes
    its DAG run and task, so a resumed or retried task uses it and another DAG run cannot); None
    binds approvals to the plan, values and identity only.
    `statement_timeout_ms` bounds each read; a streamed read lasts until its last batch is written,
    so it covers masking and writing too (default 10 minutes).
    """

    def __init__(
        self,
        source: Any,
        policy: str | Path | Policy,
        identity: Identity | str | None = None,
        purpose: str | None = None,
        *,
        keyring: Any = None,
        ledger: Any = None,
        lineage: Any = None,
        approvals: Any = None,
        schema_files: Sequence[str | Path] = (),
        environment: str | None = None,
        job_name: str | None = None,
        job_namespace: str | None = None,
        parent: ParentRun | None = None,
        approval_wait: float | None = None,
        approval_context: dict[str, str] | None = None,
        approval_run: str | None = None,
        statement_timeout_ms: int = 600_000,
    ) -> None:
        from .sources.postgres import PostgresSource

        self.policy = policy if isinstance(policy, Policy) else load_policy(policy)
        if identity is None:
            identity = Identity.from_env()
        self.identity = self.policy.resolve_identity(Identity.parse(identity) if isinstance(identity, str) else identity)
        if not purpose:
            raise ConfigError("a purpose is required: say why the data is read (e.g. purpose='ai_training')")
        self.purpose = purpose
        if len(self.policy.search_path) != 1:
            raise ConfigError("policy search_path must name exactly one schema: reads pin it, so plans resolve "
                              "unqualified names in the same schema the read does")
        schema = self.policy.search_path[0]
        self.source = (
            source
            if isinstance(source, PostgresSource)
            else PostgresSource(str(source), statement_timeout_ms=statement_timeout_ms,
                                environment=environment or "default", schema=schema)
        )
        if self.source.schema != schema:
            raise ConfigError(f"the source pins schema {self.source.schema!r} but the policy's search_path is "
                              f"{schema!r}; make them the same so plans and reads resolve names alike")
        self.environment = environment or self.source.info.environment
        self._schema_files = tuple(schema_files)
        self._catalog = None
        self._schema_version = ""  # the live schema version `_catalog` was taken at (sql/catalog_cache)
        self._detection = None
        self._meta = None  # the one connection plans read the schema version, catalog and detection on
        self._reads = None  # the read connection kept between this session's reads (sources.read_conn)
        self._keyring = keyring
        self._ledger = ledger
        self._lineage = lineage
        self._approvals = approvals
        self.job_namespace = job_namespace or os.environ.get("OPENLINEAGE_NAMESPACE", "lineage_guard")
        self.job_name = job_name or f"lineage_guard.{self.identity.principal}.{purpose}"
        self.parent = parent
        self.approval_wait = approval_wait
        self.approval_context = dict(approval_context or {})
        self.approval_run = approval_run
        # Key-free tags every run of this session carries into its ledger entry (e.g. a split read's
        # endpoint: `{"split": {...}}`, set by the service).
        self.run_extra: dict[str, Any] = {}

    @staticmethod
    def connect(url: str, *, purpose: str, token: str | None = None, token_file: str | Path | None = None,
                **options: Any):
        """The same API on `lineage-guard serve` (service mode): a `lineage_guard.client.RemoteSession`.

        The server establishes the identity from the credential (`token`, `token_file`, else
        `$LINEAGE_GUARD_TOKEN` / `$LINEAGE_GUARD_TOKEN_FILE`); this process needs no key or database
        password. A process that must not even load the masking code imports `lineage_guard.client`.

        Example:
            >>> s = GovernedSession.connect("grpc+tls://lg.internal:31337", purpose="ai_training",
            ...                             token_file="/var/run/secrets/tokens/lg")   # doctest: +SKIP
        """
        from .client import connect

        return connect(url, purpose=purpose, token=token, token_file=token_file, **options)

    # -- lazily built collaborators: planning needs none of them ------------------------------

    @property
    def catalog(self):
        """The catalog plans resolve names in: the DDL files, or the live one at the last checked schema version."""
        if self._catalog is None:
            if self._schema_files:
                from .sql.catalog import Catalog

                self._catalog = Catalog.from_ddl(*self._schema_files, search_path=(self.source.schema,))
            else:
                self._refresh_catalog()
        return self._catalog

    def _refresh_catalog(self) -> None:
        """One schema-version query; the process-wide cache reloads the catalog only if the version moved."""
        from .sql.catalog_cache import CACHE

        url, meta = self.source.catalog_url, self._meta_connection()
        self._schema_version = CACHE.version(url, meta)
        self._catalog = CACHE.catalog(url, (self.source.schema,), self._schema_version, meta)

    def _meta_connection(self):
        """The session's one metadata connection (opened on first use, closed with the session).

        Every plan used to open one connection for the schema version and another for detection.
        """
        if self._meta is None:
            from .sources.meta_conn import MetaConnection

            self._meta = MetaConnection(self.source.catalog_url)
        return self._meta

    def _read_connections(self):
        """This session's kept read connection (`sources.read_conn`): reset after a clean read, else closed.

        Every read used to open its own connection. It is this session's only: never shared with
        another session (the service makes one per call), and lent to one read at a time.
        """
        if self._reads is None:
            from .sources.read_conn import ReadConnections

            self._reads = ReadConnections()
        return self._reads

    @property
    def keyring(self):
        if self._keyring is None:
            from .mask import Keyring

            self._keyring = Keyring.from_env()
        return self._keyring

    @property
    def ledger(self):
        if self._ledger is None:
            from .audit import Ledger

            self._ledger = Ledger.open()
        return self._ledger

    @property
    def lineage(self):
        if self._lineage is None:
            from .lineage import LineageEmitter

            self._lineage = LineageEmitter()
        return self._lineage

    @property
    def approvals(self):
        if self._approvals is None:
            from .approvals import ApprovalStore

            self._approvals = ApprovalStore.open(config=self.policy.approvals)
        return self._approvals

    def __enter__(self) -> GovernedSession:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for part in (self._reads, self._ledger, self._approvals, self._lineage, self._meta):
            closer = getattr(part, "close", None)
            if closer:
                closer()

    # -- steps 1-4 -------------------------------------------------------------------------------

    def plan(self, sql: str) -> Decision:
        """Steps 1-4 only: the decision for `sql`, no data touched, nothing recorded.

        Every plan checks the live schema version first (one short query): a DDL since the last
        plan is seen by this one (a column added by ALTER TABLE is classified and masked).
        """
        if not self._schema_files:
            self._refresh_catalog()
        return plan_statement(sql, catalog=self.catalog, policy=self.policy, identity=self.identity,
                              purpose=self.purpose, environment=self.environment, detect=self._detector())

    def _detector(self):
        """Step 3's second half: detect sensitive columns the policy does not declare (live sources only)."""
        config = self.policy.detection
        if self._schema_files or not config.applies_to(self.source.catalog_url):
            return None
        if self._detection is None:
            from .classify.catalog import DetectionCatalog

            self._detection = DetectionCatalog()
        url, detection, meta = self.source.catalog_url, self._detection, self._meta_connection()

        # Not memoised per schema version: a verdict is about the rows sampled, and rows change without
        # DDL (a table read while empty, then filled with emails, stayed "clean"). The detection catalog
        # keys each table's verdict by its schema and data version and rescans what changed.
        def detect(tables):
            return dict(detection.sensitive_labels(url, list(tables), config, meta=meta))
        return detect

    # -- reads -----------------------------------------------------------------------------------

    @contextmanager
    def stream(self, sql: str, parameters: Sequence[Any] | None = None) -> Iterator[Iterator[pa.RecordBatch]]:
        """Masked RecordBatches as they arrive: `with s.stream(sql) as batches: for b in batches: ...`.

        Before the first batch can leave, the ledger records the run's intent (columns, decision,
        outcome `open`); when the block exits the final entry (success with the rows delivered,
        or failure) supersedes it. A process killed mid-stream leaves the `open` entry, which
        `audit verify` and `audit log` report.
        """
        delivered: list[pa.RecordBatch] = []
        sink = _Handover(delivered.append)
        run, decision = self._begin(sql, sink, parameters, intent=True)
        # A purpose with a re-identification floor is measured on the whole output before any of it
        # leaves: the batches are held (in memory) until the end of the read, then handed over.
        floor = self._floor(decision)
        gen = self._pump(run, decision, sql, parameters, sink, floor=floor)

        failed = False
        handed = 0

        def handover(held: list[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
            nonlocal handed
            while held:
                batch = held.pop(0)
                handed += batch.num_rows
                self._settle(run, done=True)  # an approval is used once data has left
                yield batch

        def batches() -> Iterator[pa.RecordBatch]:
            nonlocal failed
            failure = None
            try:
                for _ in gen:
                    if floor is None:
                        yield from handover(delivered)
                if floor is not None:
                    self._check_floor(run, floor)
                    yield from handover(delivered)
            except GeneratorExit:
                raise
            except BaseException as exc:  # noqa: BLE001 - the path failed (not the caller): record, sanitize
                failed = True
                run.extra["delivered_rows"] = handed
                failure = self._fail(run, sink, exc)
            if failure is not None:
                raise failure

        try:
            yield _MaskedBatches(batches(), sink, run)
        except BaseException as exc:
            if not failed:  # the caller's own code failed: record it, re-raise it unchanged
                gen.close()
                run.extra["delivered_rows"] = handed
                self._fail(run, sink, exc)
            raise
        if failed:  # the path failed and recorded it; the caller caught the error inside the block
            return
        # A caller that stopped early ends the read here (cancelled on the server). The ledger counts
        # every row handed over, at most one batch more than was looked at: over-, never under-report.
        gen.close()
        self._finish(run, sink)

    def read_arrow(self, sql: str, parameters: Sequence[Any] | None = None) -> pa.Table:
        """The masked result as an Arrow table (in memory)."""
        from .sinks import ArrowSink

        sink = ArrowSink()
        self._run(sql, parameters, sink)
        return sink.table

    def read_polars(self, sql: str, parameters: Sequence[Any] | None = None) -> pl.DataFrame:
        """The masked result as a Polars DataFrame."""
        import polars as pl

        return pl.from_arrow(self.read_arrow(sql, parameters))  # type: ignore[return-value]

    def extract(self, sql: str, to: str | Path, parameters: Sequence[Any] | None = None,
                progress: Any = None) -> ExtractResult:
        """Read, mask and write Parquet atomically to `to` (a local path or an fsspec URL).

        `progress`, if given, is called with the running row count after every batch.
        """
        from .sinks import ParquetSink

        sink = ParquetSink(str(to))
        run, timings = self._run(sql, parameters, sink, progress=progress)
        return ExtractResult(
            run_id=run.run_id,
            receipt_id=run.receipt.id if run.receipt else "",
            output_uri=sink.info.uri,
            rows=run.rows,
            bytes=run.bytes,
            masked_columns=tuple(c.name for c in run.decision.masked_columns),
            decision=run.decision,
            timings=timings,
        )

    # -- guarded writes (DML in DAGs) ----------------------------------------------------------

    def execute(self, sql: str, parameters: Sequence[Any] | None = None) -> WriteResult:
        """Run a write that the policy's guardrails allow (or that was approved); recorded in the ledger."""
        return self._write(sql, [parameters], batch=False)

    def execute_many(self, sql: str, parameter_rows: Sequence[Sequence[Any] | None]) -> WriteResult:
        """One write statement run for each parameter row, all in one transaction: every row or none.

        One plan, one admission (an approval covers the whole batch), one ledger entry stating the
        rows affected and the parameter rows, or the failure (nothing written). The statement
        timeout bounds the whole batch.

        Example:
            >>> s.execute_many("INSERT INTO notes VALUES ($1, $2)", [[1, "a"], [2, "b"]]).rows_affected  # doctest: +SKIP
            2
        """
        rows = list(parameter_rows)
        if not rows:
            raise LineageGuardError("execute_many() needs at least one parameter row; nothing was run")
        return self._write(sql, rows, batch=True)

    def _write(self, sql: str, rows: list[Sequence[Any] | None], *, batch: bool) -> WriteResult:
        """Plan, admit, record the intent, write, record the outcome (superseding the intent).

        The intent is on record before the database is touched: a ledger that cannot record stops
        the write (`WriteNotRecorded`, nothing written). A final entry that cannot be recorded after
        the write leaves the intent as the run's latest entry, which says the write may have happened
        (`WriteUnrecorded`).
        """
        decision = self.plan(sql)
        if decision.analysis is not None and decision.analysis.is_read:
            raise LineageGuardError("execute() is for writes; use read_arrow/extract/stream for reads")
        run = self._new_run(sql, decision)
        run.extra["write"] = True
        if batch:
            run.extra["parameter_rows"] = len(rows)
        self._admit(run, decision, rows[0], parameter_rows=rows if len(rows) > 1 else None)
        written = decision.analysis.tables_written if decision.analysis else ()
        if len(written) == 1:  # the table written is the run's output dataset in lineage
            info = self.source.info
            name = info.dataset_name(written[0].schema, written[0].table)
            run.sink = SinkInfo("postgres", f"{info.namespace}/{name}", info.namespace, name)
        intent = self._record_write_intent(run)
        self.lineage.start(run)
        try:
            text = executed_sql(decision)
            if batch:   # one transaction for all rows: a failure partway leaves nothing written
                affected = self.source.execute_write_batch(text, [executed_parameters(decision, p) for p in rows])
            else:
                affected = self.source.execute_write(text, executed_parameters(decision, rows[0]))
        except BaseException as exc:
            self._settle(run, done=False)  # rolled back: the approval is handed back for the next attempt
            try:
                self._record_failure(run, exc)
            except Exception as err:  # noqa: BLE001 - the open intent stays; the caller is told both
                self.lineage.fail(run)
                raise WriteUnrecorded(
                    f"the governed write failed ({_describe(exc)}) and its failure could not be recorded in the "
                    f"ledger ({_describe(err)}); the ledger's open entry {intent.id} (run {run.run_id}) stays "
                    "and says the write may have happened: check the target table",
                    run_id=run.run_id, receipt_id=intent.id, committed=False, rows_affected=None) from None
            self.lineage.fail(run)
            raise
        run.rows = affected
        run.outcome = "success"
        run.ended_at = utcnow()
        try:
            run.receipt = self.ledger.record(run)
        except Exception as err:  # noqa: BLE001 - committed: say so, never as a plain failure to retry
            run.receipt = intent
            self._settle(run, done=True)   # the write happened: its approval is used
            self.lineage.complete(run)
            raise WriteUnrecorded(
                f"the governed write committed ({affected} row(s) affected) but its final ledger entry could not "
                f"be recorded ({_describe(err)}); the ledger's open entry {intent.id} (run {run.run_id}) stays "
                "and says the write may have happened (`lineage-guard audit verify` lists it). Do not retry "
                "blindly: the write is in the database",
                run_id=run.run_id, receipt_id=intent.id, committed=True, rows_affected=affected) from None
        self._settle(run, done=True)
        self.lineage.complete(run)
        return WriteResult(run.run_id, run.receipt.id, affected, decision)

    def _record_write_intent(self, run: RunRecord) -> Receipt:
        """The write's `open` entry, before the database is touched; if it cannot be recorded, nothing runs."""
        run.outcome = "open"
        try:
            receipt = self.ledger.record(run)
        except Exception as err:  # noqa: BLE001 - fail closed: no write without its intent on record
            self._settle(run, done=False)   # nothing was written: the approval is handed back
            raise WriteNotRecorded(
                f"the governed write was not run: its intent could not be recorded in the ledger "
                f"({_describe(err)}); nothing was written. Make the ledger writable "
                "(LINEAGE_GUARD_LEDGER_URL, or the state folder's ledger.sqlite) and retry") from None
        except BaseException:
            self._settle(run, done=False)
            raise
        run.receipt = receipt
        run.outcome = "running"
        return receipt

    # -- data already in memory (e.g. a Dagster asset's return value) ------------------------------

    def mask_table(self, table: pa.Table, columns: Sequence[Any], to: str | Path | Sink, *, statement: str,
                   premasked: dict[int, Any] | None = None) -> ExtractResult:
        """Steps 3-5 and 7-10 for a table that did not come from a query: mask per policy, write, record.

        `columns[i]` (an `OutputColumn`) says which source columns `table`'s column i derives from;
        `opaque=True` marks a column of unknown provenance, which is masked with the policy's
        default mask (nothing shows what it holds). `statement` names the data in the ledger and
        events (no SQL runs). `premasked` maps positions already masked upstream to their
        `MaskSpec`: the same spec is not applied twice (tokens keep joining), any other mask is.
        `to` is a Parquet path or URL, or a `Sink` (e.g. `ArrowSink()`: the masked table is then
        `sink.table`).

        Example:
            >>> cols = [OutputColumn(0, "email", (ColumnRef("public", "customers", "email"),), direct=True)]
            >>> s.mask_table(pa.table({"email": ["a@x.invalid"]}), cols, "out.parquet",
            ...              statement="dagster asset emails").masked_columns   # doctest: +SKIP
            ('email',)
        """
        from .planner import decide, sensitive_labels
        from .sinks import ParquetSink
        from .sql.model import Analysis

        columns = tuple(columns)
        if [c.name for c in columns] != table.column_names:
            raise LineageGuardError("mask_table: give one OutputColumn per table column, in the table's order")
        tables_read = tuple(sorted({s.table_ref for c in columns for s in c.sources}))
        analysis = Analysis(statement, "select", True, tables_read=tables_read, columns=columns)
        detect = self._detector()
        labels = sensitive_labels(self.policy, detect(tables_read) if detect and tables_read else None)
        # Unlike a query, in-memory data shows nothing of what it read: unknown provenance is masked.
        decision = decide(analysis, policy=self.policy, identity=self.identity, purpose=self.purpose,
                          environment=self.environment, labels=labels, mask_opaque=True)
        run = self._new_run(statement, decision)
        self._admit(run, decision)
        from .sinks.base import Sink

        sink = to if isinstance(to, Sink) else ParquetSink(str(to))
        run.sink = sink.info
        if getattr(sink, "carries_provenance", False):
            self._record_intent(run, sink)
        self.lineage.start(run)
        premasked = premasked or {}
        specs = {c.position: c.mask for c in decision.columns
                 if c.mask is not None and premasked.get(c.position) != c.mask}
        failure = None
        try:
            from .mask import mask_batch

            schema = mask_batch(table.schema.empty_table(), specs, self.keyring).schema
            sink.open(schema)
            run.output_schema = [(f.name, str(f.type)) for f in schema]
            written = []
            for batch in table.to_batches():
                masked = mask_batch(batch, specs, self.keyring).cast(schema)
                sink.write(masked)
                written.append(masked)
                run.rows += batch.num_rows
            if self.policy.validation.enabled:
                sample = pa.Table.from_batches(written, schema=schema).slice(0, self.policy.validation.sample_rows)
                self._validate(run, decision, sample)
        except BaseException as exc:  # noqa: BLE001 - every failure is recorded, then re-raised sanitized
            failure = self._fail(run, sink, exc)
        if failure is not None:  # raised outside the except block so no raw context is chained
            raise failure
        self._finish(run, sink)
        return ExtractResult(run_id=run.run_id, receipt_id=run.receipt.id if run.receipt else "",
                             output_uri=sink.info.uri, rows=run.rows, bytes=run.bytes,
                             masked_columns=tuple(c.name for c in decision.masked_columns), decision=decision)

    def mask_stream(self, decision: Decision, schema: pa.Schema, batches: Iterable[pa.RecordBatch], sink: Sink, *,
                    check: Callable[[pa.RecordBatch], None] | None = None,
                    extra: dict[str, Any] | None = None) -> RunRecord:
        """Steps 5 and 7-10 for batches that did not come from a query (e.g. a lake file sent to the service).

        `decision` (from `plan`, its columns lined up with `schema`'s by position) says how each column
        is masked; a denial is recorded and raised before any batch is read. The run is recorded `open`
        before the first masked batch reaches `sink`, and success or failure ends it. `check(batch)` sees
        each batch before it is masked and raises to stop the run (it is then recorded as failed, with the
        batches already delivered counted). `extra` is key-free metadata kept with the run (ledger, lineage).

        Example:
            >>> run = s.mask_stream(s.plan("SELECT email FROM customers"), table.schema, table.to_batches(),
            ...                     ArrowSink())   # doctest: +SKIP
            >>> run.rows, run.receipt.id            # doctest: +SKIP
        """
        from .mask import mask_batch

        if len(schema) != len(decision.columns):
            raise LineageGuardError(f"mask_stream: the plan has {len(decision.columns)} column(s) but the data "
                                    f"{len(schema)}; give one planned column per data column, in order")
        run = self._new_run(decision.statement, decision)
        run.extra.update(extra or {})
        self._admit(run, decision)
        run.sink = sink.info
        self._record_intent(run, sink)   # masked data reaches the caller before the run ends
        self.lineage.start(run)
        specs = {c.position: c.mask for c in decision.columns if c.mask is not None}
        failure = None
        try:
            masked_schema = mask_batch(schema.empty_table(), specs, self.keyring).schema
            sink.open(masked_schema)
            run.output_schema = [(f.name, str(f.type)) for f in masked_schema]
            for batch in batches:
                if check is not None:
                    check(batch)
                sink.write(mask_batch(batch, specs, self.keyring).cast(masked_schema))
                run.rows += batch.num_rows
        except BaseException as exc:  # noqa: BLE001 - every failure is recorded, then re-raised sanitized
            run.extra["delivered_rows"] = run.rows
            failure = self._fail(run, sink, exc)
        if failure is not None:  # raised outside the except block so no raw context is chained
            raise failure
        self._finish(run, sink)
        return run

    # -- the path ----------------------------------------------------------------------------------

    def _new_run(self, sql: str, decision: Decision) -> RunRecord:
        return RunRecord(
            run_id=new_run_id(),
            job_namespace=self.job_namespace,
            job_name=self.job_name,
            identity=self.identity,
            purpose=self.purpose,
            source=self.source.info,
            decision=decision,
            sql=decision.statement or sql,
            parent=self.parent,
            input_schemas=self._input_schemas(decision),
            key_ids={
                c.position: self.keyring.mask_key_id(c.mask)
                for c in decision.columns
                if c.mask is not None and c.mask.method in KEYED_METHODS
            },
            extra={**self.run_extra, "policy_digest": self._policy_digest()},
        )

    def _policy_digest(self) -> str:
        if getattr(self, "_digest", None) is None:
            from .attest.provenance import policy_digest

            self._digest = policy_digest(self.policy)
        return self._digest

    def _input_schemas(self, decision: Decision) -> dict[str, list[tuple[str, str | None]]]:
        if decision.analysis is None:
            return {}
        out: dict[str, list[tuple[str, str | None]]] = {}
        for ref in decision.analysis.source_columns:
            relation = self.catalog.relation(ref.table, ref.schema)
            pg_type = relation.column_type(ref.column) if relation else None
            out.setdefault(f"{ref.schema}.{ref.table}", []).append((ref.column, pg_type))
        for table in decision.analysis.tables_read:  # tables read only in predicates still appear as inputs
            out.setdefault(str(table), [])
        return out

    def _admit(self, run: RunRecord, decision: Decision, parameters: Sequence[Any] | None = None,
               parameter_rows: Sequence[Sequence[Any] | None] | None = None) -> None:
        """Step 5: deny, or pass an approval gate, or go on. Denials and waits are recorded.

        An approval binds to the plan, the parameter values and the requesting run
        (`approval_run`, when the caller names one); it is claimed here and settled by the path:
        used up once the work is done, handed back if the run fails before.
        """
        check_signer = getattr(self.ledger, "check_signer", None)
        if check_signer is not None:  # a writer the ledger would refuse stops here, before any read
            check_signer()
        if decision.action == "deny":
            self._deny(run, list(decision.reasons))
        if decision.action == "needs_approval":
            from .approvals import fingerprint, plan_digest
            from .approvals.binding import bind_parameter_rows

            # A batch (`parameter_rows`) is approved as a whole; a single row binds as it always did.
            plan, bound = plan_digest(decision), bind_parameter_rows(parameter_rows or [parameters], self.keyring)
            fp = fingerprint(self.identity, decision.statement, self.purpose, self.source.info,
                             plan=plan, parameters=bound.digest)
            requester_run = self.approval_run
            granted = self.approvals.claim(fp, requester_run)
            if granted is None:
                try:
                    request = self.approvals.request(
                        fingerprint=fp, identity=self.identity, purpose=self.purpose,
                        statement=decision.statement, source=self.source.info,
                        reasons=list(decision.reasons), context=self.approval_context,
                        plan=plan, parameters=bound.describe(), run=requester_run,
                    )
                except AccessDenied as exc:  # an approver already said no to this exact request
                    self._deny(run, exc.reasons)
                if self.approval_wait:
                    request = self.approvals.wait(request.id, timeout_s=self.approval_wait)
                    if request.status == "denied":
                        run.approval_id = request.id
                        self._deny(run, [f"approval request {request.id} was denied"])
                    granted = self.approvals.claim(fp, requester_run) if request.status == "approved" else None
                if granted is None:
                    run.outcome = "needs_approval"
                    run.approval_id = request.id
                    run.ended_at = utcnow()
                    run.receipt = self.ledger.record(run)
                    raise ApprovalRequired(request.id, list(decision.reasons), request.approve_command,
                                           receipt_id=run.receipt.id)
            run.approval_id = granted.id
            run.extra["approval_claimed"] = True

    def _settle(self, run: RunRecord, *, done: bool) -> None:
        """Settle the run's claimed approval once: used by a run that did the work, else handed back."""
        if run.extra.pop("approval_claimed", False):
            self.approvals.settle(run.approval_id, done=done)

    def _deny(self, run: RunRecord, reasons: list[str]) -> NoReturn:
        run.outcome = "denied"
        run.ended_at = utcnow()
        run.receipt = self.ledger.record(run)
        raise AccessDenied(reasons, receipt_id=run.receipt.id)

    def _begin(self, sql: str, sink: Sink, parameters: Sequence[Any] | None = None,
               intent: bool = False) -> tuple[RunRecord, Decision]:
        """Plan and admit; with `intent`, record the run as `open` first (data leaves before it ends)."""
        decision = self.plan(sql)
        if decision.analysis is not None and not decision.analysis.is_read and decision.action != "deny":
            raise LineageGuardError("this statement writes; reads go through read_arrow/extract/stream and "
                                    "writes through execute()")
        run = self._new_run(sql, decision)
        self._admit(run, decision, parameters)
        run.sink = sink.info
        if intent:
            self._record_intent(run, sink)
        self.lineage.start(run)
        return run, decision

    def _record_intent(self, run: RunRecord, sink: Sink) -> None:
        """Record the run as `open` before any data moves; a sink that carries provenance is stamped
        with that entry (id, hash) and the id the final entry will take."""
        run.outcome = "open"
        try:
            run.receipt = self.ledger.record(run)
        except BaseException:
            self._settle(run, done=False)  # nothing was read
            raise
        if getattr(sink, "carries_provenance", False):
            from .attest.provenance import provenance_for

            run.extra["final_entry_id"] = final = str(uuid.uuid4())
            sink.provenance = provenance_for(run, intent=run.receipt, receipt_id=final,
                                             policy_digest=run.extra["policy_digest"])

    def _pump(self, run: RunRecord, decision: Decision, sql: str, parameters, sink: Sink, progress=None,
              sample: list[pa.RecordBatch] | None = None, floor: FloorCheck | None = None):
        """Steps 6-8 for each batch: read, mask, write. Yields after each batch.

        `sample`, if given, collects the first `policy.validation.sample_rows` masked rows;
        `floor`, if given, sees every masked batch (the purpose's re-identification floor).
        """
        from .mask import mask_batch
        from .prefetch import Prefetched

        specs = {c.position: c.mask for c in decision.columns if c.mask is not None}
        with self.source.stream(executed_sql(decision), executed_parameters(decision, parameters),
                                verify=binding_check(decision), keep=self._read_connections()) as stream:
            if len(stream.schema) != len(decision.columns):
                # The server's output shape differs from the plan's: the plan cannot vouch for it.
                raise LineageGuardError(
                    f"the query returns {len(stream.schema)} columns but the plan resolved "
                    f"{len(decision.columns)}; refusing to release unplanned columns")
            empty = stream.schema.empty_table()
            masked_schema = mask_batch(empty, specs, self.keyring).schema
            sink.open(masked_schema)
            run.output_schema = [(f.name, str(f.type)) for f in masked_schema]
            # The next batch is read on a second thread while this one is masked and written.
            with Prefetched(iter(stream)) as batches:
                yield from self._mask_write(run, batches, specs, sink, sample, floor, progress)

    def _mask_write(self, run: RunRecord, batches: Iterator[pa.RecordBatch], specs, sink: Sink,
                    sample: list[pa.RecordBatch] | None, floor: FloorCheck | None, progress) -> Iterator[None]:
        """Steps 7-8 for each batch read: mask, observe, write, count. Yields after each batch."""
        from .mask import mask_batch
        from .mask.memo import TokenMemo

        memo = TokenMemo()  # this read's only: a value seen in an earlier batch is not HMACed again
        for batch in batches:
            masked = mask_batch(batch, specs, self.keyring, memo=memo)
            if floor is not None:
                floor.observe(masked)
            sink.write(masked)
            if sample is not None and run.rows < self.policy.validation.sample_rows:
                sample.append(masked.slice(0, self.policy.validation.sample_rows - run.rows))
            run.rows += masked.num_rows
            if progress is not None:
                progress(run.rows)
            yield

    def _run(self, sql: str, parameters, sink: Sink, progress=None) -> tuple[RunRecord, dict[str, float]]:
        t0 = time.perf_counter()
        run, decision = self._begin(sql, sink, parameters, intent=getattr(sink, "carries_provenance", False))
        t1 = time.perf_counter()
        failure = None
        sample: list[pa.RecordBatch] | None = [] if self.policy.validation.enabled else None
        floor = self._floor(decision)
        try:
            for _ in self._pump(run, decision, sql, parameters, sink, progress, sample, floor):
                pass
            if floor is not None:
                self._check_floor(run, floor)
            if sample is not None:
                self._validate(run, decision, pa.Table.from_batches(sample, schema=sink.schema))
        except BaseException as exc:  # noqa: BLE001 - every failure is recorded, then re-raised sanitized
            failure = self._fail(run, sink, exc)
        if failure is not None:  # raised outside the except block so no raw context is chained
            raise failure
        t2 = time.perf_counter()
        self._finish(run, sink)
        t3 = time.perf_counter()
        return run, {"plan": t1 - t0, "read_mask_write": t2 - t1, "record_commit": t3 - t2}

    def _floor(self, decision: Decision) -> FloorCheck | None:
        """The purpose's re-identification floor for this read (policy `purpose_requirements`), or None."""
        if not self.policy.purpose_requirements:
            return None
        from .attest.floor import FloorCheck

        return FloorCheck.for_read(decision, self.policy, self.purpose)

    def _check_floor(self, run: RunRecord, floor: FloorCheck) -> None:
        """Measure the whole masked output before the sink is sealed; below the floor the read fails."""
        summary, error = floor.measure()
        run.extra["reidentification"] = summary   # -> the ledger entry: class sizes and column names, no value
        if error is not None:
            raise error

    def _validate(self, run: RunRecord, decision: Decision, sample: pa.Table) -> None:
        """Prove the masking on a sample before anything is committed; a failed check fails the run."""
        from .integrations.great_expectations import (
            expectations_for,
            ledger_summary,
            to_openlineage_facet,
            validate_masked_output,
        )

        report = validate_masked_output(sample, expectations_for(decision), expected_rows=sample.num_rows)
        run.extra["data_quality_facet"] = to_openlineage_facet(report)  # -> dataQualityAssertions on the output
        run.extra["validation"] = ledger_summary(report)                # -> the ledger entry
        report.raise_for_failure()

    def _finish(self, run: RunRecord, sink: Sink) -> None:
        """Steps 8-10 on success: record the receipt, then make the result visible, then lineage."""
        run.outcome = "success"
        run.ended_at = utcnow()
        sink.seal()  # the exact size is known before the result becomes visible
        run.bytes = sink.bytes_written
        if getattr(sink, "sha256", None):
            run.extra["output_sha256"] = sink.sha256  # the ledger matches the published file by this
        try:
            run.receipt = self.ledger.record(run)  # before the commit: no delivered result without an entry
        except BaseException:
            sink.abort()  # nothing recorded, so nothing is published
            self._settle(run, done=False)
            raise
        try:
            run.sink = sink.commit()
        except BaseException as exc:
            self._settle(run, done=False)
            self._record_failure(run, exc)  # supersedes the success entry for this run id
            self.lineage.fail(run)
            raise
        self._settle(run, done=True)
        self.lineage.complete(run)

    def _fail(self, run: RunRecord, sink: Sink, exc: BaseException) -> BaseException:
        """Abort the sink, record and announce the failure; returns the exception to raise."""
        sink.abort()
        self._settle(run, done=run.extra.get("delivered_rows", 0) > 0)
        self._record_failure(run, exc)
        self.lineage.fail(run)
        if isinstance(exc, LineageGuardError) or not isinstance(exc, Exception):
            return exc
        # A library error on the data path may quote a value; callers get the class only.
        return LineageGuardError(f"the governed read failed ({type(exc).__name__}); details are withheld "
                                 f"because they can quote data values (receipt {run.receipt.id if run.receipt else '-'})")

    def _record_failure(self, run: RunRecord, exc: BaseException) -> None:
        run.outcome = "failed"
        run.ended_at = utcnow()
        run.error_class = type(exc).__name__
        # Our own errors are written value-free; anything else may quote data, so only its class is kept.
        run.error_message = str(exc) if isinstance(exc, LineageGuardError) else f"{type(exc).__name__} (details withheld)"
        run.receipt = self.ledger.record(run)


class _MaskedBatches(Iterator[pa.RecordBatch]):
    """What `stream()` yields: the masked batches, and their `schema` once the read has begun
    (after the first batch, or the end of an empty result): a Flight server must announce it."""

    def __init__(self, batches: Iterator[pa.RecordBatch], sink: _Handover, run: RunRecord) -> None:
        self._batches = batches
        self._sink = sink
        self.run = run   # its receipt is set once the `with` block has ended

    def __next__(self) -> pa.RecordBatch:
        return next(self._batches)

    @property
    def schema(self) -> pa.Schema | None:
        return self._sink.schema


def _describe(exc: BaseException) -> str:
    """An error as a caller may read it: our own errors are value-free, any other only by its class."""
    return str(exc) if isinstance(exc, LineageGuardError) else f"{type(exc).__name__}, details withheld"


def executed_sql(decision: Decision) -> str:
    """What the database runs: the statement generated from the AST the plan judged, never the caller's text."""
    sql = decision.analysis.executed_sql if decision.analysis is not None else None
    if not sql:
        raise LineageGuardError("the plan has no executable statement (the analyzed SQL could not be generated "
                                "back); nothing was run: simplify the statement")
    return sql


def executed_parameters(decision: Decision, parameters: Sequence[Any] | None) -> Sequence[Any] | None:
    """The caller's parameters, then the row filters' identity attribute values (`$n` after the caller's)."""
    values = decision.analysis.row_filter_values if decision.analysis is not None else ()
    if not values:
        return parameters
    return [*(parameters or ()), *values]


def binding_check(decision: Decision):
    """Before a live read: refuse when the server binds the statement differently from the plan (sql/explain.py)."""
    if decision.analysis is None or not decision.sensitive:
        return None  # nothing this reader may not see: no binding can reveal more than the plan shows
    from .sql.explain import binding_disagreements, planned, scan_names

    known, outputs = planned(decision.analysis)
    for applied in decision.analysis.row_filters:  # the policy's own predicate reads these, not the caller
        known |= set(applied.columns)
    names = scan_names(decision.analysis)

    def verify(explained) -> None:
        reasons = binding_disagreements(explained, known=known, outputs=outputs, sensitive=decision.sensitive,
                                        names=names)
        if reasons:
            raise AccessDenied(reasons)

    return verify


class _Handover:
    """The sink of `stream()`: hands each masked batch to the caller instead of storing it."""

    def __init__(self, deliver) -> None:
        from .run import SinkInfo

        self._deliver = deliver
        self.bytes_written = 0
        self.schema: pa.Schema | None = None
        self.info = SinkInfo(kind="memory", uri="memory://stream", namespace="memory", name="stream")

    def open(self, schema: pa.Schema) -> None:
        self.schema = schema

    def write(self, batch: pa.RecordBatch) -> None:
        self.bytes_written += batch.nbytes
        self._deliver(batch)

    def seal(self) -> None:
        pass

    def commit(self):
        return self.info

    def abort(self) -> None:
        pass
