"""Typed readers for settings that come from the environment.

Each one raises ImproperlyConfigured naming the variable instead of guessing,
so a typo in a unit file stops start-up with a message rather than running
with a surprise.
"""

from __future__ import annotations

import os
import re
import zoneinfo
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlparse

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def env_str(name: str, default: str, *, environ: Mapping[str, str] | None = None) -> str:
    return (os.environ if environ is None else environ).get(name, default)


def env_bool(name: str, default: bool, *, environ: Mapping[str, str] | None = None) -> bool:
    raw = (os.environ if environ is None else environ).get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use 1/0, true/false, yes/no, on/off)")


def env_int(
    name: str,
    default: int,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:
    raw = (os.environ if environ is None else environ).get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a whole number") from None
    _check_range(name, value, minimum, maximum)
    return value


def env_float(
    name: str,
    default: float,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    environ: Mapping[str, str] | None = None,
) -> float:
    raw = (os.environ if environ is None else environ).get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ImproperlyConfigured(f"{name}={raw!r} is not a finite number")
    _check_range(name, value, minimum, maximum)
    return value


def env_choice(name: str, default: str, choices: Iterable[str]) -> str:
    """One of `choices`, matched without regard to case and returned as spelt there."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    by_lower = {choice.lower(): choice for choice in choices}
    try:
        return by_lower[raw.strip().lower()]
    except KeyError:
        raise ImproperlyConfigured(f"{name}={raw!r}: use one of {', '.join(by_lower.values())}") from None


@dataclass(frozen=True, slots=True)
class EnvSetting:
    """One environment variable: how to parse it, its default, and its bounds if a number.

    ``read()`` parses the environment at start-up; ``from_text()`` parses the same
    variable's value typed on the settings page, with the same reader, so both paths
    give the same value and the same message for a bad one. ``check`` (optional) also
    checks what the value means (``parse_upstreams``) and raises ValueError naming the
    variable.
    """

    name: str
    parse: Callable[..., object]  # one of the env_* readers above
    default: bool | int | float | str
    minimum: float | None = None
    maximum: float | None = None
    check: Callable[[str, str], object] | None = None  # check(value, name)

    def read(
        self, default: bool | int | float | str | None = None, *, environ: Mapping[str, str] | None = None
    ) -> object:
        """The variable's value from os.environ (or ``environ``); ``default`` (else the table's) when unset.

        Raises ImproperlyConfigured naming the variable for a value it cannot parse or
        one outside the bounds.
        """
        fallback = self.default if default is None else default
        if self.minimum is None and self.maximum is None:
            return self.parse(self.name, fallback, environ=environ)
        return self.parse(self.name, fallback, minimum=self.minimum, maximum=self.maximum, environ=environ)

    def from_text(self, raw: str) -> object:
        """``raw`` parsed as if the variable were set to it (ImproperlyConfigured or ValueError if bad)."""
        value = self.read(environ={self.name: raw})
        if self.check is not None:
            self.check(value, self.name)
        return value


# The system's zone files, which Django checks TIME_ZONE against where they exist.
_ZONEINFO_ROOT = Path("/usr/share/zoneinfo")


def env_time_zone(name: str, default: str) -> str:
    """An IANA time zone name such as ``Europe/Paris``.

    Checked here because Django's own check raises a ValueError from inside
    settings set-up: a traceback that does not name the variable.
    """
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip()
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        # ValueError: not a zone key at all (an absolute path, "..").
        raise ImproperlyConfigured(f"{name}={raw!r} is not a time zone name (such as UTC or Europe/Paris)") from None
    # The same test as Django's: a zone that only the tzdata package knows would pass above and fail there.
    if _ZONEINFO_ROOT.exists() and not _ZONEINFO_ROOT.joinpath(*value.split("/")).exists():
        raise ImproperlyConfigured(f"{name}={raw!r} is not a time zone this system knows ({_ZONEINFO_ROOT})")
    return value


def _check_range(name: str, value: float, minimum: float | None, maximum: float | None) -> None:
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value} is below the minimum of {minimum}")
    if maximum is not None and value > maximum:
        raise ImproperlyConfigured(f"{name}={value} is above the maximum of {maximum}")


def database_from_url(name: str, url: str, base_dir) -> dict:
    """Turn DATABASE_URL into a Django DATABASES entry (sqlite:/// or postgres://).

    A postgres:// URL may end in libpq parameters (``?sslmode=require``) and
    ``conn_max_age=SECONDS`` (default 60; 0 closes the connection after each request).
    """
    parsed = urlparse(url)
    shown = _redact(url)
    if parsed.scheme == "sqlite":
        # sqlite:///relative/path and sqlite:////absolute/path, as dj-database-url reads them.
        path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else ""
        if not path:
            raise ImproperlyConfigured(f"{name}={shown!r}: use sqlite:///relative/path or sqlite:////absolute/path")
        db_path = path if path.startswith("/") else str(base_dir / path)
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": db_path,
            "OPTIONS": {
                # WAL lets the web process read while the engine's writers write;
                # the timeout is SQLite's busy handler, so a briefly locked database
                # makes a writer wait instead of failing at once.
                "timeout": 20,
                "transaction_mode": "IMMEDIATE",
                # Query-log inserts land at random places in the domain and client
                # indexes, so each batch dirties about a page per row. A 64 MiB page
                # cache (allocated as used) and a checkpoint every 10,000 WAL pages
                # (~40 MiB) instead of 1,000 let pages written by several batches be
                # copied back once (measured by `make bench-sqlite`, docs/querylog.md).
                "init_command": (
                    "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
                    "PRAGMA cache_size=-65536; PRAGMA wal_autocheckpoint=10000;"
                ),
            },
        }
    if parsed.scheme in ("postgres", "postgresql", "pgsql"):
        if not parsed.path.strip("/"):
            raise ImproperlyConfigured(f"{name}={shown!r} names no database")
        try:
            port = parsed.port
        except ValueError as exc:
            raise ImproperlyConfigured(f"{name}={shown!r}: {exc}") from None
        # A host that is down must fail a connection attempt in seconds, not after the
        # kernel's TCP timeout: the engine's writers, heartbeat and reload poller retry.
        options: dict[str, object] = {"connect_timeout": 5}
        conn_max_age = 60
        for key, value in parse_qsl(parsed.query, keep_blank_values=True):
            if key == "conn_max_age":
                # Django's, not libpq's: seconds a web worker keeps its connection.
                try:
                    conn_max_age = int(value)
                except ValueError:
                    raise ImproperlyConfigured(f"{name}={shown!r}: conn_max_age must be whole seconds") from None
                if conn_max_age < 0:
                    raise ImproperlyConfigured(f"{name}={shown!r}: conn_max_age must be 0 or more")
            else:
                # Passed to libpq as they are (sslmode, connect_timeout, application_name, ...);
                # libpq names a misspelt one when it connects.
                options[key] = value
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parsed.path.lstrip("/")),
            "USER": unquote(parsed.username or ""),
            "PASSWORD": unquote(parsed.password or ""),
            "HOST": parsed.hostname or "",
            "PORT": str(port or ""),
            # Web workers keep a connection between requests; the health check makes a
            # worker whose connection died with a database restart open a new one instead
            # of failing one request.
            "CONN_MAX_AGE": conn_max_age,
            "CONN_HEALTH_CHECKS": True,
            "OPTIONS": options,
        }
    raise ImproperlyConfigured(f"{name}={shown!r}: the scheme must be sqlite:// or postgres://")


def _redact(url: str) -> str:
    """The URL with its password replaced, for error messages that end up in logs."""
    parsed = urlparse(url)
    if parsed.password is None:
        return url
    return url.replace(f":{parsed.password}@", ":***@", 1)


def env_list(name: str, default: str) -> list[str]:
    """A comma-separated list; blanks around and between items are dropped."""
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def env_networks(name: str, default: str = "") -> tuple[IPv4Network | IPv6Network, ...]:
    """Comma-separated addresses or networks (`127.0.0.1`, `10.0.0.0/8`, `::1`)."""
    networks = []
    for item in env_list(name, default):
        try:
            networks.append(ip_network(item, strict=False))
        except ValueError:
            raise ImproperlyConfigured(f"{name}: {item!r} is not an IP address or network (e.g. 10.0.0.0/8)") from None
    return tuple(networks)


def env_origins(name: str, default: str = "") -> list[str]:
    """Comma-separated origins as Django's CSRF_TRUSTED_ORIGINS wants them: scheme://host[:port]."""
    origins = env_list(name, default)
    for origin in origins:
        parsed = urlparse(origin)
        if parsed.scheme not in ("http", "https") or not parsed.netloc or parsed.path not in ("", "/"):
            raise ImproperlyConfigured(f"{name}: {origin!r} is not an origin such as https://gloryhole.example.lan")
    return origins


_HEADER_NAME = re.compile(r"[A-Za-z0-9-]+")


def env_proxy_ssl_header(name: str) -> tuple[str, str] | None:
    """`X-Forwarded-Proto` (value `https`) or `Header-Name=value`, as Django's SECURE_PROXY_SSL_HEADER."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    header, _, value = raw.partition("=")
    header, value = header.strip(), (value.strip() or "https")
    if not _HEADER_NAME.fullmatch(header):
        raise ImproperlyConfigured(f"{name}={raw!r}: use a header name such as X-Forwarded-Proto")
    return "HTTP_" + header.upper().replace("-", "_"), value


def env_privacy_list(name: str, parse: Callable[[str], object]) -> str | None:
    """A don't-log list's text, checked with ``parse`` (which raises ValueError); None when unset."""
    raw = os.environ.get(name)
    if raw is None:
        return None
    try:
        parse(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}: {exc}") from None
    return raw
