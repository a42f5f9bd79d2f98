"""What a caller may know exists: the tables GetTables lists for it, and nothing about the others.

GetTables lists a table of any schema when the plan of `SELECT * FROM schema.table`, made for the
caller's identity and purpose, is not denied (service/listing.py). A statement that names any other table (hidden from
this caller, or absent) and is denied gets one answer, the same for both, with no columns: the plan
action and the refusal would otherwise say which columns a hidden table has, how they are
classified, and why the caller may not read them (an existing and a made-up column name would get
different answers). The ledger keeps the real reasons for the auditors.

Example:
    >>> v = Visibility("public")
    >>> v.named_tables("SELECT a.x FROM t AS a JOIN s.u ON true", "public")
    [('public', 't'), ('s', 'u')]
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

from ..errors import AccessDenied


class _Planner(Protocol):
    """The part of a `GovernedSession` this needs."""

    identity: Any
    purpose: str

    @property
    def catalog(self) -> Any: ...

    def plan(self, sql: str) -> Any: ...


def concealed_reason(principal: str, purpose: str) -> str:
    return (f"the statement names a table that does not exist or that {principal} may not read for {purpose}; "
            "GetTables lists the tables it may read")


class Visibility:
    """GetTables' rule per caller, cached per catalog (a new catalog object: a new schema version)."""

    def __init__(self, schema: str):
        self.schema = schema
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, str], tuple[int, dict[tuple[str, str], bool]]] = {}

    def visible(self, session: _Planner, schema: str, name: str) -> bool:
        catalog = session.catalog
        key = (session.identity.principal, session.purpose)
        with self._lock:
            version, known = self._seen.get(key, (None, {}))
            if version != id(catalog):
                known = {}
                self._seen[key] = (id(catalog), known)
            if (schema, name) in known:
                return known[(schema, name)]
        if catalog.relation(name, schema) is None:
            answer = False
        else:
            quoted = '"' + schema.replace('"', '""') + '"."' + name.replace('"', '""') + '"'
            answer = session.plan(f"SELECT * FROM {quoted}").action != "deny"
        with self._lock:
            known[(schema, name)] = answer
        return answer

    @staticmethod
    def named_tables(sql: str, default_schema: str) -> list[tuple[str, str]]:
        """The (schema, table) names a statement mentions (not its CTE names); [] if it does not parse."""
        import sqlglot
        from sqlglot import exp
        from sqlglot.optimizer.normalize_identifiers import normalize_identifiers

        try:
            trees = [normalize_identifiers(t, dialect="postgres") for t in sqlglot.parse(sql, dialect="postgres") if t]
        except Exception:  # noqa: BLE001 - what does not parse names nothing; its own denial says so
            return []
        names: list[tuple[str, str]] = []
        for tree in trees:
            ctes = {c.alias_or_name for c in tree.find_all(exp.CTE)}
            for table in tree.find_all(exp.Table):
                if not isinstance(table.this, exp.Identifier):
                    continue   # a function in FROM
                name, schema = table.name, table.db or None
                if schema is None and name in ctes:
                    continue
                pair = (schema or default_schema, name)
                if pair not in names:
                    names.append(pair)
        return names

    def hides_any(self, session: _Planner, sql: str) -> bool:
        return any(not self.visible(session, schema, name) for schema, name in self.named_tables(sql, self.schema))

    def conceal_plan(self, session: _Planner, sql: str, doc: dict) -> dict:
        """A denied plan's JSON, with nothing about tables hidden from the caller."""
        if doc.get("action") != "deny" or not self.hides_any(session, sql):
            return doc
        return {**doc, "reasons": [concealed_reason(session.identity.principal, session.purpose)], "columns": []}

    def conceal_denial(self, session: _Planner, sql: str, denied: AccessDenied) -> AccessDenied:
        """The refusal the caller gets (its receipt id kept; the ledger entry holds the real reasons)."""
        if not self.hides_any(session, sql):
            return denied
        return AccessDenied([concealed_reason(session.identity.principal, session.purpose)],
                            receipt_id=denied.receipt_id)
