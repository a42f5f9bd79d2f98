"""Step 4's result: what the plan decided, per statement and per output column.

`Decision.to_json()` is the public contract printed by `lineage-guard plan --json`:
    {"action": "allow"|"deny"|"needs_approval", "reasons": [str], "statement": str,
     "columns": [{"position": int, "name": str, "masked": bool, "method": str|null,
                  "sources": ["schema.table.column", ...]}],
     "row_filters": [{"table": "schema.table", "filters": [str], "combine": "all"|"any", "digest": str,
                      "attributes": [str], "columns": ["schema.table.column", ...], "references": int}]}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from .mask.spec import MaskSpec
from .sql.model import Analysis, ColumnRef

Action = Literal["allow", "deny", "needs_approval"]


@dataclass(frozen=True)
class ColumnDecision:
    position: int
    name: str
    sources: tuple[ColumnRef, ...]
    mask: MaskSpec | None = None        # None => returned clear
    direct: bool = False
    labels: tuple[str, ...] = ()        # classifications of the sensitive sources

    @property
    def masked(self) -> bool:
        return self.mask is not None

    def to_json(self) -> dict:
        return {
            "position": self.position,
            "name": self.name,
            "masked": self.masked,
            "method": self.mask.method if self.mask else None,
            "sources": [str(s) for s in self.sources],
        }


@dataclass(frozen=True)
class Decision:
    action: Action
    reasons: tuple[str, ...]
    statement: str
    columns: tuple[ColumnDecision, ...] = ()
    analysis: Analysis | None = field(default=None, compare=False, repr=False)
    # Sensitive columns this reader may not see in the clear: what the live binding check compares.
    sensitive: tuple[ColumnRef, ...] = field(default=(), compare=False, repr=False)
    # The classification of every classified column the plan knew of (declared or detected): lineage tags them.
    labels: Mapping[ColumnRef, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def allowed(self) -> bool:
        return self.action == "allow"

    @property
    def masked_columns(self) -> tuple[ColumnDecision, ...]:
        return tuple(c for c in self.columns if c.masked)

    def to_json(self) -> dict:
        return {
            "action": self.action,
            "reasons": list(self.reasons),
            "statement": self.statement,
            "columns": [c.to_json() for c in self.columns],
            # Additive: the policy row filters applied, per table (names, digest, attribute names; no values).
            "row_filters": [f.to_json() for f in self.analysis.row_filters] if self.analysis is not None else [],
        }
