"""`RemoteSession`: the governed session's API over Arrow Flight SQL (see `lineage_guard.client`).

Imports pyarrow (and pyarrow.flight), the Flight SQL message declarations and lineage_guard's
error types only: the masking engine, the SQL planner and the database drivers stay on the server.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import pyarrow as pa
from pyarrow import flight

from ..errors import AccessDenied, ApprovalRequired, ConfigError, LineageGuardError
from ..service import flightsql as fs
from .waits import DEFAULT_KEEPALIVE_S, DEFAULT_TIMEOUT_S, IdleWatch, Stalled, keepalive_options, opened

if TYPE_CHECKING:  # pragma: no cover
    import polars as pl

TOKEN_ENV = "LINEAGE_GUARD_TOKEN"
TOKEN_FILE_ENV = "LINEAGE_GUARD_TOKEN_FILE"
PURPOSE_HEADER = "x-lineage-guard-purpose"
RUN_HEADER = "x-lineage-guard-run"


class ServiceError(LineageGuardError):
    """The service refused or failed the call; the message is the server's (value-free) reason."""


class NotAuthenticated(ServiceError):
    """The server did not accept the credential (missing, expired, forged, for another audience...)."""


class ServiceUnavailable(ServiceError):
    """The connection to the service failed or stalled (reset, unreachable, no answer to keepalive pings,
    no message within the idle timeout, the server draining): a fault, not a refusal, so retrying the call
    (an orchestrator's retry of the task or partition) may succeed."""


class InvalidRequest(ServiceError, ConfigError):
    """The server refused the request as it was made (a statement it cannot split, a malformed header...):
    sending it again cannot succeed, so it is also a `ConfigError` (orchestrators do not retry those)."""


class UnknownTicket(ServiceError):
    """The server does not hold the ticket (expired, issued before a restart, or another identity's)."""


@dataclass(frozen=True)
class RemoteColumn:
    position: int
    name: str
    masked: bool
    method: str | None
    sources: tuple[str, ...]
    labels: tuple[str, ...] = ()
    scope: str | None = None


@dataclass(frozen=True)
class RemotePlan:
    """The server's plan (steps 1-4): the same fields and `to_json()` as `Decision`."""

    action: str
    reasons: tuple[str, ...]
    statement: str
    columns: tuple[RemoteColumn, ...] = ()
    is_read: bool = True
    shape: str | None = None      # the statement with its literals replaced: what a client may log

    @property
    def allowed(self) -> bool:
        return self.action == "allow"

    @property
    def masked_columns(self) -> tuple[RemoteColumn, ...]:
        return tuple(c for c in self.columns if c.masked)

    @classmethod
    def from_json(cls, doc: dict) -> RemotePlan:
        cols = tuple(RemoteColumn(c["position"], c["name"], c["masked"], c["method"], tuple(c["sources"]),
                                  tuple(c.get("labels", ())), c.get("scope")) for c in doc["columns"])
        return cls(doc["action"], tuple(doc["reasons"]), doc["statement"], cols, bool(doc.get("is_read", True)),
                   doc.get("shape"))

    def to_json(self) -> dict:
        return {"action": self.action, "reasons": list(self.reasons), "statement": self.statement,
                "columns": [{"position": c.position, "name": c.name, "masked": c.masked, "method": c.method,
                             "sources": list(c.sources)} for c in self.columns]}


@dataclass(frozen=True)
class RemoteExtractResult:
    """What `extract` returns: like `ExtractResult`, the receipt coming from the server's ledger."""

    run_id: str
    receipt_id: str
    output_uri: str
    rows: int
    bytes: int
    masked_columns: tuple[str, ...]

    def summary(self) -> dict[str, Any]:
        return {"output_uri": self.output_uri, "rows": self.rows, "bytes": self.bytes,
                "masked_columns": list(self.masked_columns), "receipt_id": self.receipt_id, "run_id": self.run_id}


@dataclass(frozen=True)
class RemoteWriteResult:
    rows_affected: int


@dataclass
class StreamReceipt:
    """Filled in when a stream ends: the server's ledger receipt for it."""

    receipt_id: str | None = None
    run_id: str | None = None
    rows: int = 0
    bytes: int = 0
    masked_columns: tuple[str, ...] = field(default_factory=tuple)
    lineage: dict | None = None     # the run's OpenLineage parts, when the session sent its run_context
    provenance: dict | None = None  # the footer document for a file written from the stream, when asked for


