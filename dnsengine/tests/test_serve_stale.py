"""Serve-stale (RFC 8767) and prefetch: the resolver on a controllable clock, then a running engine
whose upstream goes down and comes back; then serve-stale across configuration reloads, the same two ways."""

from __future__ import annotations

import dataclasses
import time

import dns.message
import pytest
from dnslib import CNAME, QTYPE, RR, A, DNSHeader, DNSQuestion, DNSRecord

from dnsengine.core import wire
from dnsengine.core.cache import CacheEntry, ReplyCache, TtlPolicy
from dnsengine.core.forwarding import ForwardingRules, Route
from dnsengine.core.options import parse_blocking_mode
from dnsengine.core.resolver import STALE_TTL, LocalRecords, Resolver, Snapshot
from dnsengine.core.rules import Matcher
from dnsengine.core.stats import EngineStats
from dnsengine.models import BlockedDomain, Blocklist, ClientGroup, LocalRecord
from dnsengine.models import Client as ClientRow
from dnsengine.services import config_generation_bump
from gloryhole_site.testing.dnsclient import Client, answers, query_from, rcode
from gloryhole_site.testing.engine import engine_reload
from gloryhole_site.testing.fake_upstream import Behaviour, FakeUpstream

TTL = 100
MAX_AGE = 3600


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Upstream:
    """Answers A 192.0.2.<n> (n: the how-manieth question) with TTL 100; can be down or hold its answers."""

    def __init__(self, max_inflight: int = 64) -> None:
        self.max_inflight = max_inflight
        self.asked: list[str] = []
        self.down = False
        self.full = False  # forward() refuses, as a forwarder at its in-flight limit does
        self.hold = False
        self.held: list = []
        self.cnames: dict[str, str] = {}  # name -> the CNAME target to answer it through

    def forward(self, qname_wire: bytes, qtype: int, qclass: int, do: bool, callback) -> bool:
        if self.full:
            return False
        name = wire.name_to_text(qname_wire)
        self.asked.append(name)
        if self.down:
            callback(None, "")
            return True
        reply = DNSRecord(DNSHeader(qr=1, ra=1, rd=1), q=DNSQuestion(name, qtype))
        owner = name
        if name in self.cnames:
            owner = self.cnames[name]
            reply.add_answer(RR(name, QTYPE.CNAME, rdata=CNAME(owner), ttl=TTL))
        reply.add_answer(RR(owner, QTYPE.A, rdata=A(f"192.0.2.{len(self.asked)}"), ttl=TTL))
        if self.hold:
            self.held.append((callback, reply.pack()))
        else:
            callback(reply.pack(), "fake")
        return True

    def release(self) -> None:
        held, self.held = self.held, []
        for callback, reply in held:
            callback(reply, "fake")


class Transport:
    proto = "udp"

    def __init__(self) -> None:
        self.replies: list[bytes] = []

    def send(self, reply: bytes, addr) -> None:
        self.replies.append(reply)


class Sink:
    def __init__(self) -> None:
        self.entries = []

    def log_async(self, entry) -> bool:
        self.entries.append(entry)
        return True


def make_resolver(*, max_age: float = MAX_AGE, prefetch: int = 0, upstream: Upstream | None = None):
    clock = Clock()
    upstream = upstream or Upstream()
    sink = Sink()
    resolver = Resolver(forwarder=upstream, blocking=parse_blocking_mode("null"), block_ttl=10,
                        cache=ReplyCache(100, stale_max_age=max_age), ttl_policy=TtlPolicy(), stats=EngineStats(),
                        query_logger=sink, clock=clock, prefetch_min_hits=prefetch)  # fmt: skip
    return resolver, clock, upstream, sink


def ask(resolver: Resolver, name: str = "news.example", *, fresh_packet: bool = True) -> dns.message.Message:
    """A query; a fresh packet each time (another ID is not enough: a new EDNS payload) skips the
    rendered replies, so the cache itself answers."""
    transport = Transport()
    ask.n = getattr(ask, "n", 0) + 1
    message = dns.message.make_query(name, "A", use_edns=0, payload=1232 + ask.n % 2000 if fresh_packet else 1232)
    resolver.handle(message.to_wire(), "192.0.2.50", transport, None)
    return dns.message.from_wire(transport.replies[-1])


