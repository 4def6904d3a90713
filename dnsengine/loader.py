"""Reading the engine's configuration from the database, and reloading it.

ConfigWatcher polls the one ConfigGeneration row every few seconds; when it
moved, it builds a new Snapshot in its own thread and swaps it into the
resolver, so queries never wait for a reload and several engines sharing one
database all follow the same changes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from django.db import close_old_connections

from dnsengine.models import AllowedDomain, BlockedDomain, Blocklist, BlockRule, LocalRecord
from dnsengine.resolver import LocalRecords, Resolver, Snapshot
from dnsengine.rules import Matcher
from dnsengine.services import config_generation_current

logger = logging.getLogger(__name__)


def snapshot_load(generation: int = 0) -> Snapshot:
    lists = []
    for blocklist in Blocklist.objects.filter(enabled=True).order_by("name"):
        domains = BlockedDomain.objects.filter(blocklist=blocklist).values_list("domain", flat=True)
        lists.append((blocklist.name, domains.iterator(chunk_size=20000)))
    matcher = Matcher.build(
        lists=lists,
        rules=BlockRule.objects.filter(enabled=True).values_list("kind", "pattern"),
        allowed=AllowedDomain.objects.filter(enabled=True).values_list("domain", "include_subdomains"),
    )
    local = LocalRecords.build(LocalRecord.objects.filter(enabled=True).values_list("name", "type", "value", "ttl"))
    return Snapshot(matcher=matcher, local=local, generation=generation)


class ConfigWatcher:
    def __init__(self, resolver: Resolver, interval: float, on_reload: Callable[[Snapshot], None] | None = None):
        self.resolver = resolver
        self.interval = interval
        self.on_reload = on_reload
        self.generation: int | None = None
        self.reloads = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="config-watcher", daemon=True)

    def load_now(self) -> bool:
        """Reload if the generation moved (or nothing was loaded yet); True if it reloaded."""
        try:
            close_old_connections()
            generation = config_generation_current()
            if generation == self.generation:
                return False
            started = time.monotonic()
            snapshot = snapshot_load(generation)
            self.resolver.apply_snapshot(snapshot)
            self.generation = generation
            self.reloads += 1
            logger.info(
                "configuration generation %s loaded in %.2fs: %d blocked names, %d rules, %d local names",
                generation,
                time.monotonic() - started,
                snapshot.matcher.size,
                len(snapshot.matcher.rules),
                len(snapshot.local.records),
            )
            if self.on_reload is not None:
                self.on_reload(snapshot)
            return True
        except Exception:
            # The database may be restarting: keep serving the old snapshot, try again.
            logger.exception("reloading the configuration failed; still serving the previous one")
            return False
        finally:
            close_old_connections()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.load_now()
