"""Who a client is: the names (and MAC addresses) the engine knows for source addresses.

A minimal directory with the interface the DNS path and the config watcher use:
the names the user gave (by IP, network or MAC) applied on reload, and reads that
are dict lookups, so the DNS path never waits for a name.
"""

from __future__ import annotations

import ipaddress

# Addresses whose network or MAC name was looked up once, kept so the next query is one dict read.
MAX_REMEMBERED = 65536


class ClientDirectory:
    def __init__(self) -> None:
        self.version = 0  # bumps whenever a name or MAC changes
        self._by_ip: dict[str, str] = {}
        self._by_cidr: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]] = []
        self._by_mac: dict[str, str] = {}
        self._macs: dict[str, str] = {}  # ip -> MAC, from the neighbour table when someone fills it
        self._remembered: dict[str, str] = {}

    def name_for(self, ip: str) -> str:
        """The client's name, "" if unknown: configured by IP, else by MAC, else by network."""
        name = self._by_ip.get(ip)
        if name is not None:
            return name
        name = self._remembered.get(ip)
        if name is not None:
            return name
        name = self._by_mac.get(self._macs.get(ip, ""), "")
        if not name and self._by_cidr:
            try:
                address = ipaddress.ip_address(ip)
            except ValueError:
                address = None
            if address is not None:
                name = next((n for net, n in self._by_cidr if address.version == net.version and address in net), "")
        if len(self._remembered) >= MAX_REMEMBERED:
            self._remembered = {}
        self._remembered[ip] = name
        return name

    def mac_for(self, ip: str) -> str:
        """The client's MAC address (aa:bb:cc:dd:ee:ff), "" if unknown."""
        return self._macs.get(ip, "")

    def observe(self, ip: str) -> None:
        """Called by the DNS path for every query; never blocks."""

    def set_configured(self, by_ip: dict[str, str], by_cidr: list[tuple[str, str]], by_mac: dict[str, str]) -> None:
        """The names the user gave (Client rows), applied on each reload."""
        networks = []
        for cidr, name in by_cidr:
            try:
                networks.append((ipaddress.ip_network(cidr, strict=False), name))
            except ValueError:
                continue
        networks.sort(key=lambda item: item[0].prefixlen, reverse=True)  # the most specific network wins
        self._by_ip, self._by_cidr, self._by_mac = dict(by_ip), networks, dict(by_mac)
        self._remembered = {}
        self.version += 1