def ttl_of(reply: dns.message.Message) -> int:
    return reply.answer[0].ttl


# --- the cache ----------------------------------------------------------------------------------


def entry(stored: float, lifetime: float) -> CacheEntry:
    return CacheEntry(rcode=0, ad=False, ancount=0, nscount=0, arcount=0, body=b"", ttl_offsets=(), ttls=(),
                      stored=stored, expires=stored + lifetime, domain="x.example", status="cached")  # fmt: skip


def test_the_cache_keeps_an_expired_entry_for_get_stale_only_up_to_the_max_age():
    cache = ReplyCache(10, stale_max_age=60)
    cache.put(b"k", entry(0.0, 10))

    assert cache.get(b"k", 11.0) is None
    assert cache.get_stale(b"k", 11.0) is not None
    assert cache.get_stale(b"k", 69.0) is not None
    assert cache.get_stale(b"k", 71.0) is None
    assert cache.get(b"k", 71.0) is None
    assert len(cache) == 0


def test_without_serve_stale_the_cache_drops_an_expired_entry_on_lookup():
    cache = ReplyCache(10)
    cache.put(b"k", entry(0.0, 10))

    assert cache.get(b"k", 11.0) is None
    assert len(cache) == 0


def test_an_expired_entry_found_by_a_lookup_is_evicted_before_fresh_ones():
    cache = ReplyCache(2, stale_max_age=60)
    cache.put(b"old", entry(0.0, 10))
    cache.put(b"fresh", entry(5.0, 100))
    cache.get(b"fresh", 11.0)  # "old" is now the least recently used...
    cache.put(b"old", entry(0.0, 10))  # ...but this makes it the most recent again
    assert cache.get(b"old", 11.0) is None  # expired: to the front of the eviction order

    cache.put(b"new", entry(11.0, 100))

    assert cache.get_stale(b"old", 11.0) is None
    assert cache.get(b"fresh", 11.0) is not None


# --- serve-stale --------------------------------------------------------------------------------


def test_an_expired_answer_is_served_with_ttl_30_when_every_upstream_fails_and_is_logged_stale():
    resolver, clock, upstream, sink = make_resolver()
    assert answers(ask(resolver)) == ["A 192.0.2.1"]
    clock.now += TTL + 600
    upstream.down = True

    reply = ask(resolver)

    assert (answers(reply), ttl_of(reply)) == (["A 192.0.2.1"], STALE_TTL)
    assert upstream.asked == ["news.example"] * 2  # the upstreams were tried first
    assert (sink.entries[-1].status, sink.entries[-1].rcode) == ("stale", "NOERROR")
    assert resolver.stats.counters["stale"] == 1
    assert resolver.stats.queries_by_status["stale"] == 1


def test_a_stale_answer_is_not_remembered_so_the_next_query_tries_the_upstreams_again():
    resolver, clock, upstream, _ = make_resolver()
    ask(resolver)
    clock.now += TTL + 1
    upstream.down = True
    ask(resolver, fresh_packet=False)
    upstream.down = False

    assert answers(ask(resolver, fresh_packet=False)) == ["A 192.0.2.3"]


def test_an_expired_answer_is_served_when_the_forwarder_is_full():
    resolver, clock, upstream, sink = make_resolver()
    ask(resolver)
    clock.now += TTL + 1
    upstream.full = True

    assert answers(ask(resolver)) == ["A 192.0.2.1"]
    assert sink.entries[-1].status == "stale"


def test_no_stale_answer_past_the_max_age():
    resolver, clock, upstream, sink = make_resolver()
    ask(resolver)
    clock.now += TTL + MAX_AGE + 1
    upstream.down = True

    assert rcode(ask(resolver)) == "SERVFAIL"
    assert sink.entries[-1].status == "error"
    assert "stale" not in resolver.stats.counters


def test_no_stale_answer_when_serve_stale_is_off():
    resolver, clock, upstream, _ = make_resolver(max_age=0)
    ask(resolver)
    clock.now += TTL + 1
    upstream.down = True

    assert rcode(ask(resolver)) == "SERVFAIL"


