"""Checksums over whole Arrow string arrays: Luhn and Shannon entropy vectorized, IBAN by python-stdnum.

Each check takes a string array whose values are already reduced to their
significant characters and returns a numpy bool array, one entry per value.
Luhn lays values out in a right-aligned byte matrix so a whole column is checked
with a few numpy ops; national identifiers are checked by stdnum (`validators`).

Example:
    >>> import pyarrow as pa
    >>> luhn(pa.array(["4539578763621486", "4539578763621487"])).tolist()
    [True, False]
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def byte_matrix(values: pa.Array, width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(matrix, lengths): each value's bytes right-aligned in a row, left-padded with 0 bytes.

    Nulls count as empty strings. `width` defaults to the longest value.
    """
    values = pc.fill_null(pc.cast(values, pa.large_string()), "")
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    n = len(values)
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int64)[values.offset : values.offset + n + 1]
    data = values.buffers()[2]
    data = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)
    lengths = np.diff(offsets)
    width = int(lengths.max(initial=0)) if width is None else width
    if n == 0 or width == 0 or len(data) == 0:
        return np.zeros((n, width), np.uint8), lengths
    # Column j of row i holds byte (end_i - width + j); positions before the value's start are padding.
    idx = offsets[1:, None] - width + np.arange(width)[None, :]
    pad = idx < offsets[:-1, None]
    matrix = np.where(pad, 0, data[np.clip(idx, 0, max(len(data) - 1, 0))])
    return matrix.astype(np.uint8), lengths


def _digits(values: pa.Array, width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Right-aligned digit matrix (padding = 0, which no check below is sensitive to) and lengths."""
    m, lengths = byte_matrix(values, width)
    d = m.astype(np.int64) - 48
    return np.where(m == 0, 0, d), lengths


def _all_digits(values: pa.Array) -> np.ndarray:
    return np.asarray(pc.fill_null(pc.match_substring_regex(values, r"^[0-9]+$"), False))


def luhn(values: pa.Array) -> np.ndarray:
    """Luhn (mod 10) check: payment cards, Canadian SIN, IMEI."""
    d, lengths = _digits(values)
    if d.shape[1] == 0:
        return np.zeros(len(values), bool)
    # Double every second digit counting from the right (the check digit is not doubled).
    doubled = np.zeros(d.shape[1], bool)
    doubled[-2::-2] = True
    dd = np.where(doubled, d * 2, d)
    dd = np.where(dd > 9, dd - 9, dd)
    return (dd.sum(axis=1) % 10 == 0) & (lengths > 0) & _all_digits(values)


def iban(values: pa.Array) -> np.ndarray:
    """IBAN check by python-stdnum: mod 97 and each country's own length and BBAN layout.

    Per value, distinct values once: for IBANs found inside free text (columns of IBANs are judged on a
    subsample, see `validators.iban_evidence`).
    """
    from stdnum import iban

    distinct = pc.unique(values).to_pylist()
    ok = {v: v is not None and iban.is_valid(v) for v in distinct}
    return np.fromiter((ok[v] for v in values.to_pylist()), bool, len(values))


def shannon_entropy(values: pa.Array) -> np.ndarray:
    """Bits per character of each value (byte-level), computed for the whole array at once."""
    m, lengths = byte_matrix(values)
    n = len(values)
    if m.shape[1] == 0:
        return np.zeros(n)
    # one bincount over (row, byte) pairs: far cheaper than a scatter-add into an (n, 256) matrix
    rows = np.repeat(np.arange(n), m.shape[1])
    counts = np.bincount(rows * 256 + m.ravel(), minlength=n * 256).reshape(n, 256)
    counts[:, 0] = 0  # padding
    p = counts / np.maximum(lengths, 1)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(p > 0, p * np.log2(p), 0.0).sum(axis=1)
    return h
