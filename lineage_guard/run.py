"""The record of one governed run, handed to the audit (step 9) and lineage (step 10) steps.

A run is one request through the path: planned, maybe read, maybe written. It is
built by the session and never carries a raw value or a key: only names, counts,
hashes, methods and key ids.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from .decision import Decision
from .identity import Identity

# "open": a run's intent, recorded before its first batch leaves or before a write touches the database
# (the final outcome supersedes it)
Outcome = Literal["running", "open", "success", "denied", "needs_approval", "failed"]


def new_run_id() -> str:
    """A fresh run id (UUID v4), shared by the ledger entry and the OpenLineage run."""
    return str(uuid.uuid4())


def utcnow() -> datetime:
    return datetime.now(UTC)


def statement_hash(statement: str) -> str:
    """sha256 of the normalized statement, hex: how ledgers and events name a query."""
    return hashlib.sha256(statement.encode()).hexdigest()


@dataclass(frozen=True)
class SourceInfo:
    """Where data was read from, named the OpenLineage way.

    Postgres: namespace `postgres://host:port`, dataset name `database.schema.table`.
    """

    scheme: str          # "postgres"
    host: str
    port: int
    database: str
    environment: str = "default"   # e.g. production / staging (policy may differ per environment)

    @property
    def namespace(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def dataset_name(self, schema: str, table: str) -> str:
        return f"{self.database}.{schema}.{table}"


@dataclass(frozen=True)
class SinkInfo:
    """Where the result went: `kind` is parquet | memory | postgres; `namespace`/`name` per OpenLineage naming."""

    kind: str
    uri: str
    namespace: str
    name: str


@dataclass(frozen=True)
class ParentRun:
    """The orchestrator run this run belongs to (Airflow task instance, Dagster run)."""

    run_id: str
    job_namespace: str
    job_name: str


@dataclass(frozen=True)
class Receipt:
    """What the ledger returns: the entry's id and hash (verifiable later)."""

    id: str
    hash: str


@dataclass
class RunRecord:
    """Everything known about a run; filled in as the path advances."""

    run_id: str
    job_namespace: str
    job_name: str
    identity: Identity
    purpose: str
    source: SourceInfo
    decision: Decision
    sql: str                                        # the statement as normalized (never bound parameter values)
    started_at: datetime = field(default_factory=utcnow)
    ended_at: datetime | None = None
    outcome: Outcome = "running"
    sink: SinkInfo | None = None
    rows: int = 0
    bytes: int = 0
    key_ids: dict[int, str] = field(default_factory=dict)   # output position -> key id of its mask
    approval_id: str | None = None
    error_class: str | None = None                  # e.g. "SourceError"
    error_message: str | None = None                # sanitized: never raw server text or values
    parent: ParentRun | None = None
    # Step 10 needs dataset schemas: the columns read per source table (name, postgres type or None)
    # and the output's columns (name, arrow type string) in output order.
    input_schemas: dict[str, list[tuple[str, str | None]]] = field(default_factory=dict)  # "schema.table" -> cols
    output_schema: list[tuple[str, str]] = field(default_factory=list)
    receipt: Receipt | None = None
    extra: dict = field(default_factory=dict)       # integration-specific, key-free metadata

    @property
    def statement_hash(self) -> str:
        return statement_hash(self.sql)