def test_an_expired_answer_is_not_served_while_an_upstream_answers():
    resolver, clock, _, sink = make_resolver()
    ask(resolver)
    clock.now += TTL + 1

    assert answers(ask(resolver)) == ["A 192.0.2.2"]
    assert sink.entries[-1].status == "forwarded"


# --- prefetch -----------------------------------------------------------------------------------


def test_a_popular_entry_is_refreshed_before_it_expires_and_the_client_never_misses():
    resolver, clock, upstream, sink = make_resolver(prefetch=3)
    ask(resolver)  # the miss, then three hits
    for _ in range(3):
        clock.now += 10
        ask(resolver)
    assert upstream.asked == ["news.example"]

    clock.now = 1000 + TTL - 5  # within the last 10% of the TTL
    reply = ask(resolver)

    assert answers(reply) == ["A 192.0.2.1"]  # answered from the cache...
    assert upstream.asked == ["news.example"] * 2  # ...and refreshed behind it
    clock.now = 1000 + TTL + 50  # the old entry would have expired
    assert answers(ask(resolver)) == ["A 192.0.2.2"]
    assert upstream.asked == ["news.example"] * 2
    assert [e.status for e in sink.entries] == ["forwarded"] + ["cached"] * 5
    assert resolver.stats.counters["prefetch"] == 1


def test_an_unpopular_entry_is_not_refreshed():
    resolver, clock, upstream, _ = make_resolver(prefetch=3)
    ask(resolver)
    clock.now = 1000 + TTL - 5
    ask(resolver)  # the first hit

    assert upstream.asked == ["news.example"]


def test_an_entry_is_not_refreshed_before_the_last_tenth_of_its_ttl():
    resolver, clock, upstream, _ = make_resolver(prefetch=3)
    ask(resolver)
    for _ in range(5):
        clock.now += 10
        ask(resolver)

    assert upstream.asked == ["news.example"]


def test_prefetch_off_refreshes_nothing():
    resolver, clock, upstream, _ = make_resolver(prefetch=0)
    ask(resolver)
    for _ in range(3):
        ask(resolver)
    clock.now = 1000 + TTL - 5
    ask(resolver)

    assert upstream.asked == ["news.example"]


def test_prefetches_in_flight_stay_within_a_quarter_of_the_forwarders_limit():
    resolver, clock, upstream, sink = make_resolver(prefetch=1, upstream=Upstream(max_inflight=8))
    names = [f"n{i}.example" for i in range(5)]
    for name in names:
        ask(resolver, name)
    upstream.hold = True
    clock.now = 1000 + TTL - 5

    for name in names:
        ask(resolver, name)
        ask(resolver, name)  # asked again while its prefetch is in flight: not a second one

    assert len(upstream.held) == 2
    assert resolver.stats.counters["prefetch_skipped"] == 6  # three names, each asked twice
    upstream.hold = False
    upstream.release()
    assert resolver.stats.counters["prefetch"] == 2
    clock.now = 1000 + TTL + 1
    ask(resolver, names[0])
    assert sink.entries[-1].status == "cached"  # refreshed in time
    ask(resolver, names[4])
    assert sink.entries[-1].status == "forwarded"  # skipped: a miss once it expired


def test_a_failed_prefetch_leaves_the_entry_and_is_counted():
    resolver, clock, upstream, _ = make_resolver(prefetch=1)
    ask(resolver)
    upstream.down = True
    clock.now = 1000 + TTL - 5

    assert answers(ask(resolver)) == ["A 192.0.2.1"]
    assert resolver.stats.counters["prefetch_failed"] == 1
    assert answers(ask(resolver)) == ["A 192.0.2.1"]  # still cached, and no prefetch pending


def test_a_prefetched_answer_is_checked_like_any_forwarded_one():
    resolver, clock, upstream, sink = make_resolver(prefetch=1)
    resolver.apply_snapshot(Snapshot(matcher=Matcher.build(lists=[("trackers", ["eulerian.net"])])))
    ask(resolver)
    upstream.cnames["news.example"] = "news.example.eulerian.net"  # the name is cloaked since
    clock.now = 1000 + TTL - 5
    ask(resolver)  # answered from the cache, and prefetched

    assert answers(ask(resolver)) == ["A 0.0.0.0"]
    assert (sink.entries[-1].status, sink.entries[-1].rule) == (
        "blocked",
        "cname:news.example.eulerian.net list:trackers",
    )


