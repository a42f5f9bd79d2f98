"""Turn lineage_guard's refusals into a `dagster.Failure` a person can act on.

A denial or a pending approval is not a flaky error: retrying cannot change the policy's
answer, so the Failure bypasses the retry policy. Messages come from lineage_guard's own
errors, which are value-free by contract; anything else is reported by class only.

Example:
    >>> from lineage_guard.errors import AccessDenied
    >>> as_failure(AccessDenied(["identity 'x' is not declared"], receipt_id="r1")).description
    "lineage_guard denied the read: identity 'x' is not declared (ledger receipt r1)"
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

from lineage_guard.errors import AccessDenied, ApprovalRequired, LineageGuardError


def as_failure(exc: BaseException) -> dg.Failure:
    """The `dagster.Failure` for a lineage_guard error (reasons, receipt, approval command)."""
    if isinstance(exc, AccessDenied):
        return dg.Failure(
            description=f"lineage_guard denied the read: {'; '.join(exc.reasons)}"
                        + (f" (ledger receipt {exc.receipt_id})" if exc.receipt_id else ""),
            metadata={"lineage_guard/decision": "deny", "lineage_guard/reasons": list(exc.reasons),
                      "lineage_guard/receipt_id": exc.receipt_id or ""},
            allow_retries=False)
    if isinstance(exc, ApprovalRequired):
        return dg.Failure(
            description=f"lineage_guard needs an approval first (request {exc.request_id}): "
                        f"{'; '.join(exc.reasons)}. An approver other than the requester runs: "
                        f"{exc.approve_command} — then re-materialize the asset.",
            metadata={"lineage_guard/decision": "needs_approval", "lineage_guard/reasons": list(exc.reasons),
                      "lineage_guard/approval_request": exc.request_id,
                      "lineage_guard/approve_command": exc.approve_command,
                      "lineage_guard/receipt_id": exc.receipt_id or ""},
            allow_retries=False)
    if isinstance(exc, LineageGuardError):
        return dg.Failure(description=f"lineage_guard: {exc}",
                          metadata={"lineage_guard/error": type(exc).__name__})
    return dg.Failure(description=f"lineage_guard: the governed step failed ({type(exc).__name__}; details "
                                  "withheld because they can quote data values)",
                      metadata={"lineage_guard/error": type(exc).__name__})


@contextmanager
def governed_failures() -> Iterator[None]:
    """Re-raise lineage_guard errors as `dagster.Failure`, without chaining the original (value-free)."""
    failure = None
    try:
        yield
    except dg.Failure:
        raise
    except LineageGuardError as exc:
        failure = as_failure(exc)
    if failure is not None:
        raise failure from None
