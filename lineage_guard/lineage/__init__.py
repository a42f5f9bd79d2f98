"""Step 10: OpenLineage events for governed runs, through a durable outbox.

Public API:
    LineageEmitter(outbox=None, *, ship="background")   .start(run) .complete(run) .fail(run) .flush() -> int
    build_event(run, event_type) -> dict                 pure builder (START | COMPLETE | FAIL | ABORT)
    operator_lineage_parts(run) -> (inputs, outputs, run_facets, job_facets)   for Airflow's OperatorLineage
    Outbox(path=None)                                    the SQLite outbox (state_file("outbox.sqlite"))
    dataset_for_uri(uri) -> (namespace, name)            OpenLineage naming for sinks
    schema_dir() -> Path                                 JSON schemas of the lineageGuard_* facets
"""

from .emitter import LineageEmitter
from .events import build_event, build_run_event, operator_lineage_parts
from .facets import ACCESS_KEY, MASKING_KEY, AccessRunFacet, MaskingOutputDatasetFacet, schema_dir
from .naming import dataset_for_uri, source_dataset
from .outbox import Outbox, OutboxError
from .shipping import ShipResult, ship_pending, transport_configured

__all__ = [
    "ACCESS_KEY", "MASKING_KEY", "AccessRunFacet", "LineageEmitter", "MaskingOutputDatasetFacet", "Outbox",
    "OutboxError", "ShipResult", "build_event", "build_run_event", "dataset_for_uri", "operator_lineage_parts",
    "schema_dir", "ship_pending", "source_dataset", "transport_configured",
]
