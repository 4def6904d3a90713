"""The engine's scheduled blocklist updates.

A thread wakes every minute or so and asks the database whether a list is due
(Blocklist.next_update, set with jitter after each update). When one is, it
runs `manage.py updateblocklists --due --verbosity 0` as a child process and
waits for it. The child downloads, parses and writes the new contents; the
write bumps the config generation and this engine's ConfigWatcher swaps the
new matcher in like after any other change. So an update never stalls DNS:
parsing a million lines takes neither this process's GIL nor its memory (a
few hundred MB for the biggest lists, which Python would not give back).

The child logs one line per list (a failure: its URL and the reason) to the
standard error it shares with this process, so its lines land in the same
log as ours, as they are: this process does not log them a second time.
"""

from __future__ import annotations

import logging
import random
import subprocess
import sys
import threading
from collections.abc import Callable

from django.conf import settings
from django.db import close_old_connections, connections
from django.db.models import Q
from django.utils import timezone

from dnsengine.blocklists.importer import BUNDLED_SOURCE, blocklists_update
from dnsengine.models import Blocklist

logger = logging.getLogger(__name__)

# The first check waits this long after start, plus up to FIRST_CHECK_JITTER: the
# engine serves (the bundled list blocks) while the machine's network comes up, and
# engines restarted together do not all download at once. Also longer than any test
# may run (pytest-timeout), so a test's engine never reaches the internet.
FIRST_CHECK_AFTER = 120.0
FIRST_CHECK_JITTER = 60.0
CHECK_EVERY = 60.0
# The exit status of `updateblocklists` when some list failed; the child has logged why.
LISTS_FAILED = 1


def blocklists_due() -> bool:
    """Is any enabled subscription (or the bundled list) due for an update?"""
    return (
        Blocklist.objects.filter(enabled=True)
        .filter(~Q(url="") | Q(source=BUNDLED_SOURCE))
        .filter(Q(next_update__isnull=True) | Q(next_update__lte=timezone.now()))
        .exists()
    )


def update_in_subprocess(stop: threading.Event, timeout: float) -> int:
    """Run `manage.py updateblocklists --due --verbosity 0` with this process's settings; its exit code.

    The child's standard error is ours (its log lines join this process's log
    unchanged); its standard output, the per-list lines meant for a terminal,
    is not wanted: with --verbosity 0 it writes none. Ends the child when
    `stop` is set (the engine is stopping) or after `timeout`.
    """
    command = [sys.executable, str(settings.BASE_DIR / "manage.py"), "updateblocklists", "--due", "--verbosity", "0"]
    with subprocess.Popen(command, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL) as child:
        waited = 0.0
        while child.poll() is None:
            if stop.wait(0.5):
                logger.info("engine stopping: ending the blocklist update")
                break
            waited += 0.5
            if waited > timeout:
                logger.warning("blocklist update still running after %.0f s: ending it", timeout)
                break
        if child.poll() is None:
            child.terminate()
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
    return child.returncode


def update_in_process(stop: threading.Event, timeout: float) -> int:
    """The same work in this process (tests, or a platform without subprocesses); logs one line per list."""
    outcomes = blocklists_update(due_only=True)
    return LISTS_FAILED if any(o.status == "failed" for o in outcomes) else 0


class BlocklistUpdater:
    """Checks for due lists every `check_every` seconds in its own thread and updates them.

    `run` does the update (default: the child process); tests call check_now() directly.
    """

    def __init__(
        self,
        *,
        check_every: float = CHECK_EVERY,
        first_check_after: float | None = None,
        run: Callable[[threading.Event, float], int] = update_in_subprocess,
        timeout: float | None = None,
    ) -> None:
        self.check_every = check_every
        if first_check_after is None:
            first_check_after = FIRST_CHECK_AFTER + random.uniform(0, FIRST_CHECK_JITTER)
        self.first_check_after = first_check_after
        self.run = run
        # Every list may take its whole download time, and then some for parsing and writing.
        self.timeout = timeout if timeout is not None else 2 * settings.GLORYHOLE_BLOCKLIST_FETCH_MAX_SECONDS + 600
        self.runs = 0
        self.last_exit: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="blocklist-updater", daemon=True)

    def check_now(self) -> bool:
        """Update the due lists, if any; True if an update ran. Never raises: the engine keeps serving."""
        try:
            close_old_connections()
            if not blocklists_due():
                return False
            self.runs += 1
            self.last_exit = self.run(self._stop, self.timeout)
            if self.last_exit not in (0, LISTS_FAILED):
                # A crash or a kill, not a list that failed (those are logged, one line each).
                logger.warning("blocklist update ended with status %s; lists keep their contents", self.last_exit)
            return True
        except Exception:
            logger.exception("blocklist update check failed; trying again in %.0f s", self.check_every)
            return False
        finally:
            close_old_connections()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _loop(self) -> None:
        wait = self.first_check_after
        try:
            while not self._stop.wait(wait):
                self.check_now()
                wait = self.check_every
        finally:
            connections.close_all()  # this thread's: no idle session left behind on the server
