"""What the query log may keep: the privacy policy, and applying it to a batch of entries.

Plain values and no database, so the logger's writer threads apply a policy with
no query: ``privacy_filter`` turns a batch into the rows to store, the per-minute
totals of the entries that are not stored, and a count of those per reason.
``PrivacyState`` is what a logger shares with its successors across SIGHUP: the
policy in force (replaced whole when the settings change), the not-logged counts,
and at level 3 the ``MinuteTally`` the DNS path counts into instead of queueing.

Levels: 0 everything; 1 the domain is not stored (rows keep time, client, type,
status, response; no domain rollups); 2 neither domain nor client (client stored as
``HIDDEN_CLIENT``; only the per-minute rollups); 3 no rows at all, only the
per-minute totals. What a don't-log list or "blocked only" keeps out is counted in
the per-minute totals and nowhere else (docs/privacy.md).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network

from dnsengine.core.entry import QueryLogEntry

LEVELS = (0, 1, 2, 3)
# What a row holds for a client at level 2: the unspecified address, valid for the
# column and never a real client's.
HIDDEN_CLIENT = "0.0.0.0"
# Reasons an entry is not stored (the label of querylog_not_logged_total).
REASON_LEVEL = "level"
REASON_CLIENT = "client"
REASON_DOMAIN = "domain"
REASON_NOT_BLOCKED = "not_blocked"
REASONS = (REASON_LEVEL, REASON_CLIENT, REASON_DOMAIN, REASON_NOT_BLOCKED)
_BLOCKED = "blocked"
_CACHE_MAX = 10000  # distinct clients remembered per policy (decisions and truncations)


@dataclass(frozen=True, slots=True)
class DontLogClients:
    networks: tuple[IPv4Network | IPv6Network, ...] = ()
    groups: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class DontLogDomains:
    exact: frozenset[str] = frozenset()
    suffixes: frozenset[str] = frozenset()  # "example.com": it and every name under it


def parse_dont_log_clients(text: str) -> DontLogClients:
    """Comma- or line-separated IPs, CIDRs and group names; ValueError naming a bad item.

    An item that parses as neither an address nor a network is a group name; one that
    looks like an address but is not (``10.0.0.300``, ``10.0.0.0/33``) is refused.
    """
    networks, groups = [], set()
    for item in _items(text):
        try:
            networks.append(ip_network(item, strict=False))
            continue
        except ValueError:
            pass
        if _looks_numeric(item):
            raise ValueError(f"{item!r} is not an IP address or network (e.g. 192.168.1.20 or 10.0.0.0/8)")
        if len(item) > 100:
            raise ValueError(f"{item[:20]!r}…: a group name has at most 100 characters")
        groups.add(item)
    return DontLogClients(tuple(networks), frozenset(groups))


def parse_dont_log_domains(text: str) -> DontLogDomains:
    """``example.com`` (that name only) or ``*.example.com`` / ``.example.com`` (it and its subdomains)."""
    exact, suffixes = set(), set()
    for item in _items(text):
        name = item.lower().rstrip(".")
        suffix = name.startswith("*.") or name.startswith(".")
        name = name[2:] if name.startswith("*.") else name.lstrip(".")
        if not name or len(name) > 253 or any(c.isspace() or c in "*/\\@" for c in name) or ".." in name:
            raise ValueError(f"{item!r} is not a domain (use example.com, or *.example.com for its subdomains too)")
        (suffixes if suffix else exact).add(name)
    return DontLogDomains(frozenset(exact), frozenset(suffixes))


def _items(text: str) -> list[str]:
    return [item.strip() for line in text.splitlines() for item in line.split(",") if item.strip()]


def _looks_numeric(item: str) -> bool:
    return (
        all(c in "0123456789abcdefABCDEF.:/" for c in item)
        and any(c.isdigit() for c in item)
        and ("." in item or ":" in item)
    )


@dataclass(frozen=True, slots=True)
class PrivacyPolicy:
    """The settings that decide what the query log stores; equal policies store the same."""

    level: int = 0
    anonymize: bool = False
    v4_prefix: int = 24
    v6_prefix: int = 48
    clients: DontLogClients = DontLogClients()
    domains: DontLogDomains = DontLogDomains()
    blocked_only: bool = False
    # Per-client decisions, filled by the writer threads: (excluded?, stored text).
    _client_cache: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"privacy level {self.level!r}: use 0, 1, 2 or 3")
        if not 0 <= self.v4_prefix <= 32 or not 0 <= self.v6_prefix <= 128:
            raise ValueError("anonymisation prefixes: IPv4 0-32, IPv6 0-128")

    @property
    def active(self) -> bool:
        """False for the default (store everything): the writer then skips the filter."""
        return bool(
            self.level or self.anonymize or self.blocked_only or self.clients.networks or self.clients.groups
            or self.domains.exact or self.domains.suffixes
        )  # fmt: skip

    def client_decision(self, client: str, group: str) -> tuple[bool, str]:
        """(never log this client?, the text to store for it)."""
        cache = self._client_cache
        key = (client, group)
        decision = cache.get(key)
        if decision is None:
            if len(cache) > _CACHE_MAX:
                cache.clear()
            decision = cache[key] = self._decide_client(client, group)
        return decision

    def _decide_client(self, client: str, group: str) -> tuple[bool, str]:
        if group and group in self.clients.groups:
            return True, client
        try:
            address = ip_address(client)
        except ValueError:
            return False, client  # not an address: nothing to match or truncate
        if any(address.version == n.version and address in n for n in self.clients.networks):
            return True, client
        if self.anonymize:
            return False, client_truncate(client, self.v4_prefix, self.v6_prefix)
        return False, client

    def domain_excluded(self, domain: str) -> bool:
        exact, suffixes = self.domains.exact, self.domains.suffixes
        if domain in exact:
            return True
        if not suffixes:
            return False
        name = domain
        while True:
            if name in suffixes:
                return True
            dot = name.find(".")
            if dot < 0:
                return False
            name = name[dot + 1 :]


def client_truncate(client: str, v4_prefix: int = 24, v6_prefix: int = 48) -> str:
    """The network address of ``client`` (``192.168.1.0`` for ``192.168.1.20`` at /24), as text."""
    address = ip_address(client)
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    prefix = v4_prefix if address.version == 4 else v6_prefix
    return str(ip_network(f"{address}/{prefix}", strict=False).network_address)


@dataclass(slots=True)
class FilterResult:
    rows: list[QueryLogEntry]  # to store, already changed as the policy says
    minutes: dict[tuple[int, str], int]  # (minute, status) -> count of entries not stored
    not_logged: dict[str, int]  # reason -> count
    domains: bool  # may the rows feed the domain rollups
    clients: bool  # ... and the client rollups


def privacy_filter(policy: PrivacyPolicy, entries: Sequence[QueryLogEntry]) -> FilterResult:
    """Apply ``policy`` to a batch. Every entry ends in ``rows`` or in ``not_logged`` (and ``minutes``)."""
    level = policy.level
    result = FilterResult([], {}, {}, domains=level < 1, clients=level < 2)
    rows, minutes, not_logged = result.rows, result.minutes, result.not_logged
    check_clients = bool(policy.clients.networks or policy.clients.groups or policy.anonymize)
    check_domains = bool(policy.domains.exact or policy.domains.suffixes)
    for e in entries:
        reason = ""
        client = e.client
        if level >= 3:
            reason = REASON_LEVEL
        elif policy.blocked_only and e.status != _BLOCKED:
            reason = REASON_NOT_BLOCKED
        else:
            if check_clients:
                excluded, client = policy.client_decision(e.client, e.client_group)
                if excluded:
                    reason = REASON_CLIENT
            if not reason and check_domains and policy.domain_excluded(e.domain):
                reason = REASON_DOMAIN
        if reason:
            key = (minute_of(e.timestamp), e.status)
            minutes[key] = minutes.get(key, 0) + 1
            not_logged[reason] = not_logged.get(reason, 0) + 1
            continue
        if level >= 2:
            rows.append(replace(e, domain="", client=HIDDEN_CLIENT, client_name="", client_group=""))
        elif level == 1:
            rows.append(replace(e, domain="", client=client, client_name="" if client != e.client else e.client_name))
        elif client != e.client:
            # Truncated: a device's name would say what the network address hides.
            rows.append(replace(e, client=client, client_name=""))
        else:
            rows.append(e)
    return result


def minute_of(timestamp: float) -> int:
    """The UTC minute's start, in epoch seconds, as the rollups bucket it (querylog.rollups)."""
    s = int(timestamp)
    if timestamp - s >= 0.9999995:  # rounded up to the next second when stored
        s += 1
    return s - s % 60


