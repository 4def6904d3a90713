"""Login throttling on top of django-axes: a lockout that grows, and one log line per lockout.

django-axes counts failed logins per username and per client address
(AXES_LOCKOUT_PARAMETERS) and refuses every login for that username or from that
address, the right password included, once GLORYHOLE_LOGIN_FAILURE_LIMIT failures
lie within the cool-off. The cool-off is ours (AXES_COOLOFF_TIME points here): the
first lockout lasts GLORYHOLE_LOGIN_LOCKOUT_SECONDS and each further limit's worth
of failures in the last GROWTH_MEMORY doubles it, up to
GLORYHOLE_LOGIN_LOCKOUT_MAX_SECONDS. So a guesser who waits out each lockout gets
a few tries an hour, then a few a day, instead of a few a minute.

Failed attempts during a lockout count too (axes' default): a client that keeps
trying stays locked, for longer and longer.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_client_username, get_failure_limit
from axes.models import AccessFailureLog
from django.conf import settings
from django.http import HttpRequest
from django.utils import timezone

from gloryhole_site.security import client_address

log = logging.getLogger(__name__)

# Failures this recent make the next lockout longer. Longer than the longest lockout
# anyone is likely to configure, so a guesser cannot outwait the growth.
GROWTH_MEMORY = timedelta(days=1)
# Axes' failure log (one row per failure, shown in the admin) is kept this long; a
# guesser with a new username for every try would otherwise grow it without end.
FAILURE_LOG_KEEP = timedelta(days=7)
PURGE_EVERY_SECONDS = 3600.0

_purge_lock = threading.Lock()
_next_purge = 0.0


def recent_failures(username: str | None, address: str | None) -> int:
    """Failed logins in the last GROWTH_MEMORY for this username or from this address, whichever is more."""
    recent = AccessFailureLog.objects.filter(attempt_time__gte=timezone.now() - GROWTH_MEMORY)
    by_username = recent.filter(username=username).count() if username else 0
    by_address = recent.filter(ip_address=address).count() if address else 0
    return max(by_username, by_address)


def cool_off_for(failures: int) -> timedelta:
    """GLORYHOLE_LOGIN_LOCKOUT_SECONDS, doubled for each further lockout's worth of failures, capped."""
    lockouts = max(1, failures // settings.AXES_FAILURE_LIMIT)
    base = settings.GLORYHOLE_LOGIN_LOCKOUT_SECONDS
    cap = settings.GLORYHOLE_LOGIN_LOCKOUT_MAX_SECONDS
    # min(): 2**n for a guesser's thousands of failures is a huge number for nothing.
    return timedelta(seconds=min(cap, base * 2 ** min(lockouts - 1, 40)))


def login_cool_off(request: HttpRequest | None = None) -> timedelta:
    """AXES_COOLOFF_TIME: how long this request's username and address stay locked.

    Axes asks several times per login: before checking the password (is it locked?),
    when a failure is recorded (until when does it count?) and for the lockout page.
    A failure being recorded counts itself (LoginAttemptHandler marks the request),
    so the expiry stored with it matches what the next request's check computes.
    """
    if request is None or not hasattr(request, "POST"):
        return cool_off_for(0)
    failing = bool(getattr(request, "gloryhole_login_failing", False))
    memo = request.__dict__.setdefault("_gloryhole_cool_off", {})
    if failing not in memo:
        address = getattr(request, "axes_ip_address", None) or client_address(request)
        memo[failing] = cool_off_for(recent_failures(get_client_username(request), address) + failing)
    return memo[failing]


class LoginAttemptHandler(AxesDatabaseHandler):
    """Axes' database handler (AXES_HANDLER), plus the lockout log line and a bounded failure log."""

    def user_login_failed(self, sender, credentials: dict, request=None, **kwargs):
        if request is None:
            return super().user_login_failed(sender, credentials, request, **kwargs)
        request.gloryhole_login_failing = True
        try:
            super().user_login_failed(sender, credentials, request, **kwargs)
        finally:
            request.gloryhole_login_failing = False
        limit = get_failure_limit(request, credentials)
        # The failure that reached the limit starts a lockout; later ones only extend it.
        if getattr(request, "axes_locked_out", False) and getattr(request, "axes_failures_since_start", 0) == limit:
            username = get_client_username(request, credentials)
            seconds = int(login_cool_off(request).total_seconds())
            log.warning(
                "login locked out for %d s after %d failed logins: username %r, address %s"
                " (unlock: manage.py axes_reset_username NAME or axes_reset_ip ADDRESS)",
                seconds,
                limit,
                username,
                request.axes_ip_address,
            )
        purge_old_failures()


def purge_old_failures() -> None:
    """Delete failure-log rows older than FAILURE_LOG_KEEP, at most once an hour per process."""
    global _next_purge
    now = time.monotonic()
    if now < _next_purge or not _purge_lock.acquire(blocking=False):
        return
    try:
        _next_purge = now + PURGE_EVERY_SECONDS
        AccessFailureLog.objects.filter(attempt_time__lt=timezone.now() - FAILURE_LOG_KEEP).delete()
    finally:
        _purge_lock.release()
