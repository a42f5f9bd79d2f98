"""Persisted approval requests: SQLite by default, PostgreSQL by URL.

A request is keyed by a fingerprint: sha256 of who asks, the normalized statement, the
purpose, the source (namespace + database), the plan (`binding.plan_digest`: which columns
come back clear or masked, and why) and the parameter values (`binding.bind_parameters`: a
keyed digest, never the values). A request made by a run (an Airflow task try, a Dagster
run) is bound to it: only that run may use the approval. An approval covers that
fingerprint only, once (`single_use`) or until it expires; a denial blocks that fingerprint
(same plan, same values) until it expires, nothing else. A run `claim`s an approval and
`settle`s it: a single-use approval is used up only by a run that did the work, and handed
back by one that failed before. Expiry is applied on every read. The store keeps the
statement's shape (literals replaced), never the statement itself: a literal can be a
sensitive value the caller typed. The requester can never decide their own request, however
the name is spelled (`normalize_principal`).

Example:
    >>> store = ApprovalStore.open("sqlite:///approvals.sqlite")          # doctest: +SKIP
    >>> req = store.request(identity=me, statement=sql, purpose="backfill",
    ...                     source=source_info, reasons=["writes touch public.orders"])  # doctest: +SKIP
    >>> store.approve(req.id, approver="dana", note="ticket DATA-12")      # doctest: +SKIP
    >>> store.consume(req.fingerprint).status                              # doctest: +SKIP
    'used'
    >>> normalize_principal(" Service:Airflow:DAG.task ") == normalize_principal("airflow:dag.task")
    True
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shlex
import sqlite3
import time
import unicodedata
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from ..errors import AccessDenied, ConfigError, LineageGuardError
from ..identity import Identity
from ..paths import state_file
from ..run import SourceInfo, statement_hash
from ..sqlite_wal import enable_wal
from .config import ApprovalsConfig, NotifierConfig

ENV_URL = "LINEAGE_GUARD_APPROVALS_URL"
Status = Literal["pending", "approved", "denied", "expired", "used"]
STATUSES: tuple[str, ...] = ("pending", "approved", "denied", "expired", "used")
TABLE = "lineage_guard_approvals"
_MAX_CONTEXT = 64  # keys; context is for "which DAG run / task asked", not a payload


class ApprovalError(LineageGuardError):
    """An approval operation was refused (unknown id, requester approving, already decided...)."""


def fingerprint(identity: Identity | str, statement: str, purpose: str, source: SourceInfo, *,
                plan: str = "", parameters: str = "") -> str:
    """sha256 over principal, normalized statement, purpose, source namespace/database, the plan
    digest and the parameter digest (`binding.py`; empty when not given)."""
    principal = identity.principal if isinstance(identity, Identity) else identity
    if not principal or not purpose:
        raise ConfigError("an approval fingerprint needs a principal and a purpose")
    # JSON framing: no choice of field values can make two different tuples hash alike.
    material = json.dumps([principal, " ".join(statement.split()), purpose, source.namespace, source.database,
                           plan, parameters])
    return hashlib.sha256(material.encode()).hexdigest()


_KIND_PREFIXES = ("human:", "service:", "agent:")


def normalize_principal(name: str) -> str:
    """A principal as compared for "is the approver the requester?": Unicode-compatibility folded,
    case-folded, without whitespace or a leading kind prefix (`service:airflow:x` is `airflow:x`)."""
    folded = "".join(unicodedata.normalize("NFKC", name).casefold().split())
    while folded.startswith(_KIND_PREFIXES):
        folded = folded.split(":", 1)[1]
    return folded


_fingerprint_of = fingerprint  # `request()` takes a `fingerprint=` argument that shadows the name


def _now() -> datetime:
    return datetime.now(UTC)


def _ts(dt: datetime) -> str:
    # Fixed-width UTC ISO text: compares correctly as a string in both SQLite and PostgreSQL.
    return dt.astimezone(UTC).isoformat(timespec="microseconds")


def approve_command(request_id: str, store_arg: str | None = None, verb: str = "approve") -> str:
    """The exact command an approver runs (`--store` only when it is not the default and holds no secret)."""
    store = f" --store {shlex.quote(store_arg)}" if store_arg else ""
    return f"lineage-guard approvals {verb} {request_id} --as <approver>{store}"


@dataclass(frozen=True)
class ApprovalRequest:
    """One request for a human decision. Never holds a raw statement or value."""

    id: str
    fingerprint: str
    requester: str
    purpose: str
    environment: str
    namespace: str
    database: str
    statement_hash: str
    statement_shape: str | None          # literals replaced by placeholders; None if it did not parse
    reasons: tuple[str, ...]
    context: Mapping[str, str]
    status: Status
    created_at: datetime
    expires_at: datetime
    single_use: bool
    approver: str | None = None
    decided_at: datetime | None = None
    note: str | None = None
    used_at: datetime | None = None
    uses: int = 0
    notify_status: Mapping[str, str] = field(default_factory=dict)  # notifier label -> "sent" | "failed: ..."
    notifiers: tuple[NotifierConfig, ...] = ()                       # where to (re)send; env var names only
    run: str = ""                       # the run it is bound to ("" = any run of the requester)
    parameters: Mapping[str, Any] = field(default_factory=dict)     # count, types, keyed digest; never values
    claimed_by: str | None = None       # the run using a single-use approval right now
    store_arg: str | None = field(default=None, compare=False)

    @property
    def approve_command(self) -> str:
        return approve_command(self.id, self.store_arg)

    @property
    def deny_command(self) -> str:
        return approve_command(self.id, self.store_arg, verb="deny")

    @property
    def notify_failed(self) -> list[str]:
        return sorted(k for k, v in self.notify_status.items() if v != "sent")

    def to_json(self) -> dict:
        return {
            "id": self.id, "fingerprint": self.fingerprint, "requester": self.requester, "purpose": self.purpose,
            "environment": self.environment, "namespace": self.namespace, "database": self.database,
            "statement_hash": self.statement_hash, "statement_shape": self.statement_shape,
            "reasons": list(self.reasons), "context": dict(self.context), "status": self.status,
            "created_at": _ts(self.created_at), "expires_at": _ts(self.expires_at), "single_use": self.single_use,
            "approver": self.approver, "decided_at": _ts(self.decided_at) if self.decided_at else None,
            "note": self.note, "used_at": _ts(self.used_at) if self.used_at else None, "uses": self.uses,
            "notify_status": dict(self.notify_status), "approve_command": self.approve_command,
            "run": self.run or None, "parameters": dict(self.parameters), "claimed_by": self.claimed_by,
        }


_COLUMNS = (
    "id", "fingerprint", "requester", "purpose", "environment", "namespace", "database", "statement_hash",
    "statement_shape", "reasons", "context", "status", "created_at", "expires_at", "single_use", "approver",
    "decided_at", "note", "used_at", "uses", "notify_status", "notifiers", "run_binding", "parameters",
    "claimed_by",
)
# Columns added after the first release, with their definitions: an existing store gains them on open.
_ADDED = {"run_binding": "TEXT NOT NULL DEFAULT ''", "parameters": "TEXT NOT NULL DEFAULT '{}'",
          "claimed_by": "TEXT"}
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    id TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, requester TEXT NOT NULL, purpose TEXT NOT NULL,
    environment TEXT NOT NULL, namespace TEXT NOT NULL, database TEXT NOT NULL, statement_hash TEXT NOT NULL,
    statement_shape TEXT, reasons TEXT NOT NULL, context TEXT NOT NULL, status TEXT NOT NULL,
    created_at TEXT NOT NULL, expires_at TEXT NOT NULL, single_use INTEGER NOT NULL, approver TEXT,
    decided_at TEXT, note TEXT, used_at TEXT, uses INTEGER NOT NULL DEFAULT 0,
    notify_status TEXT NOT NULL DEFAULT '{{}}', notifiers TEXT NOT NULL DEFAULT '[]'
);
DROP INDEX IF EXISTS {TABLE}_one_pending;
CREATE INDEX IF NOT EXISTS {TABLE}_by_fp ON {TABLE} (fingerprint, status);
CREATE INDEX IF NOT EXISTS {TABLE}_by_expiry ON {TABLE} (status, expires_at);
"""
# After the added columns exist: one pending request per fingerprint and requesting run.
_INDEXES = f"""
CREATE UNIQUE INDEX IF NOT EXISTS {TABLE}_one_pending_per_run ON {TABLE} (fingerprint, run_binding)
    WHERE status = 'pending';
"""