def test_a_name_under_a_forwarding_rule_is_prefetched_from_the_rules_upstreams_only():
    resolver, clock, default, _ = make_resolver(prefetch=1)
    router = Upstream()
    rules = ForwardingRules([Route("lan", router, (), "forward:lan")])
    resolver.apply_snapshot(Snapshot(forwarding=rules))
    ask(resolver, "nas.lan")
    clock.now = 1000 + TTL - 5

    ask(resolver, "nas.lan")  # a hit: no decision made, the rule is found by name

    assert router.asked == ["nas.lan"] * 2
    assert default.asked == []


# --- a running engine whose upstream goes down and comes back --------------------------------------


@pytest.mark.integration
def test_an_engine_serves_stale_while_its_upstream_is_down_and_fresh_once_it_is_back(make_engine, engine_config,
                                                                                      upstream):  # fmt: skip
    sink = Sink()
    engine = make_engine(dataclasses.replace(engine_config, serve_stale_max_age=MAX_AGE), query_logger=sink)
    clock = Clock()
    engine.resolver.clock = clock
    client = Client(engine.port)
    assert answers(client.query("news.example")) == ["A 192.0.2.1"]
    clock.now += 400  # the fake upstream's TTL is 300

    upstream.behaviour.mode = "silent"
    reply = client.query("news.example")
    assert (answers(reply), ttl_of(reply)) == (["A 192.0.2.1"], STALE_TTL)
    upstream.behaviour.mode = "servfail"
    assert answers(client.query("news.example")) == ["A 192.0.2.1"]
    clock.now += MAX_AGE
    assert rcode(client.query("news.example")) == "SERVFAIL"

    upstream.behaviour.mode = "answer"
    upstream.behaviour.address = "192.0.2.9"
    reply = client.query("news.example")
    assert (answers(reply), ttl_of(reply)) == (["A 192.0.2.9"], 300)
    # Logged after the reply is sent, on the I/O thread: wait for the last row.
    deadline = time.monotonic() + 5
    while len(sink.entries) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    # The last upstream's SERVFAIL is passed on as it is once nothing stale is left.
    assert [(e.status, e.rcode) for e in sink.entries] == [
        ("forwarded", "NOERROR"), ("stale", "NOERROR"), ("stale", "NOERROR"), ("forwarded", "SERVFAIL"),
        ("forwarded", "NOERROR"),
    ]  # fmt: skip
    assert engine.stats.counters["stale"] == 2


# --- across configuration reloads: the cache -----------------------------------------------------


def keep_all(key: bytes, domain: str, status: str) -> bytes:
    return key


def test_a_retired_entry_is_never_a_hit_but_is_still_there_for_get_stale():
    cache = ReplyCache(10, stale_max_age=60)
    cache.put(b"k", entry(0.0, 10))

    cache.retire(keep_all, 1.0)

    assert cache.get(b"k", 1.0) is None  # not expired, but decided under the old rules
    assert cache.get_stale(b"k", 1.0) is not None
    assert cache.get_stale(b"k", 71.0) is None
    assert (len(cache), cache.stale_only) == (1, 1)


def test_retire_keeps_what_rekey_says_under_the_key_it_gives():
    cache = ReplyCache(10, stale_max_age=60)
    cache.put(b"\x00\x00\x01a", entry(0.0, 10))
    cache.put(b"\x00\x00\x02b", entry(0.0, 10))

    cache.retire(lambda key, domain, status: b"\x00\x00\x03a" if key.endswith(b"a") else None, 1.0)

    assert cache.get_stale(b"\x00\x00\x03a", 1.0) is not None
    assert cache.get_stale(b"\x00\x00\x01a", 1.0) is None
    assert cache.get_stale(b"\x00\x00\x02b", 1.0) is None
    assert len(cache) == 1
    assert cache.bytes == len(b"\x00\x00\x03a") + 200


