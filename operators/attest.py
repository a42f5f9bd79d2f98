"""`GovernedAttestOperator`: attest, then verify, the training step whose inputs are governed extracts.

Runs after the task that trained the model: it digests the model, checks each dataset file
against the worker's ledger (receipt, chain, digest; `lineage_guard.attest`), signs the
in-toto statement with the ledger's key, verifies it at once (pinned keys only), and returns a
value-free summary. A dataset that no governed read wrote, or one edited since, fails the task
with every problem named, and nothing is written. The task is the training run in lineage:
Airflow's OpenLineage provider emits it with inputs = the dataset files, output = the model
(datasetType MODEL) and the `lineageGuard_attestation` facet; the task's OpenLineage run id is
the `training.runId` in the signed predicate.

`datasets` takes paths or URIs, a folder of governed files, or the XCom summary of a
`GovernedPostgresOperator` extract (its `output_uri`), so `datasets=[extract.output, ...]` works.

Example:
    >>> from lineage_guard.operators import GovernedAttestOperator
    >>> attest = GovernedAttestOperator(                                     # doctest: +SKIP
    ...     task_id="attest_model", model="/models/churn/{{ ds }}",
    ...     datasets=[extract_patients.output, extract_visits.output],
    ...     attestation="/models/churn/{{ ds }}.att.json",
    ... )
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from lineage_guard.errors import ConfigError, LineageGuardError


def dataset_paths(datasets: Any) -> list[str]:
    """The dataset arguments as paths/URIs: strings as given, an extract summary by its `output_uri`."""
    items = [datasets] if isinstance(datasets, (str, dict)) else list(datasets or ())
    out = []
    for item in items:
        if isinstance(item, dict):
            if not item.get("output_uri"):
                raise ConfigError("a dataset given as a dict must be a governed extract's summary with output_uri "
                                  f"(got keys {sorted(item)})")
            out.append(str(item["output_uri"]))
        elif isinstance(item, (list, tuple)):
            out.extend(dataset_paths(item))
        else:
            out.append(str(item))
    return out


class GovernedAttestOperator(BaseOperator):
    """Sign which governed datasets a model was trained on; verify the signature before returning.

    `model` (file or folder), `datasets` (see module doc) and `attestation` (where the DSSE
    envelope goes; a copy is always kept in the state folder for `audit model`) are templated.
    `ledger` (URL; default: the worker's configured ledger) and `public_keys` (extra trusted keys
    for the chain and the re-check) are not: they decide what is trusted.
    The XCom is `{attestation, model_digest, datasets, receipts, ledger_head, key_id, training_run_id}`.
    """

    template_fields: Sequence[str] = ("model", "datasets", "attestation")
    ui_color = "#fde0dd"

    def __init__(self, *, model: str, datasets: Any, attestation: str | None = None, ledger: str | None = None,
                 public_keys: Sequence[str] = (), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model = model
        self.datasets = datasets
        self.attestation = attestation
        self.ledger = ledger
        self.public_keys = tuple(public_keys)
        self._envelope: dict | None = None
        self._training: dict[str, str] = {}

    def execute(self, context) -> dict[str, Any]:
        import base64
        import json

        from lineage_guard.attest.attestation import AttestationError, attest, verify

        from .operator import _airflow_run

        namespace, run = _airflow_run(context, self.dag_id, self.task_id)
        self._training = {"jobNamespace": namespace, "jobName": f"{self.dag_id}.{self.task_id}"}
        if run is not None:
            self._training["runId"] = run["run_id"]
        try:
            files = dataset_paths(self.datasets)
            envelope = attest(self.model, files, out=self.attestation, ledger=self.ledger,
                              public_keys=self.public_keys, training=self._training, lineage=False)
        except AttestationError as exc:
            raise AirflowFailException(str(exc)) from None
        except LineageGuardError as exc:
            raise AirflowFailException(f"not attested: {exc}") from None
        result = verify(envelope, model=self.model, ledger=self.ledger, public_keys=self.public_keys)
        if not result.ok:  # what was just signed must check out with the pinned keys alone
            raise AirflowFailException("the attestation does not verify: " + "; ".join(map(str, result.failures)))
        self._envelope = envelope
        predicate = json.loads(base64.b64decode(envelope["payload"]))["predicate"]
        self.log.info("attested %s trained on %d governed dataset(s), ledger head #%d, signed by %s",
                      predicate["model"]["digest"], len(predicate["datasets"]), predicate["ledger"]["head"]["entries"],
                      result.key_id)
        return {"attestation": str(self.attestation) if self.attestation else None,
                "model_digest": predicate["model"]["digest"], "datasets": len(predicate["datasets"]),
                "receipts": [d["receiptId"] for d in predicate["datasets"]],
                "ledger_head": predicate["ledger"]["head"], "key_id": result.key_id,
                "training_run_id": predicate.get("training", {}).get("runId")}

    def get_openlineage_facets_on_complete(self, task_instance):
        """The training run: inputs = the dataset files, output = the model, our attestation facet."""
        from airflow.providers.openlineage.extractors import OperatorLineage

        if self._envelope is None:
            return OperatorLineage()
        from lineage_guard.attest.training_run import training_parts
        from lineage_guard.lineage.facets import ATTESTATION_KEY

        parts = training_parts(self._envelope, model=self.model, training=self._training,
                               attestation=self.attestation, for_orchestrator=True)
        return OperatorLineage(inputs=parts.inputs, outputs=parts.outputs,
                               run_facets={ATTESTATION_KEY: parts.attestation})

    def get_openlineage_facets_on_failure(self, task_instance):
        from airflow.providers.openlineage.extractors import OperatorLineage

        return OperatorLineage()  # nothing was attested: no claim about inputs or a model
