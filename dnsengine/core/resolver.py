# cython: annotation_typing=False
"""The decision for one query, free of sockets.

`Resolver.handle(data, client, transport, addr)` reads a wire query and makes
sure exactly one reply (or none, for packets that must be dropped) goes back
through `transport.send`, and that every answered query is counted and handed
to the query logger. Order: the client's access and rate limit, then cache, then allowlist > block rules > local records
> names that never leave the box (unless a forwarding rule covers them) > upstream (a conditional-forwarding
rule's, else the client group's, else the default). Replies built here (blocked, local) are cached as bytes too, so
only the first query for a name pays for dnslib.

Forwarded queries finish when the upstream's reply is read, through a callback
on the engine's I/O loop thread (dnsengine.core.ioloop): the thread that read the
query never waits for the network.

One module past ~500 lines on purpose: it is one query's path from packet to
reply and log entry, read top to bottom; the pieces it decides with (access, rate
limit, cache, rules, special names, wire) are modules of their own.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from dnslib import CNAME, QTYPE, RR, SOA, DNSHeader, DNSQuestion, DNSRecord

from dnsengine.core import wire
from dnsengine.core.access import AccessControl
from dnsengine.core.cache import CacheEntry, ReplyCache, TtlPolicy, entry_from_reply
from dnsengine.core.clients import ClientDirectory
from dnsengine.core.entry import QueryLogEntry
from dnsengine.core.forwarding import ForwardingRules, Route
from dnsengine.core.groups import GroupAssignment, GroupSpec, Policy
from dnsengine.core.localrecords import ADDRESS_TYPES, ByType, LocalRecords
from dnsengine.core.localrecords import rdata as local_rdata
from dnsengine.core.options import BlockingMode
from dnsengine.core.ratelimit import RateLimiter
from dnsengine.core.rules import Matcher
from dnsengine.core.special import LOCALHOST, special_use
from dnsengine.core.stats import EngineStats
from dnsengine.core.throttle import RateLimitedLog
from dnsengine.core.wire import Query, WireError

logger = logging.getLogger(__name__)
_bad_packet_log = RateLimitedLog(logger, interval=10.0)

MAX_CNAME_CHAIN = 8
# TTL of the answers for names that never leave the box (localhost, private reverse zones...):
# short, so a local record added for one of them is seen within a minute.
SPECIAL_TTL = 60
# Rendered replies are kept only for queries up to this size (a question, an OPT
# record and a cookie fit easily), and counted at their bytes plus this.
MAX_RENDERED_QUERY = 512
RENDERED_OVERHEAD = 150
SOA_MNAME = "ns.gloryhole.invalid."
SOA_RNAME = "hostmaster.gloryhole.invalid."

STATUS_BLOCKED = "blocked"
STATUS_ALLOWED = "allowed"
STATUS_FORWARDED = "forwarded"
STATUS_CACHED = "cached"
STATUS_LOCAL = "local"
STATUS_ERROR = "error"
STATUS_REFUSED = "refused"  # the client is not allowed, or disallowed
STATUS_RATELIMITED = "ratelimited"  # the client is past its rate limit
STATUS_STALE = "stale"  # an expired answer, served because no upstream answered (RFC 8767)

# The TTL of an answer served stale: RFC 8767 recommends 30 seconds.
STALE_TTL = 30
# Prefetch: an entry asked often enough is refreshed once a hit comes within the last
# PREFETCH_WINDOW of its lifetime; at most 1/PREFETCH_SHARE of a forwarder's in-flight
# limit may be prefetches at once.
PREFETCH_WINDOW = 0.1
PREFETCH_SHARE = 4

# The reason a client's query is refused before anything else (dnsengine.core.access), and
# the counter of each: refused_not_allowed, refused_disallowed, refused_rate_limited.
RATE_LIMITED = "rate_limited"
# The rcode logged for a query dropped without an answer (GLORYHOLE_REFUSED_CLIENTS_ACTION=drop).
DROPPED = "DROPPED"


class Transport(Protocol):
    proto: str  # "udp" | "tcp"

    def send(self, reply: bytes, addr) -> None: ...


class QueryLogSink(Protocol):
    def log_async(self, entry: QueryLogEntry) -> bool: ...


class Forwarder(Protocol):
    def forward(self, qname_wire: bytes, qtype: int, qclass: int, do: bool, callback) -> bool: ...


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the engine serves from, swapped whole on reload."""

    matcher: Matcher = field(default_factory=Matcher)
    local: LocalRecords = field(default_factory=LocalRecords)
    generation: int = 0
    # Blocking is paused until this time of the resolver's clock (math.inf: until resumed; 0: not paused).
    paused_until: float = 0.0
    # The default group's name, for the log when `matcher` decides for everyone.
    group: str = ""
    # Several policies (client groups with their own lists, windows, blocking or upstreams):
    # `assignment` picks one per client and `matcher` is unused. None: `matcher` for everyone.
    assignment: GroupAssignment | None = None
    policies: tuple[Policy, ...] = ()
    specs: tuple[GroupSpec, ...] = ()  # what each policy is built from, for the time windows
    # Conditional forwarding: names under a rule's suffix go to its upstreams, whatever the
    # group. None when there are no rules: the check then costs one attribute read.
    forwarding: ForwardingRules | None = None


# A rendered reply, as a plain tuple (untracked by the garbage collector, as
# ReplyCache's entries are): (reply without its 2-byte ID, valid until, domain,
# qtype, rcode, status, rule, checked, targets); domain to rule are what the query log gets.
# `checked` is None but for an upstream or local answer shared by the policies on one
# forwarder: then policy number -> whether that policy may be given it (blocks neither its
# name nor one of the answer's CNAME `targets`), filled on each policy's first hit.
_Rendered = tuple[bytes, float, str, str, str, str, str, dict[int, bool] | None, tuple[str, ...]]
# What a `checked` dict adds to a rendered reply's memory (sys.getsizeof of a small dict).
CHECKED_OVERHEAD = 230


