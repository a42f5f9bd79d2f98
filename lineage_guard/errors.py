"""Exceptions raised by lineage_guard. Messages never carry raw data values or keys."""

from __future__ import annotations


class LineageGuardError(Exception):
    """Base class. `exit_code` is what the CLI exits with."""

    exit_code = 1


class ConfigError(LineageGuardError):
    """A policy, identity or option is invalid; the message says what to fix."""


class PolicyError(ConfigError):
    """The policy file is invalid (file, line, field, what would be valid)."""


class AccessDenied(LineageGuardError):
    """The plan denied the request. `reasons` are meant for a person to act on."""

    exit_code = 2

    def __init__(self, reasons: list[str], receipt_id: str | None = None):
        self.reasons = list(reasons)
        self.receipt_id = receipt_id
        super().__init__("access denied: " + "; ".join(self.reasons))


class ApprovalRequired(LineageGuardError):
    """The plan needs a human approval first. `approve_command` is the exact command to run."""

    exit_code = 3

    def __init__(self, request_id: str, reasons: list[str], approve_command: str, receipt_id: str | None = None):
        self.request_id = request_id
        self.reasons = list(reasons)
        self.approve_command = approve_command
        self.receipt_id = receipt_id
        super().__init__(
            f"approval required (request {request_id}): {'; '.join(self.reasons)}. "
            f"An approver other than the requester runs: {approve_command}"
        )


class SourceError(LineageGuardError):
    """The source failed. Sanitized: the error class and what to fix, never the server's raw text."""

    def __init__(self, message: str, sqlstate: str | None = None):
        self.sqlstate = sqlstate
        super().__init__(message)


class SinkError(LineageGuardError):
    """Writing the result failed; nothing was left at the target."""


class MaskingError(LineageGuardError):
    """A mask could not be applied; the batch is not released."""


class ReidentificationRisk(AccessDenied):
    """The masked output is below its purpose's re-identification floor (k-anonymity / l-diversity).

    Raised after the read, before the sink is committed: nothing was written. The message names the
    columns and the class sizes, never a value.
    """


class WriteNotRecorded(LineageGuardError):
    """A governed write's intent could not be recorded in the ledger, so the write was not run.

    The ledger records a write's `open` intent before the database is touched (fail closed):
    nothing was written. The message names the ledger's failure (backend step, never a value).
    """


class WriteUnrecorded(LineageGuardError):
    """A governed write ran, but its final ledger entry could not be recorded.

    The write's `open` intent entry (`receipt_id`) stays the run's latest entry and says the write
    may have happened; `committed` says whether the database reported success (`rows_affected`).
    `lineage-guard audit verify` and `audit log` list the open entry.
    """

    def __init__(self, message: str, *, run_id: str, receipt_id: str, committed: bool, rows_affected: int | None):
        self.run_id = run_id
        self.receipt_id = receipt_id
        self.committed = committed
        self.rows_affected = rows_affected
        super().__init__(message)
