"""What every `lineage-guard` sub-command shares: the consoles and the error-to-exit-code policy."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from ..errors import AccessDenied, ApprovalRequired, LineageGuardError

out = Console()
err = Console(stderr=True, soft_wrap=True)  # messages carry paths and commands: never break them

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
