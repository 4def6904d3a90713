"""TTL-aware cache of ready-made replies, keyed by the question.

An entry holds a reply's record sections as bytes plus where its TTLs sit, so a
hit is served by writing the client's ID, flags and question in front and
patching the aged TTLs: no parsing, no objects. Upstream answers, blocked
answers and local answers all live here. A config reload retires them: with
serve-stale, the upstream answers move to a stale-only area (`ReplyCache.retire`),
the rest is dropped.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from dnsengine.core import wire
from dnsengine.core.wire import FLAG_AD, FLAG_CD, FLAG_QR, FLAG_RA, FLAG_RD, Query, ScannedReply


@dataclass(slots=True)
class CacheEntry:
    rcode: int
    ad: bool
    ancount: int
    nscount: int
    arcount: int
    body: bytes
    ttl_offsets: tuple[int, ...]
    ttls: tuple[int, ...]
    stored: float  # clock() when stored
    expires: float  # clock() after which it is not served
    domain: str  # lower-case name, for the query log
    status: str  # what a hit is logged as: cached, blocked, local
    rule: str = ""
    # The CNAME targets of an upstream answer (deep CNAME inspection): with several client
    # groups sharing the entry, each group's rules are checked against them on a hit, and
    # served stale after a reload, against the new rules.
    targets: tuple[str, ...] = ()

    def as_tuple(self) -> tuple:
        """The fields in order, as a plain tuple: what ReplyCache stores (see there)."""
        return (self.rcode, self.ad, self.ancount, self.nscount, self.arcount, self.body, self.ttl_offsets, self.ttls,
                self.stored, self.expires, self.domain, self.status, self.rule, self.targets)  # fmt: skip

    def render(self, query: Query, now: float, limit: int) -> bytes:
        """The reply for `query`, TTLs aged to `now`, truncated (TC) past `limit` bytes."""
        flags = FLAG_QR | FLAG_RA | (query.flags & (FLAG_RD | FLAG_CD)) | self.rcode
        if self.ad and (query.do or query.flags & FLAG_AD):
            flags |= FLAG_AD
        body = self.body
        age = int(now - self.stored)
        if age > 0 and self.ttl_offsets:
            patched = bytearray(body)
            pack = wire.pack_u32_into
            for offset, ttl in zip(self.ttl_offsets, self.ttls, strict=True):
                pack(patched, offset, ttl - age if ttl > age else 0)
            body = bytes(patched)
        opt = wire.opt_record(wire.MAX_UDP_PAYLOAD, query.do) if query.edns else b""
        reply = (
            wire.pack_header(query.qid, flags, 1, self.ancount, self.nscount, self.arcount + (1 if opt else 0))
            + query.question
            + body
            + opt
        )
        if len(reply) > limit:
            return wire.truncated_reply(flags, query.qid, query.question, opt)
        return reply

    def render_stale(self, query: Query, ttl: int, limit: int) -> bytes:
        """The reply for `query` with every TTL set to `ttl`: an expired answer served stale (RFC 8767)."""
        stale = CacheEntry(*self.as_tuple())
        stale.ttls = (ttl,) * len(self.ttl_offsets)
        stale.stored = 0.0
        if self.ttl_offsets:
            patched = bytearray(self.body)
            for offset in self.ttl_offsets:
                wire.pack_u32_into(patched, offset, ttl)
            stale.body = bytes(patched)
        return stale.render(query, 0.0, limit)


@dataclass(frozen=True, slots=True)
class TtlPolicy:
    min_ttl: int = 0
    max_ttl: int = 86400
    negative_max_ttl: int = 3600

    def lifetime(self, scanned: ScannedReply) -> int:
        """How long a reply may be cached; 0 means not at all.

        SERVFAIL, REFUSED and other errors are not cached, nor truncated replies,
        nor negative answers without an SOA to say for how long (RFC 2308).
        """
        if scanned.flags & wire.FLAG_TC:
            return 0
        if scanned.rcode == wire.NOERROR and scanned.ancount:
            ttl = scanned.min_answer_ttl or 0
            return min(max(ttl, self.min_ttl), self.max_ttl)
        if scanned.rcode in (wire.NOERROR, wire.NXDOMAIN):
            if scanned.negative_ttl is None:
                return 0
            return min(max(scanned.negative_ttl, self.min_ttl), self.negative_max_ttl, self.max_ttl)
        return 0

    def clamp(self, ttl: int) -> int:
        return min(max(ttl, self.min_ttl), self.max_ttl)


def entry_from_reply(
    scanned: ScannedReply,
    *,
    now: float,
    lifetime: int,
    domain: str,
    status: str,
    rule: str = "",
    targets: tuple[str, ...] = (),
) -> CacheEntry:
    """A cache entry whose body carries `scanned.ttls` (possibly clamped), not the raw ones.

    Written into the body once here, so a reply rendered before the entry has aged
    a second (the first one, above all) already shows the clamped TTLs.
    """
    body = scanned.body
    if scanned.ttl_offsets:
        patched = bytearray(body)
        for offset, ttl in zip(scanned.ttl_offsets, scanned.ttls, strict=True):
            wire.pack_u32_into(patched, offset, ttl)
        body = bytes(patched)
    return CacheEntry(
        rcode=scanned.rcode,
        ad=bool(scanned.flags & FLAG_AD),
        ancount=scanned.ancount,
        nscount=scanned.nscount,
        arcount=scanned.arcount,
        body=body,
        ttl_offsets=scanned.ttl_offsets,
        ttls=scanned.ttls,
        stored=now,
        expires=now + lifetime,
        domain=domain,
        status=status,
        rule=rule,
        targets=targets,
    )


_BODY = 5  # CacheEntry.body in as_tuple()
_EXPIRES = 9  # CacheEntry.expires in as_tuple()
_DOMAIN = 10  # CacheEntry.domain
_STATUS = 11  # CacheEntry.status


# What one entry costs beside its key and body: the tuple, floats, strings, the dict slot.
ENTRY_OVERHEAD = 200


class ReplyCache:
    """A bounded LRU of CacheEntry; `get` never returns an expired entry.

    Without serve-stale (`stale_max_age` 0) an expired entry is dropped when looked
    up. With it, an expired entry is kept up to `stale_max_age` seconds past its
    expiry for `get_stale` (RFC 8767: the answer when every upstream fails), but
    moved to the front of the eviction order when a lookup finds it expired, so it
    is the first to go when room is needed; past that age it is dropped as before.

    Bounded twice: `max_size` entries and `max_bytes` of keys and bodies (plus a
    fixed overhead per entry), so a stream of large answers cannot grow it past
    its memory budget however few they are. One answer bigger than an eighth of
    the budget is not cached at all.

    A configuration reload calls `retire`: the entries decided under the old rules
    leave the live area, so `get` never finds them, and the ones the caller keeps
    (upstream answers) go to a stale-only area that only `get_stale` reads. That
    area counts against the same two bounds and is evicted first, oldest first.

    Entries are kept as plain tuples of immutable values, not CacheEntry objects:
    the garbage collector stops tracking such tuples, so a full cache costs a full
    collection nothing; tens of thousands of tracked entries (this cache and the
    resolver's rendered replies) would make every full collection a DNS stall. A hit
    pays for one CacheEntry built from the tuple.
    """

    def __init__(self, max_size: int, clock: Callable[[], float] = time.monotonic,
                 max_bytes: int = 64 << 20, stale_max_age: float = 0.0) -> None:  # fmt: skip
        self.max_size = max_size
        self.stale_max_age = stale_max_age
        self.max_bytes = max_bytes
        self.clock = clock
        self._entries: OrderedDict[bytes, tuple] = OrderedDict()
        # Retired by a reload, for get_stale only; evicted before any live entry.
        self._stale: OrderedDict[bytes, tuple] = OrderedDict()
        self._lock = threading.Lock()
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self.too_big = 0

    def __len__(self) -> int:
        return len(self._entries) + len(self._stale)

    @property
    def stale_only(self) -> int:
        """Entries retired by a reload, kept for get_stale only."""
        return len(self._stale)

    def get(self, key: bytes, now: float) -> CacheEntry | None:
        with self._lock:
            fields = self._entries.get(key)
            if fields is None:
                self.misses += 1
                return None
            if now >= fields[_EXPIRES]:
                if now >= fields[_EXPIRES] + self.stale_max_age:
                    del self._entries[key]
                    self.bytes -= _cost(key, fields)
                else:
                    self._entries.move_to_end(key, last=False)  # kept for get_stale, evicted first
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
        return CacheEntry(*fields)

    def get_stale(self, key: bytes, now: float) -> CacheEntry | None:
        """The entry for `key`, expired or not, unless it expired more than `stale_max_age` ago.

        A live entry first, else one retired by a reload.
        """
        with self._lock:
            fields = self._entries.get(key)
            if fields is None:
                fields = self._stale.get(key)
            if fields is None or now >= fields[_EXPIRES] + self.stale_max_age:
                return None
        return CacheEntry(*fields)

    def put(self, key: bytes, entry: CacheEntry) -> None:
        if self.max_size <= 0 or entry.expires <= entry.stored:
            return
        fields = entry.as_tuple()
        cost = _cost(key, fields)
        if cost > self.max_bytes // 8:
            self.too_big += 1
            return
        with self._lock:
            entries = self._entries
            old = entries.get(key)
            if old is not None:
                self.bytes -= _cost(key, old)
            stale = self._stale
            if stale:
                old = stale.pop(key, None)  # the fresh answer replaces the retired one
                if old is not None:
                    self.bytes -= _cost(key, old)
            entries[key] = fields
            entries.move_to_end(key)
            self.bytes += cost
            while len(entries) + len(stale) > self.max_size or self.bytes > self.max_bytes:
                old_key, old_fields = (stale or entries).popitem(last=False)
                self.bytes -= _cost(old_key, old_fields)
                self.evictions += 1

    def clear(self) -> None:
        with self._lock:
            self._entries = OrderedDict()
            self._stale = OrderedDict()
            self.bytes = 0

    def retire(self, rekey: Callable[[bytes, str, str], bytes | None], now: float) -> None:
        """Move every entry out of the live area: `get` no longer finds any of them.

        `rekey(key, domain, status)` says what becomes of each, live or already
        stale-only: the key to keep it under in the stale-only area, or None to
        drop it. Entries past their stale age at `now` are dropped. The work is done
        outside the lock, so queries go on meanwhile (finding nothing), and the
        entries stored during it win over the retired ones.
        """
        with self._lock:
            live, stale = self._entries, self._stale
            self._entries, self._stale = OrderedDict(), OrderedDict()
            self.bytes = 0
        kept: OrderedDict[bytes, tuple] = OrderedDict()
        # Oldest first: the previously retired ones, then the live ones in LRU order, so the
        # eviction order (front first) stays roughly least recently useful first.
        for area in (stale, live):
            for key, fields in area.items():
                if now >= fields[_EXPIRES] + self.stale_max_age:
                    continue
                new_key = rekey(key, fields[_DOMAIN], fields[_STATUS])
                if new_key is not None:
                    kept[new_key] = fields
                    kept.move_to_end(new_key)
        with self._lock:
            entries = self._entries
            for key in [key for key in kept if key in entries]:
                del kept[key]
            self._stale = kept
            self.bytes += sum(_cost(key, fields) for key, fields in kept.items())
            while kept and (len(entries) + len(kept) > self.max_size or self.bytes > self.max_bytes):
                old_key, old_fields = kept.popitem(last=False)
                self.bytes -= _cost(old_key, old_fields)
                self.evictions += 1


def _cost(key: bytes, fields: tuple) -> int:
    return len(key) + len(fields[_BODY]) + ENTRY_OVERHEAD
