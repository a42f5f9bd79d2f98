"""Dataset files for attestation by path or URI: local paths and `file://` directly, any other fsspec protocol
(`memory://`, `s3://`, `gs://`...) through fsspec.

A dataset is named in the predicate as the extract's sink named it: a local file by its absolute
resolved path, anything else by its URI as given (so the training run's lineage inputs meet the
extracts' outputs, `sinks/naming.py`). Digests are of the bytes as read, in 1 MiB chunks.

Example:
    >>> import fsspec
    >>> with fsspec.open("memory://doc/a.bin", "wb") as fh: _ = fh.write(b"abc")
    >>> (is_file("memory://doc/a.bin"), sha256("memory://doc/a.bin")[:12])
    (True, 'ba7816bf8f01')
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import IO, Any

from ..errors import ConfigError
from ..sinks.naming import is_local, local_path

_CHUNK = 1 << 20


def name_of(given: str | os.PathLike) -> str:
    """How the predicate names a dataset: resolved local path, or the URI as given."""
    text = os.fspath(given)
    return str(Path(local_path(text)).resolve()) if is_local(text) else text


def _fs(uri: str) -> tuple[Any, str]:
    import fsspec

    try:
        return fsspec.core.url_to_fs(uri)
    except (ImportError, ValueError) as exc:
        raise ConfigError(f"cannot read {uri}: {type(exc).__name__} (is the fsspec backend for this protocol "
                          "installed?)") from None


def is_file(name: str) -> bool:
    if is_local(name):
        return Path(local_path(name)).is_file()
    fs, path = _fs(name)
    return fs.isfile(path)


def is_dir(name: str) -> bool:
    if is_local(name):
        return Path(local_path(name)).is_dir()
    fs, path = _fs(name)
    return fs.isdir(path)


def parquet_under(name: str) -> list[str]:
    """The Parquet files under a folder, sorted, named as `name_of` names them."""
    if is_local(name):
        root = Path(local_path(name))
        return [name_of(p) for p in sorted(root.rglob("*.parquet")) if p.is_file()]
    fs, path = _fs(name)
    protocol = name.split("://", 1)[0]
    found = sorted(p for p in fs.find(path) if p.endswith(".parquet"))
    return [fs.unstrip_protocol(p) if hasattr(fs, "unstrip_protocol") else f"{protocol}://{p}" for p in found]


def open_binary(name: str) -> IO[bytes]:
    """The file's bytes for reading (a local file, or fsspec's file object)."""
    if is_local(name):
        return open(local_path(name), "rb")
    fs, path = _fs(name)
    return fs.open(path, "rb")


def sha256(name: str) -> str:
    """Hex sha256 of the file's bytes."""
    with open_binary(name) as fh:
        if is_local(name):
            return hashlib.file_digest(fh, "sha256").hexdigest()
        digest = hashlib.sha256()
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
        return digest.hexdigest()
