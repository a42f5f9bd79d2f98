"""Detected labels per source column, cached so a plan does not rescan.

`DetectionCatalog` samples tables (read-only, bounded; see `sampling`), classifies
every column and stores the result in SQLite (`catalog.sqlite` in the state
folder) keyed by source, table and a schema version (relation oid + columns and
types). A table whose version, classifier version or sample size changed is
rescanned; the others come from the cache. The cache holds labels, confidences
and evidence (counts and shares), never a sampled value, and the source is keyed
without credentials.

Policy-declared labels always win: the planner asks `labels_for` only about what
the policy leaves unclassified, or filters with `sensitive_labels`.

Example:
    >>> cat = DetectionCatalog()                                           # doctest: +SKIP
    >>> found = cat.labels_for(url, [TableRef("public", "customers")])     # doctest: +SKIP
    >>> found[ColumnRef("public", "customers", "email")].label            # doctest: +SKIP
    'email'
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from ..errors import ConfigError
from ..paths import state_file
from ..sql.model import ColumnRef, TableRef
from .classifier import Classification, classify_table
from .config import DetectionConfig, source_key
from .sampling import TableInfo, list_tables, reads, sample_table, table_columns

# Bump when detectors or scoring change: cached results from an older classifier are rescanned.
CLASSIFIER_VERSION = "2"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS detections (
    source      TEXT NOT NULL,
    schema_name TEXT NOT NULL,
    table_name  TEXT NOT NULL,
    version     TEXT NOT NULL,
    classifier  TEXT NOT NULL,
    sample_rows INTEGER NOT NULL,
    scanned_at  REAL NOT NULL,
    result      TEXT NOT NULL,
    PRIMARY KEY (source, schema_name, table_name)
)
"""


def parse_table(text: str | TableRef, default_schema: str = "public") -> TableRef:
    """`schema.table` or `table` (in `default_schema`) as a TableRef; a clear error otherwise."""
    if isinstance(text, TableRef):
        return text
    parts = str(text).strip().split(".")
    if len(parts) == 1 and parts[0]:
        return TableRef(default_schema, parts[0])
    if len(parts) == 2 and all(parts):
        return TableRef(parts[0], parts[1])
    raise ConfigError(f"table must be 'schema.table' or 'table', got {text!r}")


