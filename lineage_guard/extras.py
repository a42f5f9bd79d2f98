"""The one place that says which pip command installs the extra a feature needs.

Every integration's import guard raises `MissingExtra`, so a user who imports
`lineage_guard.operators` without Airflow reads the exact command to run instead of
`No module named 'airflow'`.

Example:
    >>> install_command("airflow")
    "pip install 'lineage-guard[airflow]'"
    >>> with needs_extra("lineage_guard.operators", "airflow"):   # doctest: +SKIP
    ...     import airflow
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

# Top-level modules each extra brings: an ImportError naming one of them means that extra is missing.
# An ImportError for anything else is a real bug and is raised unchanged.
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "postgres": ("adbc_driver_postgresql", "adbc_driver_manager", "psycopg"),
    "embedded": ("pgserver",),
    "airflow": ("airflow",),
    "dagster": ("dagster", "pandas"),
    "gx": ("great_expectations", "pandas"),
    "service": ("google", "jwt"),
    "console": ("starlette", "jinja2", "authlib", "uvicorn", "itsdangerous", "multipart", "python_multipart"),
    "spark": ("pyspark",),
    "ray": ("ray",),
}


def install_command(extra: str) -> str:
    """The pip command that installs `extra` (quoted for every POSIX shell)."""
    return f"pip install 'lineage-guard[{extra}]'"


class MissingExtra(ImportError):
    """`feature` needs the `[extra]` extra, which is not installed; the message names the pip command."""

    def __init__(self, feature: str, extra: str, module: str | None = None) -> None:
        self.feature, self.extra = feature, extra
        missing = f" (no module named {module!r})" if module else ""
        super().__init__(f"{feature} needs the [{extra}] extra{missing}: {install_command(extra)}", name=module)


def is_missing(exc: ImportError, extra: str) -> bool:
    """True when `exc` says a module of `extra` is not installed (not an error inside an installed one)."""
    return (exc.name or "").split(".")[0] in EXTRA_MODULES[extra]


@contextmanager
def needs_extra(feature: str, extra: str) -> Iterator[None]:
    """Turn an ImportError of one of `extra`'s modules inside the block into `MissingExtra`."""
    try:
        yield
    except MissingExtra:
        raise
    except ImportError as exc:
        if not is_missing(exc, extra):
            raise
        raise MissingExtra(feature, extra, exc.name) from exc
