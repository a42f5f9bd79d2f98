"""`GovernedPostgresHook`: the Airflow connection work for governed reads and writes.

It turns an Airflow connection (type `lineage_guard_postgres`, or a plain `postgres`
connection, so an existing `conn_id` keeps working) into a `PostgresSource`, and the
masking master key (the password of the connection `lineage_guard_master_key`, looked up
through Airflow's secrets backends like any connection) into a `Keyring`. The key never
comes from DAG code and is never logged; Airflow's secrets masker also learns it when the
connection is read.

Connection extras understood (all optional):
    statement_timeout_ms   bound on every statement, milliseconds (default 60000)
    environment            source environment the policy may distinguish (production, staging...)
    search_path            the one schema unqualified names resolve to (must match the policy's)
    sslmode, sslrootcert, sslcert, sslkey, sslcrl, connect_timeout, application_name,
    target_session_attrs, keepalives, keepalives_idle   passed to libpq unchanged

Example:
    >>> hook = GovernedPostgresHook("clinic_db", database="clinic")         # doctest: +SKIP
    >>> source = hook.get_conn()            # a lineage_guard PostgresSource   # doctest: +SKIP
    >>> source.info.namespace                                                # doctest: +SKIP
    'postgres://db.internal:5432'
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException

from lineage_guard.errors import ConfigError

from .provider import CONNECTION_TYPE

MASTER_KEY_CONN_ID = "lineage_guard_master_key"
ACCEPTED_CONN_TYPES = (CONNECTION_TYPE, "postgres", "postgresql")
LIBPQ_EXTRAS = (
    "sslmode", "sslrootcert", "sslcert", "sslkey", "sslcrl", "connect_timeout", "application_name",
    "target_session_attrs", "keepalives", "keepalives_idle",
)
OWN_EXTRAS = ("statement_timeout_ms", "environment", "search_path")
# Extras the Postgres provider uses that change nothing for a governed read; anything else is refused
# rather than silently ignored, because it may be an authentication mode this hook does not implement.
IGNORED_EXTRAS = ("cursor", "enable_log_db_messages", "sqlalchemy_scheme", "sqlalchemy_options")
UNSUPPORTED_EXTRAS = ("iam", "azure_conn_id", "aws_conn_id", "redshift", "options")


class GovernedPostgresHook(BaseHook):
    """Builds the governed source and the masking keyring from Airflow connections.

    `environment` and `search_path` come only from the connection, which whoever administers
    connections controls: DAG code cannot move a production database into a laxer environment.
    DAG code (the operator's `hook_params`) may set `statement_timeout_ms` and `master_key_conn_id`.
    """

    conn_name_attr = "conn_id"
    default_conn_name = "lineage_guard_default"
    conn_type = CONNECTION_TYPE
    hook_name = "lineage_guard PostgreSQL"

    def __init__(
        self,
        conn_id: str = default_conn_name,
        *,
        database: str | None = None,
        statement_timeout_ms: int | None = None,
        master_key_conn_id: str = MASTER_KEY_CONN_ID,
    ) -> None:
        super().__init__()
        self.conn_id = conn_id
        self.database = database
        self._overrides = {"statement_timeout_ms": statement_timeout_ms}
        self.master_key_conn_id = master_key_conn_id
        self._conn = None

    # -- the Airflow connection form --------------------------------------------------------------

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Relabel `schema` as the database and show which extras are understood."""
        return {
            "hidden_fields": [],
            "relabeling": {"schema": "Database"},
            "placeholders": {
                "extra": '{"environment": "production", "statement_timeout_ms": 60000, "search_path": "public", '
                         '"sslmode": "require"}',
            },
        }

    # -- connection ---------------------------------------------------------------------------------

    @property
    def connection(self):
        if self._conn is None:
            conn = self.get_connection(self.conn_id)
            if (conn.conn_type or "").lower() not in ACCEPTED_CONN_TYPES:
                raise ConfigError(
                    f"connection {self.conn_id!r} has type {conn.conn_type!r}; GovernedPostgresHook reads "
                    f"connections of type {', '.join(ACCEPTED_CONN_TYPES)}")
            self._conn = conn
        return self._conn

    def _extras(self) -> dict[str, Any]:
        extras = dict(self.connection.extra_dejson or {})
        bad = sorted(set(extras) & set(UNSUPPORTED_EXTRAS))
        if bad:
            raise ConfigError(
                f"connection {self.conn_id!r} sets extra(s) {bad}, which GovernedPostgresHook does not support "
                f"(cloud IAM logins and raw libpq 'options' could bypass the pinned search path and timeout); "
                f"use a password login and the extras {', '.join(OWN_EXTRAS)}")
        unknown = sorted(set(extras) - set(LIBPQ_EXTRAS) - set(OWN_EXTRAS) - set(IGNORED_EXTRAS))
        if unknown:
            raise ConfigError(
                f"connection {self.conn_id!r} has unknown extra(s) {unknown}; understood: "
                f"{', '.join(OWN_EXTRAS + LIBPQ_EXTRAS)}")
        return extras

    def _setting(self, name: str, default: Any = None) -> Any:
        if self._overrides.get(name) is not None:
            return self._overrides[name]
        return self._extras().get(name, default)

    @property
    def statement_timeout_ms(self) -> int:
        value = self._setting("statement_timeout_ms", 60_000)
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"connection {self.conn_id!r}: statement_timeout_ms must be an integer "
                              f"number of milliseconds, e.g. 60000") from None

    @property
    def environment(self) -> str:
        return str(self._setting("environment", "default"))

    @property
    def search_path(self) -> str | None:
        value = self._setting("search_path")
        return str(value) if value else None

    @property
    def source_url(self) -> str:
        """The libpq URL of the connection. It holds the password: never log it."""
        conn = self.connection
        database = self.database or conn.schema
        if not conn.host:
            raise ConfigError(f"connection {self.conn_id!r} has no host")
        if not database:
            raise ConfigError(f"connection {self.conn_id!r} names no database: set its Database (schema) "
                              f"field or pass database= to the operator")
        from lineage_guard.sources.pg_url import compose_url

        extras = self._extras()
        query = {k: str(extras[k]) for k in LIBPQ_EXTRAS if extras.get(k) not in (None, "")}
        # compose_url: a socket directory as host (/var/run/postgresql) goes in ?host=, as libpq reads it
        return compose_url(host=conn.host, port=conn.port, database=database, user=conn.login,
                           password=conn.password, params=query)

    def get_conn(self):
        """The governed source (`lineage_guard.sources.postgres.PostgresSource`) for this connection."""
        from lineage_guard.sources.postgres import PostgresSource

        kwargs: dict[str, Any] = {"statement_timeout_ms": self.statement_timeout_ms,
                                  "environment": self.environment}
        if self.search_path:
            kwargs["schema"] = self.search_path
        return PostgresSource(self.source_url, **kwargs)

    get_source = get_conn

    def test_connection(self) -> tuple[bool, str]:
        """What Airflow's "Test" button runs: one read-only `SELECT 1` through the governed source."""
        try:
            self.get_conn().read_all("SELECT 1")
        except Exception as exc:  # noqa: BLE001 - the button shows the message; ours are value-free
            from lineage_guard.errors import LineageGuardError

            return False, str(exc) if isinstance(exc, LineageGuardError) else f"{type(exc).__name__}"
        return True, "connection works (read-only transaction)"

    # -- the masking key ----------------------------------------------------------------------------

    def get_keyring(self):
        """The masking `Keyring`: from the master key connection's password, else the worker's environment.

        Raises ConfigError (value-free) when neither holds a valid key.
        """
        from lineage_guard.mask import Keyring
        from lineage_guard.mask.keys import ENV_KEY

        try:
            key_conn = self.get_connection(self.master_key_conn_id)
        except AirflowNotFoundException:
            key_conn = None
        if key_conn is None:
            try:
                return Keyring.from_env()
            except ConfigError:
                raise ConfigError(
                    f"no masking key: create the Airflow connection {self.master_key_conn_id!r} with the key "
                    f"as its password (hex of a random secret of at least 32 bytes), or set {ENV_KEY} on the "
                    f"workers") from None
        if not key_conn.password:
            raise ConfigError(f"the Airflow connection {self.master_key_conn_id!r} has no password; "
                              f"put the masking master key (hex) there")
        try:
            return Keyring.from_env({ENV_KEY: key_conn.password})
        except ConfigError:
            raise ConfigError(f"the password of the Airflow connection {self.master_key_conn_id!r} is not a "
                              f"valid master key: give the hex of at least 32 random bytes, or "
                              f"'<version>:<hex>,...' newest first") from None
