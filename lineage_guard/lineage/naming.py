"""OpenLineage dataset names, byte-identical to what other producers emit for the same data.

Postgres: namespace `postgres://host:port`, name `database.schema.table` (what
Airflow's Postgres provider emits). Files and object stores: `file` + absolute
path, `file://host` + path, `s3://bucket` + key, `gs://bucket` + key. Built with
openlineage-python's `naming.dataset` helpers where one exists.

Example:
    >>> dataset_for_uri("s3://lake/exports/p.parquet")
    ('s3://lake', 'exports/p.parquet')
    >>> dataset_for_uri("/tmp/out.parquet")
    ('file', '/tmp/out.parquet')
"""

from __future__ import annotations

import os
import re
from urllib.parse import urlsplit

from openlineage.client.naming import dataset as naming

from ..errors import ConfigError
from ..run import SourceInfo

# Marquez rejects any other namespace (see marquez.common.models.NamespaceName).
NAMESPACE_RE = re.compile(r"^[A-Za-z0-9:;=/_\-.@+]{1,1024}$")


def check_namespace(namespace: str, what: str) -> str:
    """Return `namespace` if Marquez accepts it, else raise ConfigError saying what to fix."""
    if not NAMESPACE_RE.match(namespace or ""):
        raise ConfigError(
            f"lineage: {what} namespace {namespace!r} is not accepted by Marquez "
            "(use letters, digits and :;=/_-.@+ only, at most 1024 characters)"
        )
    return namespace


def source_dataset(source: SourceInfo, schema: str, table: str) -> tuple[str, str]:
    """(namespace, name) of a table read from `source`."""
    if source.scheme == "postgres":
        n = naming.Postgres(host=source.host, port=str(source.port), database=source.database,
                            schema=schema, table=table)
        return n.get_namespace(), n.get_name()
    return source.namespace, source.dataset_name(schema, table)


def dataset_for_uri(uri: str) -> tuple[str, str]:
    """(namespace, name) of a file or object written at `uri` (a local path or an fsspec URL)."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme in ("", "file") and not parts.netloc:
        n = naming.LocalFileSystem(path=os.path.abspath(parts.path if scheme else uri))
    elif scheme == "file":
        n = naming.RemoteFileSystem(host=parts.hostname or parts.netloc, path=parts.path)
    elif scheme in ("s3", "s3a", "s3n"):
        n = naming.S3(bucket_name=parts.hostname or "", object_key=parts.path.lstrip("/"))
    elif scheme in ("gs", "gcs"):
        n = naming.GCS(bucket_name=parts.hostname or "", object_key=parts.path.lstrip("/"))
    elif scheme and parts.hostname:
        # Other fsspec stores (abfs, hdfs, ...): scheme://authority + path, never the URL's credentials.
        port = f":{parts.port}" if parts.port else ""
        return f"{scheme}://{parts.hostname}{port}", parts.path.lstrip("/") or "/"
    else:
        raise ConfigError(f"lineage: cannot name the dataset at {strip_credentials(uri)!r}; "
                          "give a local path or a URL with a bucket/host")
    return n.get_namespace(), n.get_name()


def strip_credentials(uri: str) -> str:
    """`uri` without user:password@ and without query/fragment (which can carry tokens)."""
    parts = urlsplit(uri)
    if not parts.scheme:
        return uri
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return parts._replace(netloc=netloc, query="", fragment="").geturl()