@dataclass(slots=True)
class Exchange:
    """One query on its way to its reply: who asked, how, and when."""

    query: Query
    client: str
    transport: Transport
    addr: object
    started: float  # perf_counter() at arrival, for the duration
    arrived: float  # time.time() at arrival, for the log
    limit: int  # largest reply that fits the transport
    packet: bytes  # the query as received; empty when too large to remember a rendered reply for
    sent: bool = False
    policy: Policy | None = None  # the client group's policy; None: the snapshot's one matcher
    group: str = ""  # the name of the group deciding, for the log
    prefix: bytes = b""  # the policy's prefix for the rendered replies' keys
    cache_prefix: bytes = b""  # its forwarder's prefix for the reply cache's keys
    # The snapshot the query was decided under: an upstream reply that arrives after a
    # reload is sent but not cached, or it would outlive the rules (and policy numbers) it
    # was decided by.
    snapshot: Snapshot | None = None
    # The rendered replies current when the query arrived (read before the snapshot).
    rendered: dict | None = None
    # The conditional-forwarding rule that covers the name, once the decision found one.
    route: Route | None = None

    @property
    def key(self) -> bytes:
        return self.cache_prefix + self.query.key if self.cache_prefix else self.query.key

    def send(self, reply: bytes) -> None:
        self.sent = True
        self.transport.send(reply, self.addr)


