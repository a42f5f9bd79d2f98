"""Bounded, read-only samples of PostgreSQL tables for detection.

Every read runs in a `READ ONLY` transaction with a statement timeout and is
bounded: `TABLESAMPLE SYSTEM (p) ... LIMIT n` on tables big enough for the
estimate to matter, a plain `LIMIT n` otherwise (LIMIT stops the scan; never a
full-table read). Errors come back as `SourceError` with the SQLSTATE and what
to check, never the server's text (it can carry values).

Example:
    >>> with read_only("postgresql://postgres@127.0.0.1/app") as conn:   # doctest: +SKIP
    ...     cols = table_columns(conn, [TableRef("public", "customers")])
    ...     sample = sample_table(conn, TableRef("public", "customers"), cols[TableRef("public", "customers")].columns)
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from dataclasses import dataclass
from typing import Any, Protocol

import pyarrow as pa

from ..errors import ConfigError, SourceError
from ..sql.model import TableRef

# Types sampled as themselves (the date profile needs dates); the rest are read as text.
_NATIVE = ("date", "timestamp without time zone", "timestamp with time zone")
# Types whose values say nothing to the detectors (or are too big to pull): classified by name and type only.
_NOT_SAMPLED_PREFIXES = ("boolean", "bytea", "json", "jsonb", "xml", "tsvector", "uuid", "oid", "money")


@dataclass(frozen=True)
class TableInfo:
    """A relation's columns `(name, postgres type)` in order, its kind and row estimate, and a schema version."""

    table: TableRef
    columns: tuple[tuple[str, str], ...]
    relkind: str
    reltuples: float
    version: str


def _sanitized(exc: Exception, doing: str) -> SourceError:
    sqlstate = getattr(exc, "sqlstate", None)
    hints = {
        "42501": "the role needs SELECT on it",
        "57014": "the statement timeout was reached; lower sample_rows or raise the timeout",
        "25006": "the source refused a read-only transaction",
        "42P01": "the table does not exist",
    }
    hint = hints.get(sqlstate or "", "check the source URL, the role's privileges and the server's log")
    return SourceError(f"{doing} failed ({type(exc).__name__}, SQLSTATE {sqlstate or 'unknown'}): {hint}", sqlstate)


@contextmanager
def read_only(url: str, statement_timeout_ms: int = 10_000) -> Iterator[object]:
    """A psycopg connection inside `BEGIN READ ONLY` with a statement timeout; always rolled back."""
    import psycopg

    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        raise _sanitized(exc, "connecting to the source") from None
    except (ValueError, TypeError):  # a malformed URL: its text can echo the password, so say only what to fix
        raise ConfigError("the source URL is not a valid PostgreSQL connection URL (postgresql://user@host:port/db)") from None
    try:
        conn.execute("BEGIN READ ONLY")
        # Cleared so the fingerprint below reads the statistics as they are now (they are cached per transaction).
        conn.execute("SELECT set_config('statement_timeout', %s, true), pg_stat_clear_snapshot()",
                     (str(int(statement_timeout_ms)),))
        yield conn
    except psycopg.Error as exc:
        raise _sanitized(exc, "reading the source for detection") from None
    finally:
        with suppress(psycopg.Error):  # the connection may already be gone; closing it is what matters
            conn.execute("ROLLBACK")
        conn.close()


class Reads(Protocol):
    """Where detection reads: `lookup()` for columns and fingerprints, `sampling()` for the samples.

    The order is what keeps a cached verdict safe: the fingerprint is read before (or in the same
    transaction as, on a READ COMMITTED snapshot per statement) the sample, so a verdict is never stored
    under a fingerprint newer than the rows it was drawn from; a write in between only costs a rescan.
    """

    def lookup(self) -> AbstractContextManager[Any]: ...
    def sampling(self) -> AbstractContextManager[Any]: ...


class _OneShot:
    """`read_only(url)`: one connection, one read-only transaction for both."""

    def __init__(self, conn: Any):
        self._conn = conn

    def lookup(self) -> AbstractContextManager[Any]:
        return nullcontext(self._conn)

    sampling = lookup


class _OnMeta:
    """A session's `MetaConnection`: the lookup is one statement (its own transaction), sampling a transaction."""

    def __init__(self, meta: Any, statement_timeout_ms: int):
        self._meta, self._timeout_ms = meta, statement_timeout_ms

    def lookup(self) -> AbstractContextManager[Any]:
        return self._meta.statement()

    def sampling(self) -> AbstractContextManager[Any]:
        return self._meta.transaction(self._timeout_ms)


