"""Build OpenLineage run events for a governed run: pure functions of a `RunRecord`.

What Marquez needs to draw Postgres table -> job -> sink with column lineage:
inputs named `postgres://host:port` + `database.schema.table` with a `schema`
facet (the columns read) and `dataSource`; the output with `schema`,
`dataSource`, `columnLineage` (1-2-0 `transformations[]` plus the deprecated
per-field `transformationType` that Marquez 0.51 stores), `outputStatistics` and
`lineageGuard_masking`; the run with `lineageGuard_access`, `parent` and, on FAIL,
`errorMessage`; the job with `sql` (literals removed) and a complete `jobType`.
START and the terminal event carry the same inputs and outputs.

Example:
    >>> event = build_event(run, "START")                        # doctest: +SKIP
    >>> event["inputs"][0]["namespace"], event["inputs"][0]["name"]  # doctest: +SKIP
    ('postgres://db.internal:5432', 'clinic.public.patients')
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from openlineage.client import event_v2
from openlineage.client.facet_v2 import (
    JobFacet,
    RunFacet,
    column_lineage_dataset,
    datasource_dataset,
    error_message_run,
    job_type_job,
    output_statistics_output_dataset,
    parent_run,
    processing_engine_run,
    schema_dataset,
    sql_job,
    tags_dataset,
)
from openlineage.client.serde import Serde

from ..decision import ColumnDecision
from ..errors import ConfigError
from ..run import RunRecord
from ..sql.model import ColumnRef
from .facets import (
    ACCESS_KEY,
    MASKING_KEY,
    ROW_FILTER_KEY,
    AccessRunFacet,
    MaskingOutputDatasetFacet,
    RowFilterInputDatasetFacet,
)
from .naming import check_namespace, dataset_for_uri, source_dataset, strip_credentials
from .producer import PRODUCER, VERSION
from .sql_text import shareable_sql

EVENT_TYPES = ("START", "COMPLETE", "FAIL", "ABORT")
TERMINAL = frozenset({"COMPLETE", "FAIL", "ABORT"})
DEFAULT_INTEGRATION = "LINEAGE_GUARD"
# Integrations put these in RunRecord.extra to name themselves in the jobType facet.
EXTRA_INTEGRATION = "openlineage_integration"
EXTRA_JOB_TYPE = "openlineage_job_type"


def _iso(ts: datetime | None) -> str:
    ts = ts or datetime.now(UTC)
    if ts.tzinfo is None:  # the contract stores UTC; a naive value is taken as UTC, never local time
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC).isoformat()


def _input_tables(run: RunRecord) -> dict[tuple[str, str], dict[str, str | None]]:
    """(schema, table) -> {column: type}: the columns read, in the order first seen."""
    tables: dict[tuple[str, str], dict[str, str | None]] = {}
    for key, cols in run.input_schemas.items():
        schema, _, table = key.rpartition(".")
        if not schema or not table:
            raise ConfigError(f"lineage: input_schemas key {key!r} must be schema.table")
        into = tables.setdefault((schema, table), {})
        for name, typ in cols:
            into.setdefault(name, typ)
    analysis = run.decision.analysis
    for ref in analysis.tables_read if analysis else ():
        tables.setdefault((ref.schema, ref.table), {})
    # Column lineage must point at fields in the input's schema facet, or Marquez drops it.
    for col in run.decision.columns:
        for src in col.sources:
            tables.setdefault((src.schema, src.table), {}).setdefault(src.column, None)
    for use in analysis.uses if analysis else ():
        tables.setdefault((use.column.schema, use.column.table), {}).setdefault(use.column.column, None)
    for applied in analysis.row_filters if analysis else ():  # a row filter's columns feed the output (FILTER)
        for ref in applied.columns:
            tables.setdefault((ref.schema, ref.table), {}).setdefault(ref.column, None)
    return tables


def _row_filter_facets(run: RunRecord) -> dict[tuple[str, str], RowFilterInputDatasetFacet]:
    analysis = run.decision.analysis
    return {(f.table.schema, f.table.table): RowFilterInputDatasetFacet(
        filters=list(f.filters), combine=f.combine, digest=f.digest, attributes=list(f.attributes),
        columns=[str(c) for c in f.columns], references=f.references, producer=PRODUCER)
        for f in (analysis.row_filters if analysis else ())}


TAG_SOURCE = "LINEAGE_GUARD"


def _field_tags(field_labels: dict[str, list[str]]) -> tags_dataset.TagsDatasetFacet | None:
    """The `tags` facet: per field, `pii: true` and `classification: <label>`; None when no field is classified.

    Catalogs that propagate tags along column lineage (opendbt#101, tee-for-transform#4) copy them
    downstream; outputs carry them only for columns that leave clear, so propagation stops at a mask.
    """
    tags = []
    for name, labels in field_labels.items():
        if not labels:
            continue
        tags.append(tags_dataset.TagsDatasetFacetFields(key="pii", value="true", source=TAG_SOURCE, field=name))
        tags += [tags_dataset.TagsDatasetFacetFields(key="classification", value=label, source=TAG_SOURCE,
                                                     field=name) for label in labels]
    return tags_dataset.TagsDatasetFacet(tags=tags, producer=PRODUCER) if tags else None


def _file_input(run: RunRecord) -> tuple[str, str] | None:
    """(namespace, name) of the file a run masked (Flight DoExchange), which is then its only input."""
    uri = run.extra.get("input_uri")
    return dataset_for_uri(uri) if uri else None


def _inputs(run: RunRecord) -> list[event_v2.InputDataset]:
    if (file := _file_input(run)) is not None:
        namespace, name = file
        types = dict(run.extra.get("input_schema") or [])
        labels = {c.name: list(c.labels) for c in run.decision.columns}
        facets: dict[str, Any] = {
            "schema": schema_dataset.SchemaDatasetFacet(
                fields=[schema_dataset.SchemaDatasetFacetFields(name=c.name, type=types.get(c.name))
                        for c in run.decision.columns], producer=PRODUCER),
            "dataSource": datasource_dataset.DatasourceDatasetFacet(name=namespace, uri=namespace,
                                                                   producer=PRODUCER),
        }
        if (tags := _field_tags(labels)) is not None:
            facets["tags"] = tags
        return [event_v2.InputDataset(namespace=namespace, name=name, facets=facets)]
    check_namespace(run.source.namespace, "source")
    datasets = []
    filtered = _row_filter_facets(run)
    for (schema, table), cols in _input_tables(run).items():
        namespace, name = source_dataset(run.source, schema, table)
        input_facets = {ROW_FILTER_KEY: filtered[(schema, table)]} if (schema, table) in filtered else None
        facets: dict[str, Any] = {
            "schema": schema_dataset.SchemaDatasetFacet(
                fields=[schema_dataset.SchemaDatasetFacetFields(name=c, type=t) for c, t in cols.items()],
                producer=PRODUCER),
            "dataSource": datasource_dataset.DatasourceDatasetFacet(name=namespace, uri=namespace,
                                                                   producer=PRODUCER),
        }
        labels = run.decision.labels
        tags = _field_tags({c: [labels[ref]] if (ref := ColumnRef(schema, table, c)) in labels else []
                            for c in cols})
        if tags is not None:
            facets["tags"] = tags
        datasets.append(event_v2.InputDataset(namespace=namespace, name=name, inputFacets=input_facets,
                                              facets=facets))
    return datasets


def _written(col: ColumnDecision) -> bool:
    return not (col.mask is not None and col.mask.method == "drop")


def _field_lineage(run: RunRecord, cols: list[ColumnDecision]) -> column_lineage_dataset.Fields:
    masked = any(c.masked for c in cols)
    inputs: list[column_lineage_dataset.InputField] = []
    for col in cols:
        if col.masked:
            tr = column_lineage_dataset.Transformation(
                type="DIRECT", subtype="TRANSFORMATION", description=col.mask.describe(), masking=True)
        elif col.direct:
            tr = column_lineage_dataset.Transformation(type="DIRECT", subtype="IDENTITY", description="",
                                                       masking=False)
        else:
            tr = column_lineage_dataset.Transformation(type="DIRECT", subtype="TRANSFORMATION",
                                                       description="computed", masking=False)
        if (file := _file_input(run)) is not None:   # masked file data: the field is the file's own column
            inputs.append(column_lineage_dataset.InputField(namespace=file[0], name=file[1], field=col.name,
                                                            transformations=[tr]))
            continue
        for src in col.sources:
            namespace, name = source_dataset(run.source, src.schema, src.table)
            inputs.append(column_lineage_dataset.InputField(namespace=namespace, name=name, field=src.column,
                                                            transformations=[tr]))
    # Marquez 0.51 reads only the deprecated pair: IDENTITY (also for computed clear columns) or MASKED.
    description = "; ".join(c.mask.describe() if c.masked else ("identity" if c.direct else "computed")
                            for c in cols)
    return column_lineage_dataset.Fields(inputFields=inputs, transformationType="MASKED" if masked else "IDENTITY",
                                         transformationDescription=description)


# How a column used outside the projection shapes the output (the spec's INDIRECT subtypes).
_INDIRECT = {"where": "FILTER", "having": "FILTER", "join": "JOIN", "group": "GROUP_BY", "distinct_on": "GROUP_BY",
             "order": "SORT", "window": "WINDOW"}


def _indirect_lineage(run: RunRecord) -> list[column_lineage_dataset.InputField]:
    analysis = run.decision.analysis
    seen: dict[tuple[str, str, str], list[str]] = {}
    for use in analysis.uses if analysis else ():
        subtype = _INDIRECT.get(use.clause)
        if subtype is None:
            continue
        namespace, name = source_dataset(run.source, use.column.schema, use.column.table)
        subtypes = seen.setdefault((namespace, name, use.column.column), [])
        if subtype not in subtypes:
            subtypes.append(subtype)
    for applied in analysis.row_filters if analysis else ():  # the policy's row filter decides which rows come out
        for ref in applied.columns:
            namespace, name = source_dataset(run.source, ref.schema, ref.table)
            subtypes = seen.setdefault((namespace, name, ref.column), [])
            if "FILTER" not in subtypes:
                subtypes.append("FILTER")
    return [column_lineage_dataset.InputField(
        namespace=ns, name=name, field=field,
        transformations=[column_lineage_dataset.Transformation(type="INDIRECT", subtype=st, masking=False)
                         for st in subtypes])
        for (ns, name, field), subtypes in seen.items()]


def _sink_uri(sink) -> str:
    if sink.namespace == "file" and sink.name.startswith("/"):
        return Path(sink.name).as_uri()
    return strip_credentials(sink.uri)


def _masking_facet(run: RunRecord) -> MaskingOutputDatasetFacet:
    fields: dict[str, dict[str, str]] = {}
    for col in run.decision.masked_columns:
        entry = {"method": col.mask.method, "description": col.mask.describe(), "scope": col.mask.scope}
        if run.key_ids.get(col.position):
            entry["keyId"] = run.key_ids[col.position]
        fields[col.name] = entry
    return MaskingOutputDatasetFacet(maskedColumns=len(run.decision.masked_columns),
                                     clearColumns=len(run.decision.columns) - len(run.decision.masked_columns),
                                     fields=fields, producer=PRODUCER)


def _let_through(run: RunRecord) -> bool:
    """The policy let this run write its output: allowed, or needing approval and approved for this run.

    An approved run keeps its `needs_approval` decision (the ledger shows why it waited); it writes its
    file like an allowed one, so its lineage names that output. One still waiting, or denied, wrote nothing.
    """
    if run.decision.action == "allow":
        return True
    return (run.decision.action == "needs_approval" and run.approval_id is not None
            and run.outcome not in ("needs_approval", "denied"))


def _outputs(run: RunRecord, event_type: str) -> list[event_v2.OutputDataset]:
    sink = run.sink
    # Nothing is persisted for an in-memory result or a run the policy stopped: no output edge to draw.
    if sink is None or sink.kind == "memory" or not _let_through(run):
        return []
    check_namespace(sink.namespace, "sink")
    written = [c for c in run.decision.columns if _written(c)]
    out_schema = run.output_schema or [(c.name, None) for c in written]
    by_name: dict[str, list[ColumnDecision]] = {}
    for col in written:
        by_name.setdefault(col.name, []).append(col)
    lineage = {name: _field_lineage(run, by_name[name]) for name, _ in out_schema
               if name in by_name and (any(c.sources for c in by_name[name]) or _file_input(run))}
    facets: dict[str, Any] = {
        "schema": schema_dataset.SchemaDatasetFacet(
            fields=[schema_dataset.SchemaDatasetFacetFields(name=n, type=t) for n, t in out_schema],
            producer=PRODUCER),
        "dataSource": datasource_dataset.DatasourceDatasetFacet(
            name=sink.namespace, uri=_sink_uri(sink), producer=PRODUCER),
    }
    # Only a column that leaves clear keeps its sources' tags: a masked one is no longer that data.
    clear = {name: sorted({label for c in by_name[name] if not c.masked for label in c.labels})
             for name, _ in out_schema if name in by_name}
    tags = _field_tags(clear)
    if tags is not None:
        facets["tags"] = tags
    indirect = _indirect_lineage(run)
    if lineage or indirect:
        facets["columnLineage"] = column_lineage_dataset.ColumnLineageDatasetFacet(
            fields=lineage, dataset=indirect, producer=PRODUCER)
    quality = run.extra.get("data_quality_facet")
    if quality:  # the masked-output proof (Great Expectations), value-free
        facets["dataQualityAssertions"] = _quality_facet(quality)
    output_facets: dict[str, Any] = {MASKING_KEY: _masking_facet(run)}
    if event_type == "COMPLETE":
        output_facets["outputStatistics"] = output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
            rowCount=run.rows, size=run.bytes, producer=PRODUCER)
    return [event_v2.OutputDataset(namespace=sink.namespace, name=sink.name, facets=facets,
                                   outputFacets=output_facets)]


def _quality_facet(doc: dict) -> Any:
    from openlineage.client.generated import data_quality_assertions_dataset as dq

    fields = ("assertion", "success", "column", "severity", "name", "description", "expected", "actual")
    return dq.DataQualityAssertionsDatasetFacet(
        assertions=[dq.Assertion(**{k: a[k] for k in fields if k in a}) for a in doc["assertions"]],
        producer=PRODUCER)


def _access_facet(run: RunRecord) -> AccessRunFacet:
    columns = []
    for col in run.decision.columns:
        entry: dict[str, Any] = {"position": col.position, "name": col.name,
                                 "access": "masked" if col.masked else "clear",
                                 "sources": [str(s) for s in col.sources]}
        if col.masked:
            entry["method"] = col.mask.method
            entry["description"] = col.mask.describe()
            if run.key_ids.get(col.position):
                entry["keyId"] = run.key_ids[col.position]
        columns.append(entry)
    ident = run.identity
    return AccessRunFacet(
        identity={"principal": ident.principal, "kind": ident.kind, "groups": sorted(ident.groups)},
        purpose=run.purpose,
        decision={"action": run.decision.action, "reasons": list(run.decision.reasons)},
        outcome="running" if run.outcome == "open" else run.outcome,  # `open` is the ledger's word for it
        statementHash=run.statement_hash,
        columns=columns,
        approvalId=run.approval_id,
        receipt={"id": run.receipt.id, "hash": run.receipt.hash} if run.receipt else None,
        producer=PRODUCER,
    )


def _run_facets(run: RunRecord, event_type: str, *, for_airflow: bool = False) -> dict[str, RunFacet]:
    facets: dict[str, RunFacet] = {ACCESS_KEY: _access_facet(run)}
    if for_airflow:  # Airflow writes its own parent and processing_engine facets for the task
        return facets | _error_facet(run, event_type)
    facets["processing_engine"] = processing_engine_run.ProcessingEngineRunFacet(
        version=VERSION, name="lineage_guard", openlineageAdapterVersion=_client_version(), producer=PRODUCER)
    if run.parent:
        facets["parent"] = parent_run.ParentRunFacet(
            run=parent_run.Run(runId=run.parent.run_id),
            job=parent_run.Job(namespace=run.parent.job_namespace, name=run.parent.job_name),
            producer=PRODUCER)
    return facets | _error_facet(run, event_type)


def _error_facet(run: RunRecord, event_type: str) -> dict[str, RunFacet]:
    if event_type != "FAIL":
        return {}
    # error_message is sanitized by contract (never server text or values); no stack trace either.
    message = f"{run.error_class or 'Error'}: {run.error_message or 'the run failed'}"
    return {"errorMessage": error_message_run.ErrorMessageRunFacet(
        message=message, programmingLanguage="python", producer=PRODUCER)}


@lru_cache(maxsize=1)
def _client_version() -> str:
    from importlib.metadata import version

    return version("openlineage-python")


def _job_facets(run: RunRecord, integration: str | None, job_type: str | None,
                *, for_airflow: bool = False) -> dict[str, JobFacet]:
    facets: dict[str, JobFacet] = {
        "sql": sql_job.SQLJobFacet(query=shareable_sql(run.sql), dialect="postgres", producer=PRODUCER)}
    if not for_airflow:  # Airflow sets jobType AIRFLOW/TASK itself and would overwrite ours
        facets["jobType"] = job_type_job.JobTypeJobFacet(
            processingType="BATCH",
            integration=integration or run.extra.get(EXTRA_INTEGRATION) or DEFAULT_INTEGRATION,
            jobType=job_type or run.extra.get(EXTRA_JOB_TYPE) or ("TASK" if run.parent else "QUERY"),
            producer=PRODUCER)
    return facets


def build_run_event(run: RunRecord, event_type: str, *, integration: str | None = None,
                    job_type: str | None = None) -> event_v2.RunEvent:
    """The event for `run` as openlineage-python objects (see `build_event` for the JSON form)."""
    if event_type not in EVENT_TYPES:
        raise ConfigError(f"lineage: event type must be one of {', '.join(EVENT_TYPES)}, got {event_type!r}")
    check_namespace(run.job_namespace, "job")
    if not run.job_name:
        raise ConfigError("lineage: the run has no job name; set RunRecord.job_name")
    return event_v2.RunEvent(
        eventType=event_v2.RunState[event_type],
        eventTime=_iso(run.started_at if event_type == "START" else run.ended_at),
        run=event_v2.Run(runId=run.run_id, facets=_run_facets(run, event_type)),
        job=event_v2.Job(namespace=run.job_namespace, name=run.job_name,
                         facets=_job_facets(run, integration, job_type)),
        inputs=_inputs(run),
        outputs=_outputs(run, event_type),
        producer=PRODUCER,
    )


def build_event(run: RunRecord, event_type: str, *, integration: str | None = None,
                job_type: str | None = None) -> dict:
    """The OpenLineage RunEvent for `run` as a JSON-ready dict (START, COMPLETE, FAIL or ABORT).

    Pure: reads the record, touches nothing. The result never holds a raw value or a key.

    Example:
        >>> build_event(run, "COMPLETE")["eventType"]     # doctest: +SKIP
        'COMPLETE'
    """
    return _prune(Serde.to_dict(build_run_event(run, event_type, integration=integration, job_type=job_type)))


_EMPTY_DROPPED = {"facets": {}, "inputFacets": {}, "outputFacets": {}, "fields": []}


def _prune(obj):
    """Drop the client's empty `facets: {}` / nested `fields: []` placeholders (smaller events, same meaning)."""
    if isinstance(obj, dict):
        return {k: _prune(v) for k, v in obj.items() if not (k in _EMPTY_DROPPED and v == _EMPTY_DROPPED[k])}
    if isinstance(obj, list):
        return [_prune(v) for v in obj]
    return obj


def operator_lineage_parts(run: RunRecord, event_type: str = "COMPLETE") -> tuple[
        list[event_v2.InputDataset], list[event_v2.OutputDataset], dict[str, RunFacet], dict[str, JobFacet]]:
    """(inputs, outputs, run_facets, job_facets) for Airflow's `OperatorLineage`, instead of emitting.

    Leaves out `jobType` and `parent`, which Airflow's provider writes for the task.
    Our facet classes list their fields in `_additional_skip_redact`, so Airflow's
    secrets masker leaves them intact.

    Example:
        >>> from airflow.providers.openlineage.extractors import OperatorLineage   # doctest: +SKIP
        >>> inputs, outputs, run_facets, job_facets = operator_lineage_parts(run)  # doctest: +SKIP
        >>> OperatorLineage(inputs=inputs, outputs=outputs, run_facets=run_facets, job_facets=job_facets)
    """
    if event_type not in EVENT_TYPES:
        raise ConfigError(f"lineage: event type must be one of {', '.join(EVENT_TYPES)}, got {event_type!r}")
    return (_inputs(run), _outputs(run, event_type), _run_facets(run, event_type, for_airflow=True),
            _job_facets(run, None, None, for_airflow=True))


def event_from_dict(event: dict) -> event_v2.RunEvent:
    """Wrap a stored event dict in the client's RunEvent so `OpenLineageClient.emit` accepts it.

    Facets stay plain dicts: the client serializes them as they are, so what is
    shipped is byte-for-byte what the outbox holds (plus anything the user's
    client config adds, e.g. tags).
    """
    def ds(cls, d: dict, extra: str):
        # None, not {}: the client drops None, so an absent facet map stays absent on the wire.
        return cls(namespace=d["namespace"], name=d["name"], facets=d.get("facets"), **{extra: d.get(extra)})

    return event_v2.RunEvent(
        eventType=event_v2.RunState[event["eventType"]],
        eventTime=event["eventTime"],
        run=event_v2.Run(runId=event["run"]["runId"], facets=event["run"].get("facets")),
        job=event_v2.Job(namespace=event["job"]["namespace"], name=event["job"]["name"],
                         facets=event["job"].get("facets")),
        inputs=[ds(event_v2.InputDataset, d, "inputFacets") for d in event.get("inputs") or []],
        outputs=[ds(event_v2.OutputDataset, d, "outputFacets") for d in event.get("outputs") or []],
        producer=event["producer"],
    )
