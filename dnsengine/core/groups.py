"""Client groups on the DNS path: which policy a client gets, and each group's matcher.

A policy is one group's decision: its lists (always-on ones plus those whose time
window is open), allow entries, rules, blocking on or off, and upstreams. All the
policies share one blocked-name table (dnsengine.core.rules._DomainTable); each
has its own small array from the table's list sets to decisions, which is all a
time window opening or closing rebuilds.

A client's group: its exact IP, else the longest network holding it, else its MAC
(from the client directory), else the default group. Found once per source
address and remembered in a bounded dict, so a query costs one dict read.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from dnsengine.core.options import Upstream
from dnsengine.core.rules import Matcher, _DomainTable, allow_tables, list_decisions, set_decisions
from dnsengine.core.stats import EngineStats

DAY = 86400


@dataclass(frozen=True, slots=True)
class Window:
    """While open, list `list_index` applies to the group. Local time; end < start runs past midnight."""

    list_index: int
    weekdays: int  # bit i set: open on days whose date.weekday() is i (Monday = 0)
    start: int  # seconds after midnight
    end: int

    def is_open(self, now: datetime) -> bool:
        second = now.hour * 3600 + now.minute * 60 + now.second
        today = now.weekday()
        if self.start < self.end:
            return bool(self.weekdays >> today & 1) and self.start <= second < self.end
        # Across midnight: the evening part belongs to today, the morning part to yesterday's window.
        yesterday = (today - 1) % 7
        return (bool(self.weekdays >> today & 1) and second >= self.start) or (
            bool(self.weekdays >> yesterday & 1) and second < self.end
        )


def seconds_to_next_boundary(windows: Iterable[Window], now: datetime) -> float:
    """Seconds until some window opens or closes (by the clock, any day), at most a day."""
    second = now.hour * 3600 + now.minute * 60 + now.second + now.microsecond / 1e6
    best = float(DAY)
    for window in windows:
        for boundary in (window.start, window.end):
            left = (boundary - second) % DAY
            best = min(best, left or DAY)
    return best


@dataclass(slots=True)
class GroupSpec:
    """What one group's matcher is built from, as plain values (the runtime reads them from the database)."""

    name: str
    blocking: bool = True
    lists: frozenset[int] = frozenset()  # always-on: indices into the shared table's lists
    windows: tuple[Window, ...] = ()
    rules: list[tuple[re.Pattern, str]] = field(default_factory=list)  # hand-made rules, labels final
    list_rules: list[tuple[int, re.Pattern, str]] = field(default_factory=list)  # (list index, regex, label)
    allowed: list[tuple[str, bool]] = field(default_factory=list)
    upstreams: tuple[Upstream, ...] = ()  # empty: the engine's
    rate_limit_exempt: bool = False  # e.g. a router that forwards for the whole LAN


@dataclass(frozen=True, slots=True)
class Policy:
    number: int
    group: str
    matcher: Matcher
    # Prefixed to the keys of this policy's own rendered replies (blocked and special
    # answers, whose rule names the group): one policy's are never served under another.
    key_prefix: bytes
    forwarder: object | None = None  # None: the engine's default upstreams
    open_lists: frozenset[int] = frozenset()  # the lists in force now, windows included
    rate_limit_exempt: bool = False
    # Prefixed to the keys of the reply cache and of the shared rendered replies: they
    # hold upstream (and local) answers, which depend only on the upstreams asked, so
    # the policies on one forwarder share them, and the resolver checks the asking
    # policy's decision on a hit. It starts with 0 and key_prefix with 1: never equal.
    cache_prefix: bytes = b""


def group_suffix(name: str, several: bool) -> str:
    """What rule texts get appended so the log says whose list decided: " (group kids)"."""
    return f" (group {name})" if several else ""


def open_lists(spec: GroupSpec, now: datetime | None) -> frozenset[int]:
    if not spec.windows or now is None:
        return spec.lists
    return spec.lists | {w.list_index for w in spec.windows if w.is_open(now)}


def policy_build(
    number: int,
    spec: GroupSpec,
    table: _DomainTable,
    list_names: list[str],
    now: datetime | None,
    *,
    several: bool,
    forwarder: object | None = None,
    allow: tuple[dict[str, str], dict[str, str]] | None = None,
    cache_prefix: bytes = b"",
) -> Policy:
    """The policy of `spec` at local time `now`; `allow` reuses the allow tables of a previous build."""
    active = open_lists(spec, now)
    if not spec.blocking:
        matcher = Matcher(blocked=table, set_decisions=[None] * len(table.sets))
    else:
        suffix = group_suffix(spec.name, several)
        exact, tree = allow if allow is not None else allow_tables(spec.allowed, suffix)
        rules = spec.rules + [(regex, label) for index, regex, label in spec.list_rules if index in active]
        matcher = Matcher(
            list_names=list_names,
            rules=rules,
            allowed_exact=exact,
            allowed_tree=tree,
            blocked=table,
            set_decisions=set_decisions(table, list_decisions(list_names, suffix), active),
        )
    return Policy(number, spec.name, matcher, b"\x01" + number.to_bytes(2, "big"), forwarder, active,
                  spec.rate_limit_exempt, cache_prefix)  # fmt: skip


