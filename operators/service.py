"""`GovernedServiceHook`: an Airflow connection to `lineage-guard serve` (service mode).

In service mode the task process holds no database password and no masking key: it holds only
its own credential, and the server decides who it is from that credential. The connection (type
`lineage_guard_service`) gives the server's address and where the credential comes from:

    host, port        the service (`grpc+tls://host:port`; TLS is required)
    password          the bearer token (a lineage-guard API token `lgt_...` or a JWT), or leave it
                      empty and give `token_file`
    extra.token_file  a file holding the token, re-read on every call: a Kubernetes projected
                      service-account token, an Airflow 3 task identity token written by the worker
    extra.ca_file     PEM of the CA that signed the server's certificate (default: the system store)

Example:
    >>> hook = GovernedServiceHook("lg_service")                                # doctest: +SKIP
    >>> with hook.get_session(purpose="ai_training") as s:                       # doctest: +SKIP
    ...     s.read_arrow("SELECT id, email FROM patients LIMIT 5")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

from lineage_guard.errors import ConfigError

from .provider import SERVICE_CONNECTION_TYPE

if TYPE_CHECKING:  # pragma: no cover
    from lineage_guard.client import RemoteSession

SERVICE_EXTRAS = ("token_file", "ca_file")


class GovernedServiceHook(BaseHook):
    """Builds a thin `RemoteSession` from an Airflow connection of type `lineage_guard_service`."""

    conn_name_attr = "conn_id"
    default_conn_name = "lineage_guard_service_default"
    conn_type = SERVICE_CONNECTION_TYPE
    hook_name = "lineage_guard service"

    def __init__(self, conn_id: str = default_conn_name, connection: Any = None) -> None:
        """`connection`: the Connection already fetched (a trigger fetches it with `aget_connection`)."""
        super().__init__()
        self.conn_id = conn_id
        self._fetched = connection
        self._conn = None

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": ["schema", "login"],
            "relabeling": {"password": "Token (or set token_file in Extra)"},
            "placeholders": {"extra": '{"token_file": "/var/run/secrets/tokens/lineage-guard", '
                                      '"ca_file": "/etc/lineage-guard/ca.pem"}'},
        }

    @property
    def connection(self):
        if self._conn is None:
            conn = self._fetched if self._fetched is not None else self.get_connection(self.conn_id)
            if (conn.conn_type or "").lower() != SERVICE_CONNECTION_TYPE:
                raise ConfigError(f"connection {self.conn_id!r} has type {conn.conn_type!r}; service mode reads a "
                                  f"connection of type {SERVICE_CONNECTION_TYPE} (host, port, token)")
            self._conn = conn
        return self._conn

    def _extras(self) -> dict[str, Any]:
        extras = dict(self.connection.extra_dejson or {})
        unknown = sorted(set(extras) - set(SERVICE_EXTRAS))
        if unknown:
            raise ConfigError(f"connection {self.conn_id!r} has unknown extra(s) {unknown}; understood: "
                              f"{', '.join(SERVICE_EXTRAS)}")
        return extras

    @property
    def url(self) -> str:
        conn = self.connection
        if not conn.host or not conn.port:
            raise ConfigError(f"connection {self.conn_id!r} needs the service's host and port")
        host = f"[{conn.host}]" if ":" in conn.host else conn.host
        return f"grpc+tls://{host}:{int(conn.port)}"

    def credential(self) -> dict[str, str]:
        """`{"token": ...}` or `{"token_file": ...}`: exactly one, never both (which one wins would be a guess)."""
        token = self.connection.password or None
        token_file = self._extras().get("token_file") or None
        if token and token_file:
            raise ConfigError(f"connection {self.conn_id!r} sets both a password (token) and extra token_file; "
                              "keep one")
        if token:
            return {"token": token}
        if token_file:
            return {"token_file": str(token_file)}
        raise ConfigError(f"connection {self.conn_id!r} has no credential: put the token in its password, or the "
                          "path of a token file (e.g. a projected service-account token) in extra token_file")

    def get_session(self, purpose: str, **options: Any) -> RemoteSession:
        """A `RemoteSession` on the service for `purpose`, authenticated by the connection's credential."""
        from lineage_guard.client import connect

        ca = self._extras().get("ca_file")
        if ca:
            options.setdefault("tls_root_certs", str(ca))
        return connect(self.url, purpose=purpose, **self.credential(), **options)

    get_conn = get_session

    def test_connection(self) -> tuple[bool, str]:
        """What Airflow's "Test" button runs: the service's health check, authenticated."""
        from lineage_guard.client import RemoteSession

        try:
            ca = self._extras().get("ca_file")
            with RemoteSession(self.url, purpose="connection-test", **self.credential(),
                               **({"tls_root_certs": str(ca)} if ca else {})) as s:
                status = s.health()["status"]
        except Exception as exc:  # noqa: BLE001 - the button shows the message; ours are value-free
            from lineage_guard.errors import LineageGuardError

            return False, str(exc) if isinstance(exc, LineageGuardError) else type(exc).__name__
        return True, f"service answers: {status}"