class DetectionCatalog:
    """Scan sources and cache what was found; see the module docstring.

    `path` defaults to `state_file("catalog.sqlite")`; `max_age_seconds` (optional) also rescans
    tables whose cached result is older than that, to catch changed data under an unchanged schema.
    """

    def __init__(self, path: str | Path | None = None, *, statement_timeout_ms: int = 10_000,
                 max_age_seconds: float | None = None):
        self.path = Path(path) if path is not None else state_file("catalog.sqlite")
        self.statement_timeout_ms = statement_timeout_ms
        self.max_age_seconds = max_age_seconds
        with self._db() as db:
            db.execute(_SCHEMA)

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        """A connection whose work commits as one transaction on success and rolls back on error."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=30)
        try:
            with db:
                yield db
        finally:
            db.close()

    # -- public API ------------------------------------------------------------------------

    def scan(self, url: str, tables: Iterable[str | TableRef] | None = None, sample_rows: int = 1000, *,
             refresh: bool = False) -> dict[ColumnRef, Classification]:
        """Classify every column of `tables` (default: every table and view of the source).

        Cached results with the current schema version are reused unless `refresh`. A named table
        that does not exist is a ConfigError.
        """
        refs = None if tables is None else [parse_table(t) for t in tables]
        return self._resolve(url, refs, sample_rows, refresh=refresh, missing="error")

    def labels_for(self, url: str, tables: Iterable[str | TableRef], sample_rows: int = 1000, *,
                   meta: Any = None) -> dict[ColumnRef, Classification]:
        """For the planner: labels of the tables' columns, scanning only what is missing or stale.

        Tables the source does not have (CTE names, functions) are skipped. `meta` (a session's
        `sources.meta_conn.MetaConnection`) reads on that connection instead of opening one.
        """
        refs = [parse_table(t) for t in tables]
        if not refs:
            return {}
        return self._resolve(url, refs, sample_rows, refresh=False, missing="skip", meta=meta)

    def sensitive_labels(self, url: str, tables: Iterable[str | TableRef],
                         config: DetectionConfig | None = None, *, meta: Any = None) -> dict[ColumnRef, str]:
        """Only the columns detection calls sensitive at `config.threshold`; empty when detection is off here."""
        config = config or DetectionConfig()
        if not config.applies_to(url):
            return {}
        found = self.labels_for(url, tables, config.sample_rows, meta=meta)
        return {col: c.label for col, c in found.items() if c.is_sensitive(config.threshold)}

    def cached(self, url: str) -> dict[ColumnRef, Classification]:
        """What the cache holds for a source, without connecting to it."""
        with self._db() as db:
            rows = db.execute("SELECT schema_name, table_name, result FROM detections WHERE source = ?",
                              (source_key(url),)).fetchall()
        return {k: v for s, t, r in rows for k, v in _decode(TableRef(s, t), r).items()}

    def forget(self, url: str | None = None) -> int:
        """Drop cached results for one source (or all); returns how many tables were dropped."""
        with self._db() as db:
            if url is None:
                return db.execute("DELETE FROM detections").rowcount
            return db.execute("DELETE FROM detections WHERE source = ?", (source_key(url),)).rowcount

    # -- internals -------------------------------------------------------------------------

    def _fresh(self, source: str, infos: Sequence[TableInfo], sample_rows: int) -> dict[TableRef, dict[ColumnRef, Classification]]:
        out: dict[TableRef, dict[ColumnRef, Classification]] = {}
        now = time.time()
        with self._db() as db:
            for info in infos:
                row = db.execute(
                    "SELECT version, classifier, sample_rows, scanned_at, result FROM detections "
                    "WHERE source = ? AND schema_name = ? AND table_name = ?",
                    (source, info.table.schema, info.table.table),
                ).fetchone()
                if row is None:
                    continue
                version, classifier, rows, scanned_at, result = row
                stale = (
                    version != info.version or classifier != CLASSIFIER_VERSION or rows < sample_rows
                    or (self.max_age_seconds is not None and now - scanned_at > self.max_age_seconds)
                )
                if not stale:
                    out[info.table] = _decode(info.table, result)
        return out

    def _store(self, source: str, info: TableInfo, sample_rows: int, found: dict[str, Classification]) -> None:
        result = json.dumps({col: c.to_json() for col, c in found.items()}, sort_keys=True)
        with self._db() as db:  # one statement, one transaction: a reader never sees half a table
            db.execute(
                "INSERT OR REPLACE INTO detections VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (source, info.table.schema, info.table.table, info.version, CLASSIFIER_VERSION, sample_rows,
                 time.time(), result),
            )

    def _resolve(self, url: str, refs: list[TableRef] | None, sample_rows: int, *, refresh: bool,
                 missing: Literal["error", "skip"], meta: Any = None) -> dict[ColumnRef, Classification]:
        if sample_rows < 1:
            raise ConfigError("sample_rows must be at least 1")
        source = source_key(url)
        out: dict[ColumnRef, Classification] = {}
        with reads(url, meta, self.statement_timeout_ms) as where:
            with where.lookup() as conn:
                refs = list_tables(conn) if refs is None else refs
                infos = table_columns(conn, refs)
            absent = [str(r) for r in refs if r not in infos]
            if absent and missing == "error":
                raise ConfigError(f"table(s) not found in the source: {', '.join(absent)} (use schema.table)")
            ordered = [infos[r] for r in dict.fromkeys(refs) if r in infos]
            cached = {} if refresh else self._fresh(source, ordered, sample_rows)
            stale = [info for info in ordered if info.table not in cached]
            for info in ordered:
                out.update(cached.get(info.table, {}))
            if not stale:
                return out
            with where.sampling() as conn:
                for info in stale:
                    sample = sample_table(conn, info, sample_rows)
                    types = dict(info.columns)
                    found = classify_table(sample, types, table_name=info.table.table)
                    self._store(source, info, sample_rows, found)
                    out.update({ColumnRef(info.table.schema, info.table.table, col): c for col, c in found.items()})
        return out


def _decode(table: TableRef, result: str) -> dict[ColumnRef, Classification]:
    data = json.loads(result)
    return {ColumnRef(table.schema, table.table, col): Classification.from_json(c) for col, c in data.items()}
