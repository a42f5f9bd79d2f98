"""Re-identification risk of a table: k-anonymity and l-diversity over its quasi-identifiers (polars group-by).

k is the size of the smallest equivalence class (rows sharing every quasi-identifier value):
a row in a class of k is indistinguishable from k-1 others. l is the smallest number of
distinct values of a sensitive attribute within one class. Reports never quote a value (the
quasi-identifiers' values are themselves identifying): only column names, class sizes and how
many classes are that small. A null is its own value (it groups like any other).

Example:
    >>> import polars as pl
    >>> frame = pl.DataFrame({"zip": ["021", "021", "022"], "sex": ["f", "f", "m"], "dx": ["a", "b", "a"]})
    >>> r = measure(frame, ["zip", "sex"], sensitive="dx")
    >>> (r.k, r.l, r.classes, r.smallest)
    (1, 1, 2, [(1, 1), (2, 1)])
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from ..errors import ConfigError


@dataclass(frozen=True)
class Risk:
    """k, l (None without a sensitive attribute), the number of classes, and the smallest class sizes."""

    quasi: tuple[str, ...]
    rows: int
    k: int
    classes: int
    smallest: list[tuple[int, int]]        # (class size, how many classes have it), smallest first
    sensitive: str | None = None
    l: int | None = None
    subject: str | None = None             # classes counted in distinct values of this column (people), not rows

    def to_dict(self) -> dict:
        return {"quasi_identifiers": list(self.quasi), "rows": self.rows, "k": self.k, "classes": self.classes,
                "smallest_classes": [{"size": s, "classes": n} for s, n in self.smallest],
                "sensitive": self.sensitive, "l": self.l, "counted": "people" if self.subject else "rows"}

    def describe(self) -> str:
        """A value-free sentence: which combination, how rare."""
        size, count = self.smallest[0] if self.smallest else (0, 0)
        text = (f"k-anonymity {self.k} over ({', '.join(self.quasi)}) on {self.rows} rows: {count} "
                f"combination(s) of these columns occur in only {size} row(s)")
        if self.l is not None:
            text += f"; l-diversity of {self.sensitive} is {self.l}"
        return text


def measure(frame: pl.DataFrame, quasi: Sequence[str], *, sensitive: str | None = None, subject: str | None = None,
            show: int = 3) -> Risk:
    """k (and l for `sensitive`) of `frame` over the columns `quasi`.

    A class's size is its number of rows, or, with `subject` (a column identifying a person, e.g. a
    tokenized patient id), its number of distinct subjects: one person's ten rows are still one person.
    """
    quasi = tuple(quasi)
    if not quasi:
        raise ConfigError("name at least one quasi-identifier column (e.g. --quasi zip,birth_date,sex)")
    missing = [c for c in (*quasi, *(c for c in (sensitive, subject) if c)) if c not in frame.columns]
    if missing:
        raise ConfigError(f"no column {', '.join(missing)} in the table; its columns: {', '.join(frame.columns)}")
    if frame.height == 0:
        return Risk(quasi, 0, 0, 0, [], sensitive, 0 if sensitive else None, subject)
    aggs = [pl.col(subject).n_unique().alias("_size") if subject else pl.len().alias("_size")]
    if sensitive:
        aggs.append(pl.col(sensitive).n_unique().alias("_distinct"))
    classes = frame.group_by(list(quasi)).agg(aggs)
    sizes = classes.group_by("_size").agg(pl.len().alias("_n")).sort("_size")
    smallest = [(int(s), int(n)) for s, n in sizes.head(show).iter_rows()]
    return Risk(quasi, frame.height, int(classes["_size"].min()), classes.height, smallest, sensitive,
                int(classes["_distinct"].min()) if sensitive else None, subject)


def measure_file(path: str | os.PathLike, quasi: Sequence[str], *, sensitive: str | None = None) -> Risk:
    """`measure` over a Parquet file, reading only the named columns."""
    columns = list(dict.fromkeys([*quasi, *([sensitive] if sensitive else [])]))
    try:
        frame = pl.read_parquet(os.fspath(path), columns=columns)
    except FileNotFoundError:
        raise ConfigError(f"{os.fspath(path)}: no such file") from None
    except pl.exceptions.ColumnNotFoundError:
        names = pl.read_parquet_schema(os.fspath(path))
        raise ConfigError(f"{os.fspath(path)} has no column {', '.join(c for c in columns if c not in names)}; "
                          f"its columns: {', '.join(names)}") from None
    return measure(frame, quasi, sensitive=sensitive)
