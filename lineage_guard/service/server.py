"""The Flight SQL transport of the governed path: `GovernedFlightServer`.

Each call is authenticated first (`auth.Authenticator`: nothing is anonymous, a refusal gets a
ledger entry), then served by a `GovernedSession` built for the verified identity and the purpose
the call requests: the same steps 1-10 as embedded mode, with the keys, the database credentials
and the ledger signing key living only in this process.

| Flight SQL | here |
|---|---|
| GetFlightInfo(CommandStatementQuery / CommandPreparedStatementQuery) | plan; a denial is recorded and answered; else a one-use ticket bound to the caller |
| DoGet(TicketStatementQuery) | `GovernedSession.stream`: masked batches, then a zero-row batch whose app_metadata is the receipt |
| DoAction CreatePreparedStatement / ClosePreparedStatement, DoPut(CommandPreparedStatementQuery) | prepared statements with bound parameters (one parameter row) |
| DoPut(CommandStatementUpdate / CommandPreparedStatementUpdate) | `GovernedSession.execute`: write guardrails and approvals |
| DoExchange(`{"lineage_guard.exchange": ...}`) | `service/exchange.py`: file data masked as a governed table's columns |
| GetSqlInfo, GetCatalogs, GetDbSchemas, GetTables, GetTableTypes | only what the caller may read; sensitive columns marked |
| DoAction `health`, `lineage_guard.plan` | serving/draining; the plan (steps 1-4) as JSON |

Refusals carry a JSON `extra_info` (`{"lineage_guard": {...}}`) so thin clients re-raise
`AccessDenied` / `ApprovalRequired` with their receipt and approval command.
"""

from __future__ import annotations

import json
import logging
import secrets
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from pyarrow import flight

from ..errors import AccessDenied, ApprovalRequired, ConfigError, LineageGuardError
from ..identity import Authentication, Identity
from ..prefetch import Prefetched
from . import flightsql as fs
from . import listing, metadata, partitions
from .auth import PURPOSE_HEADER, Authenticator, AuthError, header
from .calls import (
    PROVENANCE_HEADER,
    RUN_HEADER,
    CallLedger,
    RunContext,
    lineage_doc,
    provenance_doc,
    refusal_lineage,
)
from .limits import LimitExceeded, StreamBudget, StreamLimiter
from .refusals import RefusalGate
from .untraced import untraced
from .visibility import Visibility

log = logging.getLogger("lineage_guard.service")
TICKET_TTL_S = 600
PREPARED_IDLE_S = 3600   # a prepared statement unused this long is forgotten (clients close theirs)
READ_AHEAD = 2   # masked batches read and masked ahead of the DoGet writer (lineage_guard/prefetch.py); 0: none
HEADERS_MIDDLEWARE = "lineage_guard.headers"


class _Headers(flight.ServerMiddleware):
    def __init__(self, headers: dict):
        self.headers = headers


class _HeadersFactory(flight.ServerMiddlewareFactory):
    """Hands each call's headers to the handler, which authenticates (it also knows the peer)."""

    def start_call(self, info, headers):
        return _Headers(headers)


@dataclass
class _Pending:
    """A planned statement waiting for its DoGet, or a ready metadata result."""

    owner: tuple
    purpose: str | None
    stream: _OpenStream | None = None
    table: pa.Table | None = None
    run: RunContext | None = None
    created: float = field(default_factory=time.monotonic)

    def discard(self, reason: str) -> None:
        if self.stream is not None:
            self.stream.abandon(reason)


@dataclass
class _OpenStream:
    """A governed stream opened by GetFlightInfo: its first batch read, the schema known."""

    stack: ExitStack
    batches: Any            # what GovernedSession.stream yields (schema, run)
    first: pa.RecordBatch | None
    schema: pa.Schema
    budget: StreamBudget
    lineage: bool = False    # the caller asked for the run's lineage with its receipt
    ledger: CallLedger | None = None   # set when the caller asked for lineage or provenance
    provenance: bool = False           # the caller asked for the file footer's provenance with its receipt

    def abandon(self, reason: str) -> None:
        """End it as failed (ledger + lineage FAIL): its ticket was never fetched."""
        error = LineageGuardError(reason)
        try:
            self.stack.__exit__(type(error), error, None)
        except Exception:  # noqa: BLE001, S110 - the stream re-raises what it was ended with: expected
            pass


@dataclass
class _Prepared:
    owner: tuple
    sql: str
    parameters: tuple | None = None
    used: float = field(default_factory=time.monotonic)


