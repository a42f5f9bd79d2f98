"""Attest a model's training data, and verify an attestation.

`attest` digests the model (per file), checks every dataset file against the ledger
(`datasets.py`), verifies the whole chain, and signs an in-toto Statement v1 (subject: the
model's files; predicate: `PREDICATE_TYPE`, schema in `schemas/`) in a DSSE envelope with
the ledger's own signing key. A copy is kept in the state folder's `attestations/`, where
`lineage-guard audit model` finds it.

`verify` trusts only pinned keys (`--public-key`, `LINEAGE_GUARD_LEDGER_PUBLIC_KEY`, this
machine's ledger key) and reports every failure by name: `signature`, `statement`, `model`,
`dataset`, `receipt`, `ledger`.

Example:
    >>> envelope = attest("model/", ["a.parquet", "b.parquet"], out="model.att.json")   # doctest: +SKIP
    >>> verify("model.att.json", model="model/").ok                                     # doctest: +SKIP
    True
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from .. import paths
from ..errors import ConfigError, LineageGuardError
from . import dsse, files
from .datasets import check_dataset, expand
from .manifest import digest_tree, manifest_digest

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://lineage-guard.dev/attestation/training-data/v1"
FOLDER = "attestations"


class AttestationError(LineageGuardError):
    """Nothing was attested: each problem is named (a dataset, its receipt, the chain)."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("not attested:\n  " + "\n  ".join(self.problems))


@dataclass(frozen=True)
class Failure:
    """One named reason an attestation does not verify."""

    check: str      # signature | statement | model | dataset | receipt | ledger
    message: str

    def __str__(self) -> str:
        return f"{self.check}: {self.message}"


@dataclass
class Verification:
    """The outcome of `verify`: the statement (when the signature held) and every failure."""

    statement: dict[str, Any] | None = None
    key_id: str | None = None
    failures: list[Failure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def fail(self, check: str, message: str) -> None:
        self.failures.append(Failure(check, message))

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "keyId": self.key_id,
                "failures": [{"check": f.check, "message": f.message} for f in self.failures],
                "statement": self.statement}


@cache
def predicate_schema() -> dict[str, Any]:
    """The JSON schema of our predicate, shipped in the package."""
    return json.loads(resources.files("lineage_guard.attest.schemas").joinpath("TrainingDataPredicate.json")
                      .read_text())


def statement_problems(statement: Any) -> list[str]:
    """Why `statement` is not an in-toto Statement v1 carrying a valid predicate of ours (empty if it is)."""
    import jsonschema

    if not isinstance(statement, dict):
        return ["the payload is not a JSON object"]
    problems = []
    if statement.get("_type") != STATEMENT_TYPE:
        problems.append(f"_type is {statement.get('_type')!r}, not {STATEMENT_TYPE}")
    if statement.get("predicateType") != PREDICATE_TYPE:
        problems.append(f"predicateType is {statement.get('predicateType')!r}, not {PREDICATE_TYPE}")
    subjects = statement.get("subject")
    if not isinstance(subjects, list) or not subjects or not all(
            isinstance(s, dict) and isinstance(s.get("name"), str) and isinstance(s.get("digest"), dict)
            and isinstance(s["digest"].get("sha256"), str) for s in subjects):
        problems.append("subject must be a non-empty list of {name, digest: {sha256}}")
    validator = jsonschema.Draft202012Validator(predicate_schema())
    for error in sorted(validator.iter_errors(statement.get("predicate")), key=lambda e: list(e.path)):
        where = "/".join(str(p) for p in error.path) or "(root)"
        problems.append(f"predicate {where}: {error.message[:200]}")
    return problems


def _ledger(ledger: Any) -> Any:
    if ledger is None or isinstance(ledger, str):
        from ..audit import Ledger

        return Ledger.open(ledger, create=False)
    return ledger


