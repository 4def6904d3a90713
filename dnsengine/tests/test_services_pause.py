"""Pausing blocking: the stored state (dnsengine.services.pause)."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest
from django.utils import timezone

from dnsengine.models import BlockingPause
from dnsengine.services.config_generation import config_generation_current
from dnsengine.services.pause import (
    MAX_PAUSE_MINUTES,
    blocking_pause,
    blocking_pause_status,
    blocking_paused_until,
    blocking_resume,
)

# --- the stored state ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_timed_pause_ends_after_its_minutes():
    before = timezone.now()
    status = blocking_pause(5, by="alice")

    assert status.paused and status.changed_by == "alice"
    assert timedelta(minutes=5) <= status.until - before < timedelta(minutes=5, seconds=5)
    assert 295 <= status.seconds_left <= 300
    assert blocking_paused_until() == pytest.approx(status.until.timestamp())
    assert blocking_paused_until(now=status.until.timestamp() + 1) == 0.0


@pytest.mark.django_db
def test_a_pause_without_minutes_lasts_until_resumed():
    status = blocking_pause(None, by="bob")

    assert status.paused and status.until is None and status.seconds_left is None
    assert blocking_paused_until() == math.inf

    resumed = blocking_resume(by="bob")

    assert not resumed.paused and blocking_paused_until() == 0.0
    assert not blocking_pause_status().paused


@pytest.mark.django_db
def test_an_expired_pause_reads_as_not_paused():
    BlockingPause.objects.create(pk=1, active=True, until=timezone.now() - timedelta(seconds=1))

    assert not blocking_pause_status().paused
    assert blocking_paused_until() == 0.0


@pytest.mark.django_db
def test_nothing_is_paused_on_a_fresh_install():
    assert blocking_pause_status().as_json() == {
        "paused": False,
        "until": None,
        "seconds_left": None,
        "changed_at": None,
        "changed_by": "",
    }
    assert blocking_paused_until() == 0.0


@pytest.mark.django_db
@pytest.mark.parametrize("minutes", [0, -5, MAX_PAUSE_MINUTES + 1])
def test_a_pause_of_no_time_or_too_long_is_refused(minutes):
    with pytest.raises(ValueError, match="a pause lasts 1 to 10080 minutes"):
        blocking_pause(minutes)
    assert not BlockingPause.objects.exists()


@pytest.mark.django_db
def test_pausing_does_not_make_engines_rebuild_their_lists():
    generation = config_generation_current()
    blocking_pause(5)
    blocking_resume()
    assert config_generation_current() == generation
