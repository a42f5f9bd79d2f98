"""The attested training step as an OpenLineage run: inputs = the dataset files, output = the model.

Marquez then draws database -> extract -> file -> train -> model: each dataset file is named
exactly as the governed extract that wrote it named its output (`file` + absolute path, or the
object store's naming), so the two runs meet at the file. The COMPLETE event carries
`lineageGuard_attestation` (schema `lineage_guard/lineage/schemas/AttestationRunFacet.json`):
the signed statement's digest, the model's manifest digest, each dataset's digest, receipt and
extract run id, and the ledger head. Digests and ids only.

`training` (as given to `attest`) may name the run: `runId` (a UUID; anything else is mapped to
a stable UUID and kept as `trainingRunId`), `jobNamespace`, `jobName`, and a parent
(`parentRunId`, `parentJobNamespace`, `parentJobName`) such as the Airflow task or Dagster run.

Example:
    >>> events = training_events(envelope, model="model/", started_at=t0)     # doctest: +SKIP
    >>> [e["eventType"] for e in events], events[1]["outputs"][0]["facets"]["datasetType"]["datasetType"]  # doctest: +SKIP
    (['START', 'COMPLETE'], 'MODEL')
"""

from __future__ import annotations

import base64
import hashlib
import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from openlineage.client import event_v2
from openlineage.client.facet_v2 import (
    dataset_type_dataset,
    datasource_dataset,
    job_type_job,
    parent_run,
    processing_engine_run,
    schema_dataset,
)
from openlineage.client.serde import Serde

from ..errors import ConfigError
from ..lineage.facets import ATTESTATION_KEY, AttestationRunFacet
from ..lineage.naming import check_namespace
from ..lineage.producer import PRODUCER, VERSION
from ..sinks.naming import file_dataset

_DERIVED = uuid.UUID("6b1f3c2e-9a57-4f0e-8d61-3a1c0f9e2b74")   # uuid5 namespace for non-UUID training run ids


def _dataset(path: str) -> tuple[str, str]:
    namespace, name = file_dataset(os.fspath(path))
    check_namespace(namespace, "dataset")
    return namespace, name


def _uri(namespace: str, name: str, given: str) -> str:
    if "://" in given:
        return given          # an fsspec URI names its file already
    return Path(name).as_uri() if namespace == "file" and name.startswith("/") else f"{namespace}{name}"


def _schema(path: str) -> schema_dataset.SchemaDatasetFacet | None:
    """The Parquet file's columns (names and Arrow types), as the extract's output schema facet had them."""
    import pyarrow.parquet as pq

    from .files import open_binary

    try:
        with open_binary(path) as fh:
            schema = pq.read_schema(fh)
    except (OSError, ValueError):
        return None
    return schema_dataset.SchemaDatasetFacet(
        fields=[schema_dataset.SchemaDatasetFacetFields(name=f.name, type=str(f.type)) for f in schema],
        producer=PRODUCER)


def _input_tags(record: dict[str, Any]):
    """The `tags` facet the extract put on this file as its output: `pii`/`classification` per field, only for
    classified columns that left clear (a masked column carries no pii tag past its mask)."""
    from ..lineage.events import _field_tags

    return _field_tags({c["name"]: list(c.get("classifications") or ()) if c["treatment"] == "clear" else []
                        for c in record["columns"]})


def _run_id(training: dict[str, str]) -> tuple[str, str | None]:
    given = training.get("runId")
    if not given:
        return str(uuid.uuid4()), None
    try:
        return str(uuid.UUID(given)), None
    except ValueError:
        return str(uuid.uuid5(_DERIVED, given)), given


@dataclass
class TrainingParts:
    """The training run's OpenLineage parts (openlineage-python objects), e.g. for Airflow's `OperatorLineage`."""

    run_id: str
    job_namespace: str
    job_name: str
    inputs: list[event_v2.InputDataset]
    outputs: list[event_v2.OutputDataset]
    run_facets: dict[str, Any]            # processing_engine and parent (not for an orchestrator)
    job_facets: dict[str, Any]            # jobType (not for an orchestrator)
    attestation: AttestationRunFacet      # the COMPLETE event's lineageGuard_attestation


