"""`governed_attestation_check`: a Dagster asset check that attests, then verifies, a model asset's training data.

The check runs after the model asset: it finds the model (the `model` path, or the model
asset's latest `dagster/uri`) and the governed dataset files it was trained on (each dataset
asset's latest `dagster/uri`, as `GovernedIOManager` records it, or a path given as is), checks
each file against the ledger and signs the in-toto statement (`lineage_guard.attest`), then
verifies it with the pinned keys. It passes with the model digest, the receipts and the ledger
head as metadata; a dataset no governed read wrote, or one changed since, fails the check with
each problem named (`lineage_guard/problems`), and nothing is signed or written. The training
step is emitted as an OpenLineage run (inputs = the files, output = the model,
`lineageGuard_attestation`) whose parent is the Dagster run.

Example:
    >>> import dagster as dg
    >>> from lineage_guard.assets import governed_attestation_check
    >>> check = governed_attestation_check(asset="model", datasets=[["ml", "patients"], ["ml", "visits"]])
    >>> check.check_keys                                                     # doctest: +SKIP
    {AssetCheckKey(asset_key=AssetKey(['model']), name='governed_attestation')}
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import dagster as dg

from lineage_guard.errors import ConfigError, LineageGuardError

Dataset = dg.AssetKey | str | Sequence[str]


def _key(item: Dataset) -> dg.AssetKey | None:
    """An asset key for `item`, or None when it is a path/URI (a string with a `/` or `://`)."""
    if isinstance(item, dg.AssetKey):
        return item
    if isinstance(item, str):
        return None if ("/" in item or item.endswith(".parquet")) else dg.AssetKey(item)
    return dg.AssetKey(list(item))


def _latest_uri(context: dg.AssetCheckExecutionContext, key: dg.AssetKey) -> str:
    event = context.instance.get_latest_materialization_event(key)
    meta = event.asset_materialization.metadata if event is not None and event.asset_materialization else {}
    uri = meta.get("dagster/uri")
    if uri is None:
        raise ConfigError(f"asset {key.to_user_string()} has no materialization with dagster/uri: materialize it "
                          "(with GovernedIOManager for a dataset) before its attestation check runs")
    return _as_path(str(uri.value))


def _as_path(uri: str) -> str:
    parsed = urlparse(uri)
    return unquote(parsed.path) if parsed.scheme == "file" else uri


def governed_attestation_check(*, asset: Dataset | dg.AssetsDefinition, datasets: Sequence[Dataset],
                               model: str | os.PathLike | None = None, attestation: str | os.PathLike | None = None,
                               ledger: str | None = None, public_keys: Sequence[str] = (),
                               name: str = "governed_attestation", blocking: bool = True) -> dg.AssetChecksDefinition:
    """An asset check on the model `asset` attesting that it was trained on the governed `datasets`.

    `datasets`: asset keys of governed assets (their latest `dagster/uri` is the file) or paths/URIs.
    `model`: the model file or folder (default: the model asset's latest `dagster/uri`).
    `attestation`: where to write the DSSE envelope (a copy is kept in the state folder either way).
    `ledger`/`public_keys`: the ledger (default: configured) and extra trusted keys. `blocking`: a
    failed check stops downstream assets (default True: nothing downstream of an unattested model).
    """
    keys = [k for k in map(_key, datasets) if k is not None]
    target = asset.key if isinstance(asset, dg.AssetsDefinition) else _key(asset)
    if target is None:
        raise ConfigError(f"governed_attestation_check: asset must be the model's asset key, not a path ({asset!r})")

    @dg.asset_check(asset=asset, name=name, blocking=blocking, additional_deps=keys,
                    description="lineage_guard: the model was trained on governed extracts only (signed, verified)")
    def _check(context) -> dg.AssetCheckResult:   # unannotated: Dagster reads the annotation, a string here
        from lineage_guard.attest.attestation import AttestationError, attest, verify

        try:
            model_path = os.fspath(model) if model is not None else _latest_uri(context, target)
            files = [_latest_uri(context, k) if (k := _key(d)) is not None else os.fspath(d) for d in datasets]
            training = {"jobNamespace": os.environ.get("OPENLINEAGE_NAMESPACE", "lineage_guard"),
                        "jobName": f"{'.'.join(target.path)}.{name}", "integration": "DAGSTER", "jobType": "TRAINING",
                        "parentRunId": context.run.run_id,
                        "parentJobNamespace": os.environ.get("OPENLINEAGE_NAMESPACE", "lineage_guard"),
                        "parentJobName": context.run.job_name}
            envelope = attest(model_path, files, out=attestation, ledger=ledger, public_keys=public_keys,
                              training=training)
        except AttestationError as exc:
            context.log.error(str(exc))
            return dg.AssetCheckResult(passed=False, description=str(exc)[:2000],
                                       metadata={"lineage_guard/problems": dg.MetadataValue.json(exc.problems)})
        except LineageGuardError as exc:
            return dg.AssetCheckResult(passed=False, description=f"not attested: {exc}"[:2000],
                                       metadata={"lineage_guard/problems": dg.MetadataValue.json([str(exc)])})
        result = verify(envelope, model=model_path, ledger=ledger, public_keys=public_keys)
        if not result.ok:  # what was just signed must check out with the pinned keys alone
            problems = [str(f) for f in result.failures]
            return dg.AssetCheckResult(passed=False, description="the attestation does not verify",
                                       metadata={"lineage_guard/problems": dg.MetadataValue.json(problems)})
        predicate = json.loads(base64.b64decode(envelope["payload"]))["predicate"]
        meta: dict[str, Any] = {
            "lineage_guard/model_digest": dg.MetadataValue.text(predicate["model"]["digest"]),
            "lineage_guard/receipts": dg.MetadataValue.json([d["receiptId"] for d in predicate["datasets"]]),
            "lineage_guard/ledger_head": dg.MetadataValue.json(predicate["ledger"]["head"]),
            "lineage_guard/key_id": dg.MetadataValue.text(str(result.key_id)),
            "lineage_guard/training_run_id": dg.MetadataValue.text(predicate["training"]["runId"]),
        }
        if attestation is not None:
            meta["lineage_guard/attestation"] = dg.MetadataValue.path(str(Path(attestation).resolve()))
        return dg.AssetCheckResult(passed=True, metadata=meta,
                                   description=f"trained on {len(predicate['datasets'])} governed dataset(s), "
                                               f"signed by {result.key_id}")

    return _check
