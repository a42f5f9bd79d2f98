"""The live catalog and detected labels, cached per schema version for the whole process.

Loading the catalog (every relation's columns, view definitions, keys, functions) costs a
connection and two large catalog queries; a plan needs it every call, and the service makes a
session per request. So the loaded `Catalog` is kept per (URL, search path) together with the
*schema version* it was read at, and reused while that version holds.

The schema version is one cheap query (`SCHEMA_VERSION_SQL`): an md5 over the oid and `xmin`
of every user-schema row in pg_namespace, pg_class, pg_attribute, pg_rewrite (view bodies),
pg_index, pg_constraint, pg_trigger, pg_inherits and pg_proc, and the pg_catalog operators
whose function is LEAKPROOF (which caller quals may be pushed into a row filter, sql/pushdown.py:
a superuser's ALTER FUNCTION ... [NOT] LEAKPROOF changes that set). Any DDL that changes what the catalog holds
writes a new version of one of those rows (ALTER TABLE ADD/DROP/ALTER COLUMN, RENAME, CREATE OR
REPLACE VIEW, CREATE FUNCTION, new index or key), and a new row version has a new `xmin`, so
the hash changes. Why this and not an event trigger: a trigger needs superuser to install and
a table to write to, and a read-only service credential has neither; `pg_stat` counters are
not transactional and reset. A spurious change (a VACUUM FREEZE, a no-op ALTER) only causes a
reload, never a stale answer. The version is read *before* the catalog is loaded, so a DDL
racing the load leaves an older version next to a newer catalog: the next check reloads.

Detected labels are NOT kept here per schema version: a verdict is about the rows sampled, and
rows change without DDL (a table read while empty, then filled, stayed "clean"). The detection
catalog keys each table's verdict by its schema and data version (`classify/sampling`).
`labels` stays for callers that memoise something truly schema-bound.

    >>> url = "postgresql://127.0.0.1/app"
    >>> CACHE.catalog(url, ("public",), CACHE.version(url)).relation("customers")  # doctest: +SKIP
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any

from .catalog import Catalog, read_catalog

SCHEMA_VERSION_SQL = """
WITH user_ns AS (
    SELECT oid, xmin FROM pg_namespace
     WHERE nspname NOT IN ('pg_catalog', 'information_schema') AND nspname NOT LIKE 'pg\\_%'
), rels AS (
    SELECT c.oid, c.xmin FROM pg_class c JOIN user_ns n ON n.oid = c.relnamespace
)
SELECT md5(string_agg(part, ',' ORDER BY part)) FROM (
    SELECT 'n' || oid || ':' || xmin FROM user_ns
    UNION ALL SELECT 'c' || oid || ':' || xmin FROM rels
    UNION ALL SELECT 'a' || a.attrelid || '.' || a.attnum || ':' || a.xmin
                FROM pg_attribute a JOIN rels r ON r.oid = a.attrelid WHERE a.attnum > 0
    UNION ALL SELECT 'r' || w.oid || ':' || w.xmin FROM pg_rewrite w JOIN rels r ON r.oid = w.ev_class
    UNION ALL SELECT 'i' || i.indexrelid || ':' || i.xmin FROM pg_index i JOIN rels r ON r.oid = i.indrelid
    UNION ALL SELECT 'k' || k.oid || ':' || k.xmin FROM pg_constraint k JOIN rels r ON r.oid = k.conrelid
    UNION ALL SELECT 't' || t.oid || ':' || t.xmin FROM pg_trigger t JOIN rels r ON r.oid = t.tgrelid
    UNION ALL SELECT 'h' || h.inhrelid || '.' || h.inhparent || ':' || h.xmin
                FROM pg_inherits h JOIN rels r ON r.oid = h.inhrelid
    UNION ALL SELECT 'p' || p.oid || ':' || p.xmin FROM pg_proc p JOIN user_ns n ON n.oid = p.pronamespace
    UNION ALL SELECT 'l' || md5(string_agg(o.oid || ':' || o.oprcode::oid, ',' ORDER BY o.oid))
                FROM pg_operator o JOIN pg_proc p ON p.oid = o.oprcode
               WHERE p.proleakproof AND o.oprnamespace = 'pg_catalog'::regnamespace
) AS parts(part)
"""


def schema_version(url: str, meta: Any = None) -> str:
    """The current schema version of the database at `url` (read-only, one short transaction).

    `meta`: a session's `MetaConnection` to ask on (one statement, no new connection)."""
    [rows] = read_catalog(url, SCHEMA_VERSION_SQL, meta=meta)
    row = rows[0] if rows else None
    return str(row[0] if row else "")


class CatalogCache:
    """Catalogs and detected labels per (URL, search path), valid while the schema version holds.

    A caller asks `version(url)` once per plan and passes it to `catalog` and `labels`, so a
    cached plan costs one short query. Thread-safe: the service plans on many threads.
    """

    def __init__(self, version_of: Callable[..., str] = schema_version):
        self._version_of = version_of
        self._lock = threading.Lock()
        self._catalogs: dict[tuple[str, tuple[str, ...]], tuple[str, Catalog]] = {}
        self._labels: dict[tuple[str, Hashable], tuple[str, Any]] = {}
        self.loads = 0  # how many times a catalog was (re)loaded: what the benchmark and tests read

    def version(self, url: str, meta: Any = None) -> str:
        """The schema version of `url` now (one query; on `meta`, a session's connection, if given)."""
        return self._version_of(url) if meta is None else self._version_of(url, meta)

    def catalog(self, url: str, search_path: tuple[str, ...], version: str, meta: Any = None) -> Catalog:
        """The catalog read at `version` (from `version(url)`): cached, or loaded once (on `meta` if given) and kept."""
        key = (url, tuple(search_path))
        with self._lock:
            hit = self._catalogs.get(key)
        if hit is not None and hit[0] == version:
            return hit[1]
        loaded = Catalog.from_postgres(url, search_path=search_path, meta=meta)
        with self._lock:
            self._catalogs[key] = (version, loaded)
            self.loads += 1
        return loaded

    def labels(self, url: str, key: Hashable, version: str, compute: Callable[[], Any]) -> Any:
        """`compute()` memoised under `key` for `url` at `version` (detection results)."""
        with self._lock:
            hit = self._labels.get((url, key))
        if hit is not None and hit[0] == version:
            return hit[1]
        value = compute()
        with self._lock:
            self._labels[(url, key)] = (version, value)
        return value

    def clear(self) -> None:
        """Forget everything (tests; a process that knows the schema changed)."""
        with self._lock:
            self._catalogs.clear()
            self._labels.clear()


# One per process: the service's per-request sessions and a task's repeated calls share it.
CACHE = CatalogCache()