def test_retired_entries_count_against_the_bounds_and_are_evicted_before_live_ones():
    cache = ReplyCache(3, stale_max_age=60)
    for key in (b"s1", b"s2"):
        cache.put(key, entry(0.0, 10))
    cache.retire(keep_all, 1.0)
    cache.put(b"live1", entry(1.0, 10))
    cache.put(b"live2", entry(1.0, 10))  # four entries: one must go, a stale-only one

    assert len(cache) == 3
    assert cache.get_stale(b"s1", 1.0) is None
    assert cache.get_stale(b"s2", 1.0) is not None
    cache.put(b"live3", entry(1.0, 10))
    cache.put(b"live4", entry(1.0, 10))
    assert cache.stale_only == 0
    assert cache.get(b"live1", 1.0) is None  # then the least recently used live one
    assert cache.get(b"live4", 1.0) is not None


def test_a_fresh_answer_replaces_the_retired_one():
    cache = ReplyCache(10, stale_max_age=60)
    cache.put(b"k", entry(0.0, 10))
    cache.retire(keep_all, 1.0)

    cache.put(b"k", entry(2.0, 10))

    assert (len(cache), cache.stale_only) == (1, 0)
    assert cache.get(b"k", 3.0).stored == 2.0


# --- across configuration reloads: the resolver --------------------------------------------------


def reload(resolver, **changes) -> None:
    resolver.apply_snapshot(dataclasses.replace(resolver.snapshot, generation=resolver.snapshot.generation + 1,
                                                **changes))  # fmt: skip


def unrelated_block() -> Matcher:
    return Matcher.build(lists=[("ads", ["ads.example"])])


def test_an_answer_cached_before_a_reload_is_served_stale_after_it():
    resolver, clock, upstream, sink = make_resolver(max_age=MAX_AGE)
    ask(resolver)
    reload(resolver, matcher=unrelated_block())
    clock.now += TTL + 600
    upstream.down = True

    reply = ask(resolver)

    assert (answers(reply), ttl_of(reply)) == (["A 192.0.2.1"], STALE_TTL)
    assert sink.entries[-1].status == "stale"


def test_after_a_reload_an_answer_from_before_it_is_never_a_fresh_hit():
    resolver, _, _, sink = make_resolver(max_age=MAX_AGE)
    ask(resolver)
    reload(resolver, matcher=unrelated_block())

    assert answers(ask(resolver)) == ["A 192.0.2.2"]  # not expired, asked again all the same
    assert sink.entries[-1].status == "forwarded"


def test_a_name_the_reload_blocked_is_blocked_never_served_stale():
    resolver, clock, upstream, sink = make_resolver(max_age=MAX_AGE)
    ask(resolver, "ads.example")
    reload(resolver, matcher=unrelated_block())
    upstream.down = True

    assert answers(ask(resolver, "ads.example")) == ["A 0.0.0.0"]
    assert sink.entries[-1].status == "blocked"
    clock.now += TTL + 1
    assert answers(ask(resolver, "ads.example")) == ["A 0.0.0.0"]
    assert "stale" not in resolver.stats.counters


def test_a_name_that_became_a_local_record_gets_the_local_answer():
    resolver, clock, upstream, sink = make_resolver(max_age=MAX_AGE)
    ask(resolver, "nas.example")
    reload(resolver, local=LocalRecords.build([("nas.example", "A", "192.168.1.5", 60)]))
    upstream.down = True

    assert answers(ask(resolver, "nas.example")) == ["A 192.168.1.5"]
    assert sink.entries[-1].status == "local"
    clock.now += TTL + 1
    assert answers(ask(resolver, "nas.example")) == ["A 192.168.1.5"]
    assert sink.entries[-1].status == "local"


def test_a_local_answer_is_not_kept_across_a_reload():
    resolver, clock, upstream, _ = make_resolver(max_age=MAX_AGE)
    reload(resolver, local=LocalRecords.build([("nas.example", "A", "192.168.1.5", 60)]))
    ask(resolver, "nas.example")
    reload(resolver, local=LocalRecords())  # the record is gone: the name is forwarded now
    clock.now += 61
    upstream.down = True

    assert rcode(ask(resolver, "nas.example")) == "SERVFAIL"
    assert upstream.asked == ["nas.example"]


