"""Template helpers: the server-side SVG chart and small number formats.

The chart is drawn here as plain SVG rectangles, so the dashboard needs no
JavaScript chart library and no CDN, and the picture is in the HTML a test
(or curl) receives.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from django import template
from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import mark_safe

from querylog.privacy_settings import privacy_notes, privacy_settings_current

register = template.Library()

CHART_WIDTH = 960
CHART_HEIGHT = 240
PAD_LEFT = 56
PAD_RIGHT = 44  # the blocked share's axis (0 to 100 %)
PAD_BOTTOM = 24
PAD_TOP = 8
SERIES_ORDER = ("allowed", "cached", "blocked")  # bottom to top
# Time labels: the first of these (minutes) that gives at most MAX_TIME_LABELS labels.
TIME_INTERVALS = (5, 10, 15, 30, 60, 120, 180, 360, 720, 1440)
MAX_TIME_LABELS = 8


@dataclass(slots=True)
class _Tick:
    pos: str
    label: str


def round_ticks(value: float, max_intervals: int = 4) -> list[int]:
    """0, then equal steps of 1, 2 or 5 times a power of ten, up to the first tick at or above `value`.

    At most `max_intervals` steps: 7 gives [0, 2, 4, 6, 8], 1234 gives [0, 500, 1000, 1500].
    The last tick is the top of the axis.
    """
    if value <= 0:
        return [0, 1]
    magnitude = 1
    while True:
        for factor in (1, 2, 5):
            step = factor * magnitude
            intervals = math.ceil(value / step)
            if intervals <= max_intervals:
                return [step * i for i in range(intervals + 1)]
        magnitude *= 10


def time_ticks(starts: list[datetime], step: timedelta) -> list[tuple[int, float, str]]:
    """(bucket index, offset into the bucket 0..1, label) for round local times along the x axis.

    The interval is the first of TIME_INTERVALS that leaves at most MAX_TIME_LABELS labels;
    a label goes where the local time is a multiple of it since midnight (a day's label at
    midnight), wherever that falls inside a bucket.
    """
    if not starts:
        return []
    step_min = step.total_seconds() / 60
    span = step_min * len(starts)
    interval = next((i for i in TIME_INTERVALS if span / i <= MAX_TIME_LABELS), TIME_INTERVALS[-1])
    fmt = "%a %d" if interval >= 1440 else "%H:%M"
    ticks = []
    for index, start in enumerate(starts):
        local = timezone.localtime(start)
        minute_of_day = local.hour * 60 + local.minute + local.second / 60
        wait = (-minute_of_day) % interval
        if wait < step_min:
            at = local + timedelta(minutes=wait)
            ticks.append((index, wait / step_min, f"{at:{fmt}}"))
    return ticks


@register.inclusion_tag("querylog/_chart.html")
def stacked_chart(points, step: timedelta) -> dict:
    """Stacked bars of allowed/cached/blocked per time bucket, the blocked share as a line, round ticks."""
    plot_w = CHART_WIDTH - PAD_LEFT - PAD_RIGHT
    plot_h = CHART_HEIGHT - PAD_TOP - PAD_BOTTOM
    bottom = PAD_TOP + plot_h
    count = max(len(points), 1)
    slot = plot_w / count
    bar_w = max(slot * 0.85, 1.0)
    ticks = round_ticks(max((p.total for p in points), default=0))
    top = ticks[-1]
    # Built here as one string: a few hundred rectangles through template
    # variable lookups were most of the dashboard's render time.
    rects: list[str] = []
    lines: list[list[str]] = []  # the blocked share, broken where a bucket is empty
    run: list[str] = []
    for i, p in enumerate(points):
        x = PAD_LEFT + i * slot
        base = bottom
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
        share = p.blocked_share
        if share is None:
            if run:
                lines.append(run)
            run = []
        else:
            run.append(f"{x + bar_w / 2:.2f},{bottom - plot_h * share:.2f}")
    if run:
        lines.append(run)
    shares = "".join(
        f'<polyline class="share" points="{" ".join(r)}" vector-effect="non-scaling-stroke"/>'
        if len(r) > 1
        else f'<circle class="share-dot" cx="{r[0].split(",")[0]}" cy="{r[0].split(",")[1]}" r="2"/>'
        for r in lines
    )
    x_ticks = [
        _Tick(f"{PAD_LEFT + (i + offset) * slot:.1f}", label)
        for i, offset, label in time_ticks([p.start for p in points], step)
    ]
    y_ticks = [_Tick(f"{bottom - plot_h * t / top:.1f}", f"{t:,}") for t in ticks]
    share_ticks = [_Tick(f"{bottom - plot_h * frac:.1f}", f"{int(frac * 100)} %") for frac in (0, 0.5, 1)]
    return {
        "width": CHART_WIDTH,
        "height": CHART_HEIGHT,
        "pad_left": PAD_LEFT,
        "plot_right": CHART_WIDTH - PAD_RIGHT,
        "label_x": PAD_LEFT - 6,
        "share_x": CHART_WIDTH - PAD_RIGHT + 6,
        "plot_bottom": bottom,
        # Safe: numbers we formatted and escaped titles only.
        "rects": mark_safe("".join(rects)),
        "shares": mark_safe(shares),
        "x_ticks": x_ticks,
        "y_ticks": y_ticks,
        "share_ticks": share_ticks,
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
