"""Flight DoExchange: mask data that is not in PostgreSQL (lake files) under a governed table's policy and keys.

A client (`RemoteSession.mask_batches` / `mask_file`, e.g. a Spark task over Parquet files) sends
Arrow batches and says which governed table their columns belong to; the server masks them exactly as
a read of that table would (the same plan, the same key scope, so tokens join with the database's)
and streams the masked batches back, then a zero-row batch whose app_metadata is the ledger receipt.
The keys stay in the server. The run is one ledger entry (open, then success/failure) and one
OpenLineage run whose input is the file and whose output is the masked file.

What holds, and why:
- Nobody may do it unless `service.exchange` grants the identity the table for the purpose: a
  deterministic mask over chosen values is a token oracle (send a guess, compare its token).
- The plan is the plan of `SELECT <columns> FROM <table>` for the caller: a column the table does
  not have, a denied identity or purpose, a row filter (rows of a file cannot be filtered by it) or a
  re-identification floor is refused, recorded, before any batch is read.
- Nothing leaves clear that looks sensitive: every column that would leave clear is classified on a
  spread sample of every batch by the project's detector; a sensitive label its table column is not
  classified as (a caller lying about a column, or a column the table does not have) stops the run.

Command (the descriptor's `cmd`, JSON): `{"lineage_guard.exchange": {"table": "public.people",
"input": "s3://lake/people/part-0.parquet", "output": "file:///masked/part-0.parquet",
"columns": {"mail": "email", "note": null}}}` — `columns` maps a data column to its table column
when the names differ (null: not the table's); other columns map by name.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import pyarrow as pa
from pyarrow import flight

from ..decision import ColumnDecision, Decision
from ..errors import AccessDenied, ConfigError
from ..identity import Identity
from ..run import SinkInfo
from ..sinks.base import Sink
from .calls import RunContext
from .limits import StreamBudget

COMMAND_KEY = "lineage_guard.exchange"
_SAMPLE_ROWS = 1000   # per batch and column, spread over the batch


class _Server(Protocol):
    """The parts of `GovernedFlightServer` an exchange uses."""

    policy: Any
    config: Any
    limiter: Any
    visibility: Any

    def _purpose(self, context, identity: Identity, method: str) -> str: ...

    def _session(self, identity: Identity, purpose: str, parent=None, run: RunContext | None = None,
                 provenance: bool = False) -> Any: ...

    def _run_context(self, context) -> RunContext | None: ...


@dataclass(frozen=True)
class ExchangeRequest:
    """What the caller asks: mask its data as `table`'s columns; `input`/`output` name the files (lineage)."""

    schema: str
    table: str
    input_uri: str
    output_uri: str | None
    columns: dict[str, str | None]

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.table}"

    @classmethod
    def parse(cls, command: bytes, default_schema: str) -> ExchangeRequest:
        """The request in a DoExchange descriptor; a `ConfigError` saying what to fix otherwise."""
        from ..lineage.naming import dataset_for_uri, strip_credentials

        try:
            doc = json.loads(command)[COMMAND_KEY]
        except (ValueError, KeyError, TypeError):
            raise ConfigError(f'DoExchange takes a command {{"{COMMAND_KEY}": {{"table": "schema.table", '
                              '"input": "<uri of the data>", ...}}') from None
        if not isinstance(doc, dict):
            raise ConfigError(f"{COMMAND_KEY} must be an object")
        table, source, output, columns = doc.get("table"), doc.get("input"), doc.get("output"), doc.get("columns")
        if not isinstance(table, str) or not 1 <= len(table.split(".")) <= 2 or not all(table.split(".")):
            raise ConfigError("DoExchange: 'table' must name the governed table the columns belong to "
                              "(schema.table or table)")
        if not isinstance(source, str) or not source:
            raise ConfigError("DoExchange: 'input' must be the URI of the data sent (its lineage input)")
        if output is not None and (not isinstance(output, str) or not output):
            raise ConfigError("DoExchange: 'output' must be the URI the masked data is written to, or absent")
        if columns is None:
            columns = {}
        if not isinstance(columns, dict) or not all(isinstance(k, str) and (v is None or isinstance(v, str))
                                                    for k, v in columns.items()):
            raise ConfigError("DoExchange: 'columns' maps a data column to its table column (or null)")
        for uri in (source, output):
            if uri is not None:
                dataset_for_uri(uri)   # a URI lineage cannot name is refused here, not at the end
        schema, _, name = table.rpartition(".")
        return cls(schema or default_schema, name, strip_credentials(source),
                   strip_credentials(output) if output else None, dict(columns))