class _Credential:
    """Where the bearer token comes from; a token file is re-read each call (rotated tokens)."""

    def __init__(self, token: str | None, token_file: str | os.PathLike | None, *, certificate: bool = False):
        if token and token_file:
            raise ConfigError("give token= or token_file=, not both")
        self._token = token
        self._file = Path(token_file) if token_file else None
        if not token and not token_file:
            if os.environ.get(TOKEN_ENV):
                self._token = os.environ[TOKEN_ENV]
            elif os.environ.get(TOKEN_FILE_ENV):
                self._file = Path(os.environ[TOKEN_FILE_ENV])
            elif not certificate:   # with a client certificate, the certificate is the credential
                raise ConfigError(f"no credential: pass token= or token_file=, or set {TOKEN_ENV} / {TOKEN_FILE_ENV} "
                                  "(or client_cert=/client_key= for a server that maps client certificates)")

    def headers(self) -> list[tuple[bytes, bytes]]:
        if self._token is None and self._file is None:
            return []
        token = self._token
        if self._file is not None:
            try:
                token = self._file.read_text().strip()
            except OSError as exc:
                raise ConfigError(f"cannot read the token file {self._file}: {exc.strerror}") from None
        return [(b"authorization", f"Bearer {token}".encode())]


class _CertificateProof:
    """The client certificate in-band with a proof of possession (see `lineage_guard.service.mtls`), so the
    server's ledger can name the certificate; refreshed well inside the server's acceptance window."""

    REFRESH_S = 60

    def __init__(self, cert_pem: bytes, key_pem: bytes):
        self._cert, self._key = cert_pem, key_pem
        self._made = -1e9
        self._headers: list[tuple[bytes, bytes]] = []

    def headers(self) -> list[tuple[bytes, bytes]]:
        import time

        if time.monotonic() - self._made > self.REFRESH_S:
            from ..service.mtls import proof_headers

            self._headers, self._made = proof_headers(self._cert, self._key), time.monotonic()
        return self._headers


def _error(exc: flight.FlightError) -> LineageGuardError:
    """Re-raise the server's refusal as the same lineage_guard error embedded mode raises."""
    info: dict = {}
    try:
        info = json.loads(exc.extra_info or b"{}").get("lineage_guard", {})
    except (ValueError, AttributeError):
        pass
    kind = info.get("kind")
    message = info.get("message") or str(exc)
    if kind == "denied":
        error: LineageGuardError = AccessDenied(info.get("reasons") or [message], receipt_id=info.get("receipt_id"))
    elif kind == "needs_approval":
        error = ApprovalRequired(info["request_id"], info.get("reasons", []), info["approve_command"],
                                 receipt_id=info.get("receipt_id"))
    elif isinstance(exc, flight.FlightUnauthenticatedError):
        error = NotAuthenticated(f"not authenticated: {message}")
    elif kind == "invalid":
        error = InvalidRequest(message)
    elif kind == "not_found":
        error = UnknownTicket(message)
    elif kind is None and isinstance(exc, (flight.FlightUnavailableError, flight.FlightTimedOutError)):
        error = ServiceUnavailable(f"the service connection failed: {message}; the call may be retried")
    else:
        error = ServiceError(message)
    error.lineage = info.get("lineage")   # the refused run's lineage parts (when the run context was sent)
    return error


def _pem(value: bytes | str | os.PathLike | None) -> bytes | None:
    return value if value is None or isinstance(value, bytes) else Path(value).read_bytes()


