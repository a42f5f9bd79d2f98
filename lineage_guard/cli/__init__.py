"""`lineage-guard`: plan, extract, demo, and the audit / lineage / approvals / scan sub-commands.

Exit codes (see `common`): 0 allowed or done, 1 error, 2 denied, 3 needs approval, 64 usage error.
With `--json`, every command prints a JSON document on stdout whatever the outcome.
Without `--policy`, the policy is found as `config` describes ($LINEAGE_GUARD_POLICY,
./lineage_guard.yaml, pyproject.toml [tool.lineage_guard]); `lineage-guard config` shows which.

    lineage-guard plan --policy policy.yaml --identity svc-training --purpose ai_training \\
        --schema-file schema.sql --sql "SELECT id, email FROM customers" --json
    lineage-guard extract --policy policy.yaml --identity svc-training --purpose ai_training \\
        --source postgresql://127.0.0.1/clinic --sql "SELECT * FROM patients" --to patients.parquet
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from .. import __version__
from ..errors import ConfigError
from .common import EXIT_DENIED, EXIT_NEEDS_APPROVAL, EXIT_OK, err, out, print_json, run_guarded
from .config import find_policy, require_policy
from .group import RootGroup

if TYPE_CHECKING:
    from ..identity import Identity

app = typer.Typer(
    name="lineage-guard",
    cls=RootGroup,
    help="Governed, masked, audited reads of production data, with OpenLineage.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
EXIT_FOR_ACTION = {"allow": EXIT_OK, "deny": EXIT_DENIED, "needs_approval": EXIT_NEEDS_APPROVAL}


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"lineage-guard {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option(
        "--version", "-V", is_eager=True, callback=_show_version, help="Print the version and exit.")] = False) -> None:
    """Governed, masked, audited reads of production data, with OpenLineage.

    Exit codes: 0 allowed / done, 1 error, 2 denied, 3 needs approval, 64 usage error.
    """


PolicyOpt = Annotated[Path | None, typer.Option(
    "--policy", "-p", help="Policy YAML file (default: $LINEAGE_GUARD_POLICY, ./lineage_guard.yaml, "
                           "pyproject.toml [tool.lineage_guard]; see `lineage-guard config`).")]
IdentityOpt = Annotated[str | None, typer.Option("--identity", "-i", help="Principal (default: $LINEAGE_GUARD_IDENTITY).")]
GroupOpt = Annotated[list[str] | None, typer.Option("--group", "-g", help="Ignored for governance: groups come only from the policy (kept for scripts; an undeclared identity is refused unless require_declared_identities: false).")]
KindOpt = Annotated[str | None, typer.Option("--kind", help="human | service | agent (undeclared identities).")]
PurposeOpt = Annotated[str, typer.Option("--purpose", help="Why the data is read, as declared in the policy.")]
SqlOpt = Annotated[str | None, typer.Option("--sql", help="The statement.")]
FileOpt = Annotated[Path | None, typer.Option("--file", "-f", help="A file holding the statement.")]
SourceOpt = Annotated[str | None, typer.Option("--source", "-s", help="PostgreSQL URL (default: $LINEAGE_GUARD_SOURCE).", envvar="LINEAGE_GUARD_SOURCE")]


def identity_from(identity: str | None, groups: list[str] | None, kind: str | None) -> Identity:
    from ..identity import Identity

    base = Identity.parse(identity) if identity else Identity.from_env()
    if groups or kind:
        base = Identity(base.principal, kind or base.kind, frozenset(base.groups) | set(groups or ()), base.attributes)  # type: ignore[arg-type]
    return base


def statement_from(sql: str | None, file: Path | None) -> str:
    if bool(sql) == bool(file):
        raise ConfigError("give exactly one of --sql TEXT or --file FILE")
    if file:
        try:
            return file.read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read {file}: {exc.strerror}") from None
    return sql  # type: ignore[return-value]


@app.command()
def plan(
    purpose: PurposeOpt,
    policy: PolicyOpt = None,
    identity: IdentityOpt = None,
    group: GroupOpt = None,
    kind: KindOpt = None,
    source: SourceOpt = None,
    schema_file: Annotated[list[Path] | None, typer.Option("--schema-file", help="Offline DDL instead of a live catalog (repeat).")] = None,
    sql: SqlOpt = None,
    file: FileOpt = None,
    jsonl: Annotated[Path | None, typer.Option("--jsonl", help="Plan every line {id, sql} of this file; one decision per line.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the decision as JSON (a stable contract).")] = False,
    environment: Annotated[str, typer.Option("--environment", help="Source environment (production, staging...).")] = "default",
) -> None:
    """Steps 1-4 with no data touched: allow, deny or needs approval, per column clear or masked."""

    def go():
        from ..planner import plan as plan_statement
        from ..policy import load_policy
        from ..sql.catalog import Catalog

        path = require_policy(policy)
        pol = load_policy(path)
        who = identity_from(identity, group, kind)
        detect = None
        if schema_file:
            # Offline, only declared labels protect columns: one on a misspelled table would plan as clear.
            catalog = _check_classified_columns(pol, path, schema_file, None)
            if pol.detection.enabled:
                err.print("note: offline plan, so detection did not run: only columns the policy classifies "
                          "count as sensitive here (a live run also masks detected ones)", highlight=False)
        elif source:
            catalog = Catalog.from_postgres(source, search_path=pol.search_path)
            if pol.detection.applies_to(source):
                from ..classify.catalog import DetectionCatalog

                detection = DetectionCatalog()
                detect = lambda tables: detection.sensitive_labels(source, list(tables), pol.detection)
        else:
            raise ConfigError("give --source URL (live catalog) or --schema-file DDL.sql (offline)")

        def decide(text: str):
            return plan_statement(text, catalog=catalog, policy=pol, identity=who, purpose=purpose,
                                  environment=environment, detect=detect)

        if jsonl:
            raise typer.Exit(_plan_jsonl(jsonl, decide))
        decision = decide(statement_from(sql, file))
        if as_json:
            print(json.dumps(decision.to_json()))
        else:
            _print_decision(decision)
        raise typer.Exit(EXIT_FOR_ACTION[decision.action])

    run_guarded(go)


def _plan_jsonl(path: Path, decide) -> int:
    """One decision per input line, same `id`; exit 2 if any denied, else 3 if any needs approval, 1 on a bad line."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    codes: set[int] = set()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            if not isinstance(item, dict) or not isinstance(item.get("sql"), str):
                raise ValueError("each line needs an object with a string 'sql' (and an 'id')")  # noqa: TRY004
        except ValueError as exc:
            print(json.dumps({"id": None, "line": n, "error": f"{path}:{n}: {exc}"}))
            codes.add(1)
            continue
        decision = decide(item["sql"])
        print(json.dumps({"id": item.get("id"), **decision.to_json()}))
        codes.add(EXIT_FOR_ACTION[decision.action])
    return next((c for c in (2, 3, 1) if c in codes), 0)


