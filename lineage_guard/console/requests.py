"""What the inbox shows of an approval request: its tables, parameters (never values) and plan.

The approvals store keeps the statement's shape (literals replaced) and a plan digest; the plan
itself (which columns come back clear or masked) and how the requester was authenticated are in
the ledger entry the waiting run recorded with the request's id, found through the index.

Example:
    >>> tables_of("UPDATE patients SET city = ? WHERE id = ?", ["public"])
    ['public.patients']
    >>> tables_of(None, ["public"]) is None
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlglot
from sqlglot import exp

from ..approvals.store import ApprovalRequest
from ..audit.index import LedgerIndex


def tables_of(shape: str | None, search_path: list[str]) -> list[str] | None:
    """schema.table of every table the statement names (unqualified ones in the first search-path schema);
    None when the shape is missing or does not parse: then only an approver of any table may decide."""
    if not shape:
        return None
    try:
        trees = sqlglot.parse(shape, dialect="postgres")
    except sqlglot.errors.ParseError:
        return None
    ctes = {c.alias_or_name for tree in trees if tree for c in tree.find_all(exp.CTE)}
    found = set()
    for tree in trees:
        if tree is None:
            return None
        for table in tree.find_all(exp.Table):
            if not table.name or (not table.db and table.name in ctes):
                continue
            found.add(f"{table.db or search_path[0]}.{table.name}")
    return sorted(found)


def parameters_text(req: ApprovalRequest) -> str:
    """Count, types and a digest prefix: an approval binds to the values, the console never shows them."""
    count = int(req.parameters.get("count", 0) or 0)
    if not count:
        return "none"
    types = ", ".join(str(t) for t in req.parameters.get("types", []))
    return f"{count} value(s) ({types}); values not shown, bound by keyed digest {str(req.parameters.get('digest', ''))[:12]}…"


@dataclass(frozen=True)
class PlanColumn:
    name: str
    sources: list[str]
    treatment: str   # "clear" or "masked (method)"


@dataclass(frozen=True)
class RequestView:
    """One request as the inbox shows it."""

    request: ApprovalRequest
    tables: list[str] | None
    parameters: str
    columns: list[PlanColumn]
    auth: dict[str, Any]
    entry_id: str | None


def treatment(col: dict[str, Any]) -> str:
    return f"masked ({col.get('method')})" if col.get("masked") else "clear"


def view_of(req: ApprovalRequest, index: LedgerIndex, search_path: list[str]) -> RequestView:
    entry = index.by_approval(req.id)
    body = (entry or {}).get("body") or {}
    columns = [PlanColumn(str(c.get("name")), list(c.get("sources") or ()), treatment(c))
               for c in body.get("columns") or ()]
    auth = dict((body.get("who") or {}).get("auth") or {"method": "not recorded"})
    return RequestView(req, tables_of(req.statement_shape, search_path), parameters_text(req), columns, auth,
                       (entry or {}).get("id"))
