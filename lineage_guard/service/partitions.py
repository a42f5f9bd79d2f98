"""Split reads: one plan, several endpoints that independent workers fetch (issues 12.5 and 17).

A GetFlightInfo with `x-lineage-guard-partitions: N` is planned once: the statement's decision,
the key ranges of a clear integer key (from a min/max of that key, run under the same plan's row
filters), and the masked result schema from a zero-row probe. No endpoint is read while planning:
each endpoint's governed read starts at its own DoGet.

One decision for the whole read: a *summary* ledger entry (outcome `success`, no rows) ties the
endpoints to one plan (`split.plan_digest`, `split.parent_run_id`, `split.endpoints`); its run id is
the parent lineage run of every endpoint, and it is emitted as a run of its own (START and COMPLETE
when planned), its parent the caller's run when the caller sent one (`x-lineage-guard-run`: e.g. the
Airflow task that planned), whose lineage parts then come back in the FlightInfo (`lineage`). Each
endpoint fetched is its own ledger entry naming the summary (`split.summary_receipt_id`,
`split.index`, `split.attempt`, and `split.worker_run`: the run of the worker that fetched it, as it
claims); its DoGet honours the caller's run context (lineage parts with the receipt) and provenance.

A ticket is held for `TICKET_TTL_S` after its last use and may be fetched again by its owner (a
worker died mid-partition; Spark reads an endpoint again per action): the retry is served without a
new GetFlightInfo, recorded with `split.attempt` > 1 and `split.retry_of`, and `who-saw` counts the
partition's rows once. A ticket presented by another identity is refused as unknown (and recorded).

Example:
    >>> info = session.flight_info(descriptor, partitions=4)        # doctest: +SKIP
    >>> [session.fetch(e) for e in info.endpoints]                  # doctest: +SKIP
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from itertools import pairwise
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from pyarrow import flight

from ..errors import AccessDenied, ConfigError, LineageGuardError
from ..identity import Authentication, Identity
from .auth import AuthError, header
from .calls import PROVENANCE_HEADER

if TYPE_CHECKING:  # pragma: no cover
    from .server import GovernedFlightServer

PARTITIONS_HEADER = "x-lineage-guard-partitions"
SPLIT_KEY_HEADER = "x-lineage-guard-split-key"
MAX_PARTITIONS = 64
TICKET_TTL_S = 600
_INTEGER_TYPES = ("smallint", "integer", "bigint", "int2", "int4", "int8")


@dataclass(frozen=True)
class Partition:
    """One key range of a split read: its statement, the plan every range must have, its ledger tags."""

    sql: str
    parameters: tuple | None
    parent: Any                      # the ParentRun every endpoint's run names
    expected: list                   # [(column name, mask)] of the statement's plan
    extra: dict = field(default_factory=dict)   # merged into the run's ledger entry (`split`)


@dataclass
class SplitRead:
    """A planned split read: who may fetch it, its ranges, and the attempts made on each."""

    owner: tuple
    purpose: str
    parent: Any
    expected: list
    sql: list[str]
    parameters: tuple | None
    summary_receipt_id: str
    plan_digest: str
    attempts: dict[int, list[str]] = field(default_factory=dict)   # index -> run ids, in order
    used: float = field(default_factory=time.monotonic)


class Splits:
    """The split reads a server holds, by ticket handle; each expires `TICKET_TTL_S` after its last use."""

    def __init__(self) -> None:
        self._by_handle: dict[bytes, tuple[SplitRead, int]] = {}
        self._lock = threading.Lock()

    def add(self, read: SplitRead) -> list[bytes]:
        handles = [secrets.token_bytes(16) for _ in read.sql]
        with self._lock:
            self._expire_locked()
            for i, handle in enumerate(handles):
                self._by_handle[handle] = (read, i)
        return handles

    def held(self, principal: str) -> int:
        """Endpoints this identity holds (they count against its open_handles limit)."""
        with self._lock:
            self._expire_locked()
            return sum(1 for read, _ in self._by_handle.values() if read.owner[0] == principal)

    def lookup(self, handle: bytes) -> tuple[SplitRead, int] | None:
        with self._lock:
            self._expire_locked()
            found = self._by_handle.get(handle)
            if found is not None:
                found[0].used = time.monotonic()
            return found

    def begin(self, read: SplitRead, index: int) -> tuple[int, str | None]:
        """The attempt number of a fetch of endpoint `index`, and the run it retries (if any)."""
        with self._lock:
            runs = read.attempts.setdefault(index, [])
            runs.append("")              # reserved: concurrent retries get distinct numbers
            return len(runs), (runs[-2] or None) if len(runs) > 1 else None

    def started(self, read: SplitRead, index: int, attempt: int, run_id: str) -> None:
        with self._lock:
            read.attempts[index][attempt - 1] = run_id

    def _expire_locked(self) -> None:
        now = time.monotonic()
        for handle in [h for h, (r, _) in self._by_handle.items() if now - r.used > TICKET_TTL_S]:
            del self._by_handle[handle]


def requested(headers: dict) -> int:
    """The partitions the caller asked for (1 when it did not); a bad value is a clear error."""
    text = header(headers, PARTITIONS_HEADER)
    if text is None:
        return 1
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{PARTITIONS_HEADER} must be an integer from 1 to {MAX_PARTITIONS}, "
                          f"got {text[:20]!r}") from None
    if not 1 <= value <= MAX_PARTITIONS:
        raise ConfigError(f"{PARTITIONS_HEADER} must be from 1 to {MAX_PARTITIONS}, got {value}")
    return value


def _registry(server: GovernedFlightServer) -> Splits:
    splits = getattr(server, "_splits", None)
    if splits is None:
        with server._lock:
            splits = getattr(server, "_splits", None)
            if splits is None:
                splits = server._splits = Splits()
    return splits


def plan(server: GovernedFlightServer, context, identity: Identity, purpose: str, descriptor, sql: str,
         params, parts: int) -> flight.FlightInfo | None:
    """The FlightInfo of a split read, or None when the statement is not an allowed read (the
    one-endpoint path then records and answers the refusal or the approval wait)."""
    from ..approvals import plan_digest
    from ..run import ParentRun, new_run_id, utcnow
    from .calls import lineage_doc
    from .server import _decision_json, _owner

    splits = _registry(server)
    server._check_room(identity, parts + splits.held(identity.principal))
    run = server._run_context(context)   # the orchestrator's planning task: the summary run's own parent
    session = server._session(identity, purpose, run=run)
    decision = session.plan(sql)
    if decision.action != "allow" or decision.analysis is None or not decision.analysis.is_read:
        return None
    key = _split_key(session, decision, header(server._headers(context), SPLIT_KEY_HEADER))
    quoted = '"' + key.replace('"', '""') + '"'
    lo, hi = _bounds(session, f"SELECT min({quoted}) AS lo, max({quoted}) AS hi FROM ({sql}) AS lg_bounds", params)
    expected = [(c.name, c.mask) for c in decision.columns]
    schema = _probe(session, f"SELECT * FROM ({sql}) AS lg_part WHERE false", params, expected)
    statements = []
    for i, (start, stop) in enumerate(_ranges(lo, hi, parts)):
        cond = f"{quoted} >= {start} AND {quoted} < {stop}" if start is not None else "false"
        if i == 0:
            cond = f"({cond} OR {quoted} IS NULL)"
        statements.append(f"SELECT * FROM ({sql}) AS lg_part WHERE {cond}")
    # The summary: the one decision of the whole read. Its run id is every endpoint's parent run.
    job = f"lineage_guard.service.{identity.principal}.{purpose}"
    summary = session._new_run(sql, decision)
    summary.run_id = new_run_id()
    digest = plan_digest(decision)
    summary.extra["split"] = {"role": "summary", "parent_run_id": summary.run_id, "plan_digest": digest,
                              "endpoints": len(statements), "split_key": key}
    # The plan's run is a lineage run of its own (START/COMPLETE now, when it is decided): the endpoints'
    # runs name it as their parent, so it must exist for a lineage backend to draw them under it.
    session.lineage.start(summary)
    summary.outcome = "success"
    summary.ended_at = utcnow()
    receipt = summary.receipt = session.ledger.record(summary)
    session.lineage.complete(summary)
    parent = ParentRun(summary.run_id, summary.job_namespace, job)
    read = SplitRead(_owner(identity), purpose, parent, expected, statements, params, receipt.id, digest)
    handles = splits.add(read)
    about = {"lineage_guard": {"plan": _decision_json(decision), "parent_run_id": parent.run_id,
                               "split_key": key, "partitions": len(statements), "plan_digest": digest,
                               "summary_receipt_id": receipt.id}}
    if run is not None and run.lineage:   # the planning task's own events carry the plan's inputs and facets
        about["lineage_guard"]["lineage"] = lineage_doc(summary, "COMPLETE")
    return server._info(descriptor, handles, schema, json.dumps(about).encode())


def serve(server: GovernedFlightServer, context, identity: Identity, handle: bytes):
    """DoGet of a split read's endpoint: its governed read starts now. None if `handle` is not one."""
    from .server import NotFound, _owner

    splits = _registry(server)
    found = splits.lookup(handle)
    if found is None:
        return None
    read, index = found
    if read.owner != _owner(identity):
        # Refused as an unknown ticket (the caller learns nothing of it), and recorded: who tried.
        server._record_refusal(AuthError("permission_denied", "a split read's ticket was presented by another "
                                         "identity than the one it was issued to",
                                         identity.auth or Authentication(), identity), context, "DoGet")
        raise NotFound("unknown or expired ticket; call GetFlightInfo again")
    purpose = server._purpose(context, identity, "DoGet")
    if purpose != read.purpose:
        raise AuthError("permission_denied", "the ticket was issued for another purpose",
                        identity.auth or Authentication(), identity)
    run = server._run_context(context)
    attempt, retry_of = splits.begin(read, index)
    tags = {"role": "endpoint", "parent_run_id": read.parent.run_id, "summary_receipt_id": read.summary_receipt_id,
            "plan_digest": read.plan_digest, "index": index, "of": len(read.sql), "attempt": attempt}
    if retry_of:
        tags["retry_of"] = retry_of
    if run is not None and run.parent is not None:
        # The worker's own run (an Airflow mapped task instance, a Dagster partition run), as it claims: the
        # endpoint's lineage parent stays the plan's run (one parent for the whole read); this ties the two.
        tags["worker_run"] = {"run_id": run.parent.run_id, "job_namespace": run.parent.job_namespace,
                              "job_name": run.parent.job_name}
    part = Partition(read.sql[index], read.parameters, read.parent, read.expected, {"split": tags})
    opened = server._open(identity, purpose, part.sql, part.parameters, part, run=run,
                          provenance=header(server._headers(context), PROVENANCE_HEADER) == "1")
    splits.started(read, index, attempt, opened.batches.run.run_id)
    return flight.GeneratorStream(opened.schema, server._generate(context, opened))


