"""An embedded PostgreSQL (pgserver) for the demo, tests and trying lineage_guard without a server.

`embedded_url()` starts (or reuses) a private PostgreSQL whose data lives in
`lineage_guard.paths.home() / "pg"` by default, listening on a Unix socket, and
returns a URL `PostgresSource` and `lineage_guard.demo.data.seed` accept.

Running as root: PostgreSQL refuses to run as root, so pgserver creates (once,
with `useradd`) an unprivileged system user named `pgserver`, hands the data
directory to it and runs the server as that user. Non-root users need nothing.

The server keeps running while this process lives and is stopped at exit
(pgserver's `cleanup_mode="stop"`); the data directory stays for the next run.

Example:
    >>> from lineage_guard.sources.embedded import embedded_url
    >>> url = embedded_url()                       # doctest: +SKIP
    >>> url                                        # doctest: +SKIP
    'postgresql://postgres:@/postgres?host=/root/.lineage_guard/pg'
"""

from __future__ import annotations

import atexit
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .. import paths
from ..errors import ConfigError, SourceError
from ..extras import install_command

_servers: dict[Path, object] = {}
_lock = threading.Lock()


@contextmanager
def _no_runtime_dir_warning() -> Iterator[None]:
    """platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI, root) and falls back to
    /tmp/runtime-<uid>, which pgserver handles: nothing for the user to fix, so not shown."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        yield


def embedded_url(data_dir: Path | None = None, database: str = "postgres") -> str:
    """Start, or reuse within this process, the embedded server for `data_dir`; return its URL."""
    try:
        with _no_runtime_dir_warning():  # pgserver asks platformdirs for the runtime dir at import
            import pgserver
    except ImportError:
        raise ConfigError(f"the embedded PostgreSQL needs the [embedded] extra: {install_command('embedded')}") from None
    root = Path(data_dir) if data_dir is not None else paths.home() / "pg"
    root = root.expanduser().resolve()
    root.parent.mkdir(parents=True, exist_ok=True)
    with _lock:
        server = _servers.get(root)
        if server is None:
            try:
                with _no_runtime_dir_warning():
                    server = pgserver.get_server(root, cleanup_mode="stop")
            except Exception as exc:  # noqa: BLE001 - pgserver's errors can carry its full log
                raise SourceError(f"could not start the embedded PostgreSQL in {root} ({type(exc).__name__}); "
                                  f"see {root / 'log'} and check the folder is writable") from None
            _servers[root] = server
    return server.get_uri(database)


def stop_embedded(data_dir: Path | None = None) -> None:
    """Stop the embedded server for `data_dir` if this process started it (its data stays)."""
    root = (Path(data_dir) if data_dir is not None else paths.home() / "pg").expanduser().resolve()
    with _lock:
        server = _servers.pop(root, None)
    if server is not None:
        server.cleanup()  # cleanup_mode="stop": stops the server, keeps the data directory
        # pgserver unregisters its atexit hook only in "delete" mode; left registered, it runs again at exit
        # and logs to streams the host (pytest, Airflow) may have closed: "--- Logging error ---" tracebacks.
        atexit.unregister(server._cleanup)