class RemoteSession:
    """A governed session whose path runs on `lineage-guard serve`.

    `tls_root_certs` (PEM bytes or a path) trusts a private CA; the system store otherwise.
    `client_cert`/`client_key` (PEM bytes or paths) present a client certificate when the server requires
    mTLS; if the server maps client certificates to identities, they are the credential and `token` may be
    left out. The certificate also travels in-band with a proof of possession, so the server's ledger
    records its digest.
    `run_context` (an orchestrator's own run: `parent` {run_id, job_namespace, job_name},
    `approval_run`, `approval_context`) is sent with every call: the server's runs name that run as
    their parent, approvals bind to it, and each receipt or refusal brings back the run's OpenLineage
    parts, collected in `lineage` (for the orchestrator's own events).
    `timeout_s` bounds every wait for the service's next message (default 900 s; `None`: unbounded): a
    unary call must be answered within it, a stream must bring its next batch within it, so an honest
    long stream with data flowing is never cut. `keepalive_s` is the HTTP/2 ping interval while a call
    is open (default 60 s; `None`: off): a dead connection fails within about `keepalive_s` + 20 s. Both
    end a stalled call in `ServiceUnavailable` (retriable), never a hang (see `lineage_guard.client.waits`).
    """

    def __init__(self, url: str, *, purpose: str, token: str | None = None,
                 token_file: str | os.PathLike | None = None, tls_root_certs: bytes | str | os.PathLike | None = None,
                 client_cert: bytes | str | os.PathLike | None = None, client_key: bytes | str | os.PathLike | None = None,
                 timeout_s: float | None = DEFAULT_TIMEOUT_S, keepalive_s: float | None = DEFAULT_KEEPALIVE_S,
                 run_context: dict | None = None):
        if not purpose:
            raise ConfigError("a purpose is required: say why the data is read (e.g. purpose='ai_training')")
        if timeout_s is not None and not timeout_s > 0:
            raise ConfigError(f"timeout_s must be positive seconds (or None for no bound), got {timeout_s!r}")
        if keepalive_s is not None and not keepalive_s > 0:
            raise ConfigError(f"keepalive_s must be positive seconds (or None for no keepalive), got {keepalive_s!r}")
        self.url = url
        self.purpose = purpose
        client_cert, client_key = _pem(client_cert), _pem(client_key)
        self._credential = _Credential(token, token_file, certificate=bool(client_cert))
        roots = tls_root_certs
        if roots is not None and not isinstance(roots, bytes):
            roots = Path(roots).read_bytes()
        kwargs: dict[str, Any] = {}
        if roots:
            kwargs["tls_root_certs"] = roots
        self._proof = None
        if client_cert:
            if not client_key:
                raise ConfigError("client_cert= needs client_key= (PEM)")
            kwargs.update(cert_chain=client_cert, private_key=client_key)
            self._proof = _CertificateProof(client_cert, client_key)
        self._client = flight.FlightClient(url, generic_options=keepalive_options(keepalive_s), **kwargs)
        self._timeout = timeout_s
        self.last_receipts: list[StreamReceipt] = []
        self.lineage: list[dict] = []
        self._run_header = ((RUN_HEADER.encode(), json.dumps(run_context, separators=(",", ":")).encode()),) \
            if run_context is not None else ()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def _options(self, extra: Sequence[tuple[bytes, bytes]] = (), *, stream: bool = False) -> flight.FlightCallOptions:
        """A call's options. A unary call's first answer is its whole answer: `timeout_s` is its gRPC deadline.
        A stream (`stream=True`) gets none, a deadline would cut it however well data flows: its waits
        are bounded one message at a time (`_watch`)."""
        proof = self._proof.headers() if self._proof is not None else []
        return flight.FlightCallOptions(timeout=None if stream else self._timeout, headers=[
            *self._credential.headers(), *proof, (PURPOSE_HEADER.encode(), self.purpose.encode()), *self._run_header,
            *extra])

    def _watch(self, cancel) -> IdleWatch:
        """The idle bound of one stream: each read (or write) must complete within `timeout_s`."""
        return IdleWatch(self._timeout, cancel)

    def _open_stream(self, open_call):
        """Open a DoGet (it returns once the first message is in), bounded by `timeout_s` like every wait."""
        return opened(self._timeout, open_call, abandon=lambda reader: reader.cancel())

    def _call(self, fn):
        try:
            return fn()
        except Stalled as exc:
            raise ServiceUnavailable(f"{exc} (timeout_s): the stream stalled and was cancelled; the call may be "
                                     "retried") from None
        except flight.FlightError as exc:
            error = _error(exc)
            if getattr(error, "lineage", None):
                self.lineage.append(error.lineage)
            raise error from None

    # -- the session API ---------------------------------------------------------------------

    def health(self) -> dict:
        return self._action("health", b"")

    def whoami(self) -> dict:
        """`{"principal", "kind"}`: the identity the server established from this session's credential."""
        return self._action("lineage_guard.whoami", b"")

    def approval_status(self, request_id: str) -> dict:
        """`{"request_id", "status", "approver"}` of one of this identity's approval requests (a deferred
        task polls it); another identity's request is answered as unknown."""
        return self._action("lineage_guard.approval", json.dumps({"request_id": request_id}).encode())

    def schemas(self) -> list[str]:
        """The schemas holding a table this caller may read (Flight SQL GetDbSchemas), sorted.

        Example:
            >>> s.schemas()   # doctest: +SKIP
            ['public', 'sales']
        """
        table = self._metadata(fs.MESSAGES.CommandGetDbSchemas())
        return sorted(table.column("db_schema_name").to_pylist())

    def tables(self, schema: str | None = None) -> list[tuple[str, str]]:
        """`(schema, table)` of every table and view this caller may read (Flight SQL GetTables), sorted;
        `schema` narrows to one schema (a SQL LIKE pattern). Nothing it may not read is listed.

        Example:
            >>> s.tables("sales")   # doctest: +SKIP
            [('sales', 'orders')]
        """
        command = fs.MESSAGES.CommandGetTables()
        if schema is not None:
            command.db_schema_filter_pattern = schema
        table = self._metadata(command)
        return sorted(zip(table.column("db_schema_name").to_pylist(), table.column("table_name").to_pylist()))

    def _metadata(self, command) -> pa.Table:
        descriptor = flight.FlightDescriptor.for_command(fs.pack(command))

        def get() -> pa.Table:
            info = self._client.get_flight_info(descriptor, self._options())
            return self._client.do_get(info.endpoints[0].ticket, self._options()).read_all()

        return self._call(get)

    def plan(self, sql: str) -> RemotePlan:
        """Steps 1-4 on the server: the decision for `sql`, no data touched."""
        return RemotePlan.from_json(self._action("lineage_guard.plan", json.dumps({"sql": sql}).encode()))

    @contextmanager
    def stream(self, sql: str, parameters: Sequence[Any] | None = None, *, partitions: int = 1,
               split_key: str | None = None, provenance: bool = False) -> Iterator[Iterator[pa.RecordBatch]]:
        """Masked RecordBatches as the server streams them; `.receipt` is set when they end.

        `partitions` > 1 asks the server to split the read into key ranges (of `split_key`, else a
        clear integer primary/unique key it detects): one endpoint per range, read here in order.
        `provenance` asks for the provenance document of a file written from the stream (`receipt.provenance`).
        """
        receipt = StreamReceipt()
        with self._prepared(sql, parameters) as descriptor:
            info = self.flight_info(descriptor, partitions=partitions, split_key=split_key, provenance=provenance)
            batches = _Batches(self, info, receipt)
            try:
                yield batches
            finally:
                batches.close()
        self.last_receipts = [receipt]

    def flight_info(self, descriptor: flight.FlightDescriptor, *, partitions: int = 1,
                    split_key: str | None = None, provenance: bool = False) -> flight.FlightInfo:
        """The server's FlightInfo for a statement: its endpoints can be fetched by other workers that hold
        a credential for the same identity (`fetch`)."""
        extra = [(b"x-lineage-guard-provenance", b"1")] if provenance else []
        if partitions > 1:
            extra.append((b"x-lineage-guard-partitions", str(int(partitions)).encode()))
        if split_key:
            extra.append((b"x-lineage-guard-split-key", split_key.encode()))
        return self._call(lambda: self._client.get_flight_info(descriptor, self._options(extra)))

    @contextmanager
    def stream_endpoint(self, endpoint: flight.FlightEndpoint, *, provenance: bool = False
                        ) -> Iterator[Iterator[pa.RecordBatch]]:
        """One endpoint's masked RecordBatches as the server streams them (another worker may have planned
        it); `.receipt` is set when they end. `provenance`: the receipt carries the file footer's document."""
        receipt = StreamReceipt()
        info = flight.FlightInfo(pa.schema([]), flight.FlightDescriptor.for_command(b""), [endpoint], -1, -1)
        batches = _Batches(self, info, receipt, provenance=provenance)
        try:
            yield batches
        finally:
            batches.close()
        self.last_receipts = [receipt]

    def fetch(self, endpoint: flight.FlightEndpoint, *, provenance: bool = False) -> tuple[pa.Table, StreamReceipt]:
        """One endpoint's masked rows and its receipt (each fetched endpoint is a ledger entry)."""
        with self.stream_endpoint(endpoint, provenance=provenance) as batches:
            collected = list(batches)
        return pa.Table.from_batches(collected, schema=batches.schema), batches.receipt

    def read_arrow(self, sql: str, parameters: Sequence[Any] | None = None, *, partitions: int = 1,
                   split_key: str | None = None, provenance: bool = False) -> pa.Table:
        """The masked result as one table; with `partitions` > 1 the endpoints are fetched concurrently.
        The receipt is in `last_receipts` (with the provenance document when `provenance`)."""
        if partitions <= 1:
            with self.stream(sql, parameters, provenance=provenance) as batches:
                collected = list(batches)
                return pa.Table.from_batches(collected, schema=batches.schema)
        from concurrent.futures import ThreadPoolExecutor

        with self._prepared(sql, parameters) as descriptor:
            info = self.flight_info(descriptor, partitions=partitions, split_key=split_key)
            with ThreadPoolExecutor(max_workers=len(info.endpoints)) as pool:
                parts = list(pool.map(self.fetch, info.endpoints))
        self.last_receipts = [receipt for _, receipt in parts]
        return pa.concat_tables([table for table, _ in parts])

    def read_polars(self, sql: str, parameters: Sequence[Any] | None = None) -> pl.DataFrame:
        import polars as pl

        return pl.from_arrow(self.read_arrow(sql, parameters))  # type: ignore[return-value]

    def extract(self, sql: str, to: str | os.PathLike, parameters: Sequence[Any] | None = None,
                progress: Callable[[int], None] | None = None) -> RemoteExtractResult:
        """Stream into a local Parquet file, atomically: the target appears whole, with the server's receipt
        and provenance document (`lineage_guard.provenance`, as embedded mode writes) in its footer, or not at
        all. `progress` is called with the running row count after every batch."""
        with self.stream(sql, parameters, provenance=True) as batches:
            return _write_parquet(batches, to, progress)

    def extract_endpoint(self, endpoint: flight.FlightEndpoint, to: str | os.PathLike,
                         progress: Callable[[int], None] | None = None) -> RemoteExtractResult:
        """`extract` for one endpoint of a split read (planned once, by another worker): its rows into a local
        Parquet file, atomically, with the endpoint's receipt and provenance in the footer."""
        with self.stream_endpoint(endpoint, provenance=True) as batches:
            return _write_parquet(batches, to, progress)

    def mask_batches(self, batches: Iterable[pa.RecordBatch], *, table: str, input_uri: str,
                     output_uri: str | None = None, columns: Mapping[str, str | None] | None = None,
                     schema: pa.Schema | None = None) -> Iterator[pa.RecordBatch]:
        """Data that is not in PostgreSQL, masked on the server as the columns of `table` (Flight DoExchange).

        The server masks the batches exactly as a read of `table` would (same plan, same keys: tokens
        join with the database's) and streams them back one for one; the keys never reach this process.
        `input_uri`/`output_uri` name the data and where the masked data goes (its lineage); `columns`
        maps a data column to its table column when the names differ (None: not the table's). The ledger
        receipt is in `last_receipts` once the iterator is exhausted. Needs a `service.exchange` grant.

        Example:
            >>> masked = list(s.mask_batches(table.to_batches(), table="public.people",
            ...                              input_uri="s3://lake/people.parquet"))   # doctest: +SKIP
        """
        command = {"lineage_guard.exchange": {"table": table, "input": input_uri, "output": output_uri,
                                              "columns": dict(columns or {})}}
        descriptor = flight.FlightDescriptor.for_command(json.dumps(command).encode())
        receipt = StreamReceipt()
        self.last_receipts = []
        batches = iter(batches)
        first = next(batches, None)
        schema = schema or (first.schema if first is not None else None)
        if schema is None:
            raise ConfigError("mask_batches: no batch and no schema= given; nothing to mask")
        writer, reader = self._call(lambda: self._client.do_exchange(descriptor, self._options(stream=True)))
        watch = self._watch(reader.cancel)   # a write blocks too when the server stops reading
        try:
            self._call(lambda: watch.wait(lambda: writer.begin(schema)))
            for batch in _chain([first] if first is not None else [], batches):
                self._call(lambda b=batch: watch.wait(lambda: writer.write_batch(b)))
                yield from self._exchanged(reader, receipt, watch, until_data=True)   # one masked batch per batch sent
            self._call(lambda: watch.wait(writer.done_writing))
            yield from self._exchanged(reader, receipt, watch, until_data=False)
        except BaseException:
            try:
                writer.close()
            except flight.FlightError:
                pass   # the call already failed with the server's reason, raised here
            raise
        self._call(lambda: watch.wait(writer.close))
        if not receipt.receipt_id:
            raise ServiceError("the exchange ended without a ledger receipt; discard what was received")
        self.last_receipts = [receipt]

    def _exchanged(self, reader, receipt: StreamReceipt, watch: IdleWatch, *,
                   until_data: bool) -> Iterator[pa.RecordBatch]:
        """Masked batches from the exchange: the next one (`until_data`), or all that remain with the receipt."""
        while True:
            try:
                chunk = self._call(lambda: watch.wait(reader.read_chunk))
            except StopIteration:
                return
            if chunk.app_metadata is not None and (chunk.data is None or chunk.data.num_rows == 0):
                doc = json.loads(chunk.app_metadata.to_pybytes()).get("lineage_guard", {})
                receipt.receipt_id, receipt.run_id = doc.get("receipt_id"), doc.get("run_id")
                receipt.rows, receipt.bytes = int(doc.get("rows", 0)), int(doc.get("bytes", 0))
                receipt.masked_columns = tuple(doc.get("masked_columns", ()))
                continue
            if chunk.data is None:
                continue
            yield chunk.data
            if until_data:
                return

    def mask_file(self, src: str | os.PathLike, dst: str | os.PathLike, *, table: str,
                  columns: Mapping[str, str | None] | None = None, batch_rows: int = 65_536,
                  input_uri: str | None = None) -> RemoteExtractResult:
        """A local Parquet file masked on the server as `table`'s columns (`mask_batches`), written to `dst`
        atomically with the receipt in its footer: the target appears whole, or not at all.
        `input_uri` names the data when `src` is a local copy of it (e.g. the lake URI a task downloaded).

        Example:
            >>> s.mask_file("lake/people.parquet", "masked/people.parquet", table="public.people")  # doctest: +SKIP
        """
        import pyarrow.parquet as pq

        source = Path(src).expanduser().resolve()
        target = Path(dst).expanduser().resolve()
        try:
            parquet = pq.ParquetFile(source)
        except (OSError, pa.ArrowInvalid) as exc:
            raise ConfigError(f"cannot read the Parquet file {source}: {type(exc).__name__}") from None
        masked = self.mask_batches(parquet.iter_batches(batch_size=batch_rows), table=table,
                                   input_uri=input_uri or source.as_uri(), output_uri=target.as_uri(),
                                   columns=columns, schema=parquet.schema_arrow)

        def no_rows() -> pa.Schema:
            raise ServiceError(f"{source} has no rows; nothing was written")

        def footer() -> dict[str, str]:
            receipt = self.last_receipts[0]
            return {"lineage_guard.receipt_id": receipt.receipt_id or "", "lineage_guard.run_id": receipt.run_id or ""}

        _write_parquet_atomically(target, masked, footer, empty_schema=no_rows)
        receipt = self.last_receipts[0]
        return RemoteExtractResult(receipt.run_id or "", receipt.receipt_id or "", str(target), receipt.rows,
                                   receipt.bytes, receipt.masked_columns)

    def execute(self, sql: str, parameters: Sequence[Any] | None = None) -> RemoteWriteResult:
        """A guarded write on the server (guardrails, approvals, ledger)."""
        if parameters is None:
            command = fs.MESSAGES.CommandStatementUpdate(query=sql)
            return RemoteWriteResult(self._put_update(command, None))
        handle = self._create_prepared(sql)
        try:
            command = fs.MESSAGES.CommandPreparedStatementUpdate(prepared_statement_handle=handle)
            return RemoteWriteResult(self._put_update(command, _parameter_batch(parameters)))
        finally:
            self._close_prepared(handle)

    # -- Flight SQL plumbing -------------------------------------------------------------------

    def _action(self, kind: str, body: bytes) -> dict:
        results = self._call(lambda: list(self._client.do_action(flight.Action(kind, body), self._options())))
        return json.loads(results[0].body.to_pybytes())

    @contextmanager
    def _prepared(self, sql: str, parameters: Sequence[Any] | None):
        if parameters is None:
            yield flight.FlightDescriptor.for_command(fs.pack(fs.MESSAGES.CommandStatementQuery(query=sql)))
            return
        handle = self._create_prepared(sql)
        try:
            command = fs.pack(fs.MESSAGES.CommandPreparedStatementQuery(prepared_statement_handle=handle))
            descriptor = flight.FlightDescriptor.for_command(command)
            batch = _parameter_batch(parameters)

            def bind():
                writer, reader = self._client.do_put(descriptor, batch.schema, self._options())
                writer.write_batch(batch)
                writer.done_writing()
                reader.read()
                writer.close()

            self._call(bind)
            yield descriptor
        finally:
            self._close_prepared(handle)

    def _create_prepared(self, sql: str) -> bytes:
        body = fs.pack(fs.MESSAGES.ActionCreatePreparedStatementRequest(query=sql))
        results = self._call(lambda: list(self._client.do_action(
            flight.Action(fs.ACTION_CREATE_PREPARED_STATEMENT, body), self._options())))
        _, result = fs.unpack(results[0].body.to_pybytes())
        return result.prepared_statement_handle

    def _close_prepared(self, handle: bytes) -> None:
        body = fs.pack(fs.MESSAGES.ActionClosePreparedStatementRequest(prepared_statement_handle=handle))
        try:
            list(self._client.do_action(flight.Action(fs.ACTION_CLOSE_PREPARED_STATEMENT, body), self._options()))
        except flight.FlightError:
            pass  # the server forgets handles on its own; a failed close leaks nothing

    def _put_update(self, command, batch: pa.RecordBatch | None) -> int:
        descriptor = flight.FlightDescriptor.for_command(fs.pack(command))
        schema = batch.schema if batch is not None else pa.schema([])

        def put() -> int:
            writer, reader = self._client.do_put(descriptor, schema, self._options())
            if batch is not None:
                writer.write_batch(batch)
            writer.done_writing()
            answer = reader.read()
            if self._run_header:   # the server follows with the write's lineage for a caller that sent its run
                more = reader.read()
                if more is not None:
                    lineage = json.loads(more.to_pybytes()).get("lineage_guard", {}).get("lineage")
                    if lineage:
                        self.lineage.append(lineage)
            writer.close()
            result = fs.MESSAGES.DoPutUpdateResult()
            result.ParseFromString(answer.to_pybytes())   # a bare message, not wrapped in Any
            return int(result.record_count)

        return self._call(put)