def training_parts(envelope: dict[str, Any], *, model: str | os.PathLike, training: dict[str, str] | None = None,
                   attestation: str | os.PathLike | None = None, for_orchestrator: bool = False) -> TrainingParts:
    """The parts of the training run `envelope` attests. `for_orchestrator` leaves out what Airflow or
    Dagster write for their own step (jobType, parent, processing_engine)."""
    import json

    from ..lineage.events import _client_version

    payload = base64.b64decode(envelope["payload"])
    statement = json.loads(payload)
    predicate = statement["predicate"]
    training = {k: str(v) for k, v in (training or {}).items() if v is not None}
    run_id, original = _run_id(training)
    namespace = training.get("jobNamespace") or os.environ.get("OPENLINEAGE_NAMESPACE", "lineage_guard")
    check_namespace(namespace, "job")
    model_path = Path(model).resolve()
    job_name = training.get("jobName") or f"lineage_guard.train.{model_path.name}"

    inputs, listed = [], []
    for record in predicate["datasets"]:
        ns, name = _dataset(record["name"])
        facets: dict[str, Any] = {"dataSource": datasource_dataset.DatasourceDatasetFacet(
            name=ns, uri=_uri(ns, name, record["name"]), producer=PRODUCER)}
        schema = _schema(record["name"])
        if schema is not None:
            facets["schema"] = schema
        if (tags := _input_tags(record)) is not None:
            facets["tags"] = tags
        inputs.append(event_v2.InputDataset(namespace=ns, name=name, facets=facets))
        listed.append({"namespace": ns, "name": name, "sha256": record["digest"]["sha256"],
                       "receiptId": record["receiptId"], "runId": record["runId"], "purpose": record["purpose"]})
    model_ns, model_name = _dataset(str(model_path))
    outputs = [event_v2.OutputDataset(namespace=model_ns, name=model_name, facets={
        "dataSource": datasource_dataset.DatasourceDatasetFacet(
            name=model_ns, uri=_uri(model_ns, model_name, str(model_path)), producer=PRODUCER),
        "datasetType": dataset_type_dataset.DatasetTypeDatasetFacet(datasetType="MODEL", producer=PRODUCER),
    })]
    run_facets: dict[str, Any] = {}
    job_facets: dict[str, Any] = {}
    if not for_orchestrator:
        run_facets["processing_engine"] = processing_engine_run.ProcessingEngineRunFacet(
            version=VERSION, name="lineage_guard", openlineageAdapterVersion=_client_version(), producer=PRODUCER)
        if training.get("parentRunId"):
            if not (training.get("parentJobNamespace") and training.get("parentJobName")):
                raise ConfigError("training: a parentRunId needs parentJobNamespace and parentJobName")
            run_facets["parent"] = parent_run.ParentRunFacet(
                run=parent_run.Run(runId=training["parentRunId"]),
                job=parent_run.Job(namespace=training["parentJobNamespace"], name=training["parentJobName"]),
                producer=PRODUCER)
        job_facets["jobType"] = job_type_job.JobTypeJobFacet(
            processingType="BATCH", integration=training.get("integration") or "LINEAGE_GUARD",
            jobType=training.get("jobType") or "TRAINING", producer=PRODUCER)
    attested = AttestationRunFacet(
        predicateType=statement["predicateType"], statementSha256=hashlib.sha256(payload).hexdigest(),
        keyId=predicate["ledger"]["keyId"], attestedAt=predicate["attestedAt"], model=dict(predicate["model"]),
        datasets=listed, ledgerHead=dict(predicate["ledger"]["head"]),
        attestation=str(Path(attestation).resolve()) if attestation is not None else None, trainingRunId=original)
    return TrainingParts(run_id, namespace, job_name, inputs, outputs, run_facets, job_facets, attested)


def training_events(envelope: dict[str, Any], *, model: str | os.PathLike, started_at: datetime,
                    training: dict[str, str] | None = None, attestation: str | os.PathLike | None = None,
                    ended_at: datetime | None = None) -> list[dict]:
    """START and COMPLETE of the training run `envelope` attests (JSON-ready dicts, valid OpenLineage)."""
    from ..lineage.events import _prune

    parts = training_parts(envelope, model=model, training=training, attestation=attestation)
    job = event_v2.Job(namespace=parts.job_namespace, name=parts.job_name, facets=parts.job_facets)

    def event(kind: str, when: datetime, facets: dict[str, Any]) -> dict:
        return _prune(Serde.to_dict(event_v2.RunEvent(
            eventType=event_v2.RunState[kind], eventTime=when.astimezone(UTC).isoformat(),
            run=event_v2.Run(runId=parts.run_id, facets=facets), job=job, inputs=parts.inputs,
            outputs=parts.outputs, producer=PRODUCER)))

    return [event("START", started_at, parts.run_facets),
            event("COMPLETE", ended_at or datetime.now(UTC), {**parts.run_facets, ATTESTATION_KEY: parts.attestation})]
