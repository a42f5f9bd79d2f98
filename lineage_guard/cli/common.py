"""What every `lineage-guard` sub-command shares: the consoles and the error-to-exit-code policy."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from ..errors import AccessDenied, ApprovalRequired, LineageGuardError


def console(*, stderr: bool = False) -> Console:
    """A console that wraps for a person at a terminal and prints whole lines everywhere else.

    Piped output (CI logs, Airflow task logs, `| grep`) must keep every path, id and command
    on one line: off a terminal nothing is wrapped or cut, whatever the reader's width.
    """
    stream_is_tty = (sys.stderr if stderr else sys.stdout).isatty()
    if stream_is_tty:
        return Console(stderr=stderr, soft_wrap=stderr)  # messages carry paths and commands: never break them
    return Console(stderr=stderr, soft_wrap=True, width=100_000)


out = console()
err = console(stderr=True)

T = TypeVar("T")


def run_guarded(fn: Callable[[], T]) -> T:
    """Run a command body; turn lineage_guard errors into a clean message and the documented exit code.

    0 done, 1 error, 2 denied, 3 needs approval. Messages are printed verbatim, never as markup.
    """
    try:
        return fn()
    except typer.Exit:
        raise
    except ApprovalRequired as exc:
        err.print(f"[yellow]needs approval[/yellow] (request {escape(exc.request_id)}): "
                  + escape("; ".join(exc.reasons)), highlight=False)
        err.print(f"an approver other than the requester runs: {exc.approve_command}", highlight=False, markup=False)
        _receipt(exc.receipt_id)
        raise typer.Exit(3) from None
    except AccessDenied as exc:
        err.print("[red]denied:[/red] " + escape("; ".join(exc.reasons)), highlight=False)
        _receipt(exc.receipt_id)
        raise typer.Exit(2) from None
    except LineageGuardError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        raise typer.Exit(exc.exit_code) from None


def _receipt(receipt_id: Any) -> None:
    if receipt_id:
        err.print(f"receipt: {receipt_id}", highlight=False, markup=False)
