"""Birth dates among date values: all in the past, spread over decades, a plausible age profile.

Example:
    >>> import pyarrow as pa
    >>> from datetime import date
    >>> days = pa.array([date(1950 + i % 50, 1 + i % 12, 1 + i % 28) for i in range(100)])
    >>> birth_date_evidence(days, today=date(2026, 1, 1)).score > 0.8
    True
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .evidence import Evidence, match, score_from_share, share_of


def birth_date_evidence(dates: pa.Array, today: date | None = None) -> Evidence:
    """Dates that look like birth dates: all past, spread over decades, a plausible age profile."""
    days = np.asarray(pc.cast(pc.cast(dates.drop_null(), pa.date32()), pa.int32()), dtype=np.int64)
    n = len(days)
    if n == 0:
        return Evidence("date_of_birth", "birth_date_profile", 0.0, 0.0, None, 0, 0)
    today_days = ((today or date.today()) - date(1970, 1, 1)).days
    ages = (today_days - days) / 365.25
    plausible = (ages >= 0) & (ages <= 115)
    share = share_of(plausible, n)
    p5, p50, p95 = np.percentile(ages, [5, 50, 95])
    profile = share >= 0.98 and (p95 - p5) >= 15 and 16 <= p50 <= 85
    score = 0.85 * score_from_share(share) if profile else 0.0
    return Evidence("date_of_birth", "birth_date_profile", score, share, None, int(plausible.sum()), n)


_DATE_FORMATS = ("%Y-%m-%d", "%d/%m/%Y", "%m/%d/%Y", "%d.%m.%Y", "%d-%m-%Y", "%Y/%m/%d")


def text_dates(text: pa.Array) -> pa.Array | None:
    """The sample parsed as dates with the format that parses most of it (>= 90%), else None."""
    best, best_n = None, 0
    if not len(text) or not match(text, r"^[0-9]{1,4}[-/.][0-9]{1,2}[-/.][0-9]{1,4}$").mean() >= 0.9:
        return None
    for fmt in _DATE_FORMATS:
        parsed = pc.strptime(text, format=fmt, unit="s", error_is_null=True)
        ok = len(parsed) - parsed.null_count
        if ok > best_n:
            best, best_n = parsed, ok
    return best if best is not None and best_n >= 0.9 * len(text) else None