class Resolver:
    def __init__(
        self,
        *,
        forwarder: Forwarder,
        blocking: BlockingMode,
        block_ttl: int,
        cache: ReplyCache,
        ttl_policy: TtlPolicy,
        stats: EngineStats,
        query_logger: QueryLogSink | None = None,
        clock: Callable[[], float] = time.monotonic,
        forward_single_label: bool = False,
        forward_private_reverse: bool = False,
        clients: ClientDirectory | None = None,
        access: AccessControl | None = None,
        refused_action: str = "refuse",
        rate_limiter: RateLimiter | None = None,
        cname_inspection: bool = True,
        prefetch_min_hits: int = 0,
    ) -> None:
        self.forwarder = forwarder
        self.clients = clients
        self.blocking = blocking
        self.block_ttl = block_ttl
        self.cache = cache
        self.ttl_policy = ttl_policy
        self.stats = stats
        self.query_logger = query_logger
        self.clock = clock
        self.snapshot = Snapshot()
        # Replies already rendered for an exact query packet (minus its ID), valid
        # until the next whole second of TTL ageing. A repeated query, the common
        # case on a network, is then answered with one dict lookup and no parsing.
        self._rendered: dict[bytes, _Rendered] = {}
        self.rendered_max = max(1024, cache.max_size)
        # ...and a quarter of the cache's memory budget, counted in key and reply bytes.
        self.rendered_max_bytes = max(1 << 20, cache.max_bytes // 4)
        self._rendered_bytes = 0
        self._blocked_entries: dict[int, CacheEntry] = {}
        self._blocked_mode = (blocking, block_ttl)
        self._special_entries: dict[tuple[str, int], CacheEntry] = {}
        # Round-robin of local names with several addresses: answers tuple id -> queries answered.
        self._rotation: dict[int, int] = {}
        self.forward_single_label = forward_single_label
        self.forward_private_reverse = forward_private_reverse
        # Told of every client that asks, so a new one gets named in the background.
        self.clients = clients
        # None when off (no lists, rate 0): the check then costs one attribute read.
        self.access = access if access is not None and access.active else None
        self.refused_action = refused_action
        self.rate_limiter = rate_limiter
        # Deep CNAME inspection: the targets of an upstream answer's CNAMEs are matched too.
        self.cname_inspection = cname_inspection
        # Prefetch (0: off): hits per cache key since its entry was stored, and the
        # prefetches in flight, per forwarder and by key (under _prefetch_lock: they are
        # started on the listener threads and finished on the I/O thread).
        self.prefetch_min_hits = prefetch_min_hits
        self._hits: dict[bytes, int] = {}
        self._prefetch_lock = threading.Lock()
        self._prefetching: dict[object, int] = {}
        self._prefetch_keys: set[bytes] = set()

    def apply_snapshot(self, snapshot: Snapshot) -> None:
        # One attribute assignment: a query sees either the old or the new one.
        old = self.snapshot
        self.snapshot = snapshot
        # Nothing decided under the old rules is a fresh hit any more. With serve-stale,
        # the upstream answers are kept for get_stale (see _stale_rekey); the rest goes.
        if self.cache.stale_max_age:
            self.cache.retire(self._stale_rekey(old, snapshot), self.clock())
        else:
            self.cache.clear()
        self._rendered = {}
        self._rendered_bytes = 0
        self._hits = {}
        self._rotation = {}

    def _stale_rekey(self, old: Snapshot, new: Snapshot) -> Callable[[bytes, str, str], bytes | None]:
        """What ReplyCache.retire does with each entry on a reload from `old` to `new`.

        Kept (for serve-stale only): upstream answers (status cached). Their CNAME targets
        are kept with them and checked against the asking policy when served, and the
        asked name is decided by the new rules before the stale path is ever reached.
        Dropped: local, blocked and special answers, decided by the old rules.

        The key's forwarder prefix is numbered per snapshot (groups.policies_build), so
        an old prefix may name other upstreams after the reload: each is mapped to the
        new prefix of the same forwarder, and an answer whose forwarder has no policy
        any more is dropped. So is one whose name a conditional-forwarding rule now
        sends to other upstreams than the ones that answered it.
        """
        old_forwarders = _prefix_forwarders(old)
        new_prefixes = {forwarder: prefix for prefix, forwarder in _prefix_forwarders(new).items()}
        prefix_map = {p: new_prefixes[f] for p, f in old_forwarders.items() if f in new_prefixes}
        size = len(next(iter(old_forwarders), b""))  # b"" without groups, else one length for all
        check_routes = old.forwarding is not None or new.forwarding is not None

        def rekey(key: bytes, domain: str, status: str) -> bytes | None:
            if status != STATUS_CACHED:
                return None
            prefix = key[:size]
            new_prefix = prefix_map.get(prefix)
            if new_prefix is None:
                return None
            if check_routes:
                answered = _route_forwarder(old.forwarding, domain, old_forwarders[prefix])
                if answered is not _route_forwarder(new.forwarding, domain, old_forwarders[prefix]):
                    return None
            return new_prefix + key[size:] if new_prefix != prefix else key

        return rekey

    def blocking_set(self, blocking: BlockingMode, block_ttl: int) -> None:
        """Answer blocked names this way from now on (the settings page; apply_snapshot follows)."""
        self.blocking, self.block_ttl = blocking, block_ttl
        # Read by the DNS path in this order: a reply built for the old mode lands in the old dict.
        self._blocked_mode = (blocking, block_ttl)
        self._blocked_entries = {}

    def cache_resize(self, max_size: int) -> None:
        """Keep at most `max_size` answers (0: none); the next apply_snapshot retires what the cache holds."""
        self.cache.max_size = max_size
        self.rendered_max = max(1024, max_size)

    # -- entry point ------------------------------------------------------------------

    def handle(self, data: bytes, client: str, transport: Transport, addr) -> bool:
        """Answer `data`; True when a reply was sent or will be, False when the packet is dropped."""
        started = time.perf_counter()
        arrived = time.time()
        # Before the rendered replies: a refused client is never answered from them.
        access = self.access
        if access is not None:
            reason = access.verdict(client)
            if reason:
                return self._refuse_client(data, client, reason, transport, addr, started, arrived)
        # The rendered replies before the snapshot: apply_snapshot replaces them after it,
        # so these are the snapshot's or older, and a reply is remembered only into the
        # current ones (_remember_rendered): none decided under old rules outlives a reload.
        rendered = self._rendered
        snapshot = self.snapshot
        assignment = snapshot.assignment
        if assignment is None:
            policy, group, prefix, cache_prefix = None, snapshot.group, b"", b""
        else:
            policy = snapshot.policies[assignment.policy_for(client)]
            group, prefix, cache_prefix = policy.group, policy.key_prefix, policy.cache_prefix
        limiter = self.rate_limiter
        if (limiter is not None and not (policy is not None and policy.rate_limit_exempt)
                and not limiter.allow(client, self.clock())):  # fmt: skip
            return self._refuse_client(data, client, RATE_LIMITED, transport, addr, started, arrived)
        clients = self.clients
        if clients is not None:
            clients.observe(client)
        if transport.proto == "udp":
            hit = rendered.get(data[2:]) if policy is None else self._rendered_for(rendered, policy, data, snapshot)
            if hit is not None and self.clock() < hit[1]:
                transport.send(data[:2] + hit[0], addr)
                self._record_rendered(hit, client, group, started, arrived)
                return True
        try:
            query = wire.parse_query(data)
        except WireError as exc:
            return self._bad_packet(data, client, exc, transport, addr, started, arrived)
        except Exception:  # defensive: a parser bug must not reach the listener
            logger.exception("unexpected error parsing a query from %s", client)
            return False
        ex = Exchange(query, client, transport, addr, started, arrived,
                      query.payload if transport.proto == "udp" else 65535,
                      data if len(data) <= MAX_RENDERED_QUERY else b"", False, policy, group, prefix,
                      cache_prefix, snapshot, rendered)  # fmt: skip
        if query.edns and query.edns_version != 0:
            self._finish_error(ex, wire.BADVERS)
            return True
        if query.qclass != wire.CLASS_IN or query.qtype in (wire.TYPE_AXFR, wire.TYPE_IXFR):
            self._finish_error(ex, wire.REFUSED)
            return True
        now = self.clock()
        entry = self.cache.get(ex.key, now)
        # Policies on the same upstreams share the cache, so a hit may be another group's
        # answer to a name this client's group blocks: the decision is checked again.
        if entry is not None and (policy is None or not _blocks(policy, query.name, now, snapshot)):
            if entry.targets and policy is not None:
                # ...and so is each CNAME target, stored with the answer (one policy alone:
                # a blocked target was decided when the answer came, and a reload empties
                # the live cache; the targets are kept for serve-stale after one).
                rule = _target_rule(policy.matcher, query.name, entry.targets, now, snapshot)
                if rule:
                    self._answer_blocked(ex, query.name, rule, now, entry.expires)
                    return True
            reply = entry.render(query, now, ex.limit)
            ex.send(reply)
            self._log(ex, entry.domain, entry.rcode, entry.status, entry.rule)
            if transport.proto == "udp":
                # The TTLs in `reply` are right until the entry's age reaches its next whole second.
                valid_until = min(entry.expires, entry.stored + int(now - entry.stored) + 1)
                self._remember_rendered(ex, reply, valid_until, entry.domain, entry.rcode, entry.status, entry.rule,
                                        cache_prefix, None if policy is None else {policy.number: True},
                                        entry.targets)  # fmt: skip
            if self.prefetch_min_hits:
                self._note_hit(ex, entry, now)
            return True
        try:
            self._resolve_miss(ex, now)
        except Exception:
            logger.exception("failed to resolve %s from %s", query.name, client)
            if not ex.sent:
                self._finish_error(ex, wire.SERVFAIL)
        return True

    # -- the decision -----------------------------------------------------------------

    def _resolve_miss(self, ex: Exchange, now: float) -> None:
        query = ex.query
        name = query.name
        snapshot = self.snapshot
        policy = ex.policy
        decision = (snapshot.matcher if policy is None else policy.matcher).match(name)
        paused_rule = ""
        if decision is not None and decision.action == "block":
            if now >= snapshot.paused_until:
                # Not put in the cache: rendering the per-type entry costs less than a
                # cache entry per name would. An exact repeat over UDP is served from
                # the rendered replies, until the next reload or pause clears them.
                self._answer_blocked(ex, name, decision.rule, now)
                return
            # Blocking is paused: carry on as if nothing listed the name; the log says what would have.
            paused_rule = f"paused:{decision.rule}"
            decision = None
        rule = decision.rule if decision is not None else paused_rule
        # One dict lookup for a name with no record; the wildcards' walk only when there are some.
        local = snapshot.local
        by_type = local.records.get(name)
        if by_type is None and local.wildcards:
            by_type = local.match_wildcard(name)
        if by_type is not None:
            self._answer_local(ex, name, by_type, local, now)
            return
        forwarding = snapshot.forwarding
        route = forwarding.route(name) if forwarding is not None else None
        if route is None:
            special = special_use(name, query.qtype, forward_single_label=self.forward_single_label,
                                  forward_private_reverse=self.forward_private_reverse)  # fmt: skip
            if special is not None:
                self._answer_special(ex, name, special, now)
                return
        else:
            # A rule is the user saying where these names live: a private reverse zone
            # or a single-label name under it goes to the rule's upstreams (RFC 6303's
            # local NXDOMAIN is for zones nobody configured).
            ex.route = route
            if not rule:
                rule = route.log_rule
        status = STATUS_ALLOWED if decision is not None else STATUS_FORWARDED
        self._forward(ex, name, status, rule)

    def _forward(self, ex: Exchange, name: str, status: str, rule: str) -> None:
        def on_reply(reply: bytes | None, upstream: str) -> None:
            self._finish_forwarded(ex, name, reply, upstream, status, rule)

        query = ex.query
        if not self._forwarder(ex).forward(query.qname_wire, query.qtype, query.qclass, query.do, on_reply):
            if not self._serve_stale(ex, name, rule):
                self._finish_error(ex, wire.SERVFAIL, name=name, rule=rule)

    def _forwarder(self, ex: Exchange, name: str | None = None) -> Forwarder:
        """The upstreams for `ex`: a forwarding rule's, else the group's own, else the engine's.

        The rule is the one the decision found for the query's name (`ex.route`), or,
        given `name` (a local CNAME's target), the one covering that name.

        No cache-key prefix is added for a rule: the reply cache and the rendered replies
        are keyed by the question (after the policy's forwarder prefix), and the question's
        name alone decides the rule, so two queries with one key always went to the same
        rule's upstreams, or both to their group's. Rules change only with a new snapshot,
        and apply_snapshot empties both caches (keeping, for serve-stale only, the upstream
        answers whose name still goes to the same upstreams: _stale_rekey). With several groups, a name under a rule is
        cached once per group forwarder prefix: duplicated, never mixed up.
        """
        route = ex.route
        if name is not None:
            forwarding = self.snapshot.forwarding
            route = forwarding.route(name) if forwarding is not None else None
        if route is not None:
            forwarder = route.forwarder
            return forwarder if forwarder is not None else self.forwarder
        policy = ex.policy
        if policy is not None and policy.forwarder is not None:
            return policy.forwarder
        return self.forwarder

    def _finish_forwarded(self, ex: Exchange, name: str, reply: bytes | None, upstream: str, status: str,
                          rule: str) -> None:  # fmt: skip
        # Every upstream failed (None), or the last one asked could not answer: an
        # expired answer, if one is kept, beats SERVFAIL (RFC 8767).
        if (reply is None or reply[3] & 0x0F in (wire.SERVFAIL, wire.REFUSED)) and self._serve_stale(ex, name, rule):
            return
        if reply is None:
            self._finish_error(ex, wire.SERVFAIL, name=name, rule=rule)
            return
        now = self.clock()
        made = self._upstream_entry(reply, upstream, name, now, ex.policy, ex.snapshot)
        if made is None:
            self._finish_error(ex, wire.SERVFAIL, name=name, rule=rule)
            return
        entry, target_rule = made
        if ex.snapshot is self.snapshot:
            self.cache.put(ex.key, entry)
            if self.prefetch_min_hits:
                self._hits.pop(ex.key, None)
        if target_rule:
            self._answer_blocked(ex, name, target_rule, now, entry.expires)
            return
        ex.send(entry.render(ex.query, now, ex.limit))
        self._log(ex, name, entry.rcode, status, rule, upstream)

    def _upstream_entry(self, reply: bytes, upstream: str, name: str, now: float, policy: Policy | None,
                        snapshot: Snapshot | None) -> tuple[CacheEntry, str] | None:  # fmt: skip
        """The cache entry for an upstream reply and the rule of a CNAME target that blocks it ("" if none).

        None for a reply that cannot be used. One policy alone: a blocked target makes the
        entry the blocked answer, so a hit costs nothing more. Several: the entry is the
        upstream's, shared, with its targets, and each policy checks them on a hit. Either
        way an unblocked entry keeps its targets: served stale after a reload, it is
        checked against the new rules (_serve_stale).
        """
        try:
            qend = wire.question_end(reply)
            scanned = wire.scan_reply(reply, qend, self.cname_inspection)
        except WireError as exc:
            _bad_packet_log.warning("unusable reply from upstream %s for %s: %s", upstream, name, exc)
            return None
        lifetime = self.ttl_policy.lifetime(scanned)
        ttls = tuple(self.ttl_policy.clamp(t) for t in scanned.ttls)
        scanned.ttls = ttls
        targets = scanned.cname_targets
        target_rule = ""
        if targets and snapshot is not None:
            matcher = snapshot.matcher if policy is None else policy.matcher
            target_rule = _target_rule(matcher, name, targets, now, snapshot)
            if target_rule and policy is None:
                blocked = self._blocked_entry(struct.unpack_from("!H", reply, qend - 4)[0])
                return CacheEntry(rcode=blocked.rcode, ad=False, ancount=blocked.ancount, nscount=blocked.nscount,
                                  arcount=blocked.arcount, body=blocked.body, ttl_offsets=(), ttls=(), stored=now,
                                  expires=now + lifetime, domain=name, status=STATUS_BLOCKED,
                                  rule=target_rule), target_rule  # fmt: skip
        entry = entry_from_reply(scanned, now=now, lifetime=lifetime, domain=name, status=STATUS_CACHED,
                                 targets=targets)  # fmt: skip
        return entry, target_rule

    # -- serve-stale and prefetch -----------------------------------------------------

    def _serve_stale(self, ex: Exchange, name: str, rule: str) -> bool:
        """Answer with the expired cached answer for the question, if one is kept; True when answered.

        Served with TTL STALE_TTL and not remembered as a rendered reply, so the next
        query tries the upstreams again.
        """
        cache = self.cache
        if not cache.stale_max_age or ex.snapshot is not self.snapshot:
            return False
        now = self.clock()
        entry = cache.get_stale(ex.key, now)
        if entry is None or entry.status not in (STATUS_CACHED, STATUS_BLOCKED):
            return False
        self.stats.count("stale")
        policy = ex.policy
        if entry.targets:
            # Checked again even with one policy: the entry may be from before a reload.
            snapshot = ex.snapshot
            matcher = snapshot.matcher if policy is None else policy.matcher
            target_rule = _target_rule(matcher, name, entry.targets, now, snapshot)
            if target_rule:
                self._answer_blocked(ex, name, target_rule, now, remember=False)
                return True
        ex.send(entry.render_stale(ex.query, STALE_TTL, ex.limit))
        if entry.status == STATUS_BLOCKED:  # blocked by a CNAME target when it came
            self._log(ex, name, entry.rcode, STATUS_BLOCKED, entry.rule)
        else:
            self._log(ex, name, entry.rcode, STATUS_STALE, rule)
        return True

    def _note_hit(self, ex: Exchange, entry: CacheEntry, now: float) -> None:
        """Count a hit; start a prefetch for an entry asked often enough and close to expiry."""
        key = ex.key
        hits = self._hits
        count = hits.get(key, 0) + 1
        if count == 1 and len(hits) >= self.cache.max_size:
            hits.clear()  # bounded like the cache; the counts start again
        hits[key] = count
        if count < self.prefetch_min_hits:
            return
        if entry.status != STATUS_CACHED and not entry.rule.startswith("cname:"):
            return  # local or special answers are not the upstreams' to refresh
        if now < entry.expires - (entry.expires - entry.stored) * PREFETCH_WINDOW:
            return
        self._prefetch(ex, key)

    def _prefetch(self, ex: Exchange, key: bytes) -> None:
        """Ask the upstream again for `ex`'s question in the background; its reply replaces the entry."""
        # By name: a hit has made no decision, so no forwarding rule is on `ex` yet, and a
        # name under a rule must go to the rule's upstreams, never leak to the default ones.
        forwarder = self._forwarder(ex, ex.query.name)
        limit = max(1, getattr(forwarder, "max_inflight", 64) // PREFETCH_SHARE)
        with self._prefetch_lock:
            if key in self._prefetch_keys:
                return
            inflight = self._prefetching.get(forwarder, 0)
            if inflight >= limit:
                skipped = True
            else:
                skipped = False
                self._prefetching[forwarder] = inflight + 1
                self._prefetch_keys.add(key)
        if skipped:
            self.stats.count("prefetch_skipped")
            return
        query, policy, snapshot = ex.query, ex.policy, ex.snapshot
        name = query.name

        def done() -> None:
            with self._prefetch_lock:
                self._prefetching[forwarder] -= 1
                self._prefetch_keys.discard(key)

        def on_reply(reply: bytes | None, upstream: str) -> None:
            done()
            self._finish_prefetch(key, name, reply, upstream, policy, snapshot)

        self.stats.count("prefetch")
        if not forwarder.forward(query.qname_wire, query.qtype, query.qclass, query.do, on_reply):
            done()
            self.stats.count("prefetch_failed")

    def _finish_prefetch(self, key: bytes, name: str, reply: bytes | None, upstream: str, policy: Policy | None,
                         snapshot: Snapshot | None) -> None:  # fmt: skip
        """Store a prefetched answer, checked as any forwarded one; a failed prefetch leaves the entry be."""
        if reply is None or reply[3] & 0x0F in (wire.SERVFAIL, wire.REFUSED):
            self.stats.count("prefetch_failed")
            return
        made = self._upstream_entry(reply, upstream, name, self.clock(), policy, snapshot)
        if made is None:
            self.stats.count("prefetch_failed")
            return
        if snapshot is self.snapshot:
            self.cache.put(key, made[0])
            self._hits.pop(key, None)

    def _cache_built(self, ex: Exchange, record: DNSRecord, now: float, ttl: int, name: str, status: str,
                     rule: str, *, key: bytes | None = None) -> CacheEntry:  # fmt: skip
        packed = record.pack()
        scanned = wire.scan_reply(packed, wire.question_end(packed))
        entry = entry_from_reply(scanned, now=now, lifetime=ttl, domain=name, status=status, rule=rule)
        if ex.snapshot is self.snapshot:  # an upstream reply for a local CNAME may come after a reload
            self.cache.put(ex.key if key is None else key, entry)
        return entry

    # -- blocked answers --------------------------------------------------------------

    def _answer_special(self, ex: Exchange, name: str, kind: str, now: float) -> None:
        """A name that never leaves the box (dnsengine.core.special): loopback for localhost, else NXDOMAIN."""
        query = ex.query
        entry = self._special_entries.get((kind, query.qtype))
        if entry is None:
            if kind == LOCALHOST:
                template = _synthesized_records(wire.NOERROR, "127.0.0.1", "::1", SPECIAL_TTL, query.qtype)
            else:
                template = _synthesized_records(wire.NXDOMAIN, None, None, SPECIAL_TTL, query.qtype)
            entry = _template_entry(template, STATUS_LOCAL)
            if len(self._special_entries) < 1024:  # qtype is a client's choice: bound it
                self._special_entries[(kind, query.qtype)] = entry
        reply = entry.render(query, now, ex.limit)
        ex.send(reply)
        rule = f"special:{kind}"
        self._log(ex, name, entry.rcode, STATUS_LOCAL, rule)
        if ex.transport.proto == "udp":
            self._remember_rendered(ex, reply, math.inf, name, entry.rcode, STATUS_LOCAL, rule, ex.prefix)

    def _answer_blocked(self, ex: Exchange, name: str, rule: str, now: float, valid_until: float = math.inf,
                        remember: bool = True) -> None:  # fmt: skip
        """The blocked answer for `name`, logged with `rule`, remembered under the policy's own prefix."""
        query = ex.query
        entry = self._blocked_entry(query.qtype)
        reply = entry.render(query, now, ex.limit)
        ex.send(reply)
        self._log(ex, name, entry.rcode, STATUS_BLOCKED, rule)
        if remember and ex.transport.proto == "udp":
            self._remember_rendered(ex, reply, valid_until, name, entry.rcode, STATUS_BLOCKED, rule, ex.prefix)

    def _blocked_entry(self, qtype: int) -> CacheEntry:
        """The blocked answer for `qtype`, built once per type, for any name.

        Every owner name is a pointer to the question (offset 12), so the same bytes
        serve any blocked name: a first query for a never-seen blocked name costs a
        dict lookup instead of building a reply with dnslib. Its TTLs are
        always the full block TTL (no TTL offsets to age).
        """
        entries = self._blocked_entries
        entry = entries.get(qtype)
        if entry is None:
            # The mode this dict was made for: blocking_set replaces the dict, never fills it.
            blocking, block_ttl = self._blocked_mode
            entry = _template_entry(_blocked_records(blocking, block_ttl, qtype), STATUS_BLOCKED)
            if len(entries) < 1024:  # qtype is a client's choice: bound it
                entries[qtype] = entry
        return entry

    # -- local records ----------------------------------------------------------------

    def _answer_local(self, ex: Exchange, name: str, by_type: ByType | None, local: LocalRecords,
                      now: float) -> None:  # fmt: skip
        """Answer from the local records `by_type` of `name` (its own or a wildcard's), following local CNAMEs.

        Several addresses of one name are given in turn (round-robin): each turn's
        answer is built once and cached under the query's key plus the turn, never
        in the rendered replies (whose one answer per packet cannot turn). Every other
        local answer is cached as usual, so repeats come from the rendered replies.
        """
        query = ex.query
        turn, cache_key = 0, ex.key
        rotating = _rotating(by_type, local, query.qtype)
        if rotating is not None:
            turn = self._turn(rotating)
            cache_key = ex.key + b"\xff" + turn.to_bytes(2, "big")  # never a query's key: those end name+5 bytes
            entry = self.cache.get(cache_key, now)
            if entry is not None:
                ex.send(entry.render(query, now, ex.limit))
                self._log(ex, name, entry.rcode, STATUS_LOCAL, "local")
                return
        record = _reply_skeleton(name, query.qtype, wire.NOERROR)
        current = name
        seen = {name}
        min_ttl = None
        for _ in range(MAX_CNAME_CHAIN):
            if by_type is None:
                # The chain leaves our records: ask upstream for the target and
                # put our CNAMEs in front of its answer.
                self._forward_cname_target(ex, name, current, record)
                return
            wanted = by_type.get(query.qtype)
            if wanted:
                if wanted is rotating:
                    wanted = wanted[turn:] + wanted[:turn]
                for value, ttl in wanted:
                    record.add_answer(RR(current, query.qtype, rdata=local_rdata(query.qtype, value), ttl=ttl))
                    min_ttl = ttl if min_ttl is None else min(min_ttl, ttl)
                break
            cnames = by_type.get(QTYPE.CNAME)
            if not cnames:
                # The name exists here, just not with this type: NODATA, never forwarded.
                record.add_auth(_soa(name, 60))
                min_ttl = 60 if min_ttl is None else min(min_ttl, 60)
                break
            target, ttl = cnames[0]
            record.add_answer(RR(current, QTYPE.CNAME, rdata=CNAME(target), ttl=ttl))
            min_ttl = ttl if min_ttl is None else min(min_ttl, ttl)
            if target in seen:
                record.header.rcode = wire.SERVFAIL
                break
            seen.add(target)
            current = target
            by_type = local.lookup(current)
        else:
            record.header.rcode = wire.SERVFAIL  # chain too long
        entry = self._cache_built(ex, record, now, min_ttl or 0, name, STATUS_LOCAL, "local", key=cache_key)
        ex.send(entry.render(query, now, ex.limit))
        self._log(ex, name, entry.rcode, STATUS_LOCAL, "local")

    def _turn(self, answers: tuple) -> int:
        """Whose turn it is to lead among `answers` (0 .. len-1), one more each query until the next reload."""
        key = id(answers)  # the tuples live as long as the snapshot, and the counts go with it
        turn = self._rotation.get(key, 0)
        self._rotation[key] = turn + 1
        return turn % len(answers)

    def _forward_cname_target(self, ex: Exchange, name: str, target: str, record: DNSRecord) -> None:
        query = ex.query
        target_wire = wire.text_to_name(target)

        def on_reply(reply: bytes | None, upstream: str) -> None:
            now = self.clock()
            combined = record
            if reply is not None:
                try:
                    upstream_record = DNSRecord.parse(reply)
                    for rr in upstream_record.rr:
                        combined.add_answer(rr)
                    combined.header.rcode = upstream_record.header.rcode
                except Exception:  # dnslib raises several types on bad input
                    reply = None
            if reply is None:
                combined.header.rcode = wire.SERVFAIL
            ttls = [rr.ttl for rr in combined.rr]
            lifetime = min(ttls) if reply is not None and ttls else 0
            entry = self._cache_built(ex, combined, now, lifetime, name, STATUS_LOCAL, "local")
            ex.send(entry.render(query, now, ex.limit))
            self._log(ex, name, entry.rcode, STATUS_LOCAL, "local", upstream)

        if not self._forwarder(ex, target).forward(target_wire, query.qtype, query.qclass, query.do, on_reply):
            self._finish_error(ex, wire.SERVFAIL, name=name)

    # -- errors and logging -----------------------------------------------------------

    def _refuse_client(self, data: bytes, client: str, reason: str, transport: Transport, addr, started: float,
                       arrived: float) -> bool:  # fmt: skip
        """REFUSED (or nothing, when the action is drop) for a client that may not ask now; True when answered.

        Counted per reason and logged with a status of its own. A packet that does
        not parse as a query is dropped, counted, and not logged.
        """
        self.stats.count(f"refused_{reason}")
        try:
            query = wire.parse_query(data)
        except Exception:  # WireError, or a parser bug: either way this client gets nothing more
            return False
        if reason == RATE_LIMITED:
            status, rule = STATUS_RATELIMITED, "ratelimit"
        else:
            status, rule = STATUS_REFUSED, f"access:{reason}"
        proto = transport.proto
        if reason != RATE_LIMITED and self.refused_action == "drop":
            self._record_text(query, query.name, DROPPED, status, rule, client, proto, started, arrived)
            return False
        # Counted before the reply goes: whoever got the REFUSED sees it counted.
        self._record(query, query.name, wire.REFUSED, status, rule, "", client, proto, started, arrived)
        transport.send(wire.error_reply(query.qid, query.flags, wire.REFUSED, query), addr)
        return True

    def _bad_packet(self, data: bytes, client: str, exc: WireError, transport: Transport, addr, started: float,
                    arrived: float) -> bool:  # fmt: skip
        """Answer an unreadable packet with its rcode, or drop it; True when answered."""
        _bad_packet_log.info("bad packet from %s over %s: %s", client, transport.proto, exc)
        if exc.rcode is None:
            self.stats.count("packets_dropped")
            return False
        self.stats.count("packets_malformed")
        qid, flags = wire.header_id_flags(data)
        transport.send(wire.error_reply(qid, flags, exc.rcode), addr)
        self._record(None, "", exc.rcode, STATUS_ERROR, "", "", client, transport.proto, started, arrived)
        return True

    def _finish_error(self, ex: Exchange, rcode: int, *, name: str | None = None, rule: str = "") -> None:
        query = ex.query
        ex.send(wire.error_reply(query.qid, query.flags, rcode, query))
        self._log(ex, query.name if name is None else name, rcode, STATUS_ERROR, rule)

    def _rendered_for(self, rendered: dict[bytes, _Rendered], policy: Policy, data: bytes,
                      snapshot: Snapshot) -> _Rendered | None:  # fmt: skip
        """The rendered reply for `data` under `policy` (several policies), or None.

        Upstream and local answers are shared by the policies on one forwarder; each
        policy's decision on the name is checked once, on its first hit. Its blocked
        and special answers are its own, under its own prefix.
        """
        tail = data[2:]
        hit = rendered.get(policy.cache_prefix + tail)
        if hit is not None:
            checked = hit[7]
            number = policy.number
            given = checked.get(number)
            if given is None:
                now = self.clock()
                given = not _blocks(policy, hit[2], now, snapshot) and not (
                    hit[8] and _target_rule(policy.matcher, hit[2], hit[8], now, snapshot)
                )
                checked[number] = given
            if given:
                return hit
        return rendered.get(policy.key_prefix + tail)

    def _remember_rendered(self, ex: Exchange, reply: bytes, valid_until: float, domain: str, rcode: int,
                           status: str, rule: str, prefix: bytes = b"",
                           checked: dict[int, bool] | None = None,
                           targets: tuple[str, ...] = ()) -> None:  # fmt: skip
        data = ex.packet
        if not data:
            return  # a query this large is not a stub resolver's everyday one: not worth the memory
        rendered = self._rendered
        if ex.rendered is not rendered:
            return  # decided under a snapshot a reload has replaced since
        query = ex.query
        cost = len(data) + len(reply) + RENDERED_OVERHEAD + (CHECKED_OVERHEAD if checked is not None else 0)
        if len(rendered) >= self.rendered_max or self._rendered_bytes + cost > self.rendered_max_bytes:
            rendered.clear()  # crude, but bounded and rare; the cache still has everything
            self._rendered_bytes = 0
        self._rendered_bytes += cost
        rendered[prefix + data[2:] if prefix else data[2:]] = (
            reply[2:], valid_until, domain, wire.qtype_name(query.qtype), wire.RCODE_NAMES.get(rcode, str(rcode)),
            status, rule, checked, targets,
        )  # fmt: skip

    def _record_rendered(self, hit: _Rendered, client: str, group: str, started: float, arrived: float) -> None:
        duration_us = int((time.perf_counter() - started) * 1e6)
        _, _, domain, qtype, rcode, status, rule, _, _ = hit
        self.stats.record(status, duration_us)
        sink = self.query_logger
        if sink is not None:
            clients = self.clients
            name = clients.name_for(client) if clients is not None else ""
            sink.log_async(QueryLogEntry(arrived, client, "udp", domain, qtype, rcode, status, rule, "", duration_us,
                                         name, group))  # fmt: skip

    def _log(self, ex: Exchange, name: str, rcode: int, status: str, rule: str, upstream: str = "") -> None:
        self._record(ex.query, name, rcode, status, rule, upstream, ex.client, ex.transport.proto, ex.started,
                     ex.arrived, ex.group)  # fmt: skip

    def _record(self, query: Query | None, name: str, rcode: int, status: str, rule: str, upstream: str,
                client: str, proto: str, started: float, arrived: float, group: str = "") -> None:  # fmt: skip
        """Count the answered query and hand it to the query logger (never blocks)."""
        self._record_text(query, name, wire.RCODE_NAMES.get(rcode, str(rcode)), status, rule, client, proto, started,
                          arrived, upstream, group)  # fmt: skip

    def _record_text(self, query: Query | None, name: str, rcode: str, status: str, rule: str, client: str,
                     proto: str, started: float, arrived: float, upstream: str = "",
                     group: str = "") -> None:  # fmt: skip
        duration_us = int((time.perf_counter() - started) * 1e6)
        self.stats.record(status, duration_us)
        sink = self.query_logger
        if sink is not None:
            clients = self.clients
            sink.log_async(
                QueryLogEntry(
                    arrived,
                    client,
                    proto,
                    name,
                    wire.qtype_name(query.qtype) if query is not None else "",
                    rcode,
                    status,
                    rule,
                    upstream,
                    duration_us,
                    clients.name_for(client) if clients is not None else "",
                    group,
                )
            )


def _rotating(by_type: ByType | None, local: LocalRecords, qtype: int) -> tuple | None:
    """The addresses that answer `qtype` (through local CNAMEs) when there are several, else None."""
    for _ in range(MAX_CNAME_CHAIN):
        if by_type is None:
            return None
        wanted = by_type.get(qtype)
        if wanted:
            return wanted if len(wanted) > 1 and qtype in ADDRESS_TYPES else None
        cnames = by_type.get(QTYPE.CNAME)
        if not cnames:
            return None
        by_type = local.lookup(cnames[0][0])
    return None


def _prefix_forwarders(snapshot: Snapshot) -> dict[bytes, object | None]:
    """Reply-cache key prefix -> the forwarder it stands for in `snapshot` (None: the default upstreams)."""
    if snapshot.assignment is None:
        return {b"": None}
    return {policy.cache_prefix: policy.forwarder for policy in snapshot.policies}


def _route_forwarder(forwarding: ForwardingRules | None, name: str, otherwise: object | None) -> object | None:
    """The forwarder that answers `name`: its forwarding rule's (None: default), else `otherwise`."""
    route = forwarding.route(name) if forwarding is not None else None
    return otherwise if route is None else route.forwarder


def _blocks(policy: Policy, name: str, now: float, snapshot: Snapshot) -> bool:
    """True when `policy` blocks `name` now (not paused): the answer must not come from the shared cache."""
    decision = policy.matcher.match(name)
    return decision is not None and decision.action == "block" and now >= snapshot.paused_until


def _target_rule(matcher: Matcher, name: str, targets: tuple[str, ...], now: float, snapshot: Snapshot) -> str:
    """The rule of the first CNAME target of `name`'s answer that `matcher` blocks ("" if none).

    "cname:<target> <rule>", e.g. "cname:shop.example.eulerian.net list:trackers". Nothing
    blocks while blocking is paused, nor when a rule decides the asked name itself (an
    allow on it wins over everything); an allowed target does not block.
    """
    if now < snapshot.paused_until or matcher.match(name) is not None:
        return ""
    for target in targets:
        decision = matcher.match(target)
        if decision is not None and decision.action == "block":
            return f"cname:{target} {decision.rule}"
    return ""


def _blocked_records(mode: BlockingMode, ttl: int, qtype: int) -> wire.ScannedReply:
    """The blocked answer for `qtype` in blocking mode `mode`."""
    if mode.mode == "refused":
        return _synthesized_records(wire.REFUSED, None, None, ttl, qtype)
    if mode.mode == "nxdomain":
        return _synthesized_records(wire.NXDOMAIN, None, None, ttl, qtype)
    ipv4, ipv6 = ("0.0.0.0", "::") if mode.mode == "null" else (mode.ipv4, mode.ipv6)
    return _synthesized_records(wire.NOERROR, ipv4, ipv6, ttl, qtype)


def _synthesized_records(rcode: int, ipv4: str | None, ipv6: str | None, ttl: int,
                         qtype: int) -> wire.ScannedReply:  # fmt: skip
    """An answer for `qtype` as bytes, for any name: every owner name points at the question.

    NOERROR: the address of the asked family, else NODATA; NXDOMAIN: with an SOA
    so the client caches the negative answer (RFC 2308); other rcodes: bare.
    """
    answers, authority = [], []
    if rcode == wire.NOERROR:
        if qtype == wire.TYPE_A and ipv4:
            answers.append(_record(wire.TYPE_A, ttl, ipaddress.IPv4Address(ipv4).packed))
        elif qtype == wire.TYPE_AAAA and ipv6:
            answers.append(_record(wire.TYPE_AAAA, ttl, ipaddress.IPv6Address(ipv6).packed))
        else:
            authority.append(_soa_record(ttl))
    elif rcode == wire.NXDOMAIN:
        authority.append(_soa_record(ttl))
    question = b"\x00" + struct.pack("!HH", qtype, wire.CLASS_IN)  # any name: the records only point at it
    packet = (
        wire.pack_header(0, wire.FLAG_QR | wire.FLAG_RA | rcode, 1, len(answers), len(authority), 0)
        + question
        + b"".join(answers)
        + b"".join(authority)
    )
    return wire.scan_reply(packet, 12 + len(question))


def _template_entry(template: wire.ScannedReply, status: str) -> CacheEntry:
    """A never-expiring entry whose TTLs are always the full ones (no offsets to age)."""
    return CacheEntry(rcode=template.rcode, ad=False, ancount=template.ancount, nscount=template.nscount,
                      arcount=template.arcount, body=template.body, ttl_offsets=(), ttls=(), stored=0.0,
                      expires=math.inf, domain="", status=status)  # fmt: skip


def _record(rtype: int, ttl: int, rdata: bytes) -> bytes:
    return b"\xc0\x0c" + struct.pack("!HHIH", rtype, wire.CLASS_IN, ttl, len(rdata)) + rdata


def _soa_record(ttl: int) -> bytes:
    # The SOA MINIMUM is what resolvers use as the negative-caching TTL (RFC 2308).
    rdata = wire.text_to_name(SOA_MNAME) + wire.text_to_name(SOA_RNAME) + struct.pack("!5I", 1, 3600, 600, 86400, ttl)
    return _record(wire.TYPE_SOA, ttl, rdata)


def _reply_skeleton(name: str, qtype: int, rcode: int) -> DNSRecord:
    return DNSRecord(DNSHeader(qr=1, ra=1, rd=1, rcode=rcode), q=DNSQuestion(name, qtype))


def _soa(name: str, ttl: int) -> RR:
    # The SOA MINIMUM is what resolvers use as the negative-caching TTL (RFC 2308).
    return RR(name, QTYPE.SOA, rdata=SOA(SOA_MNAME, SOA_RNAME, (1, 3600, 600, 86400, ttl)), ttl=ttl)