def serve(server: _Server, context, identity: Identity, descriptor: flight.FlightDescriptor,
          reader: flight.MetadataRecordBatchReader, writer: flight.MetadataRecordBatchWriter) -> None:
    """One DoExchange: plan, admit, mask every batch sent, answer with the masked batches and the receipt."""
    if descriptor.descriptor_type != flight.DescriptorType.CMD:
        raise ConfigError("DoExchange takes a command descriptor")
    purpose = server._purpose(context, identity, "DoExchange")
    request = ExchangeRequest.parse(descriptor.command, server.policy.search_path[0])
    schema = reader.schema
    session = server._session(identity, purpose, run=server._run_context(context))
    decision, sql = _plan(server, session, request, schema)
    vet = _vetting(decision, server.policy.detection.threshold, request.table)
    limits = server.config.limits_for(identity.principal)
    sink = _FlightSink(writer, request.output_uri)
    extra = {"exchange": {"input": request.input_uri, "governed_as": request.qualified,
                          "unmapped": [c.name for c in decision.columns if not c.sources]},
             "input_uri": request.input_uri, "input_schema": [(f.name, str(f.type)) for f in schema]}
    with server.limiter.slot(identity.principal):
        budget = StreamBudget(identity.principal, limits)
        try:
            run = session.mask_stream(decision, schema, _batches(reader, budget), sink, check=vet, extra=extra)
        except AccessDenied as denied:
            raise server.visibility.conceal_denial(session, sql, denied) from None
    receipt = {"receipt_id": run.receipt.id if run.receipt else None, "run_id": run.run_id, "rows": run.rows,
               "bytes": run.bytes, "masked_columns": [c.name for c in decision.masked_columns]}
    empty = pa.RecordBatch.from_arrays([pa.array([], f.type) for f in sink.schema], schema=sink.schema)
    writer.write_with_metadata(empty, pa.py_buffer(json.dumps({"lineage_guard": receipt}).encode()))


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _plan(server: _Server, session, request: ExchangeRequest, schema: pa.Schema) -> tuple[Decision, str]:
    """The decision for the data's columns: the plan of `SELECT <mapped columns> FROM <table>`, by position,
    with the unmapped columns in their place (no sources, clear: the vetting decides whether they may be)."""
    relation = session.catalog.relation(request.table, request.schema)
    names = list(schema.names)
    if len(set(names)) != len(names):
        raise ConfigError("DoExchange: the data has repeated column names; give each column one name")
    unknown = sorted(set(request.columns) - set(names))
    if unknown:
        raise ConfigError(f"DoExchange: 'columns' names {unknown}, which the data does not have")
    mapped: list[tuple[int, str, str]] = []   # (position, data column, table column)
    for position, name in enumerate(names):
        target = request.columns.get(name, name)
        if target is None:
            continue
        has = relation is not None and relation.column_type(target) is not None
        if has:
            mapped.append((position, name, target))
        elif name in request.columns:   # mapped by hand to a column that is not there: say so
            raise ConfigError(f"DoExchange: 'columns' maps {name!r} to {target!r}, which {request.qualified} "
                              "does not have (or that you may not read)")
    table_sql = f"{_quote(request.schema)}.{_quote(request.table)}"
    listed = ", ".join(f"{_quote(t)} AS {_quote(n)}" for _, n, t in mapped) or "NULL AS lg_none"
    sql = f"SELECT {listed} FROM {table_sql}"
    decision = session.plan(sql)
    reasons: list[str] = []
    if decision.action == "allow":
        reasons = _refusals(server, session, request, decision, mapped)
    by_position = {p: decision.columns[i] for i, (p, _, _) in enumerate(mapped)} if mapped else {}
    columns = tuple(dataclasses.replace(by_position[p], position=p) if p in by_position
                    else ColumnDecision(p, n, (), None, True, ()) for p, n in enumerate(names))
    decision = dataclasses.replace(decision, columns=columns)
    if reasons:
        decision = dataclasses.replace(decision, action="deny", reasons=tuple(reasons))
    return decision, sql