def test_a_stale_answer_whose_cname_target_the_reload_blocked_is_blocked():
    resolver, clock, upstream, sink = make_resolver(max_age=MAX_AGE)
    upstream.cnames["news.example"] = "news.example.eulerian.net"
    ask(resolver)
    reload(resolver, matcher=Matcher.build(lists=[("trackers", ["eulerian.net"])]))
    clock.now += TTL + 1
    upstream.down = True

    assert answers(ask(resolver)) == ["A 0.0.0.0"]
    assert (sink.entries[-1].status, sink.entries[-1].rule) == (
        "blocked",
        "cname:news.example.eulerian.net list:trackers",
    )


def test_an_answer_blocked_by_its_cname_target_is_not_kept_across_a_reload():
    resolver, clock, upstream, _ = make_resolver(max_age=MAX_AGE)
    upstream.cnames["news.example"] = "news.example.eulerian.net"
    reload(resolver, matcher=Matcher.build(lists=[("trackers", ["eulerian.net"])]))
    assert answers(ask(resolver)) == ["A 0.0.0.0"]
    reload(resolver, matcher=Matcher())  # the list is gone: the old verdict must not outlive it
    clock.now += TTL + 1
    upstream.down = True

    assert rcode(ask(resolver)) == "SERVFAIL"


def test_an_answer_is_dropped_when_a_forwarding_rule_now_sends_its_name_elsewhere():
    resolver, clock, default, _ = make_resolver(max_age=MAX_AGE)
    router = Upstream()
    ask(resolver, "nas.lan")
    ask(resolver, "news.example")
    reload(resolver, forwarding=ForwardingRules([Route("lan", router, (), "forward:lan")]))
    clock.now += TTL + 1
    default.down = router.down = True

    assert rcode(ask(resolver, "nas.lan")) == "SERVFAIL"  # the public upstream's answer is not the router's
    assert router.asked == ["nas.lan"]
    assert answers(ask(resolver, "news.example")) == ["A 192.0.2.2"]  # its upstreams did not change


def test_without_serve_stale_a_reload_keeps_nothing():
    resolver, _, _, _ = make_resolver(max_age=0)
    ask(resolver)
    reload(resolver, matcher=unrelated_block())

    assert len(resolver.cache) == 0


# --- across configuration reloads: running engines reloaded from the database --------------------

CLOAKED = "metrics.shop.example"
TRACKER = "shop.example.eulerian.net"


def block(domain: str, name: str = "ads", groups=()) -> None:
    blocklist, _ = Blocklist.objects.get_or_create(name=name)
    BlockedDomain.objects.create(blocklist=blocklist, domain=domain)
    if groups:
        blocklist.groups.set(groups)
    config_generation_bump()


def wait_for_rows(sink: Sink, count: int) -> None:
    # Logged after the reply is sent, on the I/O thread.
    deadline = time.monotonic() + 5
    while len(sink.entries) < count and time.monotonic() < deadline:
        time.sleep(0.01)


def stale_engine(make_engine, config, sink=None):
    """An engine that reloads only when the test says (engine_reload): a reload by its own watcher
    while a query waits on the upstream would, rightly, make that query's answer SERVFAIL."""
    config = dataclasses.replace(config, serve_stale_max_age=MAX_AGE, reload_interval=3600)
    engine = make_engine(config, query_logger=sink)
    clock = Clock()
    engine.resolver.clock = clock
    engine_reload(engine)
    return engine, clock