class NotFound(LineageGuardError):
    """A ticket or handle that is unknown, expired or someone else's (the three look alike)."""


def _owner(identity: Identity) -> tuple:
    auth = identity.auth or Authentication()
    return (identity.principal, auth.method, auth.issuer, auth.subject)


def _fresh(exc: flight.FlightError) -> flight.FlightError:
    """The same error, never raised: no traceback of our frames rides along (service/untraced.py)."""
    return type(exc)(str(exc), extra_info=exc.extra_info)


def _refusal(kind: str, message: str, **info) -> dict:
    return {"lineage_guard": {"kind": kind, "message": message, **info}}


def to_flight_error(exc: BaseException) -> Exception:
    """The Flight status for a lineage_guard error; messages are value-free by construction."""
    def extra(kind: str, **info) -> bytes:
        lineage = getattr(exc, "lineage", None)   # set by the server for a caller that sent its run
        if lineage:
            info["lineage"] = lineage
        return json.dumps(_refusal(kind, str(exc), **info)).encode()

    if isinstance(exc, flight.FlightError):
        return exc
    if isinstance(exc, AuthError):
        cls = flight.FlightUnauthenticatedError if exc.status == "unauthenticated" else flight.FlightUnauthorizedError
        return cls(exc.reason, extra_info=extra(exc.status))
    if isinstance(exc, ApprovalRequired):
        return flight.FlightUnauthorizedError(str(exc), extra_info=extra(
            "needs_approval", request_id=exc.request_id, reasons=exc.reasons,
            approve_command=exc.approve_command, receipt_id=exc.receipt_id))
    if isinstance(exc, AccessDenied):
        return flight.FlightUnauthorizedError(str(exc), extra_info=extra("denied", reasons=exc.reasons,
                                                                          receipt_id=exc.receipt_id))
    if isinstance(exc, LimitExceeded):
        cls = flight.FlightUnavailableError if exc.retryable else flight.FlightServerError
        return cls(str(exc), extra_info=extra("limit"))
    if isinstance(exc, NotFound):
        return flight.FlightServerError(str(exc), extra_info=extra("not_found"))
    if isinstance(exc, fs.ProtocolError | ConfigError):
        return flight.FlightServerError(str(exc), extra_info=extra("invalid"))
    if isinstance(exc, LineageGuardError):
        return flight.FlightServerError(str(exc), extra_info=extra("error"))
    log.error("internal error in a governed call: %s", type(exc).__name__)
    return flight.FlightInternalError(f"internal error ({type(exc).__name__}); details withheld")


