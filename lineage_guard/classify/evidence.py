"""Evidence shared by the detectors: counts and shares of a sample, never values.

Example:
    >>> score_from_share(1.0), score_from_share(0.5)
    (0.99, 0.5)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


@dataclass(frozen=True)
class Evidence:
    """How well a label's best detector fits the sample. Counts and shares only, never values."""

    label: str
    detector: str
    score: float                    # value-only confidence in [0, 1]
    pattern_share: float
    checksum_share: float | None = None
    matched: int = 0
    non_null: int = 0
    dictionary_share: float | None = None  # share of values made of known given names / surnames
    strong_matched: int = 0                # values in a distinctive written format (checksum included)


def share_of(mask: np.ndarray, n: int) -> float:
    return float(mask.sum()) / n if n else 0.0


def score_from_share(share: float) -> float:
    """Map the share of matching values to a confidence: 0.9 needs 90% of the sample to match."""
    if share >= 0.9:
        return 0.9 + 0.09 * (share - 0.9) / 0.1
    if share >= 0.5:
        return 0.5 + 0.4 * (share - 0.5) / 0.4
    return share


def as_text(sample: pa.Array) -> pa.Array:
    """Non-empty, trimmed string values (nulls dropped)."""
    if isinstance(sample, pa.ChunkedArray):
        sample = sample.combine_chunks()
    if not (pa.types.is_string(sample.type) or pa.types.is_large_string(sample.type)):
        sample = pc.cast(sample, pa.string())
    text = pc.utf8_trim_whitespace(sample.drop_null())
    return text.filter(pc.not_equal(pc.utf8_length(text), 0))


def match(text: pa.Array, pattern: str) -> np.ndarray:
    hit = pc.match_substring_regex(text, pattern)
    return (hit.fill_null(False) if hit.null_count else hit).to_numpy(zero_copy_only=False)