@contextmanager
def reads(url: str, meta: Any = None, statement_timeout_ms: int = 10_000) -> Iterator[Reads]:
    """`Reads` on the session's `meta` connection (no new connection) or, without one, a connection of its own."""
    if meta is None:
        with read_only(url, statement_timeout_ms) as conn:
            yield _OneShot(conn)
        return
    import psycopg

    try:
        yield _OnMeta(meta, statement_timeout_ms)
    except psycopg.Error as exc:
        raise _sanitized(exc, "reading the source for detection") from None


def _version(oid: int, columns: Sequence[tuple[str, str]], data: str = "") -> str:
    """Changes when the relation is recreated, a column is added, dropped, renamed or retyped, or its data changes.

    A verdict is drawn from the rows sampled: "no sensitive value here" about a table read while
    it was empty (or held only clean rows) says nothing about the rows written after it, so the
    data fingerprint (`DATA_VERSION_SQL`) is part of the version and a write makes it stale.
    """
    return hashlib.sha256(json.dumps([oid, list(columns), data]).encode()).hexdigest()[:32]


# Per relation: a fingerprint of the data under it, from what PostgreSQL keeps without a scan. For a
# table (and each partition, and every table a view reads, recursively): its file node (TRUNCATE,
# VACUUM FULL, CLUSTER give a new one), its main fork's size (exact: an empty table has no page, its
# first row adds one) and the cumulative inserted / updated / deleted tuple counters. The counters are
# flushed by each backend as it goes idle, at most once a second (PostgreSQL's PGSTAT_MIN_INTERVAL),
# so a burst of writes can show late, by up to PGSTAT_IDLE_INTERVAL (10 s); a spurious change (a
# stats reset, a VACUUM FULL) only costs a rescan.
# The relations under each root: itself, the partitions of a partitioned table, and every relation a
# view's rewrite rule depends on, recursively.
_UNDER_CTE = """
under(root, rel) AS (
    SELECT o, o FROM roots AS r(o)
    UNION
    SELECT u.root, below.rel FROM under u CROSS JOIN LATERAL (
        SELECT d.refobjid FROM pg_rewrite w
          JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = w.oid
                          AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> u.rel
         WHERE w.ev_class = u.rel
        UNION ALL
        SELECT h.inhrelid FROM pg_inherits h WHERE h.inhparent = u.rel
    ) AS below(rel)
), fingerprint(root, fp) AS (
    SELECT u.root, string_agg(concat_ws('.', u.rel, pg_relation_filenode(u.rel), pg_relation_size(u.rel),
                                        pg_stat_get_tuples_inserted(u.rel), pg_stat_get_tuples_updated(u.rel),
                                        pg_stat_get_tuples_deleted(u.rel)), ',' ORDER BY u.rel)
      FROM under u WHERE (SELECT c.relkind FROM pg_class c WHERE c.oid = u.rel) IN ('r', 'm', 'p', 'f')
     GROUP BY u.root
)"""

DATA_VERSION_SQL = ("WITH RECURSIVE roots AS (SELECT unnest(%s::oid[])), " + _UNDER_CTE
                    + "\nSELECT root, fp FROM fingerprint")

# `table_columns` in one round trip: each wanted relation's columns with its data fingerprint. Names
# and oids are looked up by index (pg_class by (relname, relnamespace) and by oid), not by a scan of
# pg_class per plan: 1.4-1.5 -> 0.9-1.1 ms server time with 370 relations (EXPLAIN ANALYZE, median
# of 40). The
# statistics must be read in a transaction that has not read them before (PostgreSQL caches them for
# the rest of a transaction): a one-statement transaction, or `read_only`'s and
# `MetaConnection.transaction`'s, whose first statement clears the snapshot.
_COLUMNS_SQL = """WITH RECURSIVE wanted AS (
    SELECT c.oid, n.nspname, c.relname, c.relkind, c.reltuples
      FROM unnest(%s::text[], %s::text[]) AS t(s, r)
      JOIN pg_namespace n ON n.nspname = t.s JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = t.r
     WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
), roots AS (SELECT oid FROM wanted), """ + _UNDER_CTE + """
SELECT w.nspname, w.relname, w.oid, w.relkind, w.reltuples, a.attname, format_type(a.atttypid, a.atttypmod), f.fp
  FROM wanted w JOIN pg_attribute a ON a.attrelid = w.oid AND a.attnum > 0 AND NOT a.attisdropped
  LEFT JOIN fingerprint f ON f.root = w.oid
 ORDER BY w.nspname, w.relname, a.attnum"""


def data_versions(conn, oids: Sequence[int]) -> dict[int, str]:
    """`DATA_VERSION_SQL` for each relation oid (a view: the tables it reads)."""
    if not oids:
        return {}
    return {int(root): str(fp) for root, fp in conn.execute(DATA_VERSION_SQL, (list(oids),)).fetchall()}


