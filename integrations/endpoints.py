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
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ..errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from ..client import RemoteSession


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
