"""OpenLineage for Dagster materializations: physical datasets, one run per materialization, Dagster parent.

`dagster-openlineage` names datasets after asset keys; lineage_guard's events name the
Postgres tables and Parquet files themselves, so Marquez joins them with every other tool's
lineage. Each governed step gets a fresh OpenLineage run id (never the Dagster run id,
which several assets share); the `parent` facet points at the Dagster run
(namespace = the session's job namespace, name = the Dagster job, id = the Dagster run id).

Example:
    >>> emitter = DagsterLineage(upstream=[("file", "/lake/patients.parquet", [("id", "int64")])])
    >>> emitter.integration, emitter.job_type
    ('DAGSTER', 'ASSET')
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from openlineage.client.facet_v2 import schema_dataset
from openlineage.client.serde import Serde

from lineage_guard.lineage import LineageEmitter
from lineage_guard.lineage.producer import PRODUCER
from lineage_guard.run import RunRecord

# How the IO manager names an in-memory table in the ledger (the run's "statement").
IN_MEMORY = "in-memory table of Dagster asset "
LOADED = "governed file of Dagster asset "
# (namespace, name, [(column, type)]) of a Parquet file an asset loaded before writing its output.
Upstream = tuple[str, str, Sequence[tuple[str, str | None]]]


class DagsterLineage(LineageEmitter):
    """The standard emitter (durable outbox, background shipping), naming Dagster as the integration.

    `upstream` lists the governed Parquet files the step loaded: they are added as inputs of
    the step's write, so the graph reads file -> asset job -> file.
    """

    def __init__(self, upstream: Sequence[Upstream] = (), **kwargs) -> None:
        super().__init__(integration="DAGSTER", job_type="ASSET", **kwargs)
        self.upstream = list(upstream)
        self.completed: list[RunRecord] = []

    def complete(self, run: RunRecord) -> None:
        self.completed.append(run)  # the step reads the decision back to know its columns' provenance
        super().complete(run)

    def _build(self, run: RunRecord, event_type: str) -> dict:
        event = super()._build(run, event_type)
        if run.sql.startswith((IN_MEMORY, LOADED)):  # no SQL ran: an "unparseable statement" facet would mislead
            event["job"].get("facets", {}).pop("sql", None)
        if self.upstream and run.decision.action == "allow":
            known = {(d["namespace"], d["name"]) for d in event.get("inputs", [])}
            for namespace, name, fields in self.upstream:
                if (namespace, name) in known:
                    continue
                known.add((namespace, name))
                facet = schema_dataset.SchemaDatasetFacet(
                    fields=[schema_dataset.SchemaDatasetFacetFields(name=c, type=t) for c, t in fields],
                    producer=PRODUCER)
                event.setdefault("inputs", []).append(
                    {"namespace": namespace, "name": name, "facets": {"schema": Serde.to_dict(facet)}})
        return event


class RefusalsAnnounced:
    """The real ledger, plus: a run the policy stopped (denied, waiting for approval) also gets a FAIL event.

    The session records such runs in the ledger and stops before lineage starts; in Dagster
    the refused step should still show in the lineage backend, with who asked and why not.
    """

    def __init__(self, ledger: Any, lineage: LineageEmitter) -> None:
        self._ledger = ledger
        self._lineage = lineage

    def record(self, run: RunRecord):
        receipt = self._ledger.record(run)
        if run.outcome in ("denied", "needs_approval"):
            run.receipt = receipt
            self._lineage.fail(run)
        return receipt

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ledger, name)