class GovernedFlightServer(flight.FlightServerBase):
    """Arrow Flight SQL in front of one PostgreSQL source and one policy.

    Example:
        >>> server = GovernedFlightServer("grpc+tls://127.0.0.1:0", policy, "postgresql://...",   # doctest: +SKIP
        ...                               tls_certificates=[(cert_pem, key_pem)])
        >>> server.port                                                                            # doctest: +SKIP
    """

    def __init__(self, location: str, policy, source_url: str, *, tls_certificates=None,
                 client_ca: bytes | None = None, token_store=None, keyring=None, ledger=None, lineage=None,
                 approvals=None, environment: str | None = None):
        from ..approvals import ApprovalStore
        from ..audit import Ledger
        from ..lineage import LineageEmitter
        from ..mask import Keyring
        from ..sources.postgres import PostgresSource

        self.policy = policy
        self.config = policy.service
        _check_config(policy)
        self.source_url = source_url
        self.environment = environment
        self.source_info = PostgresSource(source_url, schema=policy.search_path[0],
                                          environment=environment or "default").info
        # Shared by every call: one keyring, one ledger chain, one outbox, one approval store.
        self.keyring = keyring or Keyring.from_env()
        self.ledger = ledger or Ledger.open()
        self.lineage = lineage or LineageEmitter()
        self.approvals = approvals or ApprovalStore.open(config=policy.approvals)
        client_ca = client_ca or _client_ca_from_policy(policy)
        if client_ca and not tls_certificates:
            raise ConfigError("mTLS client certificates need TLS: give the server a certificate and key")
        if policy.service.maps_certificates and not client_ca:
            raise ConfigError("service.principals match client certificates (issuer: client-certificate) but no "
                              "client CA is configured: give serve --client-ca or service.client_ca_file")
        self.auth = Authenticator(policy, token_store, client_ca=client_ca)
        self.limiter = StreamLimiter(self.config)
        self.refusals = RefusalGate()   # bounds the entries unverified callers can make
        self.visibility = Visibility(policy.search_path[0])
        self._pending: dict[bytes, _Pending] = {}
        self._prepared: dict[bytes, _Prepared] = {}
        self._lock = threading.Lock()
        self.draining = False
        self.aborting = False
        super().__init__(location, tls_certificates=tls_certificates, verify_client=bool(client_ca),
                         root_certificates=client_ca, middleware={HEADERS_MIDDLEWARE: _HeadersFactory()})

    # -- every call: who, for what ----------------------------------------------------------------

    def _headers(self, context) -> dict:
        middleware = context.get_middleware(HEADERS_MIDDLEWARE)
        return middleware.headers if middleware else {}

    def _caller(self, context, method: str) -> Identity:
        if self.draining:
            raise flight.FlightUnavailableError("the server is shutting down; retry against another instance")
        try:
            return self.auth.authenticate(self._headers(context), context.peer(),
                                          context.peer_identity() if self.auth.certificates else None)
        except AuthError as exc:
            self._record_refusal(exc, context, method)
            raise to_flight_error(exc) from None

    def _purpose(self, context, identity: Identity, method: str) -> str:
        try:
            return self.auth.purpose_for(identity, self._headers(context))
        except AuthError as exc:
            self._record_refusal(exc, context, method)
            raise to_flight_error(exc) from None

    def _record_refusal(self, exc: AuthError, context, method: str) -> None:
        """A refused credential or purpose still leaves a ledger entry: who tried, from where, why."""
        from ..decision import Decision
        from ..run import RunRecord, new_run_id, utcnow

        reason = f"call refused ({exc.status}): {exc.reason}"
        if exc.identity is None:   # no credential verified: one by one only up to a rate (service/refusals.py)
            record, skipped = self.refusals.admit(context.peer())
            if not record:
                return
            if skipped:
                reason += (f" [{skipped} earlier refusal(s) of unverified callers from this address were "
                           "past the rate recorded one by one and are counted here]")
        who = exc.identity or Identity("unauthenticated", "service", auth=exc.attempt)
        purpose = header(self._headers(context), PURPOSE_HEADER) or "-"
        run = RunRecord(run_id=new_run_id(), job_namespace="lineage_guard", job_name="lineage_guard.service.auth",
                        identity=who, purpose=purpose[:100], source=self.source_info,
                        decision=Decision("deny", (reason,), ""),
                        sql=f"-- flight {method}", outcome="denied")
        run.ended_at = utcnow()
        try:
            self.ledger.record(run)
        except Exception as err:  # noqa: BLE001 - the refusal stands; the failure to record is logged
            log.error("could not record a refused call in the ledger: %s", type(err).__name__)

    def _run_context(self, context) -> RunContext | None:
        """The caller's own run (`x-lineage-guard-run`), if it sent one; malformed ones are refused."""
        return RunContext.parse(header(self._headers(context), RUN_HEADER))

    def _session(self, identity: Identity, purpose: str, parent=None, run: RunContext | None = None,
                 provenance: bool = False):
        from ..session import GovernedSession

        limits = self.config.limits_for(identity.principal)
        ledger = CallLedger(self.ledger) if (run is not None and run.lineage) or provenance else self.ledger
        return GovernedSession(self.source_url, self.policy, identity, purpose, keyring=self.keyring,
                               ledger=ledger, lineage=self.lineage, approvals=self.approvals,
                               environment=self.environment,
                               job_name=f"lineage_guard.service.{identity.principal}.{purpose}",
                               statement_timeout_ms=int(limits.statement_timeout_s * 1000),
                               parent=parent or (run.parent if run else None),
                               approval_run=run.approval_run if run else None,
                               approval_context=run.approval_context if run else None)

    def _guarded(self, fn):
        try:
            return fn()
        except flight.FlightError:
            raise
        except BaseException as exc:  # noqa: BLE001 - mapped to a status, details withheld
            raise to_flight_error(exc) from None

    # -- GetFlightInfo / GetSchema ---------------------------------------------------------------

    def get_flight_info(self, context, descriptor):
        identity = self._caller(context, "GetFlightInfo")
        return self._guarded(lambda: self._flight_info(context, identity, descriptor))

    def _flight_info(self, context, identity: Identity, descriptor) -> flight.FlightInfo:
        if descriptor.descriptor_type != flight.DescriptorType.CMD:
            raise fs.ProtocolError("only command descriptors are served (Flight SQL)")
        kind, msg = fs.unpack(descriptor.command)
        purpose = self._purpose(context, identity, "GetFlightInfo")
        if kind in ("CommandStatementQuery", "CommandPreparedStatementQuery"):
            if kind == "CommandStatementQuery":
                sql, params = msg.query, None
            else:
                prepared = self._prepared_for(identity, msg.prepared_statement_handle)
                sql, params = prepared.sql, prepared.parameters
            parts = partitions.requested(self._headers(context))
            self._check_room(identity, 1)
            try:   # several endpoints: planned in service/partitions.py, no endpoint read before its DoGet
                split = (partitions.plan(self, context, identity, purpose, descriptor, sql, params, parts)
                         if parts > 1 else None)
                if split is not None:
                    return split
                # Flight SQL clients need the result schema now, so the governed read starts here: a denial
                # or an approval wait is recorded and answered now; the open stream waits for its DoGet.
                opened = self._open(identity, purpose, sql, params, run=self._run_context(context),
                                    provenance=header(self._headers(context), PROVENANCE_HEADER) == "1")
            except AccessDenied as denied:
                # A concealed denial carries no lineage: its inputs and reasons would name what is hidden.
                raise self.visibility.conceal_denial(self._session(identity, purpose), sql, denied) from None
            handle = self._put(_Pending(_owner(identity), purpose, stream=opened))
            run = opened.batches.run
            about = {"lineage_guard": {"plan": _decision_json(run.decision), "run_id": run.run_id}}
            return self._info(descriptor, handle, opened.schema, json.dumps(about).encode())
        self._check_room(identity, 1)
        table = self._metadata(identity, purpose, kind, msg)
        handle = self._put(_Pending(_owner(identity), purpose, table=table))
        return self._info(descriptor, handle, table.schema, b"", rows=table.num_rows)

    def _info(self, descriptor, handle: bytes | list[bytes], schema: pa.Schema, app_metadata: bytes,
              rows: int = -1):
        handles = handle if isinstance(handle, list) else [handle]
        endpoints = [flight.FlightEndpoint(flight.Ticket(fs.pack(fs.MESSAGES.TicketStatementQuery(statement_handle=h))),
                                           []) for h in handles]
        return flight.FlightInfo(schema, descriptor, endpoints, rows, -1, app_metadata=app_metadata)

    def get_schema_outcome(self, context, descriptor) -> flight.SchemaResult | BaseException:
        """GetSchema's schema, or the error to answer with (raised by `get_schema`, see service/untraced.py)."""
        try:
            info = self.get_flight_info(context, descriptor)
        except flight.FlightError as exc:
            return _fresh(exc)
        except BaseException as exc:  # noqa: BLE001 - mapped to a status, details withheld
            return _fresh(to_flight_error(exc))
        with self._lock:
            pending = self._pending.pop(fs.unpack(info.endpoints[0].ticket.ticket)[1].statement_handle, None)
        if pending is not None:
            pending.discard("only the schema was asked for (GetSchema)")
        return flight.SchemaResult(info.schema)

    get_schema = untraced("get_schema", "get_schema_outcome")

    def list_flights_outcome(self, context, criteria) -> list | BaseException:
        """Nothing is listed (results are asked for by Flight SQL command); the caller is still checked."""
        try:
            self._caller(context, "ListFlights")
        except flight.FlightError as exc:
            return _fresh(exc)
        return []

    list_flights = untraced("list_flights", "list_flights_outcome")

    def _put(self, pending: _Pending) -> bytes:
        handle = secrets.token_bytes(16)
        principal = pending.owner[0]
        with self._lock:
            stale = self._expire_locked()
            room = self._room_locked(principal)
            if room > 0:
                self._pending[handle] = pending
        for old in stale:
            old.discard(f"the ticket was not fetched within {TICKET_TTL_S} s")
        if room <= 0:
            pending.discard("the identity's open_handles limit was reached")
            raise self._no_room(principal)
        return handle

    # -- what one identity may hold in server memory: prepared statements + unfetched tickets ------------

    def _expire_locked(self) -> list[_Pending]:
        now = time.monotonic()
        for key in [k for k, p in self._prepared.items() if now - p.used > PREPARED_IDLE_S]:
            del self._prepared[key]
        return [self._pending.pop(k) for k in [k for k, p in self._pending.items() if now - p.created > TICKET_TTL_S]]

    def _room_locked(self, principal: str) -> int:
        held = sum(1 for p in self._pending.values() if p.owner[0] == principal)
        held += sum(1 for p in self._prepared.values() if p.owner[0] == principal)
        return self.config.limits_for(principal).open_handles - held

    def _no_room(self, principal: str) -> LimitExceeded:
        limit = self.config.limits_for(principal).open_handles
        return LimitExceeded(f"identity {principal!r} holds {limit} prepared statement(s) and unfetched ticket(s), its "
                             "limit (service.limits.open_handles / identity_limits); close prepared statements or "
                             "fetch the tickets, then retry", retryable=True)

    def _check_room(self, identity: Identity, needed: int) -> None:
        with self._lock:
            stale = self._expire_locked()
            room = self._room_locked(identity.principal)
        for old in stale:
            old.discard(f"the ticket was not fetched within {TICKET_TTL_S} s")
        if room < needed:
            raise self._no_room(identity.principal)

    def _take(self, identity: Identity, handle: bytes) -> _Pending:
        with self._lock:
            pending = self._pending.get(handle)
            # A ticket is the caller's alone and used once; another caller learns nothing of it.
            if pending is None or pending.owner != _owner(identity):
                raise NotFound("unknown or expired ticket; call GetFlightInfo again")
            del self._pending[handle]
        return pending

    def _prepared_for(self, identity: Identity, handle: bytes) -> _Prepared:
        with self._lock:
            prepared = self._prepared.get(handle)
            if prepared is not None and prepared.owner == _owner(identity):
                prepared.used = time.monotonic()
        if prepared is None or prepared.owner != _owner(identity):
            raise NotFound("unknown prepared statement handle; create it again")
        return prepared

    # -- metadata -----------------------------------------------------------------------------

    def _metadata(self, identity: Identity, purpose: str, kind: str, msg) -> pa.Table:
        if kind == "CommandGetSqlInfo":
            return metadata.sql_info(msg.info, read_only=not self.policy.writes.allowed_groups)
        if kind == "CommandGetTableTypes":
            return pa.table({"table_type": ["TABLE", "VIEW"]}, schema=metadata.TABLE_TYPES_SCHEMA)
        database = self.source_info.database
        if kind == "CommandGetCatalogs":
            return pa.table({"catalog_name": [database]}, schema=metadata.CATALOGS_SCHEMA)
        if kind == "CommandGetDbSchemas":   # every schema holding a table the caller may read
            return listing.db_schemas(self._session(identity, purpose), self.visibility, msg, database)
        if kind == "CommandGetTables":
            return listing.tables(self._session(identity, purpose), self.visibility, msg, database, self.keyring)
        raise fs.ProtocolError(f"{kind} is not served by lineage_guard")

    # -- DoGet --------------------------------------------------------------------------------

    def do_get(self, context, ticket):
        identity = self._caller(context, "DoGet")
        return self._guarded(lambda: self._do_get(context, identity, ticket))

    def _do_get(self, context, identity: Identity, ticket):
        kind, msg = fs.unpack(ticket.ticket)
        if kind != "TicketStatementQuery":
            raise fs.ProtocolError("DoGet takes the ticket GetFlightInfo returned")
        split = partitions.serve(self, context, identity, msg.statement_handle)
        if split is not None:
            return split
        pending = self._take(identity, msg.statement_handle)
        if pending.table is not None:
            return flight.RecordBatchStream(pending.table)
        purpose = self._purpose(context, identity, "DoGet")
        if purpose != pending.purpose:
            pending.discard("the ticket was presented for another purpose")
            raise AuthError("permission_denied", "the ticket was issued for another purpose",
                            identity.auth or Authentication(), identity)
        return flight.GeneratorStream(pending.stream.schema, self._generate(context, pending.stream))

    def _open(self, identity: Identity, purpose: str, sql: str, parameters,
              partition: partitions.Partition | None = None, run: RunContext | None = None,
              provenance: bool = False) -> _OpenStream:
        """Steps 1-7 up to the first masked batch, holding one of the identity's stream slots."""
        stack = ExitStack()
        stack.enter_context(self.limiter.slot(identity.principal))
        session = None
        try:
            session = self._session(identity, purpose, parent=partition.parent if partition else None, run=run,
                                    provenance=provenance)
            if partition is not None:   # e.g. the endpoint's `split` tags (service/partitions.py)
                session.run_extra = partition.extra
            batches = stack.enter_context(session.stream(sql, parameters))
            if partition is not None:
                partitions.check_plan(partition, batches.run.decision)
            first = next(batches, None)
        except BaseException as exc:
            # The governed stream must see the failure (a failed entry, a FAIL event), not a normal end.
            try:
                stack.__exit__(*sys.exc_info())
            except BaseException as raised:
                _attach_lineage(session, raised)
                raise
            _attach_lineage(session, exc)
            raise
        schema = first.schema if first is not None else batches.schema
        return _OpenStream(stack, batches, first, schema,
                           StreamBudget(identity.principal, self.config.limits_for(identity.principal)),
                           lineage=run is not None and run.lineage,
                           ledger=session.ledger if isinstance(session.ledger, CallLedger) else None,
                           provenance=provenance)

    def _generate(self, context, opened: _OpenStream) -> Iterator[Any]:
        """The batches, then a zero-row batch whose app_metadata is the ledger receipt; errors as statuses."""
        try:
            with opened.stack:   # ends the governed stream: receipt on success, a failed entry otherwise
                # The next batches are read and masked while this one is sent (stopped before the stack ends).
                batches = Prefetched(opened.batches, depth=READ_AHEAD) if READ_AHEAD > 0 else opened.batches
                if READ_AHEAD > 0:
                    opened.stack.callback(batches.close)
                batch = opened.first
                while batch is not None:
                    if self.aborting:
                        raise LineageGuardError("the server shut down before the stream ended; retry")
                    if context.is_cancelled():
                        raise LineageGuardError("the client cancelled the stream")
                    opened.budget.charge(batch.num_rows, batch.nbytes)
                    yield batch
                    batch = next(batches, None)
        except GeneratorExit:
            raise
        except BaseException as exc:  # noqa: BLE001 - mapped to a status, details withheld
            if opened.lineage and isinstance(exc, Exception):
                exc.lineage = refusal_lineage(opened.batches.run)
            raise to_flight_error(exc) from None
        run = opened.batches.run
        receipt = {"receipt_id": run.receipt.id if run.receipt else None, "run_id": run.run_id,
                   "rows": run.rows, "bytes": run.bytes,
                   "masked_columns": [c.name for c in run.decision.masked_columns]}
        if opened.lineage:
            receipt["lineage"] = lineage_doc(run, "COMPLETE")
        if opened.provenance and opened.ledger is not None:
            receipt["provenance"] = provenance_doc(run, opened.ledger)
        empty = pa.RecordBatch.from_arrays([pa.array([], f.type) for f in opened.schema], schema=opened.schema)
        yield empty, json.dumps({"lineage_guard": receipt}).encode()

    # -- DoPut: bound parameters and guarded writes ---------------------------------------------

    def do_put(self, context, descriptor, reader, writer):
        identity = self._caller(context, "DoPut")
        return self._guarded(lambda: self._do_put(context, identity, descriptor, reader, writer))

    def _do_put(self, context, identity: Identity, descriptor, reader, writer) -> None:
        kind, msg = fs.unpack(descriptor.command)
        if kind == "CommandPreparedStatementQuery":
            prepared = self._prepared_for(identity, msg.prepared_statement_handle)
            rows = _parameter_rows(reader, 1, lambda: ConfigError(
                "bind one parameter row per query execution (got several)"))
            prepared.parameters = rows[0] if rows else None
            # DoPut results travel as the bare message (not wrapped in Any), as Flight SQL clients expect.
            writer.write(pa.py_buffer(fs.MESSAGES.DoPutPreparedStatementResult(
                prepared_statement_handle=msg.prepared_statement_handle).SerializeToString()))
            return
        purpose = self._purpose(context, identity, "DoPut")
        limits = self.config.limits_for(identity.principal)
        if kind == "CommandStatementUpdate":
            sql, param_rows = msg.query, None
        elif kind == "CommandPreparedStatementUpdate":
            prepared = self._prepared_for(identity, msg.prepared_statement_handle)
            cap = min(limits.max_parameter_rows, limits.max_rows or limits.max_parameter_rows)
            rows = _parameter_rows(reader, cap, lambda: LimitExceeded(
                f"a prepared write may bind at most {cap} parameter row(s) for {identity.principal!r} "
                "(service.limits.max_parameter_rows / max_rows); nothing was written: split the batch"))
            sql, param_rows = prepared.sql, (rows or [prepared.parameters])
        else:
            raise fs.ProtocolError(f"DoPut does not take {kind}")
        session = self._session(identity, purpose, run=self._run_context(context))
        try:   # the parameter rows of a prepared write are one transaction (all or none) under the timeout
            result = session.execute(sql) if param_rows is None else session.execute_many(sql, param_rows)
            affected = result.rows_affected
        except AccessDenied as denied:
            _attach_lineage(session, denied)
            raise self.visibility.conceal_denial(session, sql, denied) from None   # concealed: no lineage
        except Exception as exc:
            _attach_lineage(session, exc)
            raise
        writer.write(pa.py_buffer(fs.MESSAGES.DoPutUpdateResult(record_count=affected).SerializeToString()))
        last = getattr(session.ledger, "last", None)
        if last is not None:   # only for a caller that sent its run: a second result, after Flight SQL's own
            writer.write(pa.py_buffer(json.dumps({"lineage_guard": {"lineage": lineage_doc(last, "COMPLETE")}})
                                      .encode()))

    # -- DoExchange: file data masked under a governed table's policy and keys (service/exchange.py) --

    def do_exchange(self, context, descriptor, reader, writer):
        from . import exchange

        identity = self._caller(context, "DoExchange")
        return self._guarded(lambda: exchange.serve(self, context, identity, descriptor, reader, writer))

    # -- actions ------------------------------------------------------------------------------

    def list_actions(self, context):
        return [(fs.ACTION_CREATE_PREPARED_STATEMENT, "Prepare a statement"),
                (fs.ACTION_CLOSE_PREPARED_STATEMENT, "Close a prepared statement"),
                ("health", "serving | draining, and open streams"),
                ("lineage_guard.plan", "the plan (steps 1-4) of {'sql': ...} as JSON, no data touched"),
                ("lineage_guard.approval", "the status of the caller's own approval request {'request_id': ...}"),
                ("lineage_guard.whoami", "the identity the server established for the caller's credential")]

    def do_action(self, context, action):
        identity = self._caller(context, f"DoAction {action.type}")
        return self._guarded(lambda: self._do_action(context, identity, action))

    def _do_action(self, context, identity: Identity, action) -> list:
        body = action.body.to_pybytes() if action.body is not None else b""
        if action.type == "health":
            status = {"status": "draining" if self.draining else "serving", "open_streams": self.limiter.active()}
            return [json.dumps(status).encode()]
        if action.type == fs.ACTION_CREATE_PREPARED_STATEMENT:
            kind, msg = fs.unpack(body)
            if kind != "ActionCreatePreparedStatementRequest":
                raise fs.ProtocolError("CreatePreparedStatement takes an ActionCreatePreparedStatementRequest")
            handle = secrets.token_bytes(16)
            with self._lock:
                stale = self._expire_locked()
                room = self._room_locked(identity.principal)
                if room > 0:
                    self._prepared[handle] = _Prepared(_owner(identity), msg.query)
            for old in stale:
                old.discard(f"the ticket was not fetched within {TICKET_TTL_S} s")
            if room <= 0:
                raise self._no_room(identity.principal)
            result = fs.MESSAGES.ActionCreatePreparedStatementResult(prepared_statement_handle=handle)
            return [fs.pack(result)]
        if action.type == fs.ACTION_CLOSE_PREPARED_STATEMENT:
            kind, msg = fs.unpack(body)
            with self._lock:   # idempotent; another caller's handle is left alone
                prepared = self._prepared.get(msg.prepared_statement_handle)
                if prepared is not None and prepared.owner == _owner(identity):
                    del self._prepared[msg.prepared_statement_handle]
            return []
        if action.type == "lineage_guard.plan":
            purpose = self._purpose(context, identity, "DoAction plan")
            try:
                sql = json.loads(body)["sql"]
            except (ValueError, KeyError, TypeError):
                raise ConfigError('the plan action takes {"sql": "..."}') from None
            session = self._session(identity, purpose)
            doc = self.visibility.conceal_plan(session, sql, _decision_json(session.plan(sql)))
            return [json.dumps(doc).encode()]
        if action.type == "lineage_guard.approval":
            return [json.dumps(self._approval_status(identity, body)).encode()]
        if action.type == "lineage_guard.whoami":   # e.g. a client checking a file was written for it
            return [json.dumps({"principal": identity.principal, "kind": identity.kind}).encode()]
        raise fs.ProtocolError(f"unknown action {action.type!r}")

    def _approval_status(self, identity: Identity, body: bytes) -> dict:
        """A deferred task polls its request: status and approver only, and only the requester's own."""
        from ..approvals import ApprovalError

        try:
            request_id = json.loads(body)["request_id"]
        except (ValueError, KeyError, TypeError):
            raise ConfigError('the approval action takes {"request_id": "..."}') from None
        try:
            request = self.approvals.get(str(request_id))
        except ApprovalError:
            request = None
        if request is None or request.requester != identity.principal:   # another's request looks unknown
            raise NotFound(f"no approval request {str(request_id)[:64]!r} of yours")
        return {"request_id": request.id, "status": request.status, "approver": request.approver}

    def warm(self) -> None:
        """Pay the first call's set-up (planner, masking engine, database driver, catalog) before serving."""
        import adbc_driver_postgresql.dbapi  # noqa: F401

        import lineage_guard.mask
        import lineage_guard.planner  # noqa: F401

        from ..sources.postgres import PostgresSource
        from ..sql.catalog_cache import CACHE

        # The same cache key a call's session uses (its source's URL and schema), so the first call reuses it.
        source = PostgresSource(self.source_url, schema=self.policy.search_path[0])
        CACHE.catalog(source.catalog_url, (source.schema,), CACHE.version(source.catalog_url))

    # -- shutdown -----------------------------------------------------------------------------

    def drain(self, grace_s: float) -> None:
        """Stop accepting calls, let open streams finish for `grace_s`, then fail the rest cleanly."""
        self.draining = True
        deadline = time.monotonic() + grace_s
        while self.limiter.active() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.aborting = True

    def close_stores(self) -> None:
        for part in (self.ledger, self.approvals, self.lineage):
            closer = getattr(part, "close", None)
            if closer:
                closer()


