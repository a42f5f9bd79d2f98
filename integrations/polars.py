"""Polars expressions for the masks: an `lg` expression namespace over the same Arrow kernels and keys.

Importing this module registers the namespace. Each method runs the Arrow kernel on each
batch Polars hands it (`map_batches`, elementwise, so lazy and streaming queries may split
the column freely: a value masks the same in every batch). The keyring defaults to
`Keyring.from_env()` (LINEAGE_GUARD_MASTER_KEY), resolved when the expression is built.

    >>> import polars as pl
    >>> import lineage_guard.integrations.polars  # registers `.lg`
    >>> from lineage_guard.mask import Keyring
    >>> kr = Keyring(bytes(32))
    >>> df = pl.LazyFrame({"email": ["a@x.org", None]}).with_columns(
    ...     pl.col("email").lg.tokenize(scope="purpose:ai_training", keyring=kr)).collect()
    >>> df["email"][0].startswith("tok_"), df["email"][1]
    (True, None)
"""

from __future__ import annotations

from typing import Any

import polars as pl
import pyarrow as pa

from lineage_guard.errors import ConfigError
from lineage_guard.mask import Keyring, MaskSpec, checked, mask_array

__all__ = ["MaskNamespace", "mask_expr"]

_KEYED = {"tokenize", "pseudonymize", "shift_date", "format_preserving"}
_TEXT_OUT = {"pseudonymize", "hash", "partial"}


def _series(name: str, masked: pa.Array | pa.ChunkedArray) -> pl.Series:
    return pl.Series(name, masked)


def mask_expr(expr: pl.Expr, spec: MaskSpec, keyring: Keyring | None = None, *,
              subject: str | pl.Expr | None = None, return_dtype: Any = None) -> pl.Expr:
    """An expression masking `expr` by `spec`. `subject` (shift_date) is a column name or expression.

    `return_dtype` pins the planned dtype. By default: the input's dtype for methods that keep
    types, String for pseudonymize/hash/partial; tokenize's planned dtype is the input's,
    while its data is String (Int64 for integer columns), so pin it when the schema matters.
    """
    checked(spec)
    if spec.method == "drop":
        raise ConfigError("mask method 'drop' removes a column: in Polars, leave it out of the select (or .drop it)")
    params = spec.params or {}
    if spec.method == "shift_date" and (subject is None) != (params.get("subject") is None):
        raise ConfigError("shift_date in Polars: pass the subject column as `subject=` (name or expression); "
                          "it also becomes the spec's `subject` parameter")
    if spec.method in _KEYED and keyring is None:
        keyring = Keyring.from_env()
    if return_dtype is None:
        return_dtype = pl.String if spec.method in _TEXT_OUT else (
            None if spec.method == "tokenize" else pl.dtype_of(expr))

    if subject is None:
        def run(s: pl.Series) -> pl.Series:
            return _series(s.name, mask_array(s.to_arrow(), spec, keyring))

        return expr.map_batches(run, return_dtype=return_dtype, is_elementwise=True)

    subject_expr = pl.col(subject) if isinstance(subject, str) else subject

    def run_with_subject(series: list[pl.Series]) -> pl.Series:
        values, anchor = series
        return _series(values.name, mask_array(values.to_arrow(), spec, keyring, subject=anchor.to_arrow()))

    return pl.map_batches([expr, subject_expr], run_with_subject, return_dtype=return_dtype,
                          is_elementwise=True)


@pl.api.register_expr_namespace("lg")
class MaskNamespace:
    """`pl.col("email").lg.tokenize(scope="purpose:ai_training")` and the other masks, one method each."""

    def __init__(self, expr: pl.Expr):
        self._expr = expr

    def mask(self, spec: MaskSpec, *, keyring: Keyring | None = None, subject: str | pl.Expr | None = None,
             return_dtype: Any = None) -> pl.Expr:
        """Apply any MaskSpec, e.g. one taken from a plan's `Decision`."""
        return mask_expr(self._expr, spec, keyring, subject=subject, return_dtype=return_dtype)

    def _spec(self, method: str, scope: str, keyring: Keyring | None, params: dict, *,
              classification: str | None = None, **options) -> pl.Expr:
        return mask_expr(self._expr, MaskSpec(method, params, scope, classification=classification),  # type: ignore[arg-type]
                         keyring, **options)

    # Keyed methods take the column's `classification` too: keys are per (scope, classification),
    # so give the one the policy gives the column to get the tokens a governed read gives.
    def tokenize(self, scope: str = "global", *, classification: str | None = None, keyring: Keyring | None = None,
                 return_dtype: Any = None, **params) -> pl.Expr:
        """Keyed tokens (`tok_<hex>`; Int64 for integer columns). Params: length, prefix."""
        return self._spec("tokenize", scope, keyring, params, classification=classification, return_dtype=return_dtype)

    def pseudonymize(self, kind: str = "generic", scope: str = "global", *, classification: str | None = None,
                     keyring: Keyring | None = None, **params) -> pl.Expr:
        """Realistic Faker stand-ins, unique per distinct value. Params: locale, unique."""
        return self._spec("pseudonymize", scope, keyring, {"kind": kind, **params}, classification=classification)

    def partial(self, keep_first: int = 0, keep_last: int = 4, mask_char: str = "*") -> pl.Expr:
        """Keep the first/last characters, mask the rest."""
        return self._spec("partial", "global", None, {"keep_first": keep_first, "keep_last": keep_last,
                                                      "mask_char": mask_char})

    def redact(self, **params) -> pl.Expr:
        """`[REDACTED]` for text, null for other types."""
        return self._spec("redact", "global", None, params)

    def null(self) -> pl.Expr:
        """Every value null; the dtype stays."""
        return self._spec("null", "global", None, {})

    def generalize(self, **params) -> pl.Expr:
        """Dates to month/year start (`to`), numbers to bucket lower bounds (`bucket`), text to a prefix (`keep`)."""
        return self._spec("generalize", "global", None, params)

    def shift_date(self, subject: str | pl.Expr | None = None, scope: str = "global", *,
                   classification: str | None = None, keyring: Keyring | None = None, **params) -> pl.Expr:
        """Shift dates by a keyed per-subject offset (`max_days`, default 365)."""
        if subject is not None:
            name = subject if isinstance(subject, str) else subject.meta.output_name()
            params = {"subject": name, **params}
        return self._spec("shift_date", scope, keyring, params, classification=classification, subject=subject)

    def hash(self, *, allow_keyless: bool = False) -> pl.Expr:
        """Keyless SHA-256 hex: linkable and invertible by hashing guesses; needs `allow_keyless=True`. Prefer tokenize."""
        return self._spec("hash", "global", None, {"allow_keyless": True} if allow_keyless else {})

    def format_preserving(self, scope: str = "global", *, classification: str | None = None,
                          keyring: Keyring | None = None) -> pl.Expr:
        """Keyed substitution keeping length and character classes."""
        return self._spec("format_preserving", scope, keyring, {}, classification=classification)