@pytest.mark.integration
def test_an_engine_serves_stale_after_a_reload_but_never_for_a_name_it_now_blocks_or_answers_locally(
    make_engine, engine_config, upstream
):
    sink = Sink()
    engine, clock = stale_engine(make_engine, engine_config, sink)
    for name in ("news.example", "ads.example", "nas.example"):
        assert answers(query_from("127.0.0.1", engine.port, name)) == ["A 192.0.2.1"]
    block("ads.example")
    LocalRecord.objects.create(name="nas.example", type="A", value="192.168.1.5")
    config_generation_bump()
    engine_reload(engine)
    upstream.behaviour.mode = "silent"
    # Before and after their old answers expire (the fake upstream's TTL is 300).
    for _ in range(2):
        assert answers(query_from("127.0.0.1", engine.port, "ads.example")) == ["A 0.0.0.0"]
        assert answers(query_from("127.0.0.1", engine.port, "nas.example")) == ["A 192.168.1.5"]
        clock.now += 400

    reply = query_from("127.0.0.1", engine.port, "news.example")
    assert (answers(reply), ttl_of(reply)) == (["A 192.0.2.1"], STALE_TTL)
    wait_for_rows(sink, 8)
    assert [(e.domain, e.status) for e in sink.entries[3:]] == [
        ("ads.example", "blocked"), ("nas.example", "local"), ("ads.example", "blocked"), ("nas.example", "local"),
        ("news.example", "stale"),
    ]  # fmt: skip
    assert engine.stats.counters["stale"] == 1


@pytest.mark.integration
def test_a_stale_answer_after_a_reload_respects_the_asking_groups_cname_rules(make_engine, engine_config):
    cloaking = FakeUpstream("127.0.0.1", 0, Behaviour(cnames={CLOAKED: (TRACKER,)})).start()
    try:
        from dnsengine.core.options import parse_upstreams

        kids = ClientGroup.objects.create(name="kids")
        ClientRow.objects.create(name="tablet", ip="127.0.0.2", group=kids)
        config_generation_bump()
        config = dataclasses.replace(engine_config, upstreams=parse_upstreams(cloaking.address))
        sink = Sink()
        engine, clock = stale_engine(make_engine, config, sink)
        assert answers(query_from("127.0.0.3", engine.port, CLOAKED)) == ["A 192.0.2.1", f"CNAME {TRACKER}."]
        block(TRACKER, "trackers", groups=[kids])  # from now on, the kids' list blocks the target
        engine_reload(engine)
        cloaking.behaviour.mode = "silent"
        clock.now += 400

        assert answers(query_from("127.0.0.2", engine.port, CLOAKED)) == ["A 0.0.0.0"]
        assert answers(query_from("127.0.0.3", engine.port, CLOAKED)) == ["A 192.0.2.1", f"CNAME {TRACKER}."]
        wait_for_rows(sink, 3)
        assert [(e.client, e.status, e.rule) for e in sink.entries[1:]] == [
            ("127.0.0.2", "blocked", f"cname:{TRACKER} list:trackers (group kids)"),
            ("127.0.0.3", "stale", ""),
        ]
    finally:
        cloaking.stop()


@pytest.mark.integration
def test_stale_answers_keep_to_their_groups_upstreams_when_a_reload_renumbers_them(make_engine, engine_config):
    """Cache keys carry a per-forwarder prefix numbered per snapshot: a new group "adults" with its
    own upstreams, sorted before "kids", takes the number the kids' upstreams had."""
    kids_upstream = FakeUpstream("127.0.0.1", 0, Behaviour(address="192.0.2.22")).start()
    adults_upstream = FakeUpstream("127.0.0.1", 0, Behaviour(address="192.0.2.33")).start()
    try:
        kids = ClientGroup.objects.create(name="kids", upstreams=kids_upstream.address)
        ClientRow.objects.create(name="tablet", ip="127.0.0.2", group=kids)
        config_generation_bump()
        engine, clock = stale_engine(make_engine, engine_config)
        assert answers(query_from("127.0.0.2", engine.port, "news.example")) == ["A 192.0.2.22"]
        adults = ClientGroup.objects.create(name="adults", upstreams=adults_upstream.address)
        ClientRow.objects.create(name="laptop", ip="127.0.0.4", group=adults)
        config_generation_bump()
        engine_reload(engine)
        kids_upstream.behaviour.mode = adults_upstream.behaviour.mode = "silent"
        clock.now += 400

        # The adults' upstreams never answered this name: nothing stale for them.
        assert rcode(query_from("127.0.0.4", engine.port, "news.example")) == "SERVFAIL"
        assert answers(query_from("127.0.0.2", engine.port, "news.example")) == ["A 192.0.2.22"]
    finally:
        kids_upstream.stop()
        adults_upstream.stop()
