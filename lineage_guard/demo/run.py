"""`lineage-guard demo`: a fake clinic read by two identities, side by side.

Runs on a laptop with no database server: an embedded PostgreSQL (pgserver) is started
under the state folder unless `--source URL` names your own server. Every value is fake.
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

from ..identity import Identity
from ..paths import state_file
from ..policy import load_policy

POLICY = Path(__file__).with_name("policy.yaml")
QUERY = "SELECT id, mrn, full_name, email, birth_date, zip, diagnosis FROM patients ORDER BY id"
READERS = [
    # (label, identity, purpose)
    ("AI training service", Identity("svc-training", "service"), "ai_training"),
    ("Clinician", Identity("dr-grey", "human"), "treatment"),
]


def _demo_master_key() -> None:
    """The demo needs a master key; outside the demo it must come from the environment or a file."""
    if os.environ.get("LINEAGE_GUARD_MASTER_KEY") or os.environ.get("LINEAGE_GUARD_MASTER_KEY_FILE"):
        return
    path = state_file("demo-master.key")
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    os.environ["LINEAGE_GUARD_MASTER_KEY_FILE"] = str(path)


def run_demo(source: str | None, out_dir: Path, rows: int = 100_000, console: Console | None = None) -> dict:
    """Seed, extract twice, print what each identity saw; returns the two results' summaries."""
    from ..demo.data import seed
    from ..session import GovernedSession

    console = console or Console()
    _demo_master_key()
    if source is None:
        from ..sources.embedded import embedded_url

        console.print("starting the embedded PostgreSQL (pgserver) ...")
        source = embedded_url()
    t0 = time.perf_counter()
    counts = seed(source, patients=rows, customers=rows)
    console.print(f"seeded fake data {counts} in {time.perf_counter() - t0:.1f}s")

    policy = load_policy(POLICY)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {}
    previews = {}
    for label, who, purpose in READERS:
        target = out_dir / f"patients_{who.principal}.parquet"
        with GovernedSession(source, policy, who, purpose, job_name=f"demo.patients_for_{purpose}") as session:
            result = session.extract(QUERY, to=str(target))
        previews[label] = pq.read_table(target).slice(0, 3).to_pylist()  # what landed, not a second read
        results[label] = result
        console.print(f"[bold]{label}[/bold] ({who.principal}, {purpose}): {result.rows:,} rows -> {target}; "
                      f"masked: {', '.join(result.masked_columns) or 'none'}; receipt {result.receipt_id}",
                      highlight=False)

    _side_by_side(console, previews)
    _attempt_and_record(console, source, policy)
    return {label: r.summary() for label, r in results.items()}


PROBE = "SELECT id FROM customers WHERE ssn = '900-12-3456'"  # singling someone out by a sensitive value


def _attempt_and_record(console: Console, source: str, policy) -> None:
    """A denied probe, then what the ledger and the lineage outbox now hold."""
    from ..audit import Ledger, LedgerError
    from ..audit.signing import local_signer
    from ..errors import AccessDenied
    from ..lineage import Outbox, transport_configured
    from ..session import GovernedSession

    with GovernedSession(source, policy, READERS[0][1], READERS[0][2], job_name="demo.probe") as session:
        try:
            session.read_arrow(PROBE)
        except AccessDenied as exc:
            console.print(f"[bold]Denied probe[/bold] by svc-training: {exc.reasons[0]} (receipt {exc.receipt_id})",
                          highlight=False)
    ledger = Ledger.open()
    report = ledger.verify()
    ledger.close()
    if not report.ok:  # never a green demo on a ledger that does not verify
        raise LedgerError(f"the ledger {state_file('ledger.sqlite')} does not verify (first bad {report.problem}); "
                          "see `lineage-guard audit verify`")
    signer = local_signer()
    console.print(f"ledger: {report.entries} entries, chain verified ({state_file('ledger.sqlite')}; signing key "
                  f"{signer.key_id if signer else '-'} in {signer.source if signer else '-'}); "
                  "try `lineage-guard audit who-saw public.patients.email`", highlight=False)
    status = Outbox().counts()
    where = "shipping to your OpenLineage backend" if transport_configured() else \
        "queued; set OPENLINEAGE_URL=http://localhost:5000 (Marquez) and run `lineage-guard lineage flush`"
    console.print(f"lineage: {sum(status.values())} OpenLineage events in the outbox ({status}); {where}",
                  highlight=False)


def _side_by_side(console: Console, previews: dict[str, list[dict]]) -> None:
    labels = list(previews)
    first = previews[labels[0]]
    if not first:
        return
    table = Table(title="The same first patient, as each identity saw it")
    table.add_column("column")
    for label in labels:
        table.add_column(label)
    for name in first[0]:
        table.add_row(name, *(str(previews[label][0].get(name, "(dropped)")) for label in labels))
    console.print(table)
