"""The engine settings in force: the environment wins, else the value saved on /settings/, else the default.

One ``LiveSetting`` per setting ties its environment variable's table row (its parser,
default and bounds: gloryhole_site/dns_env.py, querylog/logger/config.py) to its label
and to what applies it, so the settings page, the engines' config watcher and the docs
read the same table. Adding a setting is a row there and a row here. Saving bumps the
config generation: every engine re-reads these on its next poll.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction

from dnsengine.models import EngineSetting
from dnsengine.services.config_generation import config_generation_bump
from gloryhole_site import dns_env
from gloryhole_site.env import EnvSetting
from querylog.logger import config as query_log

logger = logging.getLogger(__name__)

# Saved text longer than this is refused (an upstream list is a few dozen characters).
VALUE_MAX_CHARS = 2000


@dataclass(frozen=True, slots=True)
class LiveSetting:
    setting: EnvSetting
    label: str
    section: str  # dns | querylog | retention
    help: str = ""

    @property
    def name(self) -> str:
        return self.setting.name


LIVE_SETTINGS: tuple[LiveSetting, ...] = (
    LiveSetting(dns_env.UPSTREAMS, "Upstream resolvers", "dns", "IP[:port], comma-separated; [::1]:53 for IPv6."),
    LiveSetting(dns_env.BLOCKING_MODE, "Blocking mode", "dns", "null, nxdomain, refused or ip:ADDR[,ADDR6]."),
    LiveSetting(dns_env.BLOCK_TTL, "Blocked answer TTL (s)", "dns"),
    LiveSetting(dns_env.CACHE_SIZE, "Cache size (answers)", "dns", "0 turns the cache off."),
    LiveSetting(dns_env.CACHE_MIN_TTL, "Cache minimum TTL (s)", "dns"),
    LiveSetting(dns_env.CACHE_MAX_TTL, "Cache maximum TTL (s)", "dns"),
    LiveSetting(dns_env.RELOAD_INTERVAL, "Reload interval (s)", "dns", "How often engines poll for changes."),
    LiveSetting(
        query_log.MODE,
        "Query log mode",
        "querylog",
        "pool (writer threads), process (writer processes: less work in the DNS process) or thread (the baseline).",
    ),
    LiveSetting(query_log.BUFFER, "Query log buffer (entries)", "querylog"),
    LiveSetting(query_log.WORKERS, "Query log writer threads", "querylog", "Writer processes in mode process."),
    LiveSetting(query_log.BATCH, "Query log batch size", "querylog"),
    LiveSetting(query_log.RETENTION_DAYS, "Keep query rows (days)", "retention", "0 keeps them all."),
    LiveSetting(query_log.ROLLUP_RETENTION_DAYS, "Keep statistics (days)", "retention", "0 keeps them all."),
)
BY_NAME = {s.name: s for s in LIVE_SETTINGS}


def live_settings_fixed() -> dict[str, str]:
    """name -> its value from the environment, for the settings the environment sets."""
    in_env = settings.GLORYHOLE_SET_IN_ENVIRONMENT
    return {s.name: str(getattr(settings, s.name)) for s in LIVE_SETTINGS if s.name in in_env}


def live_setting_parse(name: str, raw: str) -> object:
    """``raw`` parsed by the variable's own parser; ValueError with the environment's message if bad."""
    if len(raw) > VALUE_MAX_CHARS:
        raise ValueError(f"{name}: at most {VALUE_MAX_CHARS:,} characters")
    try:
        return BY_NAME[name].setting.from_text(raw)
    except ImproperlyConfigured as exc:
        raise ValueError(str(exc)) from None


def live_settings_cross_check(values: dict[str, object]) -> None:
    """What no single setting can check (the TTL clamps' order); ValueError with the start-up message."""
    try:
        dns_env.ttl_clamps_check(values[dns_env.CACHE_MIN_TTL.name], values[dns_env.CACHE_MAX_TTL.name])
    except ImproperlyConfigured as exc:
        raise ValueError(str(exc)) from None


def live_settings_saved() -> dict[str, str]:
    """name -> the text saved on /settings/ (only the names saved)."""
    return dict(EngineSetting.objects.filter(name__in=BY_NAME).values_list("name", "value"))


def live_settings_overrides() -> dict[str, object]:
    """name -> parsed value, for the settings saved on /settings/ that the environment does not fix.

    What an engine applies over the values it started with. A saved value that no longer
    parses (written around the form) is left out, with a warning: the engine keeps
    serving on what the environment or the default says.
    """
    fixed = live_settings_fixed()
    values: dict[str, object] = {}
    for name, raw in live_settings_saved().items():
        if name in fixed:
            continue
        try:
            values[name] = live_setting_parse(name, raw)
        except ValueError as exc:
            logger.warning("ignored the saved value: %s", exc)
    return values


def live_settings_current() -> dict[str, object]:
    """name -> the value in force (environment over saved row over default), for the settings page."""
    overrides = live_settings_overrides()
    return {s.name: overrides.get(s.name, getattr(settings, s.name)) for s in LIVE_SETTINGS}


def live_settings_save(values: dict[str, str]) -> list[str]:
    """Save the texts of the settings the environment does not fix ("" clears one); the names changed.

    The caller has checked them (``live_setting_parse``). Engines apply the change on
    their next poll: the config generation goes up.
    """
    fixed = live_settings_fixed()
    saved = live_settings_saved()
    changed = []
    with transaction.atomic():
        for name, raw in values.items():
            if name not in BY_NAME or name in fixed:
                continue
            raw = raw.strip()
            if raw == saved.get(name, ""):
                continue
            if raw:
                EngineSetting.objects.update_or_create(name=name, defaults={"value": raw})
            else:
                EngineSetting.objects.filter(name=name).delete()
            changed.append(name)
        if changed:
            config_generation_bump()
    return changed