def attest(model: str | os.PathLike, datasets: Sequence[str | os.PathLike], *, out: str | os.PathLike | None = None,
           ledger: Any = None, public_keys: Sequence[str] = (), training: dict[str, str] | None = None,
           keep: bool = True, lineage: Any = None) -> dict[str, Any]:
    """Sign which governed dataset files `model` was trained on; returns the DSSE envelope.

    `datasets` are paths or fsspec URIs (`file://`, `memory://`, `s3://`...; a folder stands for its
    Parquet files). `ledger` is a `Ledger`, a ledger URL, or None for the configured one; its signing key signs.
    `training` may name the training run (`runId`, `jobNamespace`, `jobName`, `parentRunId`,
    `parentJobNamespace`, `parentJobName`). The training step is emitted as an OpenLineage run
    (inputs: the dataset files; output: the model; `lineageGuard_attestation` on COMPLETE, see
    `training_run.py`) through `lineage` (a `LineageEmitter`; None: the default one; False: none).
    Raises `AttestationError` naming every problem, and writes nothing, when a dataset does not check out.

    Example:
        >>> import lineage_guard
        >>> lineage_guard.attest("model.npz", ["train.parquet"], out="model.att.json")   # doctest: +SKIP
    """
    started = datetime.now(UTC)
    ledger = _ledger(ledger)
    files = expand(datasets)
    if not files:
        raise ConfigError("attest needs at least one dataset file (the governed extracts the model was trained on)")
    subjects = digest_tree(model)
    problems: list[str] = []
    report = ledger.verify(public_keys)
    if not report.ok:
        problems.append(f"ledger: the chain does not verify (first bad {report.problem})")
    records = []
    for path in files:
        record, found = check_dataset(path, ledger, public_keys)
        problems.extend(found)
        if record is not None:
            records.append(record)
    if problems:
        raise AttestationError(problems)
    ledger.check_signer()  # the key that signs is the one the ledger pinned
    signer = ledger.signer
    predicate: dict[str, Any] = {
        "attestedAt": datetime.now(UTC).isoformat(),
        "model": {"digest": manifest_digest(subjects), "files": len(subjects)},
        "datasets": records,
        "ledger": {"head": {"entries": report.entries, "hash": report.head_hash}, "keyId": signer.key_id},
    }
    training = {k: str(v) for k, v in (training or {}).items() if v is not None}
    if lineage is not False and "runId" not in training:
        training["runId"] = str(uuid.uuid4())   # the OpenLineage run the training step is emitted as
    named = {k: training[k] for k in ("runId", "jobNamespace", "jobName") if k in training}
    if named:
        predicate["training"] = named
    statement = {"_type": STATEMENT_TYPE, "subject": subjects, "predicateType": PREDICATE_TYPE,
                 "predicate": predicate}
    problems = statement_problems(statement)
    if problems:  # our own output must match our own schema; a bug here must not sign
        raise AttestationError([f"statement: {p}" for p in problems])
    payload = json.dumps(statement, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    envelope = dsse.sign(payload, signer)
    events, emitter = _training_lineage(envelope, model, started, training, out, lineage)
    text = json.dumps(envelope, indent=2) + "\n"
    targets = [Path(out)] if out is not None else []
    if keep:
        targets.append(paths.state_file(FOLDER) / f"{predicate['model']['digest'].split(':', 1)[1]}.dsse.json")
    for target in targets:
        _write_atomic(target, text)
    if emitter is not None:
        emitter.send(events)
    return envelope


def _training_lineage(envelope: dict[str, Any], model, started: datetime, training: dict[str, str] | None,
                      out, lineage: Any) -> tuple[list[dict], Any]:
    """The training run's events and the emitter to send them with (checked before anything is written)."""
    if lineage is False:
        return [], None
    from ..lineage import LineageEmitter
    from .training_run import training_events

    emitter = lineage if lineage is not None else LineageEmitter()
    events = training_events(envelope, model=model, started_at=started, training=training, attestation=out)
    run_id = events[0]["run"]["runId"]
    if emitter.outbox.has(run_id, "START"):
        raise ConfigError(f"training run {run_id} already has lineage events (a run is attested once); "
                          "give this attestation a new training runId, or none")
    return events, emitter


def _write_atomic(target: Path, text: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    aside = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    aside.write_text(text)
    os.replace(aside, target)


def load_envelope(path: str | os.PathLike) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"attestation {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"attestation {path} is not a JSON DSSE envelope ({type(exc).__name__})") from None


def verify(attestation: str | os.PathLike | dict[str, Any], *, model: str | os.PathLike | None = None,
           ledger: Any = None, public_keys: Sequence[str] = (), check_datasets: bool = True) -> Verification:
    """Check an attestation: signature (pinned keys only), statement schema, model digests (with `model`),
    dataset digests, every receipt, and the chain up to the recorded head."""
    from ..audit.signing import NO_TRUSTED_KEY, trusted_keys

    envelope = attestation if isinstance(attestation, dict) else load_envelope(attestation)
    result = Verification()
    trusted = trusted_keys(tuple(public_keys))
    if not trusted:
        raise ConfigError(NO_TRUSTED_KEY)
    try:
        payload, result.key_id = dsse.verify(envelope, trusted)
    except dsse.EnvelopeError as exc:
        result.fail("signature", str(exc))
        return result  # nothing in an unsigned payload is worth checking
    if envelope.get("payloadType") != dsse.IN_TOTO_PAYLOAD_TYPE:
        result.fail("statement", f"payloadType is {envelope.get('payloadType')!r}, not {dsse.IN_TOTO_PAYLOAD_TYPE}")
    try:
        statement = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError):
        result.fail("statement", "the signed payload is not JSON")
        return result
    for problem in statement_problems(statement):
        result.fail("statement", problem)
    if not result.ok:
        return result
    result.statement = statement
    predicate = statement["predicate"]
    if model is not None:
        _check_model(result, statement["subject"], digest_tree(model))
    if check_datasets:
        for record in predicate["datasets"]:
            if not files.is_file(record["name"]):
                result.fail("dataset", f"{record['name']}: no such file")
            elif files.sha256(record["name"]) != record["digest"]["sha256"]:
                result.fail("dataset", f"{record['name']}: its sha256 differs from the attested digest "
                                       "(the file was changed)")
    _check_ledger(result, predicate, _ledger(ledger), public_keys)
    return result


def _check_model(result: Verification, attested: list[dict], actual: list[dict]) -> None:
    want = {s["name"]: s["digest"]["sha256"] for s in attested}
    have = {s["name"]: s["digest"]["sha256"] for s in actual}
    for name in sorted(want.keys() | have.keys()):
        if name not in have:
            result.fail("model", f"model file {name} is attested but missing")
        elif name not in want:
            result.fail("model", f"model file {name} is not in the attestation (added after it was signed)")
        elif want[name] != have[name]:
            result.fail("model", f"model file {name}: its sha256 differs from the attested digest (the file was changed)")


def _check_ledger(result: Verification, predicate: dict, ledger: Any, public_keys: Sequence[str]) -> None:
    head = predicate["ledger"]["head"]
    report = ledger.verify(public_keys, anchors=[head["hash"]])
    if not report.ok:
        result.fail("ledger", f"the chain does not verify up to the attested head #{head['entries']} "
                              f"({head['hash'][:12]}...): first bad {report.problem}")
    for record in predicate["datasets"]:
        rid = record["receiptId"]
        check = ledger.verify_receipt(rid, public_keys)
        if not check.ok:
            result.fail("receipt", f"{rid} ({record['name']}): {check.reason}")
            continue
        entry = check.entry
        if entry["hash"] != record["entryHash"]:
            result.fail("receipt", f"{rid} ({record['name']}): the ledger's entry differs from the attested one")
        if entry["seq"] > head["entries"]:
            result.fail("receipt", f"{rid} ({record['name']}): recorded after the attested head")
        if entry["body"].get("output_sha256") != record["digest"]["sha256"]:
            result.fail("receipt", f"{rid} ({record['name']}): the ledger records another file digest")
