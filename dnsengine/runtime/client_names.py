"""The `client-names` thread: fills the engine's ClientDirectory in the background.

Every `TICK` seconds it takes the clients the DNS path saw for the first time,
and every `GLORYHOLE_CLIENT_NAMES_REFRESH` seconds it re-reads the neighbour
table (/proc/net/arp, and `ip -6 neigh show` where the `ip` command exists) and
the hosts file (`GLORYHOLE_CLIENT_HOSTS_FILE`, only when its mtime or size
changed). When `GLORYHOLE_CLIENT_PTR_RESOLVER` is set, it asks that resolver for
the PTR name of each new client, at most `GLORYHOLE_CLIENT_PTR_PER_SECOND`
lookups a second, and again for every known client once its name is
`GLORYHOLE_CLIENT_PTR_TTL` seconds old. When it is not set, a client whose reverse
zone a conditional-forwarding rule covers (`168.192.in-addr.arpa` -> the router)
is looked up on that rule's first upstream, at the same rate. The DNS path never waits for any of it:
the directory swaps in new dicts when something changed.

    names = ClientNames(engine.clients, ClientNamesConfig.from_settings(), engine.stats).start()
    ...
    names.stop()
"""

from __future__ import annotations

import ipaddress
import logging
import os
import random
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from dnslib import QTYPE, DNSRecord

from dnsengine.core import wire
from dnsengine.core.clients import ClientDirectory, clean_hostname, parse_hosts, parse_ip_neigh, parse_proc_arp
from dnsengine.core.options import ConfigError, Upstream, parse_upstreams
from dnsengine.core.stats import EngineStats
from dnsengine.core.throttle import RateLimitedLog

logger = logging.getLogger(__name__)
_read_log = RateLimitedLog(logger, interval=300.0)

# Seconds between two looks at the queue of new clients.
TICK = 0.25
# New clients re-read the neighbour table (a new device has just appeared there),
# at most this often; otherwise it is read every refresh.
NEIGHBOURS_MIN_INTERVAL = 5.0
# A PTR lookup that got no answer (or an error) is tried again after this long (or the TTL, if shorter).
PTR_RETRY_AFTER = 300.0
NEIGH_COMMAND_TIMEOUT = 2.0
TYPE_PTR = 12


@dataclass(frozen=True, slots=True)
class ClientNamesConfig:
    max_clients: int = 10000
    refresh: float = 60.0
    hosts_file: str = ""
    ptr_resolver: Upstream | None = None
    ptr_timeout: float = 1.0
    ptr_per_second: int = 20
    ptr_ttl: float = 3600.0
    arp_path: str = "/proc/net/arp"
    # None: no IPv6 neighbours (the `ip` command is not installed).
    neigh_command: tuple[str, ...] | None = None

    @classmethod
    def from_settings(cls) -> ClientNamesConfig:
        raw = settings.GLORYHOLE_CLIENT_PTR_RESOLVER.strip()
        resolver = None
        if raw:
            try:
                upstreams = parse_upstreams(raw, "GLORYHOLE_CLIENT_PTR_RESOLVER", plain_only=True)
            except ConfigError as error:
                raise ImproperlyConfigured(str(error)) from None
            if len(upstreams) != 1:
                raise ImproperlyConfigured(f"GLORYHOLE_CLIENT_PTR_RESOLVER={raw!r}: name one resolver (host[:port])")
            resolver = upstreams[0]
        ip = shutil.which("ip")
        return cls(
            max_clients=settings.GLORYHOLE_CLIENT_NAMES_MAX,
            refresh=settings.GLORYHOLE_CLIENT_NAMES_REFRESH,
            hosts_file=settings.GLORYHOLE_CLIENT_HOSTS_FILE,
            ptr_resolver=resolver,
            ptr_timeout=settings.GLORYHOLE_CLIENT_PTR_TIMEOUT,
            ptr_per_second=settings.GLORYHOLE_CLIENT_PTR_PER_SECOND,
            ptr_ttl=settings.GLORYHOLE_CLIENT_PTR_TTL,
            neigh_command=(ip, "-6", "neigh", "show") if ip else None,
        )


# -- reverse lookups ---------------------------------------------------------------------


