"""Parse a PostgreSQL URL into what lineage and error messages may show.

The namespace follows OpenLineage naming exactly as Airflow's Postgres provider
writes it (`DbApiHook.get_openlineage_authority_part`): `postgres://{hostname}:{port}`,
the host as `urllib.parse` reads it (lower-cased) and the port always written,
5432 by default. The password never leaves this module except inside `url` itself.

Example:
    >>> p = PgUrl.parse("postgresql://svc:pw@DB.example.com/sales")
    >>> (p.host, p.port, p.database, p.redacted)
    ('db.example.com', 5432, 'sales', 'postgresql://svc:***@db.example.com:5432/sales')
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

from ..errors import ConfigError

DEFAULT_PORT = 5432


@dataclass(frozen=True)
class PgUrl:
    url: str
    host: str
    port: int
    database: str
    user: str
    has_password: bool = False

    @classmethod
    def parse(cls, url: str) -> PgUrl:
        """Parse `postgresql://user:password@host:port/database?params` (ConfigError if it is not one)."""
        if not isinstance(url, str) or not url:
            raise ConfigError("the PostgreSQL URL is empty; give postgresql://user@host:port/database")
        parts = urlsplit(url)
        if parts.scheme not in ("postgresql", "postgres"):
            raise ConfigError(
                f"the source URL scheme is {parts.scheme or '(none)'!r}; use postgresql://user@host:port/database"
            )
        query = parse_qs(parts.query)
        try:
            port = parts.port or int(query.get("port", [DEFAULT_PORT])[0])
        except ValueError:
            raise ConfigError("the port in the PostgreSQL URL is not a number between 1 and 65535") from None
        user = unquote(parts.username or "") or query.get("user", [""])[0]
        host = parts.hostname or query.get("host", ["localhost"])[0]
        if host.startswith("/"):
            # A Unix socket directory is not a network name; lineage names the local machine.
            host = "localhost"
        database = unquote(parts.path.lstrip("/")) or query.get("dbname", [""])[0] or user
        has_password = parts.password is not None or "password" in query
        return cls(url=url, host=host, port=port, database=database, user=user, has_password=has_password)

    @property
    def redacted(self) -> str:
        """The URL without its password (and without query parameters, which may hold one)."""
        user = f"{self.user}{':***' if self.has_password else ''}@" if self.user else ""
        return f"postgresql://{user}{self.host}:{self.port}/{self.database}"

    def describe(self) -> str:
        """`host h, port p, database 'd', user 'u'`: for error messages."""
        return f"host {self.host}, port {self.port}, database {self.database!r}, user {self.user or '(default)'!r}"
