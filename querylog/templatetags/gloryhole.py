"""Template helpers: the server-side SVG chart and small number formats.

The chart is drawn here as plain SVG rectangles, so the dashboard needs no
JavaScript chart library and no CDN, and the picture is in the HTML a test
(or curl) receives.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django import template
from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import mark_safe

from querylog.privacy_settings import privacy_notes, privacy_settings_current

register = template.Library()

CHART_WIDTH = 960
CHART_HEIGHT = 240
PAD_LEFT = 56
PAD_BOTTOM = 24
PAD_TOP = 8
SERIES_ORDER = ("allowed", "cached", "blocked")  # bottom to top


@dataclass(slots=True)
class _Tick:
    pos: str
    label: str


def _nice_max(value: int) -> int:
    """The next 1/2/5 x 10^n at or above value, so axis labels are round numbers."""
    if value <= 0:
        return 1
    magnitude = 1
    while magnitude * 10 <= value:
        magnitude *= 10
    for factor in (1, 2, 5, 10):
        if factor * magnitude >= value:
            return factor * magnitude
    return 10 * magnitude


@register.inclusion_tag("querylog/_chart.html")
def stacked_chart(points, step: timedelta) -> dict:
    """Stacked bars of allowed/cached/blocked per time bucket, with y ticks and a few time labels."""
    plot_w = CHART_WIDTH - PAD_LEFT
    plot_h = CHART_HEIGHT - PAD_TOP - PAD_BOTTOM
    count = max(len(points), 1)
    slot = plot_w / count
    bar_w = max(slot * 0.85, 1.0)
    top = _nice_max(max((p.total for p in points), default=0))
    # Built here as one string: a few hundred rectangles through template
    # variable lookups were most of the dashboard's render time.
    rects: list[str] = []
    x_ticks: list[_Tick] = []
    label_every = max(1, count // 6)
    fmt = "%H:%M" if step < timedelta(hours=1) else "%a %H:%M"
    for i, p in enumerate(points):
        x = PAD_LEFT + i * slot
        base = PAD_TOP + plot_h
        local = timezone.localtime(p.start)
        for series in SERIES_ORDER:
            value = getattr(p, series)
            if not value:
                continue
            height = plot_h * value / top
            base -= height
            title = escape(f"{local:%Y-%m-%d %H:%M}: {value:,} {series}")
            rects.append(
                f'<rect class="s-{series}" x="{x:.2f}" y="{base:.2f}" width="{bar_w:.2f}" height="{height:.2f}">'
                f"<title>{title}</title></rect>"
            )
        if i % label_every == 0:
            x_ticks.append(_Tick(f"{x:.1f}", f"{local:{fmt}}"))
    y_ticks = [
        _Tick(f"{PAD_TOP + plot_h - plot_h * frac:.1f}", f"{int(top * frac):,}") for frac in (0, 0.25, 0.5, 0.75, 1.0)
    ]
    return {
        "width": CHART_WIDTH,
        "height": CHART_HEIGHT,
        "pad_left": PAD_LEFT,
        "label_x": PAD_LEFT - 6,
        "plot_bottom": PAD_TOP + plot_h,
        # Safe: numbers we formatted and escaped titles only.
        "rects": mark_safe("".join(rects)),
        "x_ticks": x_ticks,
        "y_ticks": y_ticks,
        "empty": not any(p.total for p in points),
        "label_y": CHART_HEIGHT - 6,
    }


@register.filter
def pct(value: float, digits: int = 1) -> str:
    return f"{value:.{digits}f} %"


@register.filter
def thousands(value: int | float) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}"
    return f"{value:,}"


@register.filter
def duration_ms(value: int) -> str:
    """Microseconds as milliseconds, as people read DNS latency."""
    return f"{value / 1000:.1f} ms"


@register.filter
def forward_suffix(rule: str) -> str:
    """The suffix of the conditional-forwarding rule a row was sent by ("forward:lan" -> "lan"), else ""."""
    return rule[8:] if rule.startswith("forward:") else ""


@register.filter
def upstream_host(label: str) -> str:
    """An upstream as people write it: the port only when it is not 53 ("192.168.1.1:53" -> "192.168.1.1")."""
    if label.endswith(":53"):
        host = label[:-3]
        return host[1:-1] if host.startswith("[") else host
    return label


@register.filter
def step_label(step: timedelta) -> str:
    minutes = int(step.total_seconds() // 60)
    if minutes % 60 == 0:
        hours = minutes // 60
        return "hour" if hours == 1 else f"{hours} hours"
    return "minute" if minutes == 1 else f"{minutes} minutes"


@register.inclusion_tag("querylog/_privacy_notice.html")
def privacy_notice() -> dict:
    """What the privacy settings in force leave out of the log, for the pages that show it."""
    return {"notes": privacy_notes(privacy_settings_current())}
