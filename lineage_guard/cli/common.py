"""What every `lineage-guard` sub-command shares: the consoles, the exit codes and the error-to-exit-code policy.

Exit codes (the same for every command):

    0   allowed / done
    1   error (bad policy, bad option value, unreachable source, unwritable state folder, ...)
    2   denied
    3   needs approval (the request id and the approve command are printed)
    64  usage error: unknown command or option, missing argument (sysexits' EX_USAGE)

Click's default for a usage error is 2, which would make a typo look like a denial in CI;
`group.RootGroup` gives it 64 instead.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from ..errors import AccessDenied, ApprovalRequired, LineageGuardError
from ..extras import MissingExtra

try:  # typer 0.2x vendors its own Click as typer._click: its exceptions and contexts are those, not click's
    from typer._click.exceptions import UsageError
    from typer._click.globals import get_current_context
except ImportError:  # pragma: no cover - older typer runs on the click package
    from click import UsageError, get_current_context  # type: ignore[no-redef]  # noqa: F401

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_DENIED = 2
EXIT_NEEDS_APPROVAL = 3
EXIT_USAGE = 64


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


def _json_requested() -> bool:
    """Whether the running command was given `--json` (every such option is the parameter `as_json`)."""
    ctx = get_current_context(silent=True)
    return bool(ctx is not None and ctx.params.get("as_json"))


def print_json(doc: Any) -> None:
    """One JSON document on stdout, whole, whatever the terminal."""
    sys.stdout.write(json.dumps(doc, sort_keys=True) + "\n")
    sys.stdout.flush()


def run_guarded(fn: Callable[[], T]) -> T:
    """Run a command body; turn lineage_guard errors into a clean message and the documented exit code.

    Messages go to stderr, printed verbatim, never as markup. With `--json`, stdout also gets a
    JSON document whatever the outcome, so a pipeline always has something to parse:

        {"outcome": "denied", "reasons": [...], "receipt_id": "..."}                       exit 2
        {"outcome": "needs_approval", "request_id": "...", "approve_command": "...", ...}  exit 3
        {"outcome": "error", "error": "..."}                                               exit 1
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
        if _json_requested():
            print_json({"outcome": "needs_approval", "request_id": exc.request_id, "reasons": exc.reasons,
                        "approve_command": exc.approve_command, "receipt_id": exc.receipt_id})
        raise typer.Exit(EXIT_NEEDS_APPROVAL) from None
    except AccessDenied as exc:
        err.print("[red]denied:[/red] " + escape("; ".join(exc.reasons)), highlight=False)
        _receipt(exc.receipt_id)
        if _json_requested():
            print_json({"outcome": "denied", "reasons": exc.reasons, "receipt_id": exc.receipt_id})
        raise typer.Exit(EXIT_DENIED) from None
    except LineageGuardError as exc:
        _error(str(exc))
        raise typer.Exit(exc.exit_code) from None
    except MissingExtra as exc:   # the message is the pip command to run: no traceback
        _error(str(exc))
        raise typer.Exit(EXIT_ERROR) from None
    except OSError as exc:
        # A file the user named (or the state folder) cannot be read or written: say which and why, no traceback.
        if exc.strerror is None:
            raise
        _error(f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror)
        raise typer.Exit(EXIT_ERROR) from None


def _error(message: str) -> None:
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    if _json_requested():
        print_json({"outcome": "error", "error": message})


def _receipt(receipt_id: Any) -> None:
    if receipt_id:
        err.print(f"receipt: {receipt_id}", highlight=False, markup=False)