def ptr_lookup(ips: list[str], resolver: Upstream, timeout: float) -> dict[str, str | None]:
    """Ask `resolver` for the PTR names of `ips`, all at once on one UDP socket.

    {ip: name}: the host name, "" when the resolver says there is none (NXDOMAIN,
    no PTR, a name that is not a valid host name), None when it did not answer
    within `timeout` or answered with an error. A reply that does not match a
    question asked (ID, question, QR bit) or does not parse is ignored.
    """
    results: dict[str, str | None] = dict.fromkeys(ips)
    asked: dict[int, tuple[str, str]] = {}  # query ID -> (ip, reverse name)
    rng = random.SystemRandom()
    try:
        with socket.socket(resolver.family, socket.SOCK_DGRAM) as sock:
            # Connected: the kernel drops datagrams from anyone but the resolver.
            sock.connect((resolver.host, resolver.port))
            for ip in ips:
                try:
                    reverse = ipaddress.ip_address(ip.split("%", 1)[0]).reverse_pointer
                except ValueError:
                    results[ip] = ""
                    continue
                qid = rng.randrange(65536)
                while qid in asked:
                    qid = rng.randrange(65536)
                asked[qid] = (ip, reverse)
                sock.send(wire.build_query(qid, wire.text_to_name(reverse), TYPE_PTR, wire.CLASS_IN, False))
            deadline = time.monotonic() + timeout
            while asked:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                sock.settimeout(left)
                try:
                    data = sock.recv(4096)
                except TimeoutError:
                    break
                answer = _ptr_answer(data, asked)
                if answer is not None:
                    ip, name = answer
                    results[ip] = name
    except OSError as exc:
        # Nothing listens there (ICMP port unreachable), no route: the rest count as unanswered.
        _read_log.info("PTR lookups on %s: %s", resolver.label, exc)
    return results


def _ptr_answer(data: bytes, asked: dict[int, tuple[str, str]]) -> tuple[str, str | None] | None:
    """(ip, name or "" or None) for a reply to one of `asked` (which it removes), None for anything else."""
    try:
        record = DNSRecord.parse(data)
    except Exception:  # dnslib raises several types on hostile input
        return None
    header = record.header
    question = asked.get(header.id)
    if question is None or not header.qr or len(record.questions) != 1:
        return None
    ip, reverse = question
    if record.q.qtype != QTYPE.PTR or str(record.q.qname).rstrip(".").lower() != reverse:
        return None
    del asked[header.id]
    if header.rcode == wire.NXDOMAIN:
        return ip, ""
    if header.rcode != wire.NOERROR:
        return ip, None
    for rr in record.rr:
        if rr.rtype == QTYPE.PTR:
            name = clean_hostname(str(rr.rdata))
            if name:
                return ip, name
    return ip, ""


# -- the thread -----------------------------------------------------------------------