def policies_at(policies: tuple[Policy, ...], specs: tuple[GroupSpec, ...], now: datetime) -> tuple[Policy, ...] | None:
    """The policies with the windows as they are at `now`; None when no group's lists changed.

    Only the policies whose open lists changed are rebuilt, and only their decision
    arrays and regex-list rules: the shared table and the allow tables are reused.
    """
    changed = False
    out = []
    several = len(policies) > 1
    for policy, spec in zip(policies, specs, strict=True):
        if spec.windows and open_lists(spec, now) != policy.open_lists:
            m = policy.matcher
            policy = policy_build(policy.number, spec, m.blocked, m.list_names, now, several=several,
                                  forwarder=policy.forwarder, allow=(m.allowed_exact, m.allowed_tree),
                                  cache_prefix=policy.cache_prefix)  # fmt: skip
            changed = True
        out.append(policy)
    return tuple(out) if changed else None


class GroupAssignment:
    """Source address -> policy number, remembered per address in a bounded dict.

    The memory is dropped when it is full (counted as client_group_cache_full),
    and when the client directory's version moves: a MAC learnt for an address
    may move it to another group.
    """

    def __init__(
        self,
        *,
        by_ip: dict[str, int] | None = None,
        by_cidr: Iterable[tuple[str, int]] = (),
        by_mac: dict[str, int] | None = None,
        default: int = 0,
        directory=None,
        max_size: int = 65536,
        stats: EngineStats | None = None,
    ) -> None:
        self.by_ip = {str(ipaddress.ip_address(ip)): n for ip, n in (by_ip or {}).items()}
        networks = [(ipaddress.ip_network(cidr, strict=False), n) for cidr, n in by_cidr]
        networks.sort(key=lambda item: item[0].prefixlen, reverse=True)  # longest prefix first
        self.by_cidr = networks
        self.by_mac = dict(by_mac or {})
        self.default = default
        self.directory = directory
        self.max_size = max(1, max_size)
        self.stats = stats
        self._seen: dict[str, int] = {}
        self._version = directory.version if directory is not None else 0

    def __len__(self) -> int:
        return len(self._seen)

    def policy_for(self, ip: str) -> int:
        directory = self.directory
        if directory is not None and directory.version != self._version:
            self._seen = {}
            self._version = directory.version
        number = self._seen.get(ip)
        if number is not None:
            return number
        number = self.lookup(ip)
        seen = self._seen
        if len(seen) >= self.max_size:
            # Crude but bounded: a flood of source addresses cannot grow it, and a
            # lookup is cheap enough to redo for the addresses that come back.
            seen = self._seen = {}
            if self.stats is not None:
                self.stats.count("client_group_cache_full")
        seen[ip] = number
        return number

    def lookup(self, ip: str) -> int:
        """Exact IP, then the longest network, then the MAC, then the default group."""
        number = self.by_ip.get(ip)
        if number is not None:
            return number
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return self.default
        if address.version == 6 and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
            number = self.by_ip.get(str(address))
            if number is not None:
                return number
        for network, n in self.by_cidr:
            if network.version == address.version and address in network:
                return n
        if self.by_mac and self.directory is not None:
            number = self.by_mac.get(self.directory.mac_for(ip))
            if number is not None:
                return number
        return self.default


def policies_build(
    table: _DomainTable,
    list_names: list[str],
    specs: tuple[GroupSpec, ...],
    now: datetime | None,
    forwarder_for: Callable[[tuple[Upstream, ...]], object | None] | None = None,
) -> tuple[Policy, ...]:
    """One policy per group spec, numbered in order, sharing `table`."""
    several = len(specs) > 1
    out = []
    # One cache prefix per distinct forwarder, all of one length: groups on the same
    # upstreams share their answers (the default upstreams, None, are one of them).
    prefixes: dict[int, bytes] = {}
    for number, spec in enumerate(specs):
        forwarder = forwarder_for(spec.upstreams) if spec.upstreams and forwarder_for is not None else None
        prefix = prefixes.setdefault(id(forwarder), b"\x00" + len(prefixes).to_bytes(2, "big"))
        out.append(policy_build(number, spec, table, list_names, now, several=several, forwarder=forwarder,
                                cache_prefix=prefix))  # fmt: skip
    return tuple(out)


def next_window_check(specs: Iterable[GroupSpec], now: datetime, every: float = 60.0) -> float:
    """Seconds until the windows must be looked at again: the next boundary, at most `every`."""
    windows = [w for spec in specs for w in spec.windows]
    if not windows:
        return every
    return min(every, seconds_to_next_boundary(windows, now) + 0.01)
