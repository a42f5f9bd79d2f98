"""A MaskSpec says how one output column is masked: method, parameters, key scope."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Method = Literal[
    "tokenize", "pseudonymize", "partial", "redact", "null", "drop",
    "generalize", "shift_date", "hash", "format_preserving",
]
METHODS: tuple[str, ...] = (
    "tokenize", "pseudonymize", "partial", "redact", "null", "drop",
    "generalize", "shift_date", "hash", "format_preserving",
)
# The strongest mask: used for a sensitive column no rule covers, and for opaque columns.
STRONGEST: MaskSpec


@dataclass(frozen=True)
class MaskSpec:
    """How to mask a column.

    `scope` is the key scope (e.g. "purpose:ai_training") and `classification` the column's
    (e.g. "email"): keyed methods use one key per (scope, classification), so the same value
    gives the same token within both and unlinkable tokens across either. `classification`
    None is a key of its own (a column of no single classification). `params` holds method
    parameters (`keep_first`, `keep_last`, `to`, `bucket`, `kind`, `locale`, ...). `subject`
    is the output position `shift_date` takes its per-subject offset from, bound by the planner.
    """

    method: Method
    params: dict[str, Any] = field(default_factory=dict)
    scope: str = "global"
    classification: str | None = None
    subject: int | None = None

    def __hash__(self) -> int:
        return hash((self.method, self.scope, self.classification, self.subject,
                     tuple(sorted((k, repr(v)) for k, v in self.params.items()))))

    def describe(self) -> str:
        """A short, key-free description for ledgers and lineage (e.g. `partial(keep_last=4)`)."""
        if not self.params:
            return self.method
        inner = ", ".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        return f"{self.method}({inner})"


STRONGEST = MaskSpec("redact")