def _refusals(server: _Server, session, request: ExchangeRequest, decision: Decision, mapped: list) -> list[str]:
    """Why an allowed plan still may not mask file data, or []."""
    who, purpose = session.identity.principal, session.purpose
    reasons = []
    if not server.config.exchange_allowed(who, request.qualified, purpose):
        reasons.append(f"{who} may not mask file data as {request.qualified} for {purpose}: service.exchange "
                       "grants no such identity, table and purpose (masking chosen values under a table's keys "
                       "is a token oracle, so it is granted explicitly)")
    if not mapped:
        reasons.append(f"none of the data's columns is a column of {request.qualified}; map them with 'columns'")
    analysis = decision.analysis
    if analysis is not None and analysis.row_filters:
        reasons.append(f"the policy filters the rows of {request.qualified} for {who}; rows sent as file data "
                       "cannot be filtered by it, so they are not masked as that table")
    if session._floor(decision) is not None:
        reasons.append(f"purpose {purpose} has a re-identification floor (purpose_requirements); file data "
                       "is not measured against it, so it is not masked for that purpose")
    return reasons


def _vetting(decision: Decision, threshold: float, table: str) -> Callable[[pa.RecordBatch], None]:
    """A check of each batch: no column leaving clear may hold values the detector finds sensitive,
    unless its table column is classified as that (e.g. a clinician's clear names)."""
    from ..classify.classifier import classify_column

    clear = [(c.position, c.name, set(c.labels)) for c in decision.columns if c.mask is None]

    def check(batch: pa.RecordBatch) -> None:
        if not batch.num_rows:
            return
        step = max(1, batch.num_rows // _SAMPLE_ROWS)
        rows = pa.array(range(0, batch.num_rows, step)[:_SAMPLE_ROWS], pa.int64())
        for position, name, labels in clear:
            sample = batch.column(position).take(rows)
            if pa.types.is_dictionary(sample.type):
                sample = sample.dictionary_decode()
            found = classify_column(name, None, sample, table=table)
            if found.is_sensitive(threshold) and found.label not in labels:
                source = "is not a column of the table" if not decision.columns[position].sources else \
                    "is not classified so in the policy"
                reason = (f"column {name!r} would leave clear but its values look like {found.label} "
                          f"(confidence {found.confidence:.2f}) and it {source}; map it to the table column it "
                          "holds ('columns'), or drop it from the data")
                raise AccessDenied([reason])

    return check


def _batches(reader: flight.MetadataRecordBatchReader, budget: StreamBudget) -> Iterator[pa.RecordBatch]:
    """The caller's batches, charged to its per-stream limits (max_rows / max_bytes)."""
    while True:
        try:
            chunk = reader.read_chunk()
        except StopIteration:
            return
        if chunk.data is None:
            continue
        budget.charge(chunk.data.num_rows, chunk.data.nbytes)
        yield chunk.data


class _FlightSink(Sink):
    """The masked batches go back on the exchange; the caller publishes the file (after the receipt)."""

    def __init__(self, writer: flight.MetadataRecordBatchWriter, output_uri: str | None):
        super().__init__()
        self._writer = writer
        self._output = output_uri

    @property
    def info(self) -> SinkInfo:
        if self._output is None:
            return SinkInfo(kind="memory", uri="memory://exchange", namespace="memory", name="exchange")
        from ..lineage.naming import dataset_for_uri

        namespace, name = dataset_for_uri(self._output)
        return SinkInfo(kind="parquet", uri=self._output, namespace=namespace, name=name)

    def _open(self, schema: pa.Schema) -> None:
        self._writer.begin(schema)

    def _write(self, batch: pa.RecordBatch) -> None:
        self._writer.write_batch(batch)
        self.bytes_written += batch.nbytes

    def _seal(self) -> None:
        pass

    def _commit(self) -> None:
        pass

    def _abort(self) -> None:
        pass   # what was sent was sent: the caller drops its partial file (mask_file writes a temp file)
