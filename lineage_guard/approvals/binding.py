"""What an approval binds to besides who asks and the statement: the plan and the parameter values.

An approver approves what they were shown: this statement, planned this way (which columns come
back clear and which masked, and why it needs a person), with these parameter values, for the
run that asked. `plan_digest` names the plan; `bind_parameters` names the values without
storing them: an HMAC (key derived from the master key) of each value as the SQL literal the
source sends, so `5` and `'5'`, or a date and its text, are different values, and the store
never holds a value or a hash a dictionary could invert.

Example:
    >>> from lineage_guard.mask import Keyring
    >>> ring = Keyring("00" * 32)
    >>> a, b = bind_parameters(["2026-03-01"], ring), bind_parameters(["2026-03-02"], ring)
    >>> a.digest != b.digest, a.describe()["types"]
    (True, ['str'])
    >>> bind_parameters(None, ring).digest
    ''
    >>> bind_parameter_rows([[1], [2]], ring).describe()["rows"]
    2
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..decision import Decision
    from ..mask import Keyring

_SCOPE, _USE = "approvals", "parameters/v1"


def plan_digest(decision: Decision) -> str:
    """sha256 of what the approver sees: the action, the reasons and every output column's treatment."""
    material = {
        "action": decision.action,
        "statement": decision.statement,
        "reasons": list(decision.reasons),
        "columns": [
            [c.position, c.name, sorted(str(s) for s in c.sources),
             c.mask.describe() if c.mask else None, c.mask.scope if c.mask else None]
            for c in decision.columns
        ],
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class ParameterBinding:
    """The parameter values of a request, named without being kept: their count, types and keyed digest."""

    count: int
    types: tuple[str, ...]
    digest: str  # "" when the statement has no parameters
    rows: int = 1  # parameter rows of one prepared write (a batch is approved as a whole)

    def describe(self) -> dict[str, Any]:
        shown = {"count": self.count, "types": list(self.types), "digest": self.digest}
        return shown if self.rows == 1 else {**shown, "rows": self.rows}


def bind_parameters(parameters: Sequence[Any] | None, keyring: Keyring) -> ParameterBinding:
    """The binding of `parameters` (None: a statement without parameters)."""
    if parameters is None:
        return ParameterBinding(0, (), "")
    from ..sources.pg_params import literals

    rendered = literals(parameters)
    key = keyring.key(_SCOPE, _USE)
    digest = hmac.new(key, json.dumps(rendered).encode(), hashlib.sha256).hexdigest()
    return ParameterBinding(len(rendered), tuple(type(v).__name__ for v in parameters), digest)


def bind_parameter_rows(rows: Sequence[Sequence[Any] | None], keyring: Keyring) -> ParameterBinding:
    """The binding of a batch of parameter rows written in one transaction: every row's values, in order.

    One row binds exactly as `bind_parameters` does, so an approval given for a single-row write
    still matches it; several rows are one request covering all of them (never a row alone).
    """
    if len(rows) == 1:
        return bind_parameters(rows[0], keyring)
    from ..sources.pg_params import literals

    rendered = [literals(row) if row is not None else [] for row in rows]
    key = keyring.key(_SCOPE, _USE)
    digest = hmac.new(key, json.dumps({"rows": rendered}).encode(), hashlib.sha256).hexdigest()
    first = rows[0] or ()
    return ParameterBinding(len(rendered[0]), tuple(type(v).__name__ for v in first), digest, rows=len(rows))
