"""The root `lineage-guard` command group: sub-command groups load only when they run.

`lineage-guard --help` used to import every sub-command module, and with them polars,
sqlglot and openlineage (~3 s). Here the help listing (and shell completion of command
names) is served from `LAZY`, a table of names and one-line helps; a module is imported
only when its command is resolved to run (or to show its own `--help`).

Usage errors of any command exit with `EXIT_USAGE` (64), never Click's 2, which is "denied".
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

from .common import EXIT_USAGE, UsageError


@dataclass(frozen=True)
class LazyCommand:
    """A sub-command living in `lineage_guard.cli.<module>`: a Typer `app`, or a function named like the command."""

    module: str
    help: str


LAZY: dict[str, LazyCommand] = {
    "audit": LazyCommand("audit", "The who-saw-what ledger: verify, log, who-saw, receipt, export."),
    "attest": LazyCommand("attest", "Training-data attestation: attest a model's governed datasets; verify."),
    "risk": LazyCommand("risk", "Re-identification risk of a Parquet file: k-anonymity, l-diversity."),
    "lineage": LazyCommand("lineage", "The OpenLineage outbox: flush, export, status."),
    "approvals": LazyCommand("approvals", "Approval requests: list, show, approve, deny, notify."),
    "scan": LazyCommand("scan", "Detect sensitive columns in a source."),
    "serve": LazyCommand("serve", "Serve governed reads over Arrow Flight SQL (TLS, authenticated callers)."),
    "tokens": LazyCommand("tokens", "API tokens for lineage-guard serve: create, list, revoke."),
    "console": LazyCommand("console", "Serve the web console: approvals inbox, who-saw-what timeline, receipts."),
    "completion": LazyCommand("completion", "Print the shell completion script for bash, zsh, fish or PowerShell."),
}


@contextmanager
def usage_exit_code() -> Iterator[None]:
    """Give a Click usage error (unknown option, missing argument, bad value) the exit code 64."""
    try:
        yield
    except UsageError as exc:  # also BadParameter, NoSuchOption, MissingParameter, NoArgsIsHelpError
        exc.exit_code = EXIT_USAGE
        raise


def load(name: str) -> TyperCommand | TyperGroup:
    """Import one lazy sub-command and build its Click command."""
    spec = LAZY[name]
    module = importlib.import_module(f"lineage_guard.cli.{spec.module}")
    sub = getattr(module, "app", None)
    if isinstance(sub, typer.Typer):
        command = typer.main.get_group(sub)
    else:
        single = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
        single.command(name=name, help=spec.help)(getattr(module, name))
        command = typer.main.get_command(single)
    command.name = name
    command.help = command.help or spec.help
    return command


class RootGroup(TyperGroup):
    """`lineage-guard`: eager commands (plan, extract, ...) plus the `LAZY` ones, one exit-code table."""

    def list_commands(self, ctx: typer.Context) -> list[str]:
        return [*super().list_commands(ctx), *LAZY]

    def get_command(self, ctx: typer.Context, cmd_name: str) -> TyperCommand | None:
        if cmd_name in LAZY:
            # Listed in help and completion without importing it; `resolve_command` loads the real one.
            return TyperCommand(cmd_name, help=LAZY[cmd_name].help, short_help=LAZY[cmd_name].help)
        return super().get_command(ctx, cmd_name)

    def resolve_command(self, ctx: typer.Context, args: list[str]) -> tuple[str | None, Any, list[str]]:
        if args and args[0] in LAZY:
            return args[0], load(args[0]), args[1:]
        return super().resolve_command(ctx, args)

    def make_context(self, *args: Any, **kwargs: Any) -> typer.Context:
        with usage_exit_code():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx: typer.Context) -> Any:
        with usage_exit_code():
            return super().invoke(ctx)