def _print_decision(decision) -> None:
    from rich.table import Table

    colour = {"allow": "green", "deny": "red", "needs_approval": "yellow"}[decision.action]
    out.print(f"[bold {colour}]{decision.action}[/]", highlight=False)
    for reason in decision.reasons:
        out.print(f"  - {reason}", highlight=False, markup=False)
    if decision.columns:
        table = Table("#", "column", "masked", "method", "sources")
        for c in decision.columns:
            table.add_row(str(c.position), c.name, "yes" if c.masked else "no",
                          c.mask.describe() if c.mask else "", ", ".join(str(s) for s in c.sources))
        out.print(table)


@app.command()
def extract(
    purpose: PurposeOpt,
    to: Annotated[str, typer.Option("--to", "-o", help="Parquet target: a local path or an fsspec URL.")],
    policy: PolicyOpt = None,
    identity: IdentityOpt = None,
    group: GroupOpt = None,
    kind: KindOpt = None,
    source: SourceOpt = None,
    sql: SqlOpt = None,
    file: FileOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help=(
        "Print the outcome as JSON on stdout, also when denied (exit 2), waiting for approval (3) or failed (1)."))] = False,
    statement_timeout_ms: Annotated[int, typer.Option(
        "--statement-timeout-ms", help="Bound on the read; a streamed read lasts until its last batch is written.")] = 600_000,
) -> None:
    """Read, mask, write Parquet atomically, record a receipt, emit lineage."""

    def go():
        from ..session import GovernedSession

        if not source:
            raise ConfigError("give --source URL (or set LINEAGE_GUARD_SOURCE)")
        statement = statement_from(sql, file)
        with GovernedSession(source, require_policy(policy), identity_from(identity, group, kind), purpose,
                             statement_timeout_ms=statement_timeout_ms) as session:
            result = _extract_with_progress(session, statement, to, quiet=as_json)
        if as_json:
            print_json({"outcome": "done", **result.summary()})
        else:
            out.print(f"[green]done[/green]: {result.rows:,} rows, {result.bytes:,} bytes -> {result.output_uri}", highlight=False)
            out.print(f"masked: {', '.join(result.masked_columns) or '(none)'}", highlight=False)
            out.print(f"receipt: {result.receipt_id}", highlight=False)

    run_guarded(go)


def _extract_with_progress(session, statement: str, to: str, quiet: bool = False):
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TextColumn("{task.completed:,} rows"),
        TextColumn("{task.fields[rate]:,.0f} rows/s"), TimeElapsedColumn(),
        console=err, disable=quiet or not err.is_terminal, transient=False,
    ) as progress:
        task = progress.add_task("extracting", total=None, rate=0.0)

        def tick(rows: int) -> None:
            elapsed = progress.tasks[task].elapsed or 1e-9
            progress.update(task, completed=rows, rate=rows / elapsed)

        return session.extract(statement, to=to, progress=tick)


