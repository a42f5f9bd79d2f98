"""A governed read planned once, fetched anywhere: its endpoints for the workers of another engine (Spark, Ray).

The planner (a Spark driver, a Ray driver) asks the service for the plan and the endpoints once
(`RemoteSession.flight_info`, `partitions=N`: key ranges of one plan, one key scope, so every
partition has the same tokens); each endpoint travels serialized (`FlightEndpoint.serialize()`) to
the worker that fetches it (`fetch_endpoint`) with the caller's credential only. Nothing here holds
a key or a database password: the service does the masking and keeps the ledger.

Example:
    >>> cred = ServiceCredential("grpc+tls://lg.internal:8815", purpose="ai_training",
    ...                          token_file="/var/run/secrets/lineage-guard/token")        # doctest: +SKIP
    >>> planned = plan_read(cred, "SELECT id, email FROM people", partitions=4)            # doctest: +SKIP
    >>> fetch_endpoint(cred, planned.endpoints[0]).num_rows                                # doctest: +SKIP

Orchestrators that pass work between tasks as JSON (Airflow XComs, Dagster partitions) carry each
endpoint as an `EndpointDoc` (`endpoint_docs(planned.endpoints, planned.about)`): its key, position, the plan it belongs to,
and the ticket: an opaque handle the service holds, honoured only for the identity and purpose it
was issued to (another identity presenting it is refused, and recorded). No credential, key or value.

    >>> doc = {"key": "0f3a9c1e-0", "index": 0, "of": 2, "ticket": "CgUKAwAAAA==", "parent_run_id": "p",
    ...        "summary_receipt_id": "r", "plan_digest": "d"}
    >>> endpoint_from_doc(doc).ticket.ticket
    b'\\x00\\x00\\x00'
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict

import pyarrow as pa

from ..errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from pyarrow import flight

    from ..client import RemoteSession

DOC_FIELDS = ("key", "index", "of", "ticket", "parent_run_id", "summary_receipt_id", "plan_digest")


@dataclass(frozen=True)
class ServiceCredential:
    """What a worker needs to reach the service as the caller: its URL, purpose and credential.

    It is pickled into every task, so it carries a bearer token (or a token file path the workers
    can read, re-read per call: rotated tokens) and the service's CA certificate: nothing else.
    """

    url: str
    purpose: str
    token: str | None = None
    token_file: str | None = None
    tls_root_certs: bytes | None = None

    def __post_init__(self) -> None:
        if bool(self.token) == bool(self.token_file):
            raise ConfigError("ServiceCredential: give token= or token_file= (one of them): workers connect "
                              "with the caller's credential")

    def __repr__(self) -> str:   # engines log task closures and errors: the token never shows
        return f"ServiceCredential(url={self.url!r}, purpose={self.purpose!r}, token=***)"

    def session(self) -> RemoteSession:
        from ..client import RemoteSession

        return RemoteSession(self.url, purpose=self.purpose, token=self.token, token_file=self.token_file,
                             tls_root_certs=self.tls_root_certs)


@dataclass(frozen=True)
class PlannedRead:
    """A statement planned once on the service: its endpoints (serialized), result schema and plan document
    (`about`: the plan, and for a split read its `parent_run_id`, `split_key`, `partitions`)."""

    credential: ServiceCredential
    endpoints: tuple[bytes, ...]
    schema: pa.Schema
    about: dict[str, Any]


def plan_read(credential: ServiceCredential, sql: str, *, partitions: int = 1,
              split_key: str | None = None) -> PlannedRead:
    """Plan `sql` once: the service's endpoints for it (`partitions` key ranges of one plan)."""
    from pyarrow import flight

    from ..service import flightsql as fs

    command = fs.pack(fs.MESSAGES.CommandStatementQuery(query=sql))
    with credential.session() as session:
        info = session.flight_info(flight.FlightDescriptor.for_command(command), partitions=partitions,
                                   split_key=split_key)
    about = json.loads(info.app_metadata or b"{}").get("lineage_guard", {})
    return PlannedRead(credential, tuple(e.serialize() for e in info.endpoints), info.schema, about)


def fetch_endpoint(credential: ServiceCredential, endpoint: bytes) -> pa.Table:
    """In a worker: one serialized endpoint's masked rows, fetched as the caller (`RemoteSession.fetch`)."""
    from pyarrow import flight

    with credential.session() as session:
        table, _receipt = session.fetch(flight.FlightEndpoint.deserialize(endpoint))
    return table


class EndpointDoc(TypedDict):
    """One endpoint of a split read as JSON (an XCom, a Dagster output): what a worker needs besides its credential.

    `key` names it (`<first 8 of the plan's parent run id>-<index>`: endpoint ids of one plan, e.g. Dagster
    partition keys); `ticket` is the serialized FlightEndpoint, base64.
    """

    key: str
    index: int
    of: int
    ticket: str
    parent_run_id: str
    summary_receipt_id: str
    plan_digest: str


def endpoint_docs(endpoints: Sequence[bytes], about: dict[str, Any]) -> list[EndpointDoc]:
    """The endpoints of a planned split read (serialized, and the plan document: `PlannedRead.endpoints`,
    `.about`) as JSON documents, in key order (one per key range)."""
    if "parent_run_id" not in about:
        raise ConfigError("the service did not split this read (ask for partitions >= 2); a one-endpoint read is "
                          "fetched where it was planned")
    parent = str(about["parent_run_id"])
    return [EndpointDoc(key=f"{parent[:8]}-{i}", index=i, of=len(endpoints),
                        ticket=base64.b64encode(blob).decode("ascii"), parent_run_id=parent,
                        summary_receipt_id=str(about.get("summary_receipt_id", "")),
                        plan_digest=str(about.get("plan_digest", "")))
            for i, blob in enumerate(endpoints)]


def check_doc(doc: Any, where: str = "endpoint") -> EndpointDoc:
    """`doc` if it is an `EndpointDoc` (e.g. read back from an XCom), else a clear error naming what is wrong."""
    if not isinstance(doc, dict):
        raise ConfigError(f"{where} must be one endpoint document of a split read (a dict from endpoint_docs or "
                          f"GovernedSplitReadOperator), got {type(doc).__name__}")
    missing = [k for k in DOC_FIELDS if k not in doc]
    if missing:
        raise ConfigError(f"{where} lacks {', '.join(missing)}: pass the documents the plan returned, unchanged")
    index, of = doc["index"], doc["of"]
    if isinstance(index, bool) or not isinstance(index, int) or not isinstance(of, int) or not 0 <= index < of:
        raise ConfigError(f"{where}: index must be an integer from 0 to of-1")
    return doc  # type: ignore[return-value]


def endpoint_from_doc(doc: Any, where: str = "endpoint") -> flight.FlightEndpoint:
    """The FlightEndpoint an `EndpointDoc` carries (`RemoteSession.fetch` / `extract_endpoint` take it)."""
    from pyarrow import flight

    checked = check_doc(doc, where)
    try:
        blob = base64.b64decode(str(checked["ticket"]), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{where}: ticket is not base64; pass the documents the plan returned, unchanged") from None
    try:
        return flight.FlightEndpoint.deserialize(blob)
    except Exception:  # noqa: BLE001 - pyarrow raises ArrowInvalid and others for a malformed message
        raise ConfigError(f"{where}: ticket is not a serialized Flight endpoint") from None
