"""The DNS engine's settings that the settings page can change: each variable's parser, default and bounds.

``gloryhole_site/settings.py`` reads every row at start-up
(``GLORYHOLE_BLOCK_TTL = dns_env.BLOCK_TTL.read()``); the settings page and the engines'
config watcher parse a saved value with the same row (``EnvSetting.from_text``), so a value
is refused with the same message wherever it comes from. Upstreams and the blocking mode
stay text in the settings; their ``check`` is the parser ``EngineConfig.from_settings``
uses. Imported while Django is being configured: only the environment readers and the
core's option parsers, which need no Django.
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from dnsengine.core.options import parse_blocking_mode, parse_upstreams
from gloryhole_site.env import EnvSetting, env_float, env_int, env_str

UPSTREAMS = EnvSetting("GLORYHOLE_UPSTREAMS", env_str, "1.1.1.1,9.9.9.9", check=parse_upstreams)
BLOCKING_MODE = EnvSetting("GLORYHOLE_BLOCKING_MODE", env_str, "null", check=parse_blocking_mode)
BLOCK_TTL = EnvSetting("GLORYHOLE_BLOCK_TTL", env_int, 10, minimum=0, maximum=86400)
CACHE_SIZE = EnvSetting("GLORYHOLE_CACHE_SIZE", env_int, 20000, minimum=0, maximum=10_000_000)
CACHE_MIN_TTL = EnvSetting("GLORYHOLE_CACHE_MIN_TTL", env_int, 0, minimum=0, maximum=86400)
CACHE_MAX_TTL = EnvSetting("GLORYHOLE_CACHE_MAX_TTL", env_int, 86400, minimum=0, maximum=604800)
RELOAD_INTERVAL = EnvSetting("GLORYHOLE_RELOAD_INTERVAL", env_float, 2.0, minimum=0.1, maximum=60)

DNS_SETTINGS: tuple[EnvSetting, ...] = (
    UPSTREAMS, BLOCKING_MODE, BLOCK_TTL, CACHE_SIZE, CACHE_MIN_TTL, CACHE_MAX_TTL, RELOAD_INTERVAL,
)  # fmt: skip


def ttl_clamps_check(min_ttl: int, max_ttl: int) -> None:
    """The cache's TTL floor must not be above its ceiling (ImproperlyConfigured)."""
    if min_ttl > max_ttl:
        raise ImproperlyConfigured(f"GLORYHOLE_CACHE_MIN_TTL={min_ttl} is above GLORYHOLE_CACHE_MAX_TTL={max_ttl}")