@app.command("check-policy")
def check_policy(
    policy: Annotated[Path | None, typer.Argument(
        help="Policy YAML file to validate (default: the discovered one, see `lineage-guard config`).")] = None,
    schema_file: Annotated[list[Path] | None, typer.Option(
        "--schema-file", help="Also check classified columns exist in this DDL (repeat).")] = None,
    source: Annotated[str | None, typer.Option(
        "--source", "-s", help="Also check classified columns exist in this live database (PostgreSQL URL).")] = None,
) -> None:
    """Validate a policy file (exit 1 with file:line errors); nothing is read or planned.

    Checks the schema, the names rules refer to (groups, purposes, labels), mask parameters and
    duplicate keys; with --schema-file or --source, that every classified table and column exists.
    """

    def go():
        from ..policy import load_policy

        path = require_policy(policy)
        pol = load_policy(path)
        if schema_file or source:
            _check_classified_columns(pol, path, schema_file, source)
        against = " against the schema" if schema_file or source else ""
        out.print(f"[green]ok[/green]: {path}{against}: {len(pol.identities)} identities, {len(pol.purposes)} purposes, "
                  f"{len(pol.classifications)} classified columns, {len(pol.rules)} rules; default mask "
                  f"{pol.default_mask.method}, key scope {pol.keys.scope}, inference {pol.inference}",
                  highlight=False, soft_wrap=True)

    run_guarded(go)


def _check_classified_columns(pol, path: Path, schema_file: list[Path] | None, source: str | None):
    """PolicyError if a classified table or column is missing from the DDL or the live catalog; returns the catalog."""
    from ..policy.validate import check_against_catalog
    from ..sql.catalog import Catalog

    if schema_file:
        catalog = Catalog.from_ddl(*schema_file, search_path=pol.search_path)
        check_against_catalog(pol, path, catalog, "the schema file(s) " + ", ".join(str(f) for f in schema_file))
    else:
        from ..sources.pg_url import PgUrl

        catalog = Catalog.from_postgres(source, search_path=pol.search_path)
        check_against_catalog(pol, path, catalog, f"the database {PgUrl.parse(source).redacted}")
    return catalog


@app.command()
def demo(
    source: Annotated[str | None, typer.Option("--source", help="Run against your own PostgreSQL instead of the embedded one.")] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Where the demo writes its Parquet files.")] = Path("demo-out"),
    rows: Annotated[int, typer.Option("--rows", help="Patients and customers to seed.")] = 100_000,
    home: Annotated[Path | None, typer.Option(
        "--home", help="The demo's own state folder (ledger, keys, approvals, embedded server); default <out>/state. "
                       "LINEAGE_GUARD_HOME and the ledger/key settings are not used by the demo.")] = None,
) -> None:
    """Seed a fake clinic (schema lineage_guard_demo only), extract it as two identities, show what each saw."""
    from ..demo.run import invoked_program, run_demo

    run_guarded(lambda: run_demo(source=source, out_dir=out_dir, rows=rows, console=out, home=home,
                                 program=invoked_program()))


@app.command("config")
def config(as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False) -> None:
    """Show which policy file, state folder, source and identity a command run here would use, and why."""

    def go():
        import os

        from ..paths import home_path

        found = find_policy(None)
        source = os.environ.get("LINEAGE_GUARD_SOURCE")
        if source:
            from ..sources.pg_url import PgUrl

            source = PgUrl.parse(source).redacted  # never print a password
        info = {
            "policy": str(found.path) if found else None,
            "policy_found_via": found.via if found else None,
            "home": str(home_path()),
            "source": source,
            "identity": os.environ.get("LINEAGE_GUARD_IDENTITY"),
        }
        if as_json:
            print_json(info)
            return
        if found:
            out.print(f"policy: {found.path} (from {found.via})", highlight=False, markup=False)
        else:
            out.print("policy: none found (give --policy, set LINEAGE_GUARD_POLICY, or add lineage_guard.yaml "
                      "or pyproject.toml [tool.lineage_guard] policy = ...)", highlight=False, markup=False)
        out.print(f"state folder: {info['home']} ($LINEAGE_GUARD_HOME, else ~/.lineage_guard)", highlight=False, markup=False)
        out.print(f"source: {info['source'] or '(not set: $LINEAGE_GUARD_SOURCE)'}", highlight=False, markup=False)
        out.print(f"identity: {info['identity'] or '(not set: $LINEAGE_GUARD_IDENTITY)'}", highlight=False, markup=False)

    run_guarded(go)


def main() -> None:
    """Console entry point."""
    try:
        app(prog_name="lineage-guard")  # also under `python -m lineage_guard.cli`: the same help and completion
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
