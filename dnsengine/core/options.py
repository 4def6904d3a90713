"""Value types of the engine's options and the parsers of their text form.

An upstream address and the blocking mode, parsed from the text a person writes
(`1.1.1.1, [2606:4700::1111]:53`, `ip:0.0.0.0,::`). A bad value raises
`ConfigError` naming the setting it came from; the runtime turns that into Django's
`ImproperlyConfigured` when it reads the settings, so the core stays free of Django.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

BLOCKING_MODES = ("null", "nxdomain", "refused", "ip")


class ConfigError(ValueError):
    """A setting's value is not valid; the message names the setting."""


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


def parse_upstreams(raw: str, setting: str = "GLORYHOLE_UPSTREAMS") -> tuple[Upstream, ...]:
    """`host[:port]` items, comma-separated; IPv6 as `[::1]:53` or a bare `::1`.

    Only IP addresses: resolving an upstream's name would need an upstream.
    """
    items = [item.strip() for item in raw.split(",") if item.strip()]
    if not items:
        raise ConfigError(f"{setting} is empty: name at least one upstream resolver (host[:port])")
    upstreams = []
    for item in items:
        host, port_text = item, "53"
        if item.startswith("["):
            close = item.find("]")
            if close < 0:
                raise ConfigError(f"{setting}: {item!r} has an unclosed '['")
            host, rest = item[1:close], item[close + 1 :]
            if rest:
                if not rest.startswith(":"):
                    raise ConfigError(f"{setting}: {item!r} is not [IPv6]:port")
                port_text = rest[1:]
        elif item.count(":") == 1:
            host, port_text = item.split(":")
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            raise ConfigError(f"{setting}: {host!r} in {item!r} is not an IP address") from None
        try:
            port = int(port_text)
        except ValueError:
            raise ConfigError(f"{setting}: port {port_text!r} in {item!r} is not a number") from None
        if not 1 <= port <= 65535:
            raise ConfigError(f"{setting}: port {port} in {item!r} is out of range")
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
                raise ConfigError(f"{setting}: {part.strip()!r} is not an IP address") from None
            if address.version == 4:
                if ipv4:
                    raise ConfigError(f"{setting}: give at most one IPv4 address")
                ipv4 = str(address)
            else:
                if ipv6:
                    raise ConfigError(f"{setting}: give at most one IPv6 address")
                ipv6 = str(address)
        return BlockingMode("ip", ipv4, ipv6)
    raise ConfigError(f"{setting}={raw!r}: use null, nxdomain, refused or ip:ADDR[,ADDR6]")
