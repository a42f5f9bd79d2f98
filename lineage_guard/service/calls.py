"""What an orchestrator's call says about its own run, and the lineage the service hands back for it.

An Airflow task or a Dagster step reading through `lineage-guard serve` still owns its
OpenLineage run: the orchestrator emits START/COMPLETE/FAIL for the task. The client therefore
sends `x-lineage-guard-run` (JSON, value-free): the task's OpenLineage run as the parent of the
governed run, the run an approval binds to, and the approval context an approver sees. A call
carrying it gets back, with its receipt or its refusal, the lineage parts of the governed run
(`lineage_doc`): inputs, the output's facets for the file the client writes, our run facets
(`lineageGuard_access`: who saw which column, how), the job's `sql` facet. The client puts them
into the task's own events; the server's ledger names the task's run as the parent.

What the client says here is recorded as its claim; the identity is still the one its credential
proves. A malformed header is refused (`ConfigError`), never half-used.

Example:
    >>> ctx = RunContext.parse('{"parent": {"run_id": "9b0f0f43-3e5d-4a39-9a55-5f3c5f0b1a2e", '
    ...                        '"job_namespace": "airflow", "job_name": "dag.task"}}')
    >>> ctx.parent.job_name, ctx.lineage
    ('dag.task', True)
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from ..run import ParentRun, RunRecord, SinkInfo

RUN_HEADER = "x-lineage-guard-run"
PROVENANCE_HEADER = "x-lineage-guard-provenance"   # "1": the receipt carries the file footer's provenance
MAX_HEADER = 8192
MAX_TEXT = 512
# The output dataset the client will write is named by the client; the server builds its facets
# (schema, column lineage, masking) against this placeholder, which the client replaces.
CLIENT_OUTPUT = SinkInfo("parquet", "file:///lineage-guard-client-output", "file", "/lineage-guard-client-output")


@dataclass(frozen=True)
class RunContext:
    """The orchestrator run a call belongs to (parsed from `x-lineage-guard-run`)."""

    parent: ParentRun | None = None
    approval_run: str | None = None
    approval_context: dict[str, str] = field(default_factory=dict)
    lineage: bool = True          # the client wants the lineage parts back

    @classmethod
    def parse(cls, text: str | None) -> RunContext | None:
        if text is None:
            return None
        if len(text) > MAX_HEADER:
            raise ConfigError(f"{RUN_HEADER} is longer than {MAX_HEADER} characters")
        try:
            doc = json.loads(text)
        except ValueError:
            raise ConfigError(f"{RUN_HEADER} must be a JSON object") from None
        if not isinstance(doc, dict) or set(doc) - {"parent", "approval_run", "approval_context", "lineage"}:
            raise ConfigError(f"{RUN_HEADER} takes parent, approval_run, approval_context and lineage only")
        parent = None
        if doc.get("parent") is not None:
            p = doc["parent"]
            if not isinstance(p, dict) or set(p) != {"run_id", "job_namespace", "job_name"}:
                raise ConfigError(f"{RUN_HEADER}: parent takes run_id, job_namespace and job_name")
            try:
                uuid.UUID(str(p["run_id"]))
            except ValueError:
                raise ConfigError(f"{RUN_HEADER}: parent.run_id must be a UUID (an OpenLineage run id)") from None
            parent = ParentRun(str(p["run_id"]), _text(p["job_namespace"], "parent.job_namespace"),
                               _text(p["job_name"], "parent.job_name"))
        context = doc.get("approval_context") or {}
        if not isinstance(context, dict) or len(context) > 16:
            raise ConfigError(f"{RUN_HEADER}: approval_context is an object of at most 16 strings")
        run = doc.get("approval_run")
        return cls(parent, _text(run, "approval_run") if run else None,
                   {_text(k, "approval_context key"): _text(v, "approval_context value") for k, v in context.items()},
                   bool(doc.get("lineage", True)))


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str | int) or isinstance(value, bool) or len(str(value)) > MAX_TEXT:
        raise ConfigError(f"{RUN_HEADER}: {what} must be a string of at most {MAX_TEXT} characters")
    return str(value)


def lineage_doc(run: RunRecord, event_type: str) -> dict:
    """The run's OpenLineage parts as JSON: what the orchestrator's own event for its task carries.

    `client_output` is the output dataset's facets for the file the client writes (the server
    streams; it writes nothing), built against a placeholder name the client replaces.
    """
    from openlineage.client.serde import Serde

    from ..lineage.events import _prune, operator_lineage_parts

    inputs, outputs, run_facets, job_facets = operator_lineage_parts(run, event_type)
    doc: dict[str, Any] = {
        "event_type": event_type,
        "run_id": run.run_id,
        "inputs": [_prune(Serde.to_dict(d)) for d in inputs],
        "outputs": [_prune(Serde.to_dict(d)) for d in outputs],
        "run_facets": {k: _prune(Serde.to_dict(v)) for k, v in run_facets.items()},
        "job_facets": {k: _prune(Serde.to_dict(v)) for k, v in job_facets.items()},
    }
    is_read = run.decision.analysis is None or run.decision.analysis.is_read
    if not outputs and is_read and run.decision.action == "allow" and (run.sink is None or run.sink.kind == "memory"):
        [placeholder] = operator_lineage_parts(dataclasses.replace(run, sink=CLIENT_OUTPUT), event_type)[1]
        out = _prune(Serde.to_dict(placeholder))
        (out.get("facets") or {}).pop("dataSource", None)
        doc["client_output"] = {k: v for k, v in out.items() if k not in ("namespace", "name")}
    return doc


def provenance_doc(run: RunRecord, ledger: CallLedger) -> dict | None:
    """The provenance document a client stamps into the Parquet file it writes from this stream.

    The same document a governed Parquet write carries in embedded mode (`attest.provenance`): the
    run's `open` entry, its final receipt, the policy digest, who, why, how each column left. The
    server does not see the file, so no entry records its sha256 (the client's file is its claim).
    """
    if ledger.intent is None or run.receipt is None:
        return None
    from ..attest.provenance import provenance_for

    doc = provenance_for(run, intent=ledger.intent, receipt_id=run.receipt.id,
                         policy_digest=run.extra.get("policy_digest", ""))
    doc["written_by"] = "client"     # a thin client wrote the file; the server streamed it
    return doc


def refusal_lineage(run: RunRecord) -> dict:
    """`lineage_doc(run, "FAIL")`, small enough for a gRPC status trailer (a client drops trailers over 8 KiB).

    What is dropped first is what the task's FAIL event can do without: the inputs' facets, then the
    job's `sql` facet, then the per-column detail of the access facet (identity, purpose, decision,
    outcome and receipt stay).
    """
    doc = lineage_doc(run, "FAIL")
    doc.pop("client_output", None)
    for shrink in (_bare_inputs, _no_job_facets, _no_columns):
        if len(json.dumps(doc)) <= MAX_REFUSAL_LINEAGE:
            break
        shrink(doc)
    return doc


MAX_REFUSAL_LINEAGE = 4096


def _bare_inputs(doc: dict) -> None:
    doc["inputs"] = [{"namespace": d["namespace"], "name": d["name"]} for d in doc["inputs"]]


def _no_job_facets(doc: dict) -> None:
    doc["job_facets"] = {}


def _no_columns(doc: dict) -> None:
    for facet in doc["run_facets"].values():
        facet.pop("columns", None)


class CallLedger:
    """The server's ledger for one call's session, remembering the last run it recorded.

    A refusal (denied, needs_approval) is recorded inside the session before it raises; the run is
    taken from here so the refusal can carry its lineage back to the client.
    """

    def __init__(self, ledger: Any) -> None:
        self._ledger = ledger
        self.last: RunRecord | None = None
        self.intent = None     # the receipt of the run's `open` entry (recorded before any batch left)

    def record(self, run: RunRecord):
        receipt = self._ledger.record(run)
        self.last = run
        if run.outcome == "open":
            self.intent = receipt
        return receipt

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ledger, name)
