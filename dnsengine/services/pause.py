"""Pausing blocking for everyone: for some minutes, or until someone resumes.

The writes (`blocking_pause`, `blocking_resume`) and the two reads of the same
row that go with them: the state for the pages and the API
(`blocking_pause_status`), and the end of the pause for the engines
(`blocking_paused_until`).

The state is one BlockingPause row. It is not part of the config generation, so
a pause does not make the engines rebuild their matcher: each engine's
ConfigWatcher reads `blocking_paused_until()` on every poll, puts it in the
snapshot, and the resolver compares it with the clock on every query. So a
timed pause ends on time by itself, even if no engine or web process writes
anything, and the row is only the record of what someone asked for.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from dnsengine.models import BlockingPause

logger = logging.getLogger(__name__)

# A week: a longer "timed" pause is a forgotten one; "until I resume" says so openly.
MAX_PAUSE_MINUTES = 7 * 24 * 60
PAUSE_CHOICES = ((5, "5 minutes"), (60, "1 hour"), (None, "until I resume"))


@dataclass(frozen=True, slots=True)
class PauseStatus:
    paused: bool
    until: datetime | None  # None while paused: until someone resumes
    changed_at: datetime | None
    changed_by: str

    @property
    def seconds_left(self) -> int | None:
        if not self.paused or self.until is None:
            return None
        return max(0, math.ceil((self.until - timezone.now()).total_seconds()))

    def as_json(self) -> dict:
        return {
            "paused": self.paused,
            "until": self.until.isoformat() if self.until else None,
            "seconds_left": self.seconds_left,
            "changed_at": self.changed_at.isoformat() if self.changed_at else None,
            "changed_by": self.changed_by,
        }


def _row() -> BlockingPause:
    row, _ = BlockingPause.objects.select_for_update().get_or_create(pk=1)
    return row


def blocking_pause(minutes: int | None, by: str = "") -> PauseStatus:
    """Stop blocking for `minutes` (None: until blocking_resume()); a new pause replaces a running one."""
    if minutes is not None and not 1 <= minutes <= MAX_PAUSE_MINUTES:
        raise ValueError(f"a pause lasts 1 to {MAX_PAUSE_MINUTES} minutes, or until resumed")
    now = timezone.now()
    with transaction.atomic():
        row = _row()
        row.active = True
        row.until = now + timedelta(minutes=minutes) if minutes is not None else None
        row.changed_at = now
        row.changed_by = by[:150]
        row.save()
    logger.info("blocking paused %s by %s", f"for {minutes} min" if minutes else "until resumed", by or "?")
    return _status(row, now)


def blocking_resume(by: str = "") -> PauseStatus:
    """Blocking on again, now; harmless when it was not paused."""
    now = timezone.now()
    with transaction.atomic():
        row = _row()
        was_paused = _status(row, now).paused
        row.active = False
        row.until = None
        row.changed_at = now
        row.changed_by = by[:150]
        row.save()
    if was_paused:
        logger.info("blocking resumed by %s", by or "?")
    return _status(row, now)


def blocking_pause_status() -> PauseStatus:
    row = BlockingPause.objects.filter(pk=1).first()
    if row is None:
        return PauseStatus(False, None, None, "")
    return _status(row, timezone.now())


def blocking_paused_until(now: float | None = None) -> float:
    """For the engine: Unix time the pause ends, math.inf until resumed, 0.0 when not paused.

    An expired pause reads as 0.0 (`now`: Unix time, default the clock's), so
    the value changes when it ends and a watcher comparing it with the last
    one notices.
    """
    row = BlockingPause.objects.filter(pk=1).values_list("active", "until").first()
    if row is None or not row[0]:
        return 0.0
    until = row[1]
    if until is None:
        return math.inf
    deadline = until.timestamp()
    return deadline if deadline > (time.time() if now is None else now) else 0.0


def _status(row: BlockingPause, now: datetime) -> PauseStatus:
    paused = row.active and (row.until is None or row.until > now)
    return PauseStatus(paused, row.until if paused else None, row.changed_at if row.pk else None, row.changed_by)
