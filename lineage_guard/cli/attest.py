"""`lineage-guard attest ...`: sign which governed extracts a model was trained on; verify such a claim.

    lineage-guard attest --model model/ --dataset a.parquet --dataset b.parquet --out model.att.json
    lineage-guard attest verify model.att.json [--model model/] [--public-key HEX] [--json]   exit 1 on any failure

Verification pins keys: any --public-key, LINEAGE_GUARD_LEDGER_PUBLIC_KEY, and this machine's
ledger signing key, never a key the attestation names.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from .common import EXIT_ERROR, err, out, print_json, run_guarded

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, invoke_without_command=True,
                  help="Training-data attestation: attest a model's governed datasets, verify an attestation.")

LedgerOpt = Annotated[str | None, typer.Option("--ledger", help="sqlite:///path, a file path or postgresql://... "
                                               "(default: $LINEAGE_GUARD_LEDGER_URL, then the state folder).")]
KeyOpt = Annotated[list[str] | None, typer.Option("--public-key", help="A trusted ledger public key (hex, repeat).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


@app.callback()
def attest(
    ctx: typer.Context,
    model: Annotated[Path | None, typer.Option("--model", help="The model artifact: a file or a folder.")] = None,
    dataset: Annotated[list[str] | None, typer.Option(
        "--dataset", help="A governed dataset file or fsspec URI (file://, memory://, s3://...; or a folder of "
                          "them) the model was trained on; repeat.")] = None,
    out_file: Annotated[Path | None, typer.Option("--out", help="Where to write the DSSE envelope (JSON).")] = None,
    ledger: LedgerOpt = None,
    public_key: KeyOpt = None,
    run_id: Annotated[str | None, typer.Option(
        "--run-id", help="The training run's id (the OpenLineage run it is emitted as; default: a new UUID).")] = None,
    job_name: Annotated[str | None, typer.Option(
        "--job-name", help="The training job's OpenLineage name (default: lineage_guard.train.<model name>).")] = None,
    job_namespace: Annotated[str | None, typer.Option(
        "--job-namespace", help="Its OpenLineage namespace (default: $OPENLINEAGE_NAMESPACE, else lineage_guard).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Check each dataset against the ledger, then sign an in-toto statement naming the model and its data.

    The training step is emitted as an OpenLineage run: inputs the dataset files, output the model.
    """
    if ctx.invoked_subcommand is not None:
        return
    if model is None or not dataset:
        err.print("usage: lineage-guard attest --model PATH --dataset FILE [--dataset FILE ...] [--out FILE]  "
                  "(or: lineage-guard attest verify FILE)", markup=False, highlight=False)
        raise typer.Exit(64)

    def run() -> None:
        from ..attest.attestation import attest as sign

        training = {"runId": run_id, "jobName": job_name, "jobNamespace": job_namespace}
        envelope = sign(model, dataset, out=out_file, ledger=ledger, public_keys=public_key or (),
                        training={k: v for k, v in training.items() if v})
        statement = json.loads(__import__("base64").b64decode(envelope["payload"]))
        predicate = statement["predicate"]
        if as_json:
            print_json({"outcome": "attested", "out": str(out_file) if out_file else None,
                        "model": predicate["model"], "datasets": len(predicate["datasets"]),
                        "ledgerHead": predicate["ledger"]["head"], "keyId": envelope["signatures"][0]["keyid"]})
            return
        out.print(f"attested {predicate['model']['digest']} ({predicate['model']['files']} file(s)) trained on "
                  f"{len(predicate['datasets'])} governed dataset(s); ledger head #{predicate['ledger']['head']['entries']}"
                  f"; signed by {envelope['signatures'][0]['keyid']}" + (f"; written to {out_file}" if out_file else ""),
                  markup=False, highlight=False)

    run_guarded(run)


@app.command()
def verify(
    attestation: Annotated[Path, typer.Argument(help="The DSSE envelope `attest` wrote.")],
    model: Annotated[Path | None, typer.Option("--model", help="Check the model's files against the subject.")] = None,
    ledger: LedgerOpt = None,
    public_key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Signature (pinned key only), statement, model and dataset digests, receipts, chain up to the attested head."""

    def run() -> None:
        from ..attest.attestation import verify as check

        result = check(attestation, model=model, ledger=ledger, public_keys=public_key or ())
        if as_json:
            print_json({k: v for k, v in result.to_dict().items() if k != "statement"})
        else:
            for failure in result.failures:
                err.print(f"FAIL {failure.check}: {failure.message}", markup=False, highlight=False)
            if result.ok:
                predicate = result.statement["predicate"]
                out.print(f"OK: {predicate['model']['digest']} trained on {len(predicate['datasets'])} governed "
                          f"dataset(s), signed by {result.key_id}, chain verified up to #"
                          f"{predicate['ledger']['head']['entries']}" + (" (model files checked)" if model else ""),
                          markup=False, highlight=False)
        if not result.ok:
            raise typer.Exit(EXIT_ERROR)

    run_guarded(run)