def _write_parquet_atomically(target: Path, batches: Iterable[pa.RecordBatch], footer: Callable[[], dict[str, str]],
                              *, empty_schema: Callable[[], pa.Schema]) -> None:
    """Stream `batches` into a temporary file beside `target` and rename it over `target` once the footer
    (`footer()`, called after the last batch: the receipt comes last) is written, so `target` is the old
    file or the whole new one. With no batch, the file gets `empty_schema()` (which may raise instead).
    Any failure, the footer's included, deletes the temporary file: nothing half-written is left."""
    import pyarrow.parquet as pq

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.lg-tmp")
    writer = None
    try:
        for batch in batches:
            if writer is None:
                writer = pq.ParquetWriter(tmp, batch.schema, compression="zstd")
            writer.write_batch(batch)
        if writer is None:
            writer = pq.ParquetWriter(tmp, empty_schema(), compression="zstd")
        writer.add_key_value_metadata(footer())
        writer.close()
        writer = None
        os.replace(tmp, target)
    except BaseException:
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)
        raise


def _write_parquet(batches: _Batches, to: str | os.PathLike,
                   progress: Callable[[int], None] | None) -> RemoteExtractResult:
    """Write an open stream to `to` atomically (a temporary file renamed once the receipt has arrived)."""
    target = Path(to).expanduser().resolve()

    def counted() -> Iterator[pa.RecordBatch]:
        rows = 0
        for batch in batches:
            yield batch   # resumed once the batch is written
            rows += batch.num_rows
            if progress is not None:
                progress(rows)

    def footer() -> dict[str, str]:
        receipt = batches.receipt
        if not receipt.receipt_id:
            raise ServiceError("the stream ended without a ledger receipt; nothing was written")
        stamp = {"lineage_guard.receipt_id": receipt.receipt_id, "lineage_guard.run_id": receipt.run_id or ""}
        if receipt.provenance:
            from ..attest.provenance import encode

            stamp |= encode(receipt.provenance)
        return stamp

    _write_parquet_atomically(target, counted(), footer, empty_schema=lambda: batches.schema)
    receipt = batches.receipt
    return RemoteExtractResult(receipt.run_id or "", receipt.receipt_id, str(target), receipt.rows,
                               receipt.bytes, receipt.masked_columns)