class MinuteTally:
    """Level 3's intake: the DNS path adds each entry's (minute, status) here instead of queueing it.

    A lock, not a queue: one short critical section per query, nothing kept per
    entry. ``take()`` hands the counts to whoever writes them (and ``give_back``
    returns them after a failed write), so no count is lost or counted twice.
    """

    __slots__ = ("_counts", "_lock", "counted")

    def __init__(self) -> None:
        self._counts: dict[tuple[int, str], int] = {}
        self._lock = threading.Lock()
        self.counted = 0  # entries ever added: each one is "not logged, level"

    def add(self, entry: QueryLogEntry) -> bool:
        key = (minute_of(entry.timestamp), entry.status)
        with self._lock:
            counts = self._counts
            counts[key] = counts.get(key, 0) + 1
            self.counted += 1
        return True

    def take(self) -> dict[tuple[int, str], int]:
        with self._lock:
            counts, self._counts = self._counts, {}
        return counts

    def give_back(self, counts: dict[tuple[int, str], int]) -> None:
        with self._lock:
            for key, n in counts.items():
                self._counts[key] = self._counts.get(key, 0) + n

    @property
    def pending(self) -> int:
        with self._lock:
            return sum(self._counts.values())


class PrivacyState:
    """The policy in force and the not-logged counts, shared by every logger one engine holds."""

    def __init__(self, policy: PrivacyPolicy | None = None) -> None:
        self.policy = policy or PrivacyPolicy()
        self.tally = MinuteTally()
        self._lock = threading.Lock()
        self._not_logged = dict.fromkeys(REASONS, 0)

    def count(self, not_logged: dict[str, int]) -> None:
        with self._lock:
            for reason, n in not_logged.items():
                self._not_logged[reason] = self._not_logged.get(reason, 0) + n

    def not_logged(self) -> dict[str, int]:
        """Entries kept out of the rows by policy, per reason (level 3's tally included)."""
        with self._lock:
            counts = dict(self._not_logged)
        counts[REASON_LEVEL] += self.tally.counted
        return counts

    @property
    def not_logged_total(self) -> int:
        return sum(self.not_logged().values())


def policy_build(
    level: int = 0,
    *,
    anonymize: bool = False,
    v4_prefix: int = 24,
    v6_prefix: int = 48,
    dont_log_clients: str = "",
    dont_log_domains: str = "",
    blocked_only: bool = False,
) -> PrivacyPolicy:
    """A policy from settings' values (the lists as text); ValueError with a readable message."""
    return PrivacyPolicy(
        level=level,
        anonymize=anonymize,
        v4_prefix=v4_prefix,
        v6_prefix=v6_prefix,
        clients=parse_dont_log_clients(dont_log_clients),
        domains=parse_dont_log_domains(dont_log_domains),
        blocked_only=blocked_only,
    )


def merge_minutes(into: dict[tuple[int, str], int], more: Iterable[tuple[tuple[int, str], int]]) -> None:
    for key, n in more:
        into[key] = into.get(key, 0) + n
