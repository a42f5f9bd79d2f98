"""A small server-side SVG chart: per day, how many reads returned a column clear, masked, or used it to filter.

No script, no CDN: the SVG is inline in the page (the content security policy allows nothing else).

Example:
    >>> svg = column_chart([("2026-03-01", 3, 5, 0), ("2026-03-02", 0, 2, 1)])
    >>> svg.startswith("<svg") and "clear" in svg
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

SERIES = (("clear", "#c0392b"), ("masked", "#2e86c1"), ("used to filter", "#7d3c98"))
_W, _H, _PAD = 640, 180, 28


def column_chart(days: Sequence[tuple[str, int, int, int]]) -> str:
    """Stacked bars, one per day: clear (red), masked (blue), used to filter (purple)."""
    if not days:
        return '<p class="muted">No reads of this column in the period.</p>'
    peak = max(sum(d[1:]) for d in days) or 1
    step = (_W - 2 * _PAD) / len(days)
    bar = max(step * 0.7, 1.0)
    parts = [(f'<svg class="chart" viewBox="0 0 {_W} {_H + 40}" role="img" '
              'aria-label="reads per day: clear, masked, used to filter" xmlns="http://www.w3.org/2000/svg">')]
    parts.append(f'<text x="{_PAD}" y="14" class="axis">max {peak}/day</text>')
    for i, (day, *counts) in enumerate(days):
        x = _PAD + i * step
        y = _H
        for (label, colour), n in zip(SERIES, counts):
            if not n:
                continue
            h = (_H - 24) * n / peak
            y -= h
            parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" fill="{colour}">'
                         f'<title>{escape(day)}: {n} {label}</title></rect>')
        if len(days) <= 12 or i % max(len(days) // 8, 1) == 0:
            parts.append(f'<text x="{x:.1f}" y="{_H + 14}" class="axis">{escape(day[5:])}</text>')
    for j, (label, colour) in enumerate(SERIES):
        parts.append(f'<rect x="{_PAD + j * 150}" y="{_H + 24}" width="10" height="10" fill="{colour}"/>'
                     f'<text x="{_PAD + j * 150 + 14}" y="{_H + 33}" class="axis">{label}</text>')
    parts.append("</svg>")
    return "".join(parts)