class _Batches(Iterator[pa.RecordBatch]):
    """The batches of every endpoint of one FlightInfo, in order; the receipt batch is taken out."""

    def __init__(self, session: RemoteSession, info: flight.FlightInfo, receipt: StreamReceipt, *,
                 provenance: bool = False):
        self._session = session
        # A split read's DoGet is where its endpoint's governed read starts: it says there what it wants back.
        self._get_headers = [(b"x-lineage-guard-provenance", b"1")] if provenance else []
        self._endpoints = list(info.endpoints)
        self._reader = None
        self._watch: IdleWatch | None = None   # the open reader's idle bound
        self.schema: pa.Schema | None = None
        self.receipt = receipt
        about = json.loads(info.app_metadata or b"{}").get("lineage_guard", {})
        self.plan = RemotePlan.from_json(about["plan"]) if "plan" in about else None
        receipt.run_id = about.get("run_id")
        # A split read's endpoints open nothing on the server until fetched: unread ones need no ending.
        self._split = "parent_run_id" in about

    def close(self) -> None:
        """End what was not read: the server holds an open read per one-endpoint ticket until it is fetched."""
        session = self._session
        pending = [self._reader] if self._reader is not None else []
        self._reader = None
        for endpoint in [] if self._split else self._endpoints:
            try:
                pending.append(session._open_stream(lambda t=endpoint.ticket: session._client.do_get(
                    t, session._options(stream=True))))
            except (flight.FlightError, Stalled):
                pass  # already ended on the server, or unreachable: it forgets the ticket on its own
        self._endpoints = []
        for reader in pending:
            reader.cancel()

    def __next__(self) -> pa.RecordBatch:
        session = self._session
        while True:
            if self._reader is None:
                if not self._endpoints:
                    raise StopIteration
                ticket = self._endpoints.pop(0).ticket
                self._reader = session._call(lambda t=ticket: session._open_stream(lambda: session._client.do_get(
                    t, session._options(self._get_headers, stream=True))))
                self._watch = session._watch(self._reader.cancel)
                self.schema = self._reader.schema
            try:
                chunk = session._call(lambda: self._watch.wait(self._reader.read_chunk))
            except StopIteration:
                self._reader = None
                continue
            if chunk.app_metadata is not None and chunk.data.num_rows == 0:
                doc = json.loads(chunk.app_metadata.to_pybytes()).get("lineage_guard", {})
                self.receipt.receipt_id = doc.get("receipt_id")
                self.receipt.run_id = doc.get("run_id")
                self.receipt.rows += int(doc.get("rows", 0))
                self.receipt.bytes += int(doc.get("bytes", 0))
                self.receipt.masked_columns = tuple(doc.get("masked_columns", ()))
                self.receipt.provenance = doc.get("provenance")
                if doc.get("lineage"):
                    self.receipt.lineage = doc["lineage"]
                    session.lineage.append(doc["lineage"])
                continue
            return chunk.data


def _chain(first: list[pa.RecordBatch], rest: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    yield from first
    yield from rest


def _parameter_batch(parameters: Sequence[Any]) -> pa.RecordBatch:
    return pa.record_batch({f"p{i + 1}": pa.array([v]) for i, v in enumerate(parameters)})


def connect(url: str, *, purpose: str, token: str | None = None, token_file: str | os.PathLike | None = None,
            **options: Any) -> RemoteSession:
    """A `RemoteSession` on `url` (`grpc+tls://host:port`), authenticated by the given credential."""
    return RemoteSession(url, purpose=purpose, token=token, token_file=token_file, **options)
