"""OpenLineage dataset names for file-like sink URIs (openlineage.client.naming where it has a helper).

Example:
    >>> file_dataset("s3://bucket/exports/x.parquet")
    ('s3://bucket', 'exports/x.parquet')
    >>> file_dataset("/tmp/out.parquet")
    ('file', '/tmp/out.parquet')
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from openlineage.client.naming import dataset as ol


def is_local(uri: str) -> bool:
    """A plain path or a `file://` URL."""
    scheme = urlsplit(uri).scheme
    return scheme in ("", "file") or (len(scheme) == 1 and os.name == "nt")


def local_path(uri: str) -> str:
    """The absolute local path of a plain path or `file://` URL."""
    parts = urlsplit(uri)
    path = parts.path if parts.scheme == "file" else uri
    return os.path.abspath(os.path.expanduser(path))


def file_dataset(uri: str) -> tuple[str, str]:
    """(namespace, name) of a file URI per the OpenLineage naming spec."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if is_local(uri) and parts.netloc in ("", "localhost"):
        naming = ol.LocalFileSystem(path=local_path(uri))
    elif scheme == "file":
        return f"file://{parts.netloc}", parts.path
    elif scheme in ("s3", "s3a", "s3n"):
        naming = ol.S3(bucket_name=parts.netloc, object_key=parts.path.lstrip("/"))
    elif scheme in ("gs", "gcs"):
        naming = ol.GCS(bucket_name=parts.netloc, object_key=parts.path.lstrip("/"))
    elif scheme == "abfss" and "@" in parts.netloc:
        container, _, host = parts.netloc.partition("@")
        return f"abfss://{container}@{host}", parts.path.lstrip("/")
    elif scheme == "hdfs":
        return f"hdfs://{parts.netloc}", parts.path
    else:
        # memory:// and any other fsspec protocol: the protocol names the store, fsspec's path the object.
        import fsspec

        return scheme, fsspec.core.url_to_fs(uri)[1]
    return naming.get_namespace(), naming.get_name()