def list_tables(conn) -> list[TableRef]:
    """Every ordinary or partitioned table, view and materialized view outside the system schemas."""
    rows = conn.execute(
        """SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE c.relkind IN ('r', 'p', 'v', 'm') AND NOT c.relispartition
             AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%%'
           ORDER BY 1, 2"""
    ).fetchall()
    return [TableRef(s, t) for s, t in rows]


def table_columns(conn, tables: Sequence[TableRef]) -> dict[TableRef, TableInfo]:
    """Columns, kind, row estimate and schema version of each table that exists (missing ones left out)."""
    if not tables:
        return {}
    tables = list(dict.fromkeys(tables))  # once each: a name asked twice would join its columns twice
    rows = conn.execute(_COLUMNS_SQL, ([t.schema for t in tables], [t.table for t in tables])).fetchall()
    grouped: dict[TableRef, list] = {}
    meta: dict[TableRef, tuple[int, str, float, str | None]] = {}
    for schema, table, oid, relkind, reltuples, col, typ, fp in rows:
        ref = TableRef(schema, table)
        grouped.setdefault(ref, []).append((col, typ))
        meta[ref] = (oid, relkind, float(reltuples), fp)
    return {
        ref: TableInfo(ref, tuple(cols), meta[ref][1], meta[ref][2],
                       _version(meta[ref][0], cols, _fingerprint(meta[ref][3])))
        for ref, cols in grouped.items()
    }


def _fingerprint(fp: str | None) -> str:
    """The data fingerprint for a version; none read (a view over no table, only functions): one never seen again.

    Fail closed: a relation whose data cannot be fingerprinted is rescanned on every use rather than
    trusted from the cache (a view over a function reads tables the walk cannot see).
    """
    return str(fp) if fp is not None else "unknown:" + secrets.token_hex(16)


def _select_list(columns: Sequence[tuple[str, str]]):
    from psycopg import sql

    items = []
    for name, typ in columns:
        if typ.startswith(_NOT_SAMPLED_PREFIXES):
            items.append(sql.SQL("NULL::text AS {}").format(sql.Identifier(name)))
        elif typ in _NATIVE:  # +/-infinity has no Python date: sample it as NULL rather than fail the scan
            items.append(sql.SQL("CASE WHEN isfinite({0}) THEN {0} END AS {0}").format(sql.Identifier(name)))
        else:
            items.append(sql.SQL("{}::text AS {}").format(sql.Identifier(name), sql.Identifier(name)))
    return sql.SQL(", ").join(items)


def sample_queries(info: TableInfo, sample_rows: int) -> list:
    """The bounded queries `sample_table` tries in order: TABLESAMPLE + LIMIT for big tables, then LIMIT."""
    from psycopg import sql

    target = sql.SQL("{}.{}").format(sql.Identifier(info.table.schema), sql.Identifier(info.table.table))
    select = _select_list(info.columns)
    queries = []
    # TABLESAMPLE picks whole pages: only worth it when the table is much bigger than the sample.
    if info.relkind in ("r", "m", "p") and info.reltuples > 4 * sample_rows:
        percent = min(100.0, max(0.001, 100.0 * 3 * sample_rows / info.reltuples))
        queries.append(sql.SQL("SELECT {} FROM {} TABLESAMPLE SYSTEM ({}) LIMIT {}").format(
            select, target, sql.Literal(round(percent, 6)), sql.Literal(sample_rows)))
    queries.append(sql.SQL("SELECT {} FROM {} LIMIT {}").format(select, target, sql.Literal(sample_rows)))
    return queries


def sample_table(conn, info: TableInfo, sample_rows: int = 1000) -> pa.Table:
    """Up to `sample_rows` rows of the table's columns (text, or dates for date/timestamp columns)."""
    if sample_rows < 1:
        raise ConfigError("sample_rows must be at least 1")
    queries = sample_queries(info, sample_rows)
    rows: list = conn.execute(queries[0]).fetchall()
    if len(queries) > 1 and len(rows) < min(sample_rows, 50):  # a stale row estimate gave too few pages
        rows = conn.execute(queries[1]).fetchall()
    columns = list(zip(*rows)) if rows else [() for _ in info.columns]
    arrays = {}
    for (name, typ), values in zip(info.columns, columns):
        try:
            arrays[name] = pa.array(list(values), type=None if typ in _NATIVE else pa.string())
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):  # e.g. infinity dates: keep them as text
            arrays[name] = pa.array([None if v is None else str(v) for v in values], pa.string())
    return pa.table(arrays) if arrays else pa.table({})
