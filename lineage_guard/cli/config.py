"""Which policy file a command uses when `--policy` is not given (found the way ruff and sqlfluff find theirs).

In order, the first that gives a file wins:

1. `--policy FILE` on the command line;
2. the `LINEAGE_GUARD_POLICY` environment variable;
3. walking up from the current directory, in each directory: `lineage_guard.yaml`, then a
   `pyproject.toml` with `[tool.lineage_guard] policy = "path/to/policy.yaml"` (the path is
   relative to that pyproject.toml). The nearest directory wins.

`lineage-guard config` prints what was found and why.

    >>> found = find_policy(None, env={}, start=Path("/nonexistent"))
    >>> found is None
    True
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError

ENV_POLICY = "LINEAGE_GUARD_POLICY"
POLICY_FILE = "lineage_guard.yaml"
PYPROJECT_TABLE = "tool.lineage_guard"


@dataclass(frozen=True)
class FoundPolicy:
    """A policy path and how it was found (`--policy`, `$LINEAGE_GUARD_POLICY`, a file path)."""

    path: Path
    via: str


def find_policy(given: Path | None, *, env: Mapping[str, str] | None = None, start: Path | None = None) -> FoundPolicy | None:
    """The policy a command should use, or None when nothing names one."""
    if given is not None:
        return FoundPolicy(given, "--policy")
    env = os.environ if env is None else env
    if env.get(ENV_POLICY):
        return FoundPolicy(Path(env[ENV_POLICY]), f"${ENV_POLICY}")
    here = (start or Path.cwd()).absolute()
    for folder in (here, *here.parents):
        candidate = folder / POLICY_FILE
        if candidate.is_file():
            return FoundPolicy(candidate, str(candidate))
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file():
            named = _pyproject_policy(pyproject)
            if named is not None:
                return FoundPolicy(folder / named, f"{pyproject} [{PYPROJECT_TABLE}] policy")
    return None


def _pyproject_policy(pyproject: Path) -> str | None:
    try:
        data = tomllib.loads(pyproject.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {pyproject}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{pyproject}: not valid TOML: {exc}") from None
    table = data.get("tool", {}).get("lineage_guard")
    if table is None:
        return None
    if not isinstance(table, dict) or not isinstance(table.get("policy"), str) or not table["policy"]:
        raise ConfigError(f"{pyproject}: [{PYPROJECT_TABLE}] needs policy = \"path/to/policy.yaml\"")
    unknown = sorted(set(table) - {"policy"})
    if unknown:
        raise ConfigError(f"{pyproject}: [{PYPROJECT_TABLE}] has unknown key(s) {', '.join(unknown)}; valid: policy")
    return table["policy"]


def require_policy(given: Path | None) -> Path:
    """The policy path to load, or a ConfigError that says every way to name one."""
    found = find_policy(given)
    if found is None:
        raise ConfigError(f"no policy: give --policy FILE, set {ENV_POLICY}, or put {POLICY_FILE} (or a "
                          f"pyproject.toml with [{PYPROJECT_TABLE}] policy = \"...\") in this folder or a parent")
    return found.path
