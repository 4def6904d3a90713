"""Reading the engine's configuration from the database, and reloading it.

ConfigWatcher polls the one ConfigGeneration row (and the BlockingPause row)
every few seconds; when it moved, it builds a new Snapshot in its own thread
and swaps it into the resolver, so queries never wait for a reload and several
engines sharing one database all follow the same changes.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from collections.abc import Callable
from datetime import datetime

from django.db import close_old_connections, connections
from django.utils import timezone

from dnsengine.blocklists.store import blocklist_names
from dnsengine.core.clients import ClientDirectory
from dnsengine.core.forwarding import ForwardingRules, Route
from dnsengine.core.groups import GroupAssignment, next_window_check, policies_at, policies_build
from dnsengine.core.localrecords import LocalRecords
from dnsengine.core.options import ConfigError, parse_upstreams
from dnsengine.core.resolver import Resolver, Snapshot
from dnsengine.core.rules import Matcher
from dnsengine.core.stats import EngineStats
from dnsengine.core.throttle import RateLimitedLog
from dnsengine.engine_settings import live_settings_overrides
from dnsengine.models import AllowedDomain, Blocklist, BlockRule, ForwardingRule, LocalRecord
from dnsengine.runtime.local_hosts import LocalHostsFile
from dnsengine.runtime.policies import groups_load
from dnsengine.services import config_generation_current
from dnsengine.services.pause import blocking_paused_until

logger = logging.getLogger(__name__)


# Seconds between two log lines about failed reloads (each poll that fails is counted).
FAILURE_LOG_INTERVAL = 60.0


def forwarding_load(rule_forwarder_for: Callable | None = None) -> ForwardingRules | None:
    """The enabled conditional-forwarding rules, or None when there are none.

    `rule_forwarder_for(upstreams)` gives the long-lived forwarder of a rule's
    upstream list (None: the default upstreams). A row whose upstreams do not parse
    (written around the model's validation) is skipped with a warning, not fatal.
    """
    routes = []
    for domain, text in ForwardingRule.objects.filter(enabled=True).values_list("domain", "upstreams"):
        try:
            upstreams = parse_upstreams(text, setting=f"forwarding rule {domain}")
        except ConfigError as exc:
            logger.warning("skipped: %s", exc)
            continue
        forwarder = rule_forwarder_for(upstreams) if rule_forwarder_for is not None else None
        routes.append(Route(domain, forwarder, upstreams, f"forward:{domain}"))
    return ForwardingRules(routes) if routes else None


def snapshot_load(
    generation: int = 0,
    paused_until: float = 0.0,
    *,
    now: datetime | None = None,
    directory: ClientDirectory | None = None,
    forwarder_for: Callable | None = None,
    rule_forwarder_for: Callable | None = None,
    group_cache_size: int = 65536,
    stats: EngineStats | None = None,
    hosts_rows: tuple = (),
) -> Snapshot:
    """Build what the engine serves from: the enabled lists, rules, allowlist, local records, client groups.

    `paused_until` is copied into the snapshot as is: the watcher converts the
    pause's end to the resolver's clock. `now` (local time) decides which time
    windows are open; `directory` gets the names the user gave the clients;
    `forwarder_for(upstreams)` gives the forwarder of a group with its own upstreams,
    `rule_forwarder_for(upstreams)` that of a conditional-forwarding rule;
    `hosts_rows` are the local hosts file's records (dnsengine.runtime.local_hosts).
    """
    enabled = list(Blocklist.objects.filter(enabled=True).order_by("name").values_list("pk", "name"))
    lists = [(name, blocklist_names(pk)) for pk, name in enabled]
    groups = groups_load([pk for pk, _ in enabled])
    if directory is not None:
        directory.set_configured(groups.names_by_ip, groups.names_by_cidr, groups.names_by_mac)
    local = LocalRecords.build(
        LocalRecord.objects.filter(enabled=True).values_list("name", "type", "value", "ttl"), hosts_rows
    )
    forwarding = forwarding_load(rule_forwarder_for)
    if not groups.simple:
        # One table of names for every group; each policy maps its list sets to decisions.
        shared = Matcher.build(lists=lists)
        policies = policies_build(shared.blocked, shared.list_names, groups.specs, now, forwarder_for)
        assignment = GroupAssignment(by_ip=groups.by_ip, by_cidr=groups.by_cidr, by_mac=groups.by_mac, default=0,
                                     directory=directory, max_size=group_cache_size, stats=stats)  # fmt: skip
        return Snapshot(matcher=policies[0].matcher, local=local, generation=generation, paused_until=paused_until,
                        group=groups.default_name, assignment=assignment, policies=policies,
                        specs=groups.specs, forwarding=forwarding)  # fmt: skip
    matcher = Matcher.build(
        lists=lists,
        rules=BlockRule.objects.filter(enabled=True, blocklist__isnull=True).values_list("kind", "pattern"),
        allowed=AllowedDomain.objects.filter(enabled=True).values_list("domain", "include_subdomains"),
        # The rules of regex lists are in force while their list is.
        list_rules=BlockRule.objects.filter(enabled=True, blocklist__enabled=True)
        .order_by("blocklist__name", "pk")
        .values_list("blocklist__name", "kind", "pattern"),
    )
    return Snapshot(matcher=matcher, local=local, generation=generation, paused_until=paused_until,
                    group=groups.default_name, forwarding=forwarding)  # fmt: skip


class ConfigWatcher:
    """Keeps the resolver's snapshot in step with the database.

    Two things are followed: the config generation (a change rebuilds the
    whole snapshot) and the blocking pause (a change only swaps in a copy of
    the snapshot with the new end, without rebuilding the matcher). Either
    way the resolver drops its cached replies: blocked answers must not be
    served during a pause, nor answers fetched during it once it is over.
    """

    def __init__(
        self,
        resolver: Resolver,
        interval: float,
        on_reload: Callable[[Snapshot], None] | None = None,
        *,
        wall_clock: Callable[[], float] = time.time,
        clock: Callable[[], float] = time.monotonic,
        failure_log_interval: float = FAILURE_LOG_INTERVAL,
        local_now: Callable[[], datetime] = timezone.localtime,
        directory: ClientDirectory | None = None,
        forwarder_for: Callable | None = None,
        rule_forwarder_for: Callable | None = None,
        group_cache_size: int = 65536,
        stats: EngineStats | None = None,
        local_hosts: LocalHostsFile | None = None,
    ):
        self.resolver = resolver
        self.local_hosts = local_hosts if local_hosts is not None else LocalHostsFile("")
        self.hosts_reloads = 0
        self.interval = interval
        self.on_reload = on_reload
        self.wall_clock = wall_clock
        self.clock = clock
        self.failure_log_interval = failure_log_interval
        # Local time in settings.TIME_ZONE, for the groups' time windows; tests pass their own.
        self.local_now = local_now
        self.directory = directory
        self.forwarder_for = forwarder_for
        self.rule_forwarder_for = rule_forwarder_for
        self.group_cache_size = group_cache_size
        self.stats = stats
        self.window_changes = 0
        self.generation: int | None = None
        self.reloads = 0
        # Failed attempts since the last one that worked, and when the next may be logged.
        self.failures = 0
        self._next_failure_log = 0.0
        # The pause's end as the database has it (Unix time, math.inf, 0.0): what was last applied.
        self.paused_until = 0.0
        # Called after each poll, in this thread: the query log reads its privacy settings
        # here (rundns sets it), so a change reaches every engine within one interval.
        self.on_poll: Callable[[], None] | None = None
        # The values saved on the settings page that no environment variable fixes
        # (dnsengine.engine_settings), read on each reload (saving bumps the generation); each
        # listener gets them when they changed and applies them over what it started with:
        # the engine (upstreams, blocking, cache, TTLs, this interval), rundns (the query log).
        self.settings: dict[str, object] | None = None
        self.settings_listeners: list[Callable[[dict[str, object]], None]] = []
        self._poll_log = RateLimitedLog(logger, failure_log_interval)
        self._stop = threading.Event()
        # One reload at a time: another thread's load_now (a test's engine_reload) must not
        # apply an older snapshot over the watcher thread's newer one, nor a time-window
        # update be built from a snapshot a reload is replacing.
        self._lock = threading.RLock()
        self._thread = threading.Thread(target=self._run, name="config-watcher", daemon=True)

    def load_now(self) -> bool:
        """Reload if the generation moved (or nothing was loaded yet), apply a pause that began or ended.

        True if the resolver got a new snapshot. A database error is logged (at
        most once a FAILURE_LOG_INTERVAL, one line) and the resolver keeps what
        it has: the database may be restarting, the next poll tries again.
        """
        try:
            with self._lock:
                changed = False
                try:
                    changed = self._end_expired_pause()
                    changed = self._load_hosts_file() or changed
                    return self._load_from_database() or changed
                except Exception as exc:
                    self._failed(exc)
                    return changed
        finally:
            self._poll_others()

    def _poll_others(self) -> None:
        if self.on_poll is None:
            return
        try:
            self.on_poll()
        except Exception as exc:
            self._poll_log.log(logging.WARNING, "polling the query log's settings failed: %s: %s",
                               type(exc).__name__, " ".join(str(exc).split()))  # fmt: skip
        finally:
            close_old_connections()

    def load_now_or_raise(self) -> bool:
        """load_now, but a database error propagates: start-up must not serve without lists."""
        with self._lock:
            changed = self._end_expired_pause()
            changed = self._load_hosts_file() or changed
            return self._load_from_database() or changed

    def _load_hosts_file(self) -> bool:
        """Swap in the local hosts file's records when it changed; True if it did (no database, no generation)."""
        rows = self.local_hosts.read_if_changed()
        if rows is None:
            return False
        if self.generation is None:
            return False  # nothing loaded yet: the first reload takes the rows from local_hosts
        snapshot = self.resolver.snapshot
        self.resolver.apply_snapshot(dataclasses.replace(snapshot, local=snapshot.local.with_hosts(rows)))
        self.hosts_reloads += 1
        if self.on_reload is not None:
            self.on_reload(self.resolver.snapshot)
        return True

    def _load_from_database(self) -> bool:
        try:
            close_old_connections()
            generation = config_generation_current()
            paused_until = blocking_paused_until(self.wall_clock())
            if generation != self.generation:
                self._reload(generation, paused_until)
                changed = True
            elif paused_until != self.paused_until:
                self._apply_pause(paused_until)
                changed = True
            else:
                changed = False
        finally:
            close_old_connections()
        if self.failures:
            logger.info("configuration reloads work again after %d failed attempts", self.failures)
            self.failures = 0
            self._next_failure_log = 0.0
        return changed

    def _failed(self, exc: Exception) -> None:
        # Polled every couple of seconds: a traceback each time would bury the log,
        # and the reason fits on one line.
        self.failures += 1
        if self.failures == 1:
            logger.debug("reloading the configuration failed", exc_info=exc)
        now = self.clock()
        if now < self._next_failure_log:
            return
        self._next_failure_log = now + self.failure_log_interval
        serving = (
            "still serving the previous one"
            if self.generation is not None
            else "nothing loaded yet: serving without block lists or local records"
        )
        logger.warning(
            "reloading the configuration failed (failure %d in a row): %s: %s; %s",
            self.failures,
            type(exc).__name__,
            " ".join(str(exc).split()),
            serving,
        )

    def _reload(self, generation: int, paused_until: float) -> None:
        started = time.monotonic()
        self._settings_load()
        snapshot = snapshot_load(generation, self._resolver_time(paused_until), now=self.local_now(),
                                 directory=self.directory, forwarder_for=self.forwarder_for,
                                 rule_forwarder_for=self.rule_forwarder_for, group_cache_size=self.group_cache_size,
                                 stats=self.stats, hosts_rows=self.local_hosts.rows)  # fmt: skip
        self.resolver.apply_snapshot(snapshot)
        self.generation = generation
        self.paused_until = paused_until
        self.reloads += 1
        logger.info(
            "configuration generation %s loaded in %.2fs: %d blocked names, %d rules, %d local names "
            "(%d wildcards, %d records from the hosts file)",
            generation,
            time.monotonic() - started,
            snapshot.matcher.size,
            len(snapshot.matcher.rules),
            len(snapshot.local.records),
            len(snapshot.local.wildcards),
            snapshot.local.hosts_count,
        )
        if self.on_reload is not None:
            self.on_reload(snapshot)

    def _settings_load(self) -> None:
        """Hand the saved settings to the listeners if they changed, before the snapshot is built."""
        values = live_settings_overrides()
        if values == self.settings:
            return
        self.settings = values
        for listener in self.settings_listeners:
            try:
                listener(values)
            except Exception:
                logger.exception("applying the settings failed (%s); the rest still apply", listener)

    def _apply_pause(self, paused_until: float) -> None:
        snapshot = dataclasses.replace(self.resolver.snapshot, paused_until=self._resolver_time(paused_until))
        self.resolver.apply_snapshot(snapshot)
        self.paused_until = paused_until
        if snapshot.paused_until:
            left = snapshot.paused_until - self.resolver.clock()
            logger.info("blocking paused %s", "until resumed" if left == math.inf else f"for {left:.0f} s")
        else:
            logger.info("blocking on again")
        if self.on_reload is not None:
            self.on_reload(snapshot)

    def apply_windows(self) -> bool:
        """Open and close the groups' time windows as of now; True if some group's lists changed.

        Rebuilds only the changed policies' decision arrays (dnsengine.core.groups.policies_at),
        never the shared table of names, and drops the cached replies as a reload does.
        """
        with self._lock:
            return self._apply_windows()

    def _apply_windows(self) -> bool:
        snapshot = self.resolver.snapshot
        if not any(spec.windows for spec in snapshot.specs):
            return False
        policies = policies_at(snapshot.policies, snapshot.specs, self.local_now())
        if policies is None:
            return False
        self.resolver.apply_snapshot(dataclasses.replace(snapshot, policies=policies, matcher=policies[0].matcher))
        self.window_changes += 1
        logger.info("time windows changed: %s", ", ".join(
            f"{p.group} uses {len(p.open_lists)} lists" for p in policies))  # fmt: skip
        if self.on_reload is not None:
            self.on_reload(self.resolver.snapshot)
        return True

    def _end_expired_pause(self) -> bool:
        """Drop what was cached during a pause that just ran out; needs no database."""
        until = self.resolver.snapshot.paused_until
        if until and until <= self.resolver.clock():
            self._apply_pause(0.0)
            return True
        return False

    def _resolver_time(self, paused_until: float) -> float:
        """The pause's end (Unix time) on the resolver's clock, which need not be the wall clock."""
        if paused_until in (0.0, math.inf):
            return paused_until
        left = paused_until - self.wall_clock()
        return self.resolver.clock() + left if left > 0 else 0.0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def _next_wait(self) -> float:
        # Wake when a pause ends, not up to `interval` later: the replies cached
        # during it are to go at once.
        snapshot = self.resolver.snapshot
        left = snapshot.paused_until - self.resolver.clock()
        wait = min(self.interval, left + 0.005) if left > 0 else self.interval
        if any(spec.windows for spec in snapshot.specs):
            # At least once a minute, and at each window's start and end.
            wait = min(wait, next_window_check(snapshot.specs, self.local_now()))
        return wait

    def _run(self) -> None:
        try:
            while not self._stop.wait(self._next_wait()):
                self.load_now()
                try:
                    self.apply_windows()
                except Exception:
                    logger.exception("evaluating the groups' time windows failed")
        finally:
            connections.close_all()  # this thread's: no idle session left behind on the server