def _attach_lineage(session, exc: BaseException) -> None:
    """Give a refusal the run the session recorded for it, for a caller that sent its own run."""
    ledger = getattr(session, "ledger", None)
    if isinstance(exc, Exception) and isinstance(ledger, CallLedger) and ledger.last is not None:
        exc.lineage = refusal_lineage(ledger.last)


def _decision_json(decision) -> dict:
    """`Decision.to_json()` plus each mask's parameters and key scope (no key: scopes are names)."""
    doc = decision.to_json()
    # Thin clients (the Airflow operator) tell a read from a write without the SQL analyser.
    doc["is_read"] = decision.analysis is None or decision.analysis.is_read
    # What a thin client may log: the statement with its literals replaced (it has no SQL parser to do it).
    doc["shape"] = _shape(decision.statement)
    for column, out in zip(decision.columns, doc["columns"], strict=True):
        out["labels"] = list(column.labels)
        out["scope"] = column.mask.scope if column.mask else None
    return doc


def _parameter_rows(reader, limit: int, too_many) -> list[tuple]:
    """The bound parameter rows, read batch by batch: past `limit` the upload is refused (`too_many()`)
    before more of it is read, so a caller cannot make the server hold an unbounded parameter set."""
    rows: list[tuple] = []
    while True:
        try:
            chunk = reader.read_chunk()
        except StopIteration:
            return rows
        batch = chunk.data
        if batch is None:
            continue
        if len(rows) + batch.num_rows > limit:
            raise too_many()
        rows.extend(tuple(row.values()) for row in batch.to_pylist())


