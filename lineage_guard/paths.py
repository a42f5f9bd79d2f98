"""Where lineage_guard keeps its state (ledger, outbox, approvals, catalog cache).

`LINEAGE_GUARD_HOME` wins; else `~/.lineage_guard`. Created on first use; a folder that
cannot be created or written is a `ConfigError` naming it (one line, exit 1 in the CLI),
not a traceback from deep inside SQLite.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import ConfigError


def home_path() -> Path:
    """The state folder's path, without creating it."""
    return Path(os.environ.get("LINEAGE_GUARD_HOME") or Path.home() / ".lineage_guard")


def home() -> Path:
    """The state folder, created if missing; ConfigError if it cannot be created or written."""
    root = home_path()
    named = "LINEAGE_GUARD_HOME" if os.environ.get("LINEAGE_GUARD_HOME") else "the state folder (~/.lineage_guard)"
    try:
        root.mkdir(parents=True, exist_ok=True)
        # Writable? Checked by writing (os.access says yes to root on a read-only mount).
        with tempfile.TemporaryFile(dir=root):
            pass
    except OSError as exc:
        raise ConfigError(f"{named} {root} is not a writable folder ({exc.strerror or type(exc).__name__}); "
                          "set LINEAGE_GUARD_HOME to a folder you can write") from None
    return root


def state_file(name: str) -> Path:
    """A file in the state folder, e.g. `state_file("ledger.sqlite")`."""
    return home() / name
