"""`lineage-guard demo`: a fake clinic read by two identities, side by side.

Runs on a laptop with no database server: an embedded PostgreSQL (pgserver) is started
under the demo's state folder unless `--source URL` names your own server. Every value is fake.

The demo keeps to itself:
- data: only the schema `lineage_guard_demo`, which it creates with a marker and refuses to
  touch when it exists without one (`lineage_guard.demo.data.seed`);
- state: its own state folder (`<out>/state` by default: ledger, signing key, masking key,
  approvals, OpenLineage outbox, embedded server), never the user's `~/.lineage_guard`, and
  none of the user's LINEAGE_GUARD_* ledger/key settings while it runs (`demo_environment`).

It runs as a list of stages over one `DemoRun` (`STAGES`); a new stage is a function taking
the `DemoRun`, added to the list.

Example:
    >>> from pathlib import Path
    >>> run_demo(source=None, out_dir=Path("demo-out"), rows=1000)  # doctest: +SKIP
"""

from __future__ import annotations

import os
import secrets
import shlex
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

from ..identity import Identity
from ..policy import load_policy
from .data import SCHEMA

POLICY = Path(__file__).with_name("policy.yaml")
QUERY = "SELECT id, mrn, full_name, email, birth_date, zip, diagnosis FROM patients ORDER BY id"
READERS = [
    # (label, identity, purpose)
    ("AI training service", Identity("svc-training", "service"), "ai_training"),
    ("Clinician", Identity("dr-grey", "human"), "treatment"),
]
PROBE = "SELECT id FROM customers WHERE ssn = '900-12-3456'"  # singling someone out by a sensitive value
WHO_SAW_COLUMN = f"{SCHEMA}.patients.email"
MASTER_KEY_FILE = "demo-master.key"

# Settings that would point the demo at the user's own ledger, keys or approvals: unset while it runs.
_REDIRECTING_ENV = (
    "LINEAGE_GUARD_MASTER_KEY", "LINEAGE_GUARD_LEDGER_URL", "LINEAGE_GUARD_LEDGER_SIGNING_KEY_FILE",
    "LINEAGE_GUARD_LEDGER_PUBLIC_KEY", "LINEAGE_GUARD_APPROVALS_URL", "LINEAGE_GUARD_POLICY",
    "LINEAGE_GUARD_SOURCE", "LINEAGE_GUARD_IDENTITY",
)
# The ones that would send a copy-pasted `audit` command to another ledger or key than the demo's.
_AUDIT_REDIRECTING_ENV = ("LINEAGE_GUARD_LEDGER_URL", "LINEAGE_GUARD_LEDGER_SIGNING_KEY_FILE")


def default_home(out_dir: Path) -> Path:
    """The demo's state folder when none is given: `<out>/state` (so `make clean` removes it too)."""
    return Path(out_dir) / "state"


@contextmanager
def demo_environment(home: Path) -> Iterator[Path]:
    """Run with `home` as the state folder and the demo's own masking key; restore the environment after."""
    home = Path(home).expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    key = home / MASTER_KEY_FILE
    if not key.exists():
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    saved = {name: os.environ.get(name) for name in (*_REDIRECTING_ENV, "LINEAGE_GUARD_HOME",
                                                     "LINEAGE_GUARD_MASTER_KEY_FILE")}
    for name in _REDIRECTING_ENV:
        os.environ.pop(name, None)
    os.environ["LINEAGE_GUARD_HOME"] = str(home)
    os.environ["LINEAGE_GUARD_MASTER_KEY_FILE"] = str(key)
    try:
        yield home
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def audit_command(home: Path, program: str = "lineage-guard", *args: str,
                  environ: dict[str, str] | None = None) -> str:
    """A shell command that runs `program audit ARGS` on the demo's ledger, from any folder.

    It names the demo's state folder (ledger and signing key live there) and unsets any of the
    caller's settings that would point `audit` at another ledger or key.
    """
    environ = dict(os.environ if environ is None else environ)
    unset = [f"-u {name}" for name in _AUDIT_REDIRECTING_ENV if environ.get(name)]
    prefix = f"env {' '.join(unset)} " if unset else ""
    return (f"{prefix}LINEAGE_GUARD_HOME={shlex.quote(str(home))} {program} audit "
            + " ".join(shlex.quote(a) for a in args))


def invoked_program() -> str:
    """How to call this `lineage-guard` again: its name if PATH finds this one, else its absolute path."""
    argv0 = sys.argv[0] if sys.argv else ""
    if Path(argv0).name == "lineage-guard":
        found = shutil.which("lineage-guard")
        here = str(Path(argv0).resolve())
        if found and str(Path(found).resolve()) == here:
            return "lineage-guard"
        return shlex.quote(here)
    return "lineage-guard"


@dataclass
class DemoRun:
    """What the stages share: where to read, what policy, where results go, and what happened."""

    console: Console
    source: str | None
    out_dir: Path
    home: Path
    rows: int
    program: str = "lineage-guard"
    policy: Any = None
    caller_env: dict[str, str] = field(default_factory=dict)  # the user's shell, for commands they paste
    results: dict[str, Any] = field(default_factory=dict)
    previews: dict[str, list[dict]] = field(default_factory=dict)


Stage = Callable[[DemoRun], None]


def start_source(run: DemoRun) -> None:
    """The embedded server under the demo's state folder, unless --source named one."""
    if run.source is None:
        from ..sources.embedded import embedded_url

        run.console.print("starting the embedded PostgreSQL (pgserver) ...")
        run.source = embedded_url()