class ClientNames:
    """Resolves the directory's new clients and keeps its names and MACs current.

    `step()` is one pass (tests call it directly); the thread calls it every TICK.
    """

    def __init__(
        self,
        directory: ClientDirectory,
        config: ClientNamesConfig,
        stats: EngineStats | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        ptr_route: Callable[[str], Upstream | None] | None = None,
    ) -> None:
        self.directory = directory
        self.config = config
        # Without a PTR resolver: the upstream of the forwarding rule covering an address's reverse zone, or None.
        self.ptr_route = ptr_route
        self.stats = stats if stats is not None else directory.stats
        self.clock = clock
        # Clients waiting for a PTR lookup, in order (a dict keeps the order and dedupes).
        self._pending: dict[str, None] = {}
        # Known clients -> when their PTR name is due again.
        self._ptr_due: dict[str, float] = {}
        self._tokens = float(config.ptr_per_second)
        self._last_tick: float | None = None
        self._next_refresh = 0.0
        self._next_neighbours = 0.0
        self._hosts_stamp: tuple[float, int] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="client-names", daemon=True)

    def start(self) -> ClientNames:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except Exception:
                logger.exception("client names: a pass failed; trying again")
            self._stop.wait(TICK)

    def step(self) -> None:
        now = self.clock()
        new = self.directory.take_new(self.config.max_clients)
        hosts = neighbours = None
        if now >= self._next_refresh:
            self._next_refresh = now + self.config.refresh
            hosts = self.read_hosts()
            neighbours = self.read_neighbours()
            self._next_neighbours = now + NEIGHBOURS_MIN_INTERVAL
            self._queue_due(now)
            self._prune()
        elif new and now >= self._next_neighbours:
            neighbours = self.read_neighbours()
            self._next_neighbours = now + NEIGHBOURS_MIN_INTERVAL
        if new or hosts is not None or neighbours is not None:
            # Rebuilt also for new clients alone: a CIDR or MAC name applies to them at once.
            self.directory.update(hosts=hosts, neighbours=neighbours)
        if self.config.ptr_resolver is None and self.ptr_route is None:
            return
        for ip in new:
            self._pending[ip] = None
        self._resolve_some(now)

    def _queue_due(self, now: float) -> None:
        for ip, due in self._ptr_due.items():
            if due <= now:
                self._pending[ip] = None

    def _prune(self) -> None:
        """With the table full, forget clients nothing names (PTR tried): a flood of made-up sources ages out."""
        directory = self.directory
        known = directory.known()
        if len(known) < self.config.max_clients:
            return
        tried = self._ptr_due if self.config.ptr_resolver is not None or self.ptr_route is not None else None
        idle = [
            ip
            for ip in known
            if (tried is None or ip in tried) and not directory.name_for(ip) and not directory.mac_for(ip)
        ]
        for ip in idle:
            self._ptr_due.pop(ip, None)
            self._pending.pop(ip, None)
        directory.forget(idle)
        if idle:
            logger.info("client names: %d known clients without a name or MAC forgotten (table full)", len(idle))

    def _resolve_some(self, now: float) -> None:
        rate = self.config.ptr_per_second
        if self._last_tick is not None:
            self._tokens = min(float(rate), self._tokens + rate * (now - self._last_tick))
        self._last_tick = now
        batch_size = min(len(self._pending), int(self._tokens))
        if batch_size <= 0:
            return
        batch = []
        for ip in self._pending:
            batch.append(ip)
            if len(batch) == batch_size:
                break
        by_resolver: dict[Upstream, list[str]] = {}
        unrouted = []
        for ip in batch:
            del self._pending[ip]
            resolver = self._ptr_resolver_for(ip)
            if resolver is None:
                unrouted.append(ip)
            else:
                by_resolver.setdefault(resolver, []).append(ip)
        retry = min(PTR_RETRY_AFTER, self.config.ptr_ttl)
        if unrouted:
            # No rule covers them (yet): looked at again after `retry`, no lookup spent.
            done = self.clock()
            for ip in unrouted:
                self._ptr_due[ip] = done + retry
        if not by_resolver:
            return
        asked = len(batch) - len(unrouted)
        self._tokens -= asked
        results: dict[str, str | None] = {}
        for resolver, ips in by_resolver.items():
            results.update(ptr_lookup(ips, resolver, self.config.ptr_timeout))
        failures = sum(1 for name in results.values() if name is None)
        self.stats.count("client_ptr_lookups", asked)
        if failures:
            self.stats.count("client_ptr_failures", failures)
        done = self.clock()
        for ip, name in results.items():
            self._ptr_due[ip] = done + (self.config.ptr_ttl if name is not None else retry)
        # A failed lookup keeps the name found before; an answer replaces it ("" forgets it).
        answered = {ip: name for ip, name in results.items() if name is not None}
        if answered:
            self.directory.update(ptr=answered)

    def _ptr_resolver_for(self, ip: str) -> Upstream | None:
        resolver = self.config.ptr_resolver
        if resolver is not None or self.ptr_route is None:
            return resolver
        return self.ptr_route(ip.split("%", 1)[0])

    # -- the files it reads -------------------------------------------------------------

    def read_hosts(self) -> dict[str, str] | None:
        """The hosts file's names when it changed since the last read; None when unchanged (or unreadable)."""
        path = self.config.hosts_file
        if not path:
            return None
        try:
            stat = os.stat(path)
            stamp = (stat.st_mtime, stat.st_size)
            if stamp == self._hosts_stamp:
                return None
            limit = self.config.max_clients * 256 + 65536  # room for max_clients lines
            with open(path, "rb") as handle:
                text = handle.read(limit).decode("utf-8", errors="replace")
        except OSError as exc:
            _read_log.warning("cannot read GLORYHOLE_CLIENT_HOSTS_FILE %s: %s; keeping its last names", path, exc)
            return None
        self._hosts_stamp = stamp
        return parse_hosts(text, self.config.max_clients)

    def read_neighbours(self) -> dict[str, str]:
        """{ip: mac} from the kernel's neighbour tables; what cannot be read is left out quietly."""
        macs: dict[str, str] = {}
        try:
            with open(self.config.arp_path, encoding="ascii", errors="replace") as handle:
                macs.update(parse_proc_arp(handle.read(4 << 20)))
        except OSError:
            pass  # not Linux, or no IPv4
        command = self.config.neigh_command
        if command:
            try:
                done = subprocess.run(
                    command, capture_output=True, timeout=NEIGH_COMMAND_TIMEOUT, check=False, stdin=subprocess.DEVNULL
                )
                macs.update(parse_ip_neigh(done.stdout[: 4 << 20].decode("ascii", errors="replace")))
            except (OSError, subprocess.SubprocessError) as exc:
                logger.debug("cannot read the IPv6 neighbours with %s: %s", command[0], exc)
        return macs
