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
from typing import Any

from lineage_guard.run import RunRecord


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

    `event_type` is START, COMPLETE or FAIL (the provider's event this lineage goes into). Only
    START names the declared `output` before anything ran (the rendered target the task means to
    write); COMPLETE and FAIL name only what the runs wrote, so a denied or failed task, or one whose
    template did not render, names no file that was never written.
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
    if not outputs and event_type == "START":
        outputs = {(d.namespace, d.name): d for d in _declared_output(output)}
    return OperatorLineage(inputs=list(inputs.values()), outputs=list(outputs.values()),
                           run_facets=run_facets, job_facets=job_facets)
