"""The dashboard chart's axes: round count ticks, round local times, and the blocked-share line."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.test import override_settings

from querylog.selectors import ChartPoint
from querylog.templatetags.gloryhole import round_ticks, stacked_chart, time_ticks


@pytest.mark.parametrize(
    ("value", "ticks"),
    [
        (0, [0, 1]),
        (1, [0, 1]),
        (3, [0, 1, 2, 3]),
        (4, [0, 1, 2, 3, 4]),
        (5, [0, 2, 4, 6]),
        (7, [0, 2, 4, 6, 8]),
        (9, [0, 5, 10]),
        (37, [0, 10, 20, 30, 40]),
        (41, [0, 20, 40, 60]),
        (120, [0, 50, 100, 150]),
        (1234, [0, 500, 1000, 1500]),
        (2_000_001, [0, 1_000_000, 2_000_000, 3_000_000]),
    ],
)
def test_count_ticks_are_round_steps_of_one_two_or_five(value, ticks):
    assert round_ticks(value) == ticks


def test_count_ticks_always_reach_the_value_in_at_most_four_steps():
    for value in range(1, 20_000, 7):
        ticks = round_ticks(value)
        step = ticks[1]
        assert ticks[-1] >= value > ticks[-2]
        assert len(ticks) <= 5
        assert str(step).rstrip("0") in ("1", "2", "5")


@override_settings(TIME_ZONE="UTC")
def test_time_labels_fall_on_round_local_times():
    start = datetime(2026, 6, 1, 10, 7, tzinfo=UTC)
    minutes = [start + timedelta(minutes=i) for i in range(60)]
    assert [label for _, _, label in time_ticks(minutes, timedelta(minutes=1))] == [
        "10:10", "10:20", "10:30", "10:40", "10:50", "11:00",
    ]  # fmt: skip
    quarters = [datetime(2026, 6, 1, 0, 15, tzinfo=UTC) + timedelta(minutes=15 * i) for i in range(96)]
    labels = [label for _, _, label in time_ticks(quarters, timedelta(minutes=15))]
    assert labels == ["03:00", "06:00", "09:00", "12:00", "15:00", "18:00", "21:00", "00:00"]


@override_settings(TIME_ZONE="Asia/Kolkata")
def test_a_day_label_lands_at_local_midnight_inside_a_bucket():
    # UTC+05:30: local midnight is half-way through a two-hour bucket that starts on an even UTC hour.
    start = datetime(2026, 6, 1, 0, 0, tzinfo=UTC)
    buckets = [start + timedelta(hours=2 * i) for i in range(84)]
    ticks = time_ticks(buckets, timedelta(hours=2))
    assert len(ticks) == 7
    index, offset, label = ticks[0]
    assert buckets[index] + timedelta(hours=2 * offset) == datetime(2026, 6, 1, 18, 30, tzinfo=UTC)
    assert label == "Tue 02"


@override_settings(TIME_ZONE="UTC")
def test_the_chart_draws_the_blocked_share_and_breaks_it_at_empty_buckets():
    start = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)
    points = [
        ChartPoint(start, allowed=3, blocked=1, cached=0),
        ChartPoint(start + timedelta(minutes=1), allowed=1, blocked=1, cached=0),
        ChartPoint(start + timedelta(minutes=2), allowed=0, blocked=0, cached=0),
        ChartPoint(start + timedelta(minutes=3), allowed=0, blocked=2, cached=0),
    ]
    chart = stacked_chart(points, timedelta(minutes=1))
    assert [t.label for t in chart["y_ticks"]] == ["0", "1", "2", "3", "4"]
    assert chart["shares"].count("<polyline") == 1  # the first two buckets
    assert chart["shares"].count("<circle") == 1  # the last one, alone after the gap
    bottom, top = chart["plot_bottom"], 8
    ys = [float(p.split(",")[1]) for p in chart["shares"].split('points="')[1].split('"')[0].split()]
    height = bottom - top
    assert ys == [pytest.approx(bottom - height * 0.25, abs=0.01), pytest.approx(bottom - height * 0.5, abs=0.01)]
