"""Turn PostgreSQL/ADBC failures into sanitized `SourceError`s.

The server's own text is never forwarded: it can quote the offending value
(`invalid input syntax for type integer: "931-38-3286"`). What survives is the
SQLSTATE, its condition name, a sentence we wrote and what to fix. Connection
failures are classified from libpq's text, which is then dropped, and described
with the parts of the URL that are safe to show (never the password).

Example:
    >>> err = sqlstate_error("22P02")
    >>> str(err).startswith("PostgreSQL error 22P02 invalid_text_representation")
    True
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

from ..errors import LineageGuardError, SourceError

# Condition names for the classes (first two characters) of SQLSTATE, PostgreSQL appendix A.
_CLASSES: dict[str, tuple[str, str]] = {
    "08": ("connection_exception", "the connection to the server failed; check that the server is up and retry"),
    "0A": ("feature_not_supported", "the statement uses a feature the server does not support"),
    "21": ("cardinality_violation", "a subquery returned more rows than the expression allows"),
    "22": ("data_exception", ("a value could not be converted or is out of range; check the casts, literals "
           "and functions applied to columns in the query")),
    "23": ("integrity_constraint_violation", "a write broke a constraint; check the rows being written"),
    "25": ("invalid_transaction_state", ("the statement is not allowed in this transaction; reads run in a "
           "read-only transaction, writes must go through the session's write path")),
    "28": ("invalid_authorization_specification", ("the server refused the credentials; check the user and "
           "password of the connection")),
    "3D": ("invalid_catalog_name", "the database does not exist; check the database name in the URL"),
    "3F": ("invalid_schema_name", "a schema in the query does not exist; check the schema names"),
    "40": ("transaction_rollback", ("the server rolled the transaction back (serialization failure or "
           "deadlock); retry the run")),
    "42": ("syntax_error_or_access_rule_violation", ("the query is invalid or refers to something that does "
           "not exist or that the database role may not read; check the query against the schema")),
    "53": ("insufficient_resources", ("the server ran out of a resource (disk, memory, connections); retry "
           "later or narrow the query")),
    "54": ("program_limit_exceeded", "the statement is too complex for the server; simplify it"),
    "55": ("object_not_in_prerequisite_state", "an object the query needs is locked or unavailable; retry"),
    "57": ("operator_intervention", "the server cancelled the statement or is shutting down"),
    "58": ("system_error", "the server hit a system error; retry or ask the database administrator"),
    "XX": ("internal_error", "the server hit an internal error; ask the database administrator"),
}

# Specific conditions whose advice is more precise than their class's.
_SPECIFIC: dict[str, str] = {
    "22P02": "a text value could not be converted to the requested type; check the casts in the query",
    "22012": "the query divides by zero; guard the divisor (NULLIF(x, 0))",
    "22003": "a number is out of range for its type; cast to a wider type",
    "25006": "the read path is read-only: the statement tried to write, create an object or change the "
             "transaction mode; writes go through the session's write path after its guardrails",
    "42501": "the database role lacks a privilege the query needs; grant it or use another role",
    "42601": "the query has a syntax error; check it with `lineage-guard plan`",
    "42P01": "a table or view in the query does not exist; check its name and schema",
    "42P07": "a table or other object with that name already exists; pick another name, or for a table sink "
             "use mode='append' or mode='replace'",
    "42703": "a column in the query does not exist; check its name",
    "42883": "a function or operator in the query does not exist for these argument types; add casts",
    "57014": "the statement was cancelled, usually by the statement timeout; narrow the query or raise "
             "statement_timeout_ms",
    "55P03": "a lock could not be acquired in time; retry later",
}


def condition_name(sqlstate: str) -> str:
    """The PostgreSQL condition name of a SQLSTATE, e.g. `22P02` -> `invalid_text_representation`."""
    try:
        from psycopg import errors as pg_errors

        cls = pg_errors.lookup(sqlstate)
        name = getattr(cls, "__name__", "")
        if name and name not in ("DatabaseError", "Error"):
            return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
    except (ImportError, KeyError):
        pass
    return _CLASSES.get(sqlstate[:2], ("unknown_condition", ""))[0]


def sqlstate_error(sqlstate: str, *, timeout_ms: int | None = None, doing: str = "running the query") -> SourceError:
    """A `SourceError` for a server error, described only by its SQLSTATE."""
    name = condition_name(sqlstate)
    advice = _SPECIFIC.get(sqlstate) or _CLASSES.get(sqlstate[:2], ("", "check the query"))[1]
    if sqlstate == "57014" and timeout_ms is not None:
        advice = (f"the statement ran longer than the statement timeout ({timeout_ms} ms); narrow the query "
                  "or raise statement_timeout_ms")
    return SourceError(
        f"PostgreSQL error {sqlstate} {name} while {doing}: {advice}. "
        "(The server's message is withheld because it can quote data values.)",
        sqlstate=sqlstate,
    )


# libpq connection failures carry no SQLSTATE; classify the text, then drop it.
_CONNECT_PATTERNS: list[tuple[str, str, str | None]] = [
    (r"password authentication failed|authentication failed", ("authentication failed; check the user and "
     "password"), "28P01"),
    (r"no password supplied|password is required", "the server wants a password and none was given", "28000"),
    (r"no pg_hba\.conf entry", "the server's pg_hba.conf does not allow this client/user/database", "28000"),
    (r"database \".*\" does not exist", "the database does not exist; check the database name", "3D000"),
    (r"role \".*\" does not exist", "the user (role) does not exist; check the user name", "28000"),
    (r"connection refused", ("connection refused; is the server running and accepting TCP connections on "
     "that host and port?"), "08001"),
    (r"could not translate host name|name or service not known|nodename nor servname",
     "the host name could not be resolved; check the host", "08001"),
    (r"timeout expired|timed out", "the connection timed out; check the host, port and firewall", "08001"),
    (r"\bssl\b|certificate", "the SSL/TLS negotiation failed; check sslmode and certificates", "08001"),
    (r"too many (connections|clients)", "the server has too many connections; retry later", "53300"),
    (r"no such file or directory", "no server socket at that path; is the server running?", "08001"),
    (r"the database system is (starting up|shutting down)", ("the server is starting up or shutting down; "
     "retry shortly"), "57P03"),
]


def connect_error(raw_text: str, where: str) -> SourceError:
    """A `SourceError` for a failed connection. `where` names host, port, database and user (no password)."""
    lowered = raw_text.lower()
    for pattern, advice, state in _CONNECT_PATTERNS:
        if re.search(pattern, lowered):
            end = "" if advice.endswith("?") else "."
            return SourceError(f"could not connect to PostgreSQL ({where}): {advice}{end}", sqlstate=state)
    return SourceError(
        f"could not connect to PostgreSQL ({where}): the connection failed for a reason lineage_guard does "
        "not recognise; check the URL, the server and the network.", sqlstate="08000",
    )


def catalog_error(exc: BaseException, url: str) -> SourceError:
    """A `SourceError` for a psycopg failure while reading the catalog: which kind of failure, never its text.

    A failure to connect carries no SQLSTATE (libpq reports it as text): server down, unknown
    host, missing database, missing role, bad password, TLS and pg_hba refusals are told apart
    from that text, which is then dropped. A failure after connecting has a SQLSTATE.
    """
    from .pg_url import PgUrl

    try:
        where = PgUrl.parse(url).describe()
    except LineageGuardError:
        where = "the source URL"
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate:
        return sqlstate_error(sqlstate, doing="reading the catalog (pg_catalog)")
    return connect_error(str(exc), where)


def from_driver_error(exc: BaseException, *, timeout_ms: int | None = None,
                      doing: str = "running the query") -> SourceError:
    """Sanitize an exception raised by the ADBC driver (or pyarrow) during a statement."""
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(sqlstate, bytes):
        sqlstate = sqlstate.decode(errors="replace")
    if not sqlstate:
        # Some driver paths only carry the SQLSTATE in the diagnostic details.
        for key, value in getattr(exc, "details", None) or []:
            if key in (b"PG_DIAG_SQLSTATE", "PG_DIAG_SQLSTATE"):
                sqlstate = value.decode() if isinstance(value, bytes) else value
    if not sqlstate:
        # Errors raised while the result streams arrive through Arrow's C stream as bare text
        # (an OSError): recover the condition from the text, then drop the text.
        sqlstate = _state_from_text(str(exc))
    if sqlstate and re.fullmatch(r"[0-9A-Z]{5}", sqlstate):
        return sqlstate_error(sqlstate, timeout_ms=timeout_ms, doing=doing)
    return SourceError(
        f"the PostgreSQL driver failed ({type(exc).__name__}) while {doing}; the message is withheld because "
        "it can quote data values. Check the query and the server's log.",
    )


# PostgreSQL's (English) primary messages for the errors a streaming read commonly hits.
_TEXT_STATES: list[tuple[str, str]] = [
    (r"SQLSTATE: ([0-9A-Z]{5})", ""),
    (r"canceling statement due to statement timeout", "57014"),
    (r"canceling statement due to user request", "57014"),
    (r"canceling statement due to lock timeout", "55P03"),
    (r"invalid input syntax", "22P02"),
    (r"division by zero", "22012"),
    (r"out of range", "22003"),
    (r"value too long", "22001"),
    (r"cannot execute .* in a read-only transaction", "25006"),
    (r"could not serialize access", "40001"),
    (r"deadlock detected", "40P01"),
    (r"out of memory", "53200"),
    (r"could not (write|extend|resize)|no space left", "53100"),
    (r"terminating connection|server closed the connection|connection to server .* lost", "08006"),
    (r"permission denied", "42501"),
    (r"already exists", "42P07"),
]


def _state_from_text(text: str) -> str | None:
    for pattern, state in _TEXT_STATES:
        match = re.search(pattern, text, flags=re.IGNORECASE)
        if match:
            return state or match.group(1)
    return None


T = TypeVar("T")


def guarded(fn: Callable[[], T], to_error: Callable[[Exception], LineageGuardError]) -> T:
    """Run `fn`; turn a failure into `to_error(exc)` raised with no link to the original.

    `raise ... from None` still keeps the original in `__context__` (and tools that walk
    it would print the server's text); raising after the `except` block keeps nothing.

    Example:
        >>> guarded(lambda: 1 / 0, lambda exc: SourceError("division failed")) # doctest: +ELLIPSIS
        Traceback (most recent call last):
        lineage_guard.errors.SourceError: division failed
    """
    try:
        return fn()
    except (LineageGuardError, StopIteration):  # ours already, or the end of a stream
        raise
    except Exception as exc:  # noqa: BLE001 - every failure is sanitized the same way
        failure = to_error(exc)
    raise failure