def _parse_dt(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _row_to_request(row: tuple, store_arg: str | None) -> ApprovalRequest:
    r = dict(zip(_COLUMNS, row))
    return ApprovalRequest(
        id=r["id"], fingerprint=r["fingerprint"], requester=r["requester"], purpose=r["purpose"],
        environment=r["environment"], namespace=r["namespace"], database=r["database"],
        statement_hash=r["statement_hash"], statement_shape=r["statement_shape"],
        reasons=tuple(json.loads(r["reasons"])), context=json.loads(r["context"]), status=r["status"],
        created_at=_parse_dt(r["created_at"]), expires_at=_parse_dt(r["expires_at"]),  # type: ignore[arg-type]
        single_use=bool(r["single_use"]), approver=r["approver"], decided_at=_parse_dt(r["decided_at"]),
        note=r["note"], used_at=_parse_dt(r["used_at"]), uses=int(r["uses"]),
        notify_status=json.loads(r["notify_status"]),
        notifiers=tuple(NotifierConfig.model_validate(n) for n in json.loads(r["notifiers"])),
        run=r["run_binding"] or "", parameters=json.loads(r["parameters"] or "{}"), claimed_by=r["claimed_by"],
        store_arg=store_arg,
    )


def _hide_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class _SQLite:
    """One connection per operation: safe across threads and processes."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            enable_wal(path)
        except sqlite3.Error as exc:
            raise ApprovalError(f"cannot open the approvals store {path}: {type(exc).__name__}") from None
        with self.tx() as cur:
            cur.executescript(_SCHEMA)
            have = {row[1] for row in cur.fetchall(f"PRAGMA table_info({TABLE})")}
            for name, definition in _ADDED.items():
                if name not in have:
                    cur.execute(f"ALTER TABLE {TABLE} ADD COLUMN {name} {definition}")
            cur.executescript(_INDEXES)

    @contextmanager
    def tx(self) -> Iterator[Any]:
        try:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        except sqlite3.Error as exc:
            raise ApprovalError(f"cannot open the approvals store {self.path}: {type(exc).__name__}") from None
        try:
            conn.execute("BEGIN IMMEDIATE")  # take the write lock up front: check-then-update stays atomic
            try:
                yield _Cursor(conn)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise ApprovalError(f"approvals store {self.path} failed: {type(exc).__name__}: {exc}") from None
        finally:
            conn.close()


class _Cursor:
    """Runs the store's `?`-placeholder SQL on either driver (psycopg wants `%s`)."""

    def __init__(self, conn: Any, placeholder: str = "?"):
        self.conn, self.placeholder = conn, placeholder

    def _sql(self, sql: str) -> str:
        return sql if self.placeholder == "?" else sql.replace("?", self.placeholder)

    def executescript(self, script: str) -> None:
        for stmt in filter(str.strip, script.split(";")):
            self.conn.execute(stmt)

    def execute(self, sql: str, params: tuple = ()) -> int:
        return self.conn.execute(self._sql(sql), params).rowcount

    def fetchall(self, sql: str, params: tuple = ()) -> list[tuple]:
        return self.conn.execute(self._sql(sql), params).fetchall()


class _Postgres:
    def __init__(self, url: str):
        try:
            import psycopg
        except ImportError:
            raise ConfigError("a PostgreSQL approvals store needs the [postgres] extra (psycopg)") from None
        self._psycopg = psycopg
        self.url = url
        with self.tx() as cur:
            # Serialize schema creation: concurrent CREATE ... IF NOT EXISTS can still collide in Postgres.
            cur.execute("SELECT pg_advisory_xact_lock(hashtext(?))", (TABLE,))
            cur.executescript(_SCHEMA)
            for name, definition in _ADDED.items():
                cur.execute(f"ALTER TABLE {TABLE} ADD COLUMN IF NOT EXISTS {name} {definition}")
            cur.executescript(_INDEXES)

    @contextmanager
    def tx(self) -> Iterator[Any]:
        psycopg = self._psycopg
        try:
            conn = psycopg.connect(self.url, connect_timeout=10, autocommit=True)
        except psycopg.Error:
            # The server's text can echo connection details; name the target without its password.
            raise ApprovalError(f"cannot connect to the approvals store {_hide_password(self.url)}; "
                                "check the URL, that the server runs, and the credentials") from None
        try:
            with conn.transaction():
                yield _Cursor(conn, "%s")
        except psycopg.Error as exc:
            raise ApprovalError(f"approvals store query failed (sqlstate {exc.sqlstate or 'unknown'}); "
                                "check the store's permissions and that its table is not altered") from None
        finally:
            conn.close()


def _clean_context(context: Mapping[str, Any] | None) -> dict[str, str]:
    context = dict(context or {})
    if len(context) > _MAX_CONTEXT:
        raise ConfigError(f"approval context has {len(context)} entries; keep it to at most {_MAX_CONTEXT} "
                          "(e.g. dag_id, run_id, task_id)")
    for k, v in context.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise ConfigError(f"approval context must map strings to strings; key {k!r} is not (convert it first)")
        if len(v) > 512:
            raise ConfigError(f"approval context value for {k!r} is longer than 512 characters")
    return context


def _same_person(a: str, b: str) -> bool:
    return normalize_principal(a) == normalize_principal(b)


class ApprovalStore:
    """Approval requests in SQLite or PostgreSQL. Open with `ApprovalStore.open(url=None, config=None)`."""

    def __init__(self, backend: _SQLite | _Postgres, url: str, store_arg: str | None, config: ApprovalsConfig):
        self._db = backend
        self.url = url
        self.config = config
        self._store_arg = store_arg

    @classmethod
    def open(cls, url: str | None = None, *, config: ApprovalsConfig | None = None) -> ApprovalStore:
        """Open (creating if needed) the store at `url`, else $LINEAGE_GUARD_APPROVALS_URL, else `config.store`,
        else `approvals.sqlite` in the state folder.

        URLs: `sqlite:///relative.sqlite`, `sqlite:////abs/path.sqlite`, a plain file path, or `postgresql://...`.
        """
        config = config or ApprovalsConfig()
        chosen = url or os.environ.get(ENV_URL) or config.store
        if not chosen:
            return cls(_SQLite(state_file("approvals.sqlite")), "default", None, config)
        scheme = urlsplit(chosen).scheme
        # Tell approvers which store to use, unless the URL holds a secret they must get elsewhere.
        store_arg = chosen if urlsplit(chosen).password is None else None
        if scheme in ("postgresql", "postgres"):
            return cls(_Postgres(chosen), _hide_password(chosen), store_arg, config)
        if scheme == "sqlite":
            path = chosen[len("sqlite:///"):] if chosen.startswith("sqlite:///") else ""
            if not path:
                raise ConfigError(f"approvals store URL {chosen!r}: use sqlite:///relative.sqlite or "
                                  "sqlite:////absolute/path.sqlite")
            return cls(_SQLite(Path(path)), chosen, store_arg, config)
        if scheme and len(scheme) > 1:  # a Windows drive letter is not a scheme
            raise ConfigError(f"approvals store URL scheme {scheme!r} is not supported; "
                              "use sqlite:///path, a file path, or postgresql://...")
        return cls(_SQLite(Path(chosen)), chosen, store_arg, config)

    def close(self) -> None:
        """Nothing to release: each operation uses its own connection."""

    def transaction(self):
        """One transaction on the store's database (`?` placeholders on either backend), for side tables that
        live beside the requests, e.g. the console's sessions. Commits on success, rolls back on error."""
        return self._db.tx()

    # -- reads ----------------------------------------------------------------------------

    def _expire(self, cur) -> None:
        cur.execute(f"UPDATE {TABLE} SET status = 'expired' WHERE status IN ('pending', 'approved') "
                    "AND expires_at <= ?", (_ts(_now()),))

    def _select(self, cur, where: str, params: tuple = ()) -> list[ApprovalRequest]:
        rows = cur.fetchall(f"SELECT {', '.join(_COLUMNS)} FROM {TABLE} WHERE {where}", params)
        return [_row_to_request(r, self._store_arg) for r in rows]

    def get(self, request_id: str) -> ApprovalRequest:
        """The request with this id (expired ones marked so). Raises `ApprovalError` if unknown."""
        with self._db.tx() as cur:
            self._expire(cur)
            found = self._select(cur, "id = ?", (request_id,))
        if not found:
            raise ApprovalError(f"no approval request {request_id!r}; list them with `lineage-guard approvals list`")
        return found[0]

    def list(self, status: str | None = None) -> list[ApprovalRequest]:
        """Requests, newest first, optionally of one status."""
        if status is not None and status not in STATUSES:
            raise ConfigError(f"unknown status {status!r}; valid: {', '.join(STATUSES)}")
        with self._db.tx() as cur:
            self._expire(cur)
            where, params = ("status = ?", (status,)) if status else ("1 = 1", ())
            return self._select(cur, where + " ORDER BY created_at DESC, id", params)

    # -- writes ---------------------------------------------------------------------------

    def request(
        self,
        *,
        identity: Identity | str,
        statement: str,
        purpose: str,
        source: SourceInfo,
        reasons: list[str],
        context: Mapping[str, str] | None = None,
        fingerprint: str | None = None,
        ttl_seconds: int | None = None,
        single_use: bool | None = None,
        plan: str = "",
        parameters: Mapping[str, Any] | None = None,
        run: str | None = None,
    ) -> ApprovalRequest:
        """Store a pending request, or return the pending one for the same fingerprint and run; then notify.

        `plan` is the plan digest, `parameters` the value-free `ParameterBinding.describe()`
        (its `digest` enters the fingerprint), `run` the requesting run the approval is bound to.
        Raises `AccessDenied` while an unexpired denial stands for the same fingerprint.

        The request is stored before any notifier is called, so a notifier outage loses
        nothing: failures land in `notify_status` for `lineage-guard approvals notify --retry`.
        """
        from ..audit.statement import redact_literals  # here, not at import: the audit package is heavy
        from .notify import notify

        parameters = dict(parameters or {})
        fp = _fingerprint_of(identity, statement, purpose, source, plan=plan,
                             parameters=str(parameters.get("digest", "")))
        if fingerprint is not None and fingerprint != fp:
            raise ConfigError("the fingerprint given does not match the identity, statement, purpose, source, "
                              "plan and parameters")
        principal = identity.principal if isinstance(identity, Identity) else identity
        ttl = ttl_seconds if ttl_seconds is not None else self.config.ttl_seconds
        if ttl <= 0:
            raise ConfigError("ttl_seconds must be positive")
        now = _now()
        values = (
            secrets.token_hex(8), fp, principal, purpose, source.environment, source.namespace, source.database,
            statement_hash(statement), redact_literals(statement), json.dumps(list(reasons)),
            json.dumps(_clean_context(context), sort_keys=True), "pending", _ts(now),
            _ts(now + timedelta(seconds=ttl)), int(self.config.single_use if single_use is None else single_use),
            None, None, None, None, 0, "{}", json.dumps([n.model_dump() for n in self.config.notifiers]),
            run or "", json.dumps(parameters, sort_keys=True), None,
        )
        with self._db.tx() as cur:
            self._expire(cur)
            denied = self._select(cur, "fingerprint = ? AND status = 'denied' AND expires_at > ? "
                                       "ORDER BY decided_at DESC", (fp, _ts(now)))
            if denied:  # a denial stands until it expires: asking again must not re-page the approvers
                d = denied[0]
                raise AccessDenied([(f"approval request {d.id} for this same statement, plan, parameter values, "
                                    f"identity, purpose and source was denied by {d.approver} (see `lineage-guard approvals show "
                                    f"{d.id}`); the denial stands until {_ts(d.expires_at)}: change the request "
                                    "or talk to the approver")])
            created = cur.execute(
                f"INSERT INTO {TABLE} ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))}) "
                "ON CONFLICT (fingerprint, run_binding) WHERE status = 'pending' DO NOTHING", values)
            req = self._select(cur, "fingerprint = ? AND run_binding = ? AND status = 'pending'", (fp, run or ""))[0]
        if created and req.notifiers:
            req = notify(self, req)
        return req

    def _decide(self, request_id: str, approver: str, note: str | None, status: str) -> ApprovalRequest:
        if not approver or not normalize_principal(approver):
            raise ConfigError("an approver name is required (--as NAME)")
        with self._db.tx() as cur:
            self._expire(cur)
            found = self._select(cur, "id = ?", (request_id,))
            if not found:
                raise ApprovalError(f"no approval request {request_id!r}; list them with "
                                    "`lineage-guard approvals list`")
            req = found[0]
            if _same_person(req.requester, approver):
                raise ApprovalError(f"{approver!r} asked for request {request_id} and cannot decide it; "
                                    "another person must approve or deny it")
            if req.status != "pending":
                hint = "; the requester must ask again" if req.status == "expired" else ""
                raise ApprovalError(f"request {request_id} is already {req.status}"
                                    f"{' by ' + req.approver if req.approver else ''}{hint}")
            won = cur.execute(f"UPDATE {TABLE} SET status = ?, approver = ?, note = ?, decided_at = ? "
                              "WHERE id = ? AND status = 'pending'",
                              (status, approver.strip(), note, _ts(_now()), request_id))
            decided = self._select(cur, "id = ?", (request_id,))[0]
            if not won:  # another approver decided it between our read and our update
                raise ApprovalError(f"request {request_id} is already {decided.status} by {decided.approver}")
            return decided

    def approve(self, request_id: str, approver: str, note: str | None = None) -> ApprovalRequest:
        """Approve a pending request. The requester cannot approve their own request."""
        return self._decide(request_id, approver, note, "approved")

    def deny(self, request_id: str, approver: str, note: str | None = None) -> ApprovalRequest:
        """Deny a pending request. The requester cannot deny their own request either."""
        return self._decide(request_id, approver, note, "denied")

    def claim(self, fingerprint: str, run: str | None = None) -> ApprovalRequest | None:
        """Take a valid approval for exactly this fingerprint (and this run, if it was bound to one);
        None if there is none. Call `settle` once the run did the work, or failed before it.

        A single-use approval is claimed by exactly one caller, even under concurrency: the
        conditional UPDATE is the arbiter, not the read before it. A claim never settled (the
        process was killed) keeps it: the run may have done the work, so the requester asks again.
        """
        with self._db.tx() as cur:
            self._expire(cur)
            found = self._select(cur, "fingerprint = ? AND status = 'approved' AND (run_binding = '' OR run_binding = ?) "
                                      "ORDER BY decided_at", (fingerprint, run or ""))
            for req in found:
                if not req.single_use:
                    return req
                won = cur.execute(f"UPDATE {TABLE} SET claimed_by = ? WHERE id = ? AND status = 'approved' "
                                  "AND claimed_by IS NULL", (run or "-", req.id))
                if won:
                    return self._select(cur, "id = ?", (req.id,))[0]
        return None

    def settle(self, request_id: str, *, done: bool) -> ApprovalRequest:
        """After a claim: `done` uses the approval up (single-use) or counts a use; otherwise a
        single-use approval is handed back for the next attempt."""
        now = _ts(_now())
        with self._db.tx() as cur:
            if done:
                cur.execute(f"UPDATE {TABLE} SET status = CASE WHEN single_use = 1 THEN 'used' ELSE status END, "
                            "used_at = ?, uses = uses + 1, claimed_by = NULL WHERE id = ?", (now, request_id))
            else:
                cur.execute(f"UPDATE {TABLE} SET claimed_by = NULL WHERE id = ? AND status = 'approved'",
                            (request_id,))
            found = self._select(cur, "id = ?", (request_id,))
        if not found:
            raise ApprovalError(f"no approval request {request_id!r}")
        return found[0]

    def consume(self, fingerprint: str, run: str | None = None) -> ApprovalRequest | None:
        """Claim and use up at once (for a caller that does the work in the same step)."""
        claimed = self.claim(fingerprint, run)
        return None if claimed is None else self.settle(claimed.id, done=True)

    def wait(self, request_id: str, timeout_s: float, poll_s: float = 2.0) -> ApprovalRequest:
        """Block until the request is decided or expired, or `timeout_s` passes; return it as it stands."""
        deadline = time.monotonic() + max(timeout_s, 0)
        while True:
            req = self.get(request_id)
            remaining = deadline - time.monotonic()
            if req.status != "pending" or remaining <= 0:
                return req
            time.sleep(min(max(poll_s, 0.01), remaining))

    def record_notify(self, request_id: str, status: Mapping[str, str]) -> ApprovalRequest:
        """Merge notifier outcomes into the request's `notify_status`."""
        with self._db.tx() as cur:
            found = self._select(cur, "id = ?", (request_id,))
            if not found:
                raise ApprovalError(f"no approval request {request_id!r}")
            merged = {**found[0].notify_status, **status}
            cur.execute(f"UPDATE {TABLE} SET notify_status = ? WHERE id = ?",
                        (json.dumps(merged, sort_keys=True), request_id))
            return self._select(cur, "id = ?", (request_id,))[0]
