"""Where lineage_guard keeps its state (ledger, outbox, approvals, catalog cache).

`LINEAGE_GUARD_HOME` wins; else `~/.lineage_guard`. Created on first use.
"""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    root = Path(os.environ.get("LINEAGE_GUARD_HOME") or Path.home() / ".lineage_guard")
    root.mkdir(parents=True, exist_ok=True)
    return root


def state_file(name: str) -> Path:
    """A file in the state folder, e.g. `state_file("ledger.sqlite")`."""
    return home() / name