def check_plan(partition: Partition, decision) -> None:
    """An endpoint's plan must mask exactly as the statement's did (refuse to split otherwise)."""
    if [(c.name, c.mask) for c in decision.columns] != partition.expected:
        raise LineageGuardError("a key range's plan differs from the statement's; refusing to split it")


def _bounds(session, sql: str, params) -> tuple[Any, Any]:
    """min/max of the split key under the statement's own plan (row filters included), read by the
    source: the key is clear to this caller, and the summary entry records the read as a whole."""
    from ..session import binding_check, executed_parameters, executed_sql

    decision = session.plan(sql)
    if decision.action != "allow" or any(c.mask is not None for c in decision.columns):
        raise AccessDenied(["the split key's range cannot be read in the clear; name another key"])
    with session.source.stream(executed_sql(decision), executed_parameters(decision, params),
                               verify=binding_check(decision), keep=session._read_connections()) as stream:
        table = pa.Table.from_batches(list(stream), schema=stream.schema)
    if table.num_rows != 1:
        raise LineageGuardError("the split key's range query returned no row")
    return table.column(0)[0].as_py(), table.column(1)[0].as_py()


def _probe(session, sql: str, params, expected: list) -> pa.Schema:
    """The masked result schema from a zero-row run of an endpoint's statement (no row leaves the database)."""
    from ..mask import mask_batch
    from ..session import executed_parameters, executed_sql

    decision = session.plan(sql)
    if decision.action != "allow" or [(c.name, c.mask) for c in decision.columns] != expected:
        raise LineageGuardError("a key range's plan differs from the statement's; refusing to split it")
    specs = {c.position: c.mask for c in decision.columns if c.mask is not None}
    # The range read and this probe share the session's one read connection (reset between them).
    with session.source.stream(executed_sql(decision), executed_parameters(decision, params),
                               keep=session._read_connections()) as stream:
        for batch in stream:
            if batch.num_rows:
                raise LineageGuardError("the zero-row probe returned rows")
        empty = stream.schema.empty_table()
    return mask_batch(empty, specs, session.keyring).schema


def _split_key(session, decision, named: str | None) -> str:
    """The clear integer column to split on: the one named, else the first clear primary/unique key."""
    for column in decision.columns:
        if column.mask is not None or not column.direct or len(column.sources) != 1:
            continue
        ref = column.sources[0]
        relation = session.catalog.relation(ref.table, ref.schema)
        integer = relation is not None and (relation.column_type(ref.column) or "") in _INTEGER_TYPES
        if named is not None and column.name == named and integer:
            return column.name
        if named is None and integer and ref.column in relation.identifying:
            return column.name
    if named is not None:
        raise ConfigError(f"cannot split on {named!r}: it must be an output column passed through unmasked from an "
                          "integer column")
    raise ConfigError(f"no clear integer key column to split on; name one with the {SPLIT_KEY_HEADER} header")


def _ranges(lo, hi, parts: int) -> list[tuple[int | None, int | None]]:
    """`parts` half-open integer ranges covering [lo, hi] (one empty range for an empty result)."""
    if lo is None or hi is None:
        return [(None, None)]
    span = hi - lo + 1
    parts = max(1, min(parts, span))
    edges = [lo + (span * i) // parts for i in range(parts)] + [hi + 1]
    return list(pairwise(edges))
