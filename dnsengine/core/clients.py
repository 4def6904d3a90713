"""Who a client is: its name and MAC address, by source IP, read on the DNS path without waiting.

`ClientDirectory` is two dicts the DNS path reads (`name_for`, `mac_for`) and a
bounded queue of addresses it has not seen before (`observe`). Everything that
takes time (reading the neighbour table and the hosts file, reverse lookups) is
done by the runtime's `client-names` thread (dnsengine.runtime.client_names),
which hands its results to `update`; the directory then builds new dicts and
swaps them in with one assignment each, so a reader sees the old or the new one.

A name comes, in this order, from: a name the user gave (by IP, then the longest
matching CIDR, then by MAC through the neighbour table), a hosts-format file,
a reverse (PTR) lookup, else nothing (""). The parsers of the hosts file, of
/proc/net/arp and of `ip -6 neigh show` output are here too, as pure functions.
"""

from __future__ import annotations

import ipaddress
import re
import threading
from collections import deque
from collections.abc import Iterable

from dnsengine.core.stats import EngineStats

SOURCE_CONFIGURED = "configured"
SOURCE_HOSTS = "hosts"
SOURCE_PTR = "ptr"
SOURCES = (SOURCE_CONFIGURED, SOURCE_HOSTS, SOURCE_PTR)

# The longest name kept: a whole DNS name's text form.
MAX_NAME_LENGTH = 253

_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
_MAC = re.compile(r"[0-9a-f]{2}(?::[0-9a-f]{2}){5}")


def clean_hostname(raw: str) -> str:
    """`raw` as a host name (trailing dot stripped), or "" when it is not a valid one.

    Letters, digits, hyphens and underscores (DHCP clients send those) in labels
    of 1 to 63 characters, at most MAX_NAME_LENGTH in all: whatever a router or a
    reverse zone says is shown on the web pages, so nothing else gets through.
    """
    name = raw[:-1] if raw.endswith(".") else raw
    if not name or len(name) > MAX_NAME_LENGTH:
        return ""
    if not all(_LABEL.fullmatch(label) for label in name.split(".")):
        return ""
    return name


def normalise_ip(raw: str) -> str:
    """The canonical text of an address (scope id dropped), or "" when it is none."""
    try:
        return str(ipaddress.ip_address(raw.split("%", 1)[0]))
    except ValueError:
        return ""


def normalise_mac(raw: str) -> str:
    """aa:bb:cc:dd:ee:ff, lower-case; "" for anything else and for the all-zero address."""
    mac = raw.strip().lower().replace("-", ":")
    if not _MAC.fullmatch(mac) or mac == "00:00:00:00:00:00":
        return ""
    return mac


# -- parsers ----------------------------------------------------------------------------


def parse_hosts(text: str, max_entries: int | None = None) -> dict[str, str]:
    """{ip: name} from hosts-format text: `IP name [alias...]  # comment`.

    The first valid name of a line is the one kept, and the first line naming an
    address wins, as for /etc/hosts. Lines whose address or names do not parse
    are skipped. At most `max_entries` addresses.
    """
    names: dict[str, str] = {}
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2:
            continue
        ip = normalise_ip(fields[0])
        if not ip or ip in names:
            continue
        for candidate in fields[1:]:
            name = clean_hostname(candidate)
            if name:
                if max_entries is not None and len(names) >= max_entries:
                    return names
                names[ip] = name
                break
    return names


def parse_proc_arp(text: str) -> dict[str, str]:
    """{ipv4: mac} from /proc/net/arp; incomplete entries (flags 0x0, zero MAC) are left out.

    IP address       HW type     Flags       HW address            Mask     Device
    192.168.1.10     0x1         0x2         aa:bb:cc:dd:ee:ff     *        eth0
    """
    macs: dict[str, str] = {}
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4:
            continue
        try:
            complete = int(fields[2], 16) & 0x2
        except ValueError:
            continue
        ip, mac = normalise_ip(fields[0]), normalise_mac(fields[3])
        if complete and ip and mac:
            macs[ip] = mac
    return macs


def parse_ip_neigh(text: str) -> dict[str, str]:
    """{ip: mac} from `ip neigh show` output; entries without a link-layer address are left out.

    fe80::1 dev eth0 lladdr aa:bb:cc:dd:ee:ff router REACHABLE
    2001:db8::7 dev eth0  FAILED
    """
    macs: dict[str, str] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 3 or fields[-1] in ("FAILED", "INCOMPLETE"):
            continue
        try:
            mac = normalise_mac(fields[fields.index("lladdr") + 1])
        except (ValueError, IndexError):
            continue
        ip = normalise_ip(fields[0])
        if ip and mac:
            macs[ip] = mac
    return macs


# -- user-given names -------------------------------------------------------------------


class ConfiguredNames:
    """The names the user gave, by IP, by CIDR (longest prefix wins) and by MAC."""

    __slots__ = ("by_ip", "by_mac", "by_prefix")

    def __init__(self, by_ip: dict[str, str], by_cidr: Iterable[tuple[str, str]], by_mac: dict[str, str]) -> None:
        self.by_ip = {ip: name for ip, name in ((normalise_ip(k), v) for k, v in by_ip.items()) if ip and name}
        self.by_mac = {mac: name for mac, name in ((normalise_mac(k), v) for k, v in by_mac.items()) if mac and name}
        # (version, prefix length) -> {network address as int: name}, longest prefixes first:
        # one dict lookup per distinct prefix length instead of a scan of every network.
        by_prefix: dict[tuple[int, int], dict[int, str]] = {}
        for cidr, name in by_cidr:
            try:
                network = ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                continue
            if name:
                by_prefix.setdefault((network.version, network.prefixlen), {}).setdefault(
                    int(network.network_address), name
                )
        self.by_prefix = sorted(by_prefix.items(), key=lambda item: -item[0][1])

    def name_for(self, ip: str, mac: str) -> str:
        name = self.by_ip.get(ip)
        if name:
            return name
        if self.by_prefix:
            try:
                address = ipaddress.ip_address(ip)
            except ValueError:
                address = None
            if address is not None:
                value, bits = int(address), address.max_prefixlen
                for (version, prefixlen), networks in self.by_prefix:
                    if version == address.version:
                        mask = ((1 << prefixlen) - 1) << (bits - prefixlen)
                        name = networks.get(value & mask)
                        if name:
                            return name
        if mac:
            return self.by_mac.get(mac, "")
        return ""


