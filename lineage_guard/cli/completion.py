"""`lineage-guard completion SHELL`: print the shell completion script for a named shell.

Typer's `--show-completion` guesses the shell from the parent processes (shellingham), which
finds none under cron, CI runners, containers or `make`, and then prints "Shell  not supported".
Naming the shell always works:

    lineage-guard completion bash > ~/.local/share/bash-completion/completions/lineage-guard
    lineage-guard completion zsh  > "${fpath[1]}/_lineage-guard"
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer


class Shell(str, Enum):
    bash = "bash"
    zsh = "zsh"
    fish = "fish"
    powershell = "powershell"
    pwsh = "pwsh"


def completion(shell: Annotated[Shell, typer.Argument(help="bash, zsh, fish, powershell or pwsh.")]) -> None:
    """Print the completion script for SHELL (to source, or to save where your shell loads completions)."""
    from typer._completion_shared import get_completion_script

    prog = "lineage-guard"
    var = "_LINEAGE_GUARD_COMPLETE"
    typer.echo(get_completion_script(prog_name=prog, complete_var=var, shell=shell.value))
