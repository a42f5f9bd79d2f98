"""SQLite state files opened by many workers at the same moment: none may fail with "database is locked"."""

from __future__ import annotations

import threading

import pytest

from lineage_guard.approvals import ApprovalStore
from lineage_guard.audit import Ledger
from lineage_guard.lineage import Outbox

OPENERS = {
    "approvals": lambda path: ApprovalStore.open(str(path)),
    "ledger": lambda path: Ledger.open(str(path)).close(),
    "outbox": lambda path: Outbox(path).close(),
}


@pytest.mark.parametrize("kind", sorted(OPENERS))
def test_many_workers_create_one_store_at_once(kind, tmp_path):
    errors: list[BaseException] = []
    for trial in range(25):
        path = tmp_path / f"{kind}-{trial}.sqlite"
        start = threading.Barrier(8)

        def work(start=start, path=path):
            start.wait()
            try:
                OPENERS[kind](path)
            except BaseException as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors, [f"{type(e).__name__}: {e}" for e in errors[:3]]
