"""Which clients may ask at all: the allowed and disallowed address lists.

    access = AccessControl(parse_networks("192.168.1.0/24"), parse_networks("192.168.1.66"))
    access.verdict("192.168.1.66")  # -> "disallowed"; "" for a client that may ask

A verdict is cached per source address in a bounded dict, so the per-query cost is
one dict lookup; only a client's first query (or its first after the cache was
emptied) pays for parsing the address and walking the networks.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from dnsengine.core.options import ConfigError
from dnsengine.core.stats import EngineStats

NOT_ALLOWED = "not_allowed"
DISALLOWED = "disallowed"
REFUSED_ACTIONS = ("refuse", "drop")

# A home or office network has a few hundred addresses; the cache only needs to hold the
# ones asking now. When full it is emptied at once (a spoofed-source flood fills it with
# addresses that never come back), which costs each real client one network walk.
VERDICT_CACHE_MAX = 65536

Network = IPv4Network | IPv6Network


def parse_networks(raw: str, setting: str) -> tuple[Network, ...]:
    """Comma-separated IP addresses and CIDR networks, IPv4 and IPv6; empty gives ()."""
    networks = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        try:
            network = ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ConfigError(f"{setting}: {item!r} is not an IP address or network (e.g. 192.168.1.0/24)") from None
        # An IPv4-mapped IPv6 network (::ffff:10.0.0.0/104) means the IPv4 one: clients are compared as IPv4.
        if isinstance(network, IPv6Network) and network.network_address.ipv4_mapped is not None:
            prefix = max(network.prefixlen - 96, 0)
            network = IPv4Network(f"{network.network_address.ipv4_mapped}/{prefix}", strict=False)
        networks.append(network)
    return tuple(networks)


def parse_refused_action(raw: str, setting: str = "GLORYHOLE_REFUSED_CLIENTS_ACTION") -> str:
    value = raw.strip().lower() or "refuse"
    if value not in REFUSED_ACTIONS:
        raise ConfigError(f"{setting}={raw!r}: use refuse (answer REFUSED) or drop (no answer)")
    return value


def client_address(client: str) -> IPv4Address | IPv6Address | None:
    """The client's address, an IPv4-mapped IPv6 one as IPv4; None when it is not an address."""
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def in_networks(client: str, networks: Iterable[Network]) -> bool:
    address = client_address(client)
    if address is None:
        return False
    # An IPv6 address with a zone (fe80::1%eth0) is compared without it.
    if isinstance(address, IPv6Address) and address.scope_id:
        address = IPv6Address(str(address).split("%", 1)[0])
    return any(address.version == network.version and address in network for network in networks)


class AccessControl:
    """The verdict for a client: "" (may ask), NOT_ALLOWED or DISALLOWED.

    `allowed` empty lets every client in; a client in `disallowed` is refused even
    when `allowed` names it too. Safe to call from several threads: a lost cache
    entry only costs its recomputation.
    """

    __slots__ = ("_cache", "_lock", "allowed", "cache_max", "disallowed", "evictions", "stats")

    def __init__(self, allowed: tuple[Network, ...], disallowed: tuple[Network, ...],
                 cache_max: int = VERDICT_CACHE_MAX, stats: EngineStats | None = None) -> None:  # fmt: skip
        self.stats = stats
        self.allowed = allowed
        self.disallowed = disallowed
        self.cache_max = max(1, cache_max)
        self.evictions = 0
        self._cache: dict[str, str] = {}
        self._lock = threading.Lock()

    @property
    def active(self) -> bool:
        return bool(self.allowed or self.disallowed)

    def verdict(self, client: str) -> str:
        verdict = self._cache.get(client)
        if verdict is not None:
            return verdict
        verdict = self._decide(client)
        with self._lock:
            cache = self._cache
            if len(cache) >= self.cache_max:
                self.evictions += len(cache)
                if self.stats is not None:
                    self.stats.count("access_cache_evictions", len(cache))
                cache.clear()
            cache[client] = verdict
        return verdict

    def _decide(self, client: str) -> str:
        if self.disallowed and in_networks(client, self.disallowed):
            return DISALLOWED
        if self.allowed and not in_networks(client, self.allowed):
            return NOT_ALLOWED
        return ""

    @property
    def cached(self) -> int:
        return len(self._cache)
