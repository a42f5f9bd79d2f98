"""Parse a PostgreSQL URL into what lineage and error messages may show.

The namespace follows OpenLineage naming exactly as Airflow's Postgres provider
writes it (`DbApiHook.get_openlineage_authority_part`): `postgres://{hostname}:{port}`,
the host as `urllib.parse` reads it (lower-cased) and the port always written,
5432 by default. The password never leaves this module except inside `url` itself.

A Unix-socket host (a directory such as `/var/run/postgresql`, what an embedded pgserver
gives) cannot sit in the URL's authority: `compose_url` puts it in `?host=` (libpq's form),
and `with_params` adds parameters to a URL that may already carry a query.

Example:
    >>> p = PgUrl.parse("postgresql://svc:pw@DB.example.com/sales")
    >>> (p.host, p.port, p.database, p.redacted)
    ('db.example.com', 5432, 'sales', 'postgresql://svc:***@db.example.com:5432/sales')
    >>> compose_url(host="/var/run/postgresql", port=5432, database="sales", user="svc")
    'postgresql://svc@/sales?host=%2Fvar%2Frun%2Fpostgresql&port=5432'
    >>> with_params("postgresql://svc@/sales?host=%2Ftmp", options="-csearch_path=s1")
    'postgresql://svc@/sales?host=%2Ftmp&options=-csearch_path%3Ds1'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs, parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

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
    socket_dir: str | None = None  # a Unix-socket directory when the URL names one (host is then localhost)

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
        raw_host = parts.netloc.rpartition("@")[2]
        if raw_host.lower().startswith("%2f"):
            # A socket directory percent-encoded in the host part (libpq accepts it; urlsplit lowercases it).
            host = unquote(raw_host.rsplit(":", 1)[0] if parts.port else raw_host)
        else:
            host = parts.hostname or query.get("host", ["localhost"])[0]
        socket_dir = None
        if host.startswith("/"):
            # A Unix socket directory is not a network name; lineage names the local machine.
            host, socket_dir = "localhost", host
        database = unquote(parts.path.lstrip("/")) or query.get("dbname", [""])[0] or user
        has_password = parts.password is not None or "password" in query
        return cls(url=url, host=host, port=port, database=database, user=user, has_password=has_password,
                   socket_dir=socket_dir)

    @property
    def redacted(self) -> str:
        """The URL without its password (and without query parameters, which may hold one)."""
        user = f"{self.user}{':***' if self.has_password else ''}@" if self.user else ""
        return f"postgresql://{user}{self.host}:{self.port}/{self.database}"

    def describe(self) -> str:
        """`host h, port p, database 'd', user 'u'`: for error messages."""
        where = f"socket {self.socket_dir}" if self.socket_dir else f"host {self.host}"
        return f"{where}, port {self.port}, database {self.database!r}, user {self.user or '(default)'!r}"


def compose_url(*, host: str, database: str, port: int | str | None = None, user: str | None = None,
                password: str | None = None, params: Mapping[str, str] | None = None) -> str:
    """A libpq URL from its parts; a host that is a path (a Unix-socket directory) goes in `?host=`.

    Every part is percent-encoded, so a password with `@` or `/` stays a password.
    """
    if not host:
        raise ConfigError("the PostgreSQL host is empty; give a host name, an address or a Unix-socket directory")
    auth = quote(user or "", safe="") + (f":{quote(password, safe='')}" if password else "")
    query = dict(params or {})
    if host.startswith("/"):
        netloc = auth + "@" if auth else ""
        query = {"host": host, **({"port": str(int(port))} if port else {}), **query}
    else:
        name = f"[{host}]" if ":" in host and not host.startswith("[") else host
        netloc = (auth + "@" if auth else "") + name + (f":{int(port)}" if port else "")
    tail = "?" + urlencode(query, quote_via=quote, safe="") if query else ""
    return f"postgresql://{netloc}/{quote(database, safe='')}{tail}"


def with_params(url: str, **params: str) -> str:
    """`url` with query parameters added (or replaced): `?a=1` becomes `?a=1&b=2`, never `?a=1?b=2`."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    query.update({k: str(v) for k, v in params.items()})
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote, safe="")))


def url_parts(url: str) -> dict[str, str | int | None]:
    """The connection parts of a URL as libpq reads them: the socket directory from `?host=` when there is one.

    Returns `host`, `port`, `user`, `password`, `database` (e.g. to fill an Airflow connection).
    """
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    return {
        "host": parts.hostname or query.get("host") or "localhost",
        "port": parts.port or (int(query["port"]) if query.get("port") else DEFAULT_PORT),
        "user": unquote(parts.username or "") or query.get("user") or None,
        "password": unquote(parts.password) if parts.password else query.get("password") or None,
        "database": unquote(parts.path.lstrip("/")) or query.get("dbname") or None,
    }
