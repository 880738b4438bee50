"""Charts drawn on the server as SVG: no CDN, no script, readable by the browser tests.

Each bar carries a <title> (its value on hover) and data attributes the tests check.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString


@dataclass(frozen=True)
class Series:
    label: str
    key: str  # css class suffix and data-series value
    values: Sequence[float]


def _n(value: float) -> str:
    """A coordinate or value as SVG wants it: at most one decimal, no exponent."""
    return f"{value:.1f}".rstrip("0").rstrip(".") or "0"


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1
    magnitude = 10 ** (len(str(int(value))) - 1)
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return value


def stacked_bars(
    categories: Sequence[str],
    series: Sequence[Series],
    *,
    title: str,
    value_format: Callable[[float], str] = lambda v: f"{v:g}",
    line: Sequence[float | None] | None = None,
    line_label: str = "",
    line_format: Callable[[float], str] = lambda v: f"{v:g}",
    width: int = 640,
    height: int = 200,
    label_every: int = 1,
) -> SafeString:
    """Bars per category, stacked by series; an optional line on its own scale (e.g. p95 ms)."""
    left, right, top, bottom = 44, 48 if line else 8, 10, 24
    plot_w, plot_h = width - left - right, height - top - bottom
    totals = [sum(s.values[i] for s in series) for i in range(len(categories))]
    top_value = _nice_max(max(totals, default=0))
    slot = plot_w / max(len(categories), 1)
    bar_w = max(slot * 0.7, 1)
    parts = [
        format_html(
            '<svg class="chart" viewBox="0 0 {} {}" width="100%" role="img" aria-label="{}" '
            'preserveAspectRatio="xMidYMid meet">',
            width,
            height,
            title,
        ),
        format_html(
            '<text class="axis" x="{}" y="{}" text-anchor="end">{}</text>',
            left - 4,
            top + 8,
            value_format(top_value),
        ),
        format_html(
            '<text class="axis" x="{}" y="{}" text-anchor="end">0</text>', left - 4, top + plot_h
        ),
        format_html(
            '<line class="axis-line" x1="{}" y1="{}" x2="{}" y2="{}"/>',
            left,
            top + plot_h,
            left + plot_w,
            top + plot_h,
        ),
    ]
    for i, category in enumerate(categories):
        x = left + i * slot + (slot - bar_w) / 2
        y = top + plot_h
        for s in series:
            value = s.values[i]
            if not value:
                continue
            h = plot_h * value / top_value
            y -= h
            parts.append(
                format_html(
                    '<rect class="bar s-{}" data-series="{}" data-value="{}" x="{}" '
                    'y="{}" width="{}" height="{}"><title>{} · {}: {}</title></rect>',
                    s.key,
                    s.key,
                    _n(value),
                    _n(x),
                    _n(y),
                    _n(bar_w),
                    _n(h),
                    category,
                    s.label,
                    value_format(value),
                )
            )
        if i % label_every == 0:
            parts.append(
                format_html(
                    '<text class="axis" x="{}" y="{}" text-anchor="middle">{}</text>',
                    _n(x + bar_w / 2),
                    height - 8,
                    category,
                )
            )
    if line:
        known = [v for v in line if v is not None]
        line_top = _nice_max(max(known, default=0))
        points = [
            f"{left + i * slot + slot / 2:.1f},{top + plot_h - plot_h * v / line_top:.1f}"
            for i, v in enumerate(line)
            if v is not None
        ]
        if points:
            parts.append(
                format_html(
                    '<polyline class="line" data-series="line" points="{}"><title>{}</title>'
                    "</polyline>",
                    " ".join(points),
                    line_label,
                )
            )
        parts.append(
            format_html(
                '<text class="axis line-axis" x="{}" y="{}">{}</text>',
                left + plot_w + 4,
                top + 8,
                line_format(line_top),
            )
        )
    parts.append(SafeString("</svg>"))
    return format_html_join("", "{}", ((p,) for p in parts))


def legend(series: Sequence[Series], line_label: str = "") -> SafeString:
    items = [
        format_html('<li><span class="swatch s-{}"></span>{}</li>', s.key, s.label) for s in series
    ]
    if line_label:
        items.append(format_html('<li><span class="swatch line"></span>{}</li>', line_label))
    return format_html(
        '<ul class="chart-legend">{}</ul>', format_html_join("", "{}", ((i,) for i in items))
    )