def seed_data(run: DemoRun) -> None:
    from .data import seed

    t0 = time.perf_counter()
    counts = seed(run.source, patients=run.rows, customers=run.rows)
    run.console.print(f"seeded fake data into schema {SCHEMA} {counts} in {time.perf_counter() - t0:.1f}s",
                      highlight=False)


def extract_twice(run: DemoRun) -> None:
    """The same query as each reader: each gets what the policy lets it see."""
    from ..session import GovernedSession

    run.out_dir.mkdir(parents=True, exist_ok=True)
    for label, who, purpose in READERS:
        target = run.out_dir / f"patients_{who.principal}.parquet"
        with GovernedSession(run.source, run.policy, who, purpose, job_name=f"demo.patients_for_{purpose}") as session:
            result = session.extract(QUERY, to=str(target))
        run.previews[label] = pq.read_table(target).slice(0, 3).to_pylist()  # what landed, not a second read
        run.results[label] = result
        run.console.print(f"[bold]{label}[/bold] ({who.principal}, {purpose}): {result.rows:,} rows -> {target}; "
                          f"masked: {', '.join(result.masked_columns) or 'none'}; receipt {result.receipt_id}",
                          highlight=False)


def side_by_side(run: DemoRun) -> None:
    labels = list(run.previews)
    if not labels or not run.previews[labels[0]]:
        return
    first = run.previews[labels[0]]
    table = Table(title="The same first patient, as each identity saw it")
    table.add_column("column")
    for label in labels:
        table.add_column(label)
    for name in first[0]:
        table.add_row(name, *(str(run.previews[label][0].get(name, "(dropped)")) for label in labels))
    run.console.print(table)


def denied_probe(run: DemoRun) -> None:
    from ..errors import AccessDenied
    from ..session import GovernedSession

    _, who, purpose = READERS[0]
    with GovernedSession(run.source, run.policy, who, purpose, job_name="demo.probe") as session:
        try:
            session.read_arrow(PROBE)
        except AccessDenied as exc:
            run.console.print(f"[bold]Denied probe[/bold] by {who.principal}: {exc.reasons[0]} "
                              f"(receipt {exc.receipt_id})", highlight=False)
            return
    from ..errors import ConfigError

    raise ConfigError(f"the demo policy {POLICY} let the probe through; it must deny it")  # never a silent pass


def ledger_report(run: DemoRun) -> None:
    """Verify the demo's ledger: a demo never ends green on a chain that does not verify."""
    from ..audit import Ledger, LedgerError
    from ..audit.signing import local_signer
    from ..paths import state_file

    ledger = Ledger.open()
    try:
        report = ledger.verify()
    finally:
        ledger.close()
    where = state_file("ledger.sqlite")
    if not report.ok:
        raise LedgerError(f"the demo's ledger {where} does not verify (first bad {report.problem}); check it with: "
                          f"{audit_command(run.home, run.program, 'verify', environ=run.caller_env)}")
    signer = local_signer()
    run.console.print(f"ledger: {report.entries} entries, chain verified ({where}; signing key "
                      f"{signer.key_id if signer else '-'} in {signer.source if signer else '-'})", highlight=False)
    run.console.print("who saw the patients' emails (copy and paste; the demo's ledger is in its own state folder):",
                      highlight=False)
    run.console.print(f"  {audit_command(run.home, run.program, 'who-saw', WHO_SAW_COLUMN, environ=run.caller_env)}",
                      highlight=False, markup=False, soft_wrap=True)


def lineage_report(run: DemoRun) -> None:
    from ..lineage import Outbox, transport_configured

    status = Outbox().counts()
    where = "shipping to your OpenLineage backend" if transport_configured() else \
        "queued; set OPENLINEAGE_URL=http://localhost:5000 (Marquez) and run " \
        f"`LINEAGE_GUARD_HOME={shlex.quote(str(run.home))} {run.program} lineage flush`"
    run.console.print(f"lineage: {sum(status.values())} OpenLineage events in the outbox ({status}); {where}",
                      highlight=False, soft_wrap=True)


def through_the_service(run: DemoRun) -> None:
    """The same two identities through `lineage-guard serve` on 127.0.0.1, and spoofing refused (service_stage)."""
    from .service_stage import run_service_stage

    run_service_stage(run.console, run.source, POLICY, QUERY, run.home / "service")


STAGES: tuple[Stage, ...] = (start_source, seed_data, extract_twice, side_by_side, denied_probe, ledger_report,
                             lineage_report, through_the_service)


def run_demo(source: str | None, out_dir: Path, rows: int = 100_000, console: Console | None = None, *,
             home: Path | None = None, program: str = "lineage-guard",
             stages: Sequence[Stage] = STAGES) -> dict:
    """Seed, extract twice, probe, verify; returns the two extractions' summaries.

    `home` is the demo's own state folder (default `<out_dir>/state`); the caller's environment
    is restored afterwards.
    """
    out_dir = Path(out_dir)
    caller_env = dict(os.environ)
    with demo_environment(home if home is not None else default_home(out_dir)) as state:
        run = DemoRun(console=console or Console(), source=source, out_dir=out_dir, home=state, rows=rows,
                      program=program, policy=load_policy(POLICY), caller_env=caller_env)
        run.console.print(f"demo state folder: {state} (ledger, keys, approvals, outbox; not ~/.lineage_guard)",
                          highlight=False, soft_wrap=True)
        for stage in stages:
            stage(run)
    return {label: r.summary() for label, r in run.results.items()}
