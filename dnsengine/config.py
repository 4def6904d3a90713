"""The engine's settings, validated once at start-up.

settings.py reads raw values from the environment; this module checks what
they mean (an upstream address, a blocking mode) and names the setting in the
error, so a bad value stops `rundns` with a message instead of a traceback
halfway through serving.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

BLOCKING_MODES = ("null", "nxdomain", "refused", "ip")


@dataclass(frozen=True, slots=True)
class Upstream:
    host: str
    port: int

    @property
    def family(self) -> int:
        return socket.AF_INET6 if ":" in self.host else socket.AF_INET

    @property
    def label(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class BlockingMode:
    mode: str  # null | nxdomain | refused | ip
    ipv4: str | None = None
    ipv6: str | None = None


@dataclass(frozen=True, slots=True)
class EngineConfig:
    host: str
    port: int
    upstreams: tuple[Upstream, ...]
    upstream_timeout: float
    max_inflight: int
    blocking: BlockingMode
    block_ttl: int
    cache_size: int
    cache_max_bytes: int
    cache_min_ttl: int
    cache_max_ttl: int
    cache_negative_max_ttl: int
    tcp_max_connections: int
    tcp_max_per_client: int
    tcp_idle_timeout: float
    forward_single_label: bool
    forward_private_reverse: bool
    reload_interval: float
    engine_name: str
    metrics_port: int

    @classmethod
    def from_settings(cls, host: str | None = None, port: int | None = None) -> EngineConfig:
        host = host if host is not None else settings.GLORYHOLE_DNS_HOST
        port = port if port is not None else settings.GLORYHOLE_DNS_PORT
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ImproperlyConfigured(
                f"GLORYHOLE_DNS_HOST / --host={host!r} must be an IP address (0.0.0.0 or :: for all)"
            ) from None
        if not 0 <= port <= 65535:
            raise ImproperlyConfigured(f"GLORYHOLE_DNS_PORT / --port={port} is not a port number")
        min_ttl, max_ttl = settings.GLORYHOLE_CACHE_MIN_TTL, settings.GLORYHOLE_CACHE_MAX_TTL
        if min_ttl > max_ttl:
            raise ImproperlyConfigured(f"GLORYHOLE_CACHE_MIN_TTL={min_ttl} is above GLORYHOLE_CACHE_MAX_TTL={max_ttl}")
        return cls(
            host=host,
            port=port,
            upstreams=parse_upstreams(settings.GLORYHOLE_UPSTREAMS),
            upstream_timeout=settings.GLORYHOLE_UPSTREAM_TIMEOUT,
            max_inflight=settings.GLORYHOLE_MAX_INFLIGHT,
            blocking=parse_blocking_mode(settings.GLORYHOLE_BLOCKING_MODE),
            block_ttl=settings.GLORYHOLE_BLOCK_TTL,
            cache_size=settings.GLORYHOLE_CACHE_SIZE,
            cache_max_bytes=settings.GLORYHOLE_CACHE_MAX_BYTES,
            cache_min_ttl=min_ttl,
            cache_max_ttl=max_ttl,
            cache_negative_max_ttl=settings.GLORYHOLE_CACHE_NEGATIVE_MAX_TTL,
            tcp_max_connections=settings.GLORYHOLE_TCP_MAX_CONNECTIONS,
            tcp_max_per_client=settings.GLORYHOLE_TCP_MAX_CONNECTIONS_PER_CLIENT,
            tcp_idle_timeout=settings.GLORYHOLE_TCP_IDLE_TIMEOUT,
            forward_single_label=settings.GLORYHOLE_FORWARD_SINGLE_LABEL,
            forward_private_reverse=settings.GLORYHOLE_FORWARD_PRIVATE_REVERSE,
            reload_interval=settings.GLORYHOLE_RELOAD_INTERVAL,
            engine_name=settings.GLORYHOLE_ENGINE_NAME or f"{socket.gethostname()}:{port}",
            metrics_port=settings.GLORYHOLE_METRICS_PORT,
        )


def parse_upstreams(raw: str, setting: str = "GLORYHOLE_UPSTREAMS") -> tuple[Upstream, ...]:
    """`host[:port]` items, comma-separated; IPv6 as `[::1]:53` or a bare `::1`.

    Only IP addresses: resolving an upstream's name would need an upstream.
    """
    items = [item.strip() for item in raw.split(",") if item.strip()]
    if not items:
        raise ImproperlyConfigured(f"{setting} is empty: name at least one upstream resolver (host[:port])")
    upstreams = []
    for item in items:
        host, port_text = item, "53"
        if item.startswith("["):
            close = item.find("]")
            if close < 0:
                raise ImproperlyConfigured(f"{setting}: {item!r} has an unclosed '['")
            host, rest = item[1:close], item[close + 1 :]
            if rest:
                if not rest.startswith(":"):
                    raise ImproperlyConfigured(f"{setting}: {item!r} is not [IPv6]:port")
                port_text = rest[1:]
        elif item.count(":") == 1:
            host, port_text = item.split(":")
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            raise ImproperlyConfigured(f"{setting}: {host!r} in {item!r} is not an IP address") from None
        try:
            port = int(port_text)
        except ValueError:
            raise ImproperlyConfigured(f"{setting}: port {port_text!r} in {item!r} is not a number") from None
        if not 1 <= port <= 65535:
            raise ImproperlyConfigured(f"{setting}: port {port} in {item!r} is out of range")
        upstreams.append(Upstream(str(address), port))
    return tuple(upstreams)


def parse_blocking_mode(raw: str, setting: str = "GLORYHOLE_BLOCKING_MODE") -> BlockingMode:
    value = raw.strip().lower()
    if value in ("null", "nxdomain", "refused"):
        return BlockingMode(value)
    if value.startswith("ip:"):
        ipv4 = ipv6 = None
        for part in value[3:].split(","):
            try:
                address = ipaddress.ip_address(part.strip())
            except ValueError:
                raise ImproperlyConfigured(f"{setting}: {part.strip()!r} is not an IP address") from None
            if address.version == 4:
                if ipv4:
                    raise ImproperlyConfigured(f"{setting}: give at most one IPv4 address")
                ipv4 = str(address)
            else:
                if ipv6:
                    raise ImproperlyConfigured(f"{setting}: give at most one IPv6 address")
                ipv6 = str(address)
        return BlockingMode("ip", ipv4, ipv6)
    raise ImproperlyConfigured(f"{setting}={raw!r}: use null, nxdomain, refused or ip:ADDR[,ADDR6]")