# -- the directory ----------------------------------------------------------------------


class ClientDirectory:
    """Names and MAC addresses by client IP: read by the DNS path, filled in the background.

    `observe` is the only call the DNS path makes besides the two reads: one set
    membership test for a known client; a new one is added to the known clients
    and queued for the `client-names` thread, or, with `max_clients` already
    known, counted as an overflow (`client_names_overflow`) and left nameless
    except by its IP or hosts-file entry.
    """

    def __init__(self, max_clients: int = 10000, stats: EngineStats | None = None) -> None:
        self.max_clients = max_clients
        self.stats = stats if stats is not None else EngineStats()
        self.version = 0
        self._names: dict[str, str] = {}
        self._macs: dict[str, str] = {}
        self._sources: dict[str, str] = {}  # ip -> where its name came from
        # Every client the DNS path has seen: only the DNS threads add to it (set.add
        # is atomic under the GIL); the client-names thread only removes.
        self._known: set[str] = set()
        self._new: deque[str] = deque()
        self._configured = ConfiguredNames({}, (), {})
        self._hosts: dict[str, str] = {}
        self._ptr: dict[str, str] = {}
        self._neighbours: dict[str, str] = {}
        # Rebuilds come from two threads (client-names, and the config watcher through
        # set_configured); readers never take it.
        self._lock = threading.Lock()

    # -- the DNS path ---------------------------------------------------------------

    def name_for(self, ip: str) -> str:
        return self._names.get(ip, "")

    def mac_for(self, ip: str) -> str:
        return self._macs.get(ip, "")

    def observe(self, ip: str) -> None:
        if ip in self._known:
            return
        if len(self._known) >= self.max_clients:
            self.stats.count("client_names_overflow")
            return
        self._known.add(ip)
        self._new.append(ip)

    # -- filled in the background ---------------------------------------------------

    def set_configured(
        self, by_ip: dict[str, str], by_cidr: list[tuple[str, str]], by_mac: dict[str, str]
    ) -> None:  # fmt: skip
        """The names the user gave (by IP, CIDR and MAC), applied at once."""
        configured = ConfiguredNames(by_ip, by_cidr, by_mac)
        with self._lock:
            self._configured = configured
            self._rebuild()

    def take_new(self, limit: int) -> list[str]:
        """Up to `limit` clients seen for the first time since the last call (for the client-names thread)."""
        taken = []
        new = self._new
        while new and len(taken) < limit:
            taken.append(new.popleft())
        return taken

    def known(self) -> list[str]:
        return list(self._known)

    def forget(self, ips: Iterable[str]) -> None:
        """Drop clients from the known ones: seen again, they are queued again."""
        with self._lock:
            for ip in ips:
                self._known.discard(ip)
                self._ptr.pop(ip, None)
            self._rebuild()

    def update(
        self,
        *,
        hosts: dict[str, str] | None = None,
        neighbours: dict[str, str] | None = None,
        ptr: dict[str, str] | None = None,
    ) -> bool:
        """Replace the hosts-file names or the neighbour table, merge PTR names ("" forgets one); True if changed."""
        with self._lock:
            if hosts is not None:
                self._hosts = hosts
            if neighbours is not None:
                self._neighbours = neighbours
            if ptr:
                merged = dict(self._ptr)
                for ip, name in ptr.items():
                    if name:
                        merged[ip] = name
                    else:
                        merged.pop(ip, None)
                self._ptr = merged
            return self._rebuild()

    def counts(self) -> tuple[int, dict[str, int]]:
        """Known clients, and the names in force by source (for /metrics)."""
        by_source = dict.fromkeys(SOURCES, 0)
        for source in self._sources.values():
            by_source[source] += 1
        return len(self._known), by_source

    def source_for(self, ip: str) -> str:
        return self._sources.get(ip, "")

    def _rebuild(self) -> bool:
        """Build the name and MAC dicts anew (under the lock) and swap them in; True if they changed."""
        configured, hosts, ptr, neighbours = self._configured, self._hosts, self._ptr, self._neighbours
        names: dict[str, str] = {}
        sources: dict[str, str] = {}
        macs: dict[str, str] = {}
        # Known clients, and those a query may come from with a name known beforehand.
        for ip in (*self._known, *configured.by_ip, *hosts):
            if ip in names or ip in macs:
                continue
            bare = ip.split("%", 1)[0]
            mac = neighbours.get(bare, "")
            if mac:
                macs[ip] = mac
            name = configured.name_for(bare, mac)
            source = SOURCE_CONFIGURED
            if not name:
                name, source = hosts.get(bare, ""), SOURCE_HOSTS
            if not name:
                name, source = ptr.get(ip, ""), SOURCE_PTR
            if name:
                names[ip] = name
                sources[ip] = source
        if names == self._names and macs == self._macs:
            self._sources = sources
            return False
        self._names = names
        self._macs = macs
        self._sources = sources
        self.version += 1
        return True
