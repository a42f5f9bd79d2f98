"""Turn a task's governed runs into the `OperatorLineage` Airflow's OpenLineage provider emits.

The datasets and facets come from `lineage_guard.lineage.operator_lineage_parts(run)` (the
same names and facets the session would emit outside Airflow); this module only merges the
runs of one task (a task may run several statements) and adds the declared `output` before
anything ran (START only). Airflow adds its own run id, parent and DAG facets and sends the event.

Example:
    >>> operator_lineage([], "/tmp/out.parquet", "START").outputs[0].name        # doctest: +SKIP
    '/tmp/out.parquet'
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - annotations only: the run model loads the SQL analyser
    from lineage_guard.run import RunRecord


def own_lineage_only(task: Any) -> None:
    """Turn off, for this task, the OpenLineage provider's fallback to Airflow's hook lineage collector.

    The provider asks the collector when an operator's lineage has no dataset (a governed task's
    START, before the plan names its inputs). A governed task reads through lineage_guard only,
    never through a `DbApiHook`, so nothing in that process-wide collector is its own: under
    `dag.test()` (every task in one process, the collector never cleared) it held other tasks'
    SQL, re-sent as `<task>.query.N` jobs of the governed task and named by the Postgres provider
    (`postgres://%2Frun%2Fpg:5432` for a Unix-socket host, which Marquez refuses).
    Older providers (no `api.emission_policy` module) have no such switch and keep the fallback.
    An admin's locked `emission_policy` rule still wins over this.
    """
    try:
        from airflow.providers.openlineage.api.emission_policy import (
            extend_global_openlineage_emission_policy,
        )
    except ImportError:  # the OpenLineage provider is optional, and older ones have no per-task switch
        return
    extend_global_openlineage_emission_policy(task, hook_lineage=False)


def _parts(run: RunRecord, event_type: str) -> dict[str, Any]:
    from lineage_guard.lineage import operator_lineage_parts

    inputs, outputs, run_facets, job_facets = operator_lineage_parts(run, event_type)
    return {"inputs": inputs, "outputs": outputs, "run_facets": run_facets, "job_facets": job_facets}


def _declared_output(output: str | None) -> list:
    if not output:
        return []
    from openlineage.client.event_v2 import OutputDataset

    from lineage_guard.lineage.naming import dataset_for_uri

    namespace, name = dataset_for_uri(output)
    return [OutputDataset(namespace=namespace, name=name)]


def operator_lineage(runs: Sequence[RunRecord], output: str | None = None, event_type: str = "COMPLETE"):
    """One `OperatorLineage` for all `runs` of a task.

    `event_type` is START, COMPLETE or FAIL (the provider's event this lineage goes into). START
    names the declared `output` before anything ran (the rendered target the task means to write);
    COMPLETE names what the runs wrote. A FAIL repeats the declared output only when a read was
    allowed and then failed (a fault a retry repairs: a terminal event repeats its START's outputs, or
    Marquez drops the job's edge to the file); a denied task, one waiting for approval, or one whose
    template did not render names no file.
    """
    from airflow.providers.openlineage.extractors import OperatorLineage

    inputs: dict[tuple[str, str], Any] = {}
    outputs: dict[tuple[str, str], Any] = {}
    run_facets: dict[str, Any] = {}
    job_facets: dict[str, Any] = {}
    for run in runs:
        parts = _parts(run, event_type)
        for dataset in parts.get("inputs") or ():
            inputs.setdefault((dataset.namespace, dataset.name), dataset)
        for dataset in parts.get("outputs") or ():
            outputs[(dataset.namespace, dataset.name)] = dataset
        run_facets.update(parts.get("run_facets") or {})  # the last statement's facets describe the task's end
        job_facets.update(parts.get("job_facets") or {})
    if not outputs and (event_type == "START" or (event_type == "FAIL" and _allowed_then_failed(runs))):
        outputs = {(d.namespace, d.name): d for d in _declared_output(output)}
    return OperatorLineage(inputs=list(inputs.values()), outputs=list(outputs.values()),
                           run_facets=run_facets, job_facets=job_facets)


def _allowed_then_failed(runs: Sequence[RunRecord]) -> bool:
    # An approved run keeps its needs_approval decision; its approval id says it was let through.
    return any(run.outcome == "failed" and (run.decision.allowed or run.approval_id is not None) for run in runs)


def _local_dataset(path: str) -> tuple[str, str]:
    """OpenLineage naming of a local file (service mode writes local paths only), without loading
    lineage_guard.lineage (the SQL text helpers and the outbox stay out of a thin task process)."""
    import os

    from openlineage.client.naming.dataset import LocalFileSystem

    n = LocalFileSystem(path=os.path.abspath(path.removeprefix("file://")))
    return n.get_namespace(), n.get_name()


def remote_operator_lineage(docs: Sequence[dict], output: str | None = None, event_type: str = "COMPLETE",
                            *, repeat_declared: bool = False):
    """One `OperatorLineage` from the lineage parts `lineage-guard serve` returned for a task's runs.

    Service mode: the server ran the governed path and sent back, with each receipt or refusal, the
    same inputs and facets embedded mode builds (`lineage_guard.service.calls.lineage_doc`), as JSON.
    They go into the task's own events as plain dicts (the OpenLineage client serializes dict facets
    as they are). The file the thin client wrote is the output: named here, its facets (schema,
    column lineage, masking, statistics) from the server's `client_output`. `repeat_declared`: a FAIL
    that names no output names the declared one, as START did.

    Example:
        >>> remote_operator_lineage([], "/tmp/out.parquet", "START").outputs[0].name   # doctest: +SKIP
        '/tmp/out.parquet'
    """
    from airflow.providers.openlineage.extractors import OperatorLineage
    from openlineage.client.event_v2 import InputDataset, OutputDataset

    inputs: dict[tuple[str, str], Any] = {}
    outputs: dict[tuple[str, str], Any] = {}
    run_facets: dict[str, Any] = {}
    job_facets: dict[str, Any] = {}
    for doc in docs:
        for d in doc.get("inputs") or ():
            inputs.setdefault((d["namespace"], d["name"]), InputDataset(
                namespace=d["namespace"], name=d["name"], facets=d.get("facets"), inputFacets=d.get("inputFacets")))
        for d in doc.get("outputs") or ():
            outputs[(d["namespace"], d["name"])] = OutputDataset(
                namespace=d["namespace"], name=d["name"], facets=d.get("facets"), outputFacets=d.get("outputFacets"))
        written = doc.get("client_output")
        if written is not None and output and event_type != "START":
            namespace, name = _local_dataset(output)
            facets = dict(written.get("facets") or {})
            facets["dataSource"] = {"_producer": _producer(doc), "_schemaURL": DATASOURCE_SCHEMA,
                                    "name": namespace, "uri": f"file://{name}"}
            outputs[(namespace, name)] = OutputDataset(namespace=namespace, name=name, facets=facets,
                                                       outputFacets=written.get("outputFacets"))
        run_facets.update(doc.get("run_facets") or {})   # the last statement's facets describe the task's end
        job_facets.update(doc.get("job_facets") or {})
    if not outputs and output and (event_type == "START" or (repeat_declared and event_type == "FAIL")):
        namespace, name = _local_dataset(output)
        outputs = {(namespace, name): OutputDataset(namespace=namespace, name=name)}
    return OperatorLineage(inputs=list(inputs.values()), outputs=list(outputs.values()),
                           run_facets=run_facets, job_facets=job_facets)


DATASOURCE_SCHEMA = "https://openlineage.io/spec/facets/1-0-1/DatasourceDatasetFacet.json#/$defs/DatasourceDatasetFacet"


def _producer(doc: dict) -> str:
    for facet in (doc.get("run_facets") or {}).values():
        if isinstance(facet, dict) and facet.get("_producer"):
            return facet["_producer"]
    return "https://github.com/lineage-guard/lineage-guard"
