"""Hand each governed run to Airflow instead of emitting it: the task's lineage is Airflow's to send.

Inside Airflow, the OpenLineage provider emits START/COMPLETE/FAIL for every task with its
own run id, parent and DAG facets. The session therefore gets `AirflowHandOff` as its
lineage emitter: it sends nothing and keeps the `RunRecord`s, which the operator turns into
`OperatorLineage` when the provider asks. `RecordingLedger` wraps the real ledger so runs
that end before lineage starts (denied, waiting for an approval, guarded writes) are kept too.

Example:
    >>> handoff = AirflowHandOff()
    >>> handoff.runs
    []
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - annotations only: the run model loads the SQL analyser
    from lineage_guard.run import Receipt, RunRecord


class AirflowHandOff:
    """A lineage emitter (start/complete/fail) that emits nothing and remembers each run once."""

    def __init__(self) -> None:
        self.runs: list[RunRecord] = []

    def keep(self, run: RunRecord) -> None:
        if all(r is not run for r in self.runs):
            self.runs.append(run)

    def start(self, run: RunRecord) -> None:
        self.keep(run)

    def complete(self, run: RunRecord) -> None:
        self.keep(run)

    def fail(self, run: RunRecord) -> None:
        self.keep(run)

    def close(self) -> None:
        """Nothing buffered: the provider asks for the runs after the task body returns."""


class RecordingLedger:
    """The real ledger, plus: every recorded run is handed to `handoff` (for lineage)."""

    def __init__(self, ledger: Any, handoff: AirflowHandOff) -> None:
        self._ledger = ledger
        self._handoff = handoff

    def record(self, run: RunRecord) -> Receipt:
        receipt = self._ledger.record(run)
        self._handoff.keep(run)
        return receipt

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ledger, name)
