"""A Parquet file sink for a local path or any fsspec URL (`file://`, `memory://`, `s3://`, `gs://`...).

Batches are written as they stream (pyarrow's ParquetWriter) to a temporary
object next to the target, named `.<name>.<random>.lg-tmp`; `commit()` closes it
and moves it into place (an atomic rename on a local filesystem; a single-object
copy on object stores, where the target appears whole or not at all), `abort()`
deletes it. A failed read therefore leaves nothing at the target, and a result
that existed before is only replaced by a complete new one.

A governed read sets `provenance` (a value-free document, see `lineage_guard.attest.provenance`)
before `seal()`: it is written into the file's key-value metadata, and `sha256` (the digest of
the finished file, taken from the bytes as they are written: the file is never read back) is
known after `seal()`, before the file is visible.

Dictionary encoding is chosen per column from the first batch (`use_dictionary="auto"`): a
column whose first batch is mostly distinct values (ids, tokens, timestamps) is written plain,
since building a dictionary that Parquet then abandons costs CPU and makes the file larger
(measured on a governed 1M-row extract: 0.61 s -> 0.33 s CPU to write, 46 -> 34 MB).

Example:
    >>> import pyarrow as pa
    >>> batch = pa.record_batch({"x": [1, 2, 3]})
    >>> with ParquetSink("memory://doc/example.parquet") as sink:
    ...     sink.open(batch.schema)
    ...     sink.write(batch)
    ...     info = sink.commit()
    >>> (info.namespace, info.name, sink.rows)
    ('memory', '/doc/example.parquet', 3)
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import uuid

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import ConfigError, SinkError
from ..run import SinkInfo
from .base import Sink
from .naming import file_dataset, is_local, local_path

_DICTIONARY_SHARE = 0.5  # a column whose first batch is at least this share distinct values is written plain
_DICTIONARY_SAMPLE = 8_192  # rows of the first batch the choice is made on (counting a whole batch cost 5% of an extract)


class _HashingFile:
    """A write-only file wrapper that hashes every byte on its way to the underlying file."""

    def __init__(self, raw) -> None:
        self._raw = raw
        self.digest = hashlib.sha256()
        self.size = 0
        self.closed = False

    def write(self, data) -> int:
        view = memoryview(data)
        self.digest.update(view)
        self.size += view.nbytes
        self._raw.write(view)
        return view.nbytes

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self._raw.flush()

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readable(self) -> bool:
        return False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._raw.close()


def dictionary_columns(batch: pa.RecordBatch) -> list[str] | bool:
    """The columns worth dictionary-encoding, judged on one batch: those with mostly repeated values."""
    if batch.num_rows == 0:
        return True
    import pyarrow.compute as pc

    batch = batch.slice(0, _DICTIONARY_SAMPLE)

    keep = []
    for field, column in zip(batch.schema, batch.columns, strict=True):
        try:
            distinct = pc.count_distinct(column).as_py()
        except pa.ArrowNotImplementedError:  # a type count_distinct does not take: leave it to Parquet
            keep.append(field.name)
            continue
        if distinct < _DICTIONARY_SHARE * batch.num_rows:
            keep.append(field.name)
    return keep


def _unsupported(schema: pa.Schema) -> list[str]:
    """Columns Parquet cannot store (pyarrow has no Parquet mapping for these)."""
    bad = []
    for field in schema:
        t = field.type
        while pa.types.is_list(t) or pa.types.is_large_list(t):
            t = t.value_type
        if pa.types.is_interval(t):
            bad.append(field.name)
    return bad


class ParquetSink(Sink):
    """Write one result to one Parquet file, atomically. `compression` is any pyarrow codec name."""

    carries_provenance = True  # the session records an intent entry first and stamps the footer

    def __init__(self, uri: str | os.PathLike, *, compression: str = "zstd", storage_options: dict | None = None,
                 use_dictionary: bool | list[str] | str = "auto"):
        super().__init__()
        uri = os.fspath(uri)
        if not uri:
            raise ConfigError("the Parquet sink needs a path or URL, e.g. out/customers.parquet or s3://bucket/key")
        self.uri = local_path(uri) if is_local(uri) else uri
        self.compression = compression
        self.use_dictionary = use_dictionary
        self._storage_options = storage_options or {}
        self._fs = None
        self._path = None
        self._tmp = None
        self._file = None
        self._writer = None
        self.provenance: dict | None = None
        self.sha256: str | None = None

    @property
    def info(self) -> SinkInfo:
        namespace, name = file_dataset(self.uri)
        return SinkInfo(kind="parquet", uri=self.uri, namespace=namespace, name=name)

    def _open(self, schema: pa.Schema) -> None:
        bad = _unsupported(schema)
        if bad:
            raise SinkError(f"Parquet cannot store interval columns ({', '.join(bad)}); cast them in the query, "
                            "e.g. extract(epoch from col) or col::text")
        try:
            self._fs, self._path = fsspec.core.url_to_fs(self.uri, **self._storage_options)
        except (ImportError, ValueError) as exc:
            raise ConfigError(f"cannot write to {self.uri}: {type(exc).__name__} (is the fsspec backend for this "
                              "protocol installed, e.g. s3fs for s3://?)") from None
        parent, name = posixpath.split(self._path) if "/" in self._path else ("", self._path)
        if not name:
            raise ConfigError(f"the Parquet sink target {self.uri} names a folder; give a file name")
        if parent:
            self._fs.makedirs(parent, exist_ok=True)
        self._tmp = posixpath.join(parent, f".{name}.{uuid.uuid4().hex[:12]}.lg-tmp")
        try:
            self._file = _HashingFile(self._fs.open(self._tmp, "wb"))
            if self.use_dictionary != "auto":
                self._start(schema, self.use_dictionary)
        except Exception as exc:  # noqa: BLE001
            self._abort()
            raise SinkError(f"could not start writing {self.uri} ({type(exc).__name__}); check the location "
                            "is writable") from None

    def _start(self, schema: pa.Schema, use_dictionary) -> None:
        self._writer = pq.ParquetWriter(self._file, schema, compression=self.compression,
                                        use_dictionary=use_dictionary)

    def _write(self, batch: pa.RecordBatch) -> None:
        if self._writer is None:  # "auto": the first batch decides which columns get a dictionary
            self._start(self.schema, dictionary_columns(batch))
        self._writer.write_batch(batch)

    @property
    def bytes_written(self) -> int:
        """Bytes staged so far (the Parquet footer is added by `seal()`); exact after `seal()`/`commit()`."""
        if self._file is not None:
            with contextlib.suppress(Exception):  # a closed or unseekable file: report what is known
                return int(self._file.tell())
        return self._bytes

    @bytes_written.setter
    def bytes_written(self, value: int) -> None:
        self._bytes = value

    def _seal(self) -> None:
        if self._writer is None:  # no batch came: an empty file with the schema
            self._start(self.schema, True)
        writer, self._writer = self._writer, None
        if self.provenance is not None:
            from ..attest.provenance import encode

            writer.add_key_value_metadata(encode(self.provenance))
        writer.close()
        file, self._file = self._file, None
        file.close()
        self._bytes = file.size
        self.sha256 = file.digest.hexdigest()  # of the bytes written, which are what will be published

    def _commit(self) -> None:
        if is_local(self.uri):
            os.replace(self._tmp, self._path)  # atomic on one filesystem, replaces an older result whole
        else:
            self._fs.mv(self._tmp, self._path)
        self._tmp = None

    def _abort(self) -> None:
        for closer in (self._writer, self._file):
            with contextlib.suppress(Exception):  # the staged object is deleted below anyway
                if closer is not None:
                    closer.close()
        self._writer = self._file = None
        if self._tmp is not None and self._fs is not None:
            with contextlib.suppress(Exception):
                if self._fs.exists(self._tmp):
                    self._fs.rm(self._tmp)
            self._tmp = None