def _shape(statement: str) -> str:
    from ..lineage.sql_text import shareable_sql

    try:
        return shareable_sql(statement)
    except Exception:  # noqa: BLE001 - an unparseable statement is refused by the plan; show nothing of it
        return "(unparseable statement)"


def _client_ca_from_policy(policy) -> bytes | None:
    path = policy.service.client_ca_file
    if not path:
        return None
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise ConfigError(f"cannot read service.client_ca_file {path}: {exc.strerror}") from None


def _check_config(policy) -> None:
    """The service section names declared identities and purposes; say which is not."""
    config = policy.service
    declared = set(policy.identities)
    named = ({p.identity for p in config.principals} | set(config.purposes) | set(config.identity_limits)
             | {g.identity for g in config.exchange})
    unknown = sorted(named - declared)
    if unknown:
        raise ConfigError(f"service: identity/identities {unknown} are not declared under identities: "
                          f"(declared: {sorted(declared)})")
    if policy.purposes:
        for who, purposes in config.purposes.items():
            bad = sorted(set(purposes) - set(policy.purposes))
            if bad:
                raise ConfigError(f"service.purposes.{who}: purpose(s) {bad} are not declared under purposes: "
                                  f"(declared: {policy.purposes})")
    if not config.api_tokens and not config.issuers and not config.maps_certificates:
        raise ConfigError("service: no way to authenticate: keep api_tokens on, declare service.issuers or map "
                          "client certificates (issuer: client-certificate)")
