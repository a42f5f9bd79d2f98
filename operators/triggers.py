"""`ApprovalTrigger`: wait, in Airflow's triggerer, for a human to decide an approval request.

A task whose statement needs an approval defers with this trigger instead of holding a
worker slot. The trigger polls the approval store (SQLite or PostgreSQL, the same one the
`lineage-guard approvals` CLI writes to) without blocking the triggerer's event loop, and
fires once the request is approved, denied, expired or used up. The event carries only the
request id, its status and the approver's name: never the statement or a value.

Example:
    >>> trigger = ApprovalTrigger(request_id="ap-123", store_url=None, poll_interval=30)
    >>> trigger.serialize()[0]
    'lineage_guard.operators.triggers.ApprovalTrigger'
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

DECIDED = ("approved", "denied", "expired", "used")


class ApprovalTrigger(BaseTrigger):
    """Fires `{"status", "request_id", "approver", "statement_index"}` when request `request_id` leaves `pending`.

    `store_url` is the approval store's URL (None: `LINEAGE_GUARD_APPROVALS_URL`, else the
    default store in `LINEAGE_GUARD_HOME`, as seen by the triggerer). A URL carrying a
    password is never passed here; set it in the triggerer's environment instead.
    """

    def __init__(self, request_id: str, store_url: str | None = None, poll_interval: float = 30.0,
                 statement_index: int = 0) -> None:
        super().__init__()
        self.request_id = request_id
        self.store_url = store_url
        self.poll_interval = float(poll_interval)
        self.statement_index = int(statement_index)  # echoed back: which statement of the task to resume at

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{type(self).__module__}.{type(self).__qualname__}",
                {"request_id": self.request_id, "store_url": self.store_url, "poll_interval": self.poll_interval,
                 "statement_index": self.statement_index})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        # Everything that can block (importing the store, which loads pydantic and sqlglot; opening
        # SQLite or PostgreSQL; each read) runs in a worker thread: the triggerer's one event loop
        # serves every deferred task, and Airflow flags a trigger that holds it ("badly-written trigger").
        store = await asyncio.to_thread(_open_store, self.store_url)
        while True:
            try:
                request = await asyncio.to_thread(store.get, self.request_id)
            except Exception as exc:  # noqa: BLE001 - the task decides; a store error must not hang it
                yield TriggerEvent({"status": "error", "request_id": self.request_id,
                                    "error": type(exc).__name__, "statement_index": self.statement_index})
                return
            if request.status in DECIDED:
                yield TriggerEvent({"status": request.status, "request_id": request.id,
                                    "approver": request.approver, "statement_index": self.statement_index})
                return
            self.log.info("approval request %s is still pending; next check in %.0fs",
                          self.request_id, self.poll_interval)
            await asyncio.sleep(self.poll_interval)


class ServiceApprovalTrigger(BaseTrigger):
    """`ApprovalTrigger` for service mode: polls `lineage-guard serve` for the task's own approval request.

    The approval store lives with the service, so the triggerer asks the service (DoAction
    `lineage_guard.approval`) with the task's own credential, from the same `lineage_guard_service`
    connection; the service answers only the requester's own request. Fires the same event as
    `ApprovalTrigger`; after `max_errors` failed polls in a row it fires `status: error`.

    Example:
        >>> ServiceApprovalTrigger("ap-1", "lg_service", "ai_training").serialize()[0]
        'lineage_guard.operators.triggers.ServiceApprovalTrigger'
    """

    def __init__(self, request_id: str, service_conn_id: str, purpose: str, poll_interval: float = 30.0,
                 statement_index: int = 0, max_errors: int = 5) -> None:
        super().__init__()
        self.request_id = request_id
        self.service_conn_id = service_conn_id
        self.purpose = purpose
        self.poll_interval = float(poll_interval)
        self.statement_index = int(statement_index)
        self.max_errors = int(max_errors)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{type(self).__module__}.{type(self).__qualname__}",
                {"request_id": self.request_id, "service_conn_id": self.service_conn_id, "purpose": self.purpose,
                 "poll_interval": self.poll_interval, "statement_index": self.statement_index,
                 "max_errors": self.max_errors})

    def _event(self, **fields: Any) -> TriggerEvent:
        return TriggerEvent({"request_id": self.request_id, "statement_index": self.statement_index, **fields})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from .service import GovernedServiceHook

        try:
            conn = await GovernedServiceHook.aget_connection(self.service_conn_id)
            hook = GovernedServiceHook(self.service_conn_id, connection=conn)
            # Building the client loads pyarrow.flight and opens a TLS channel: off the event loop.
            session = await asyncio.to_thread(hook.get_session, self.purpose)
        except Exception as exc:  # noqa: BLE001 - the task says what failed; the message is ours, value-free
            yield self._event(status="error", error=type(exc).__name__)
            return
        errors = 0
        try:
            while True:
                try:
                    answer = await asyncio.to_thread(session.approval_status, self.request_id)
                    errors = 0
                except Exception as exc:  # noqa: BLE001 - a restarting service: retry, then give up clearly
                    errors += 1
                    if errors >= self.max_errors:
                        yield self._event(status="error", error=type(exc).__name__)
                        return
                    self.log.warning("approval request %s: the service did not answer (%s); retrying",
                                     self.request_id, type(exc).__name__)
                    await asyncio.sleep(self.poll_interval)
                    continue
                if answer.get("status") in DECIDED:
                    yield self._event(status=answer["status"], approver=answer.get("approver"))
                    return
                self.log.info("approval request %s is still pending; next check in %.0fs",
                              self.request_id, self.poll_interval)
                await asyncio.sleep(self.poll_interval)
        finally:
            session.close()


def _open_store(store_url: str | None):
    from lineage_guard.approvals import ApprovalStore

    return ApprovalStore.open(store_url)
