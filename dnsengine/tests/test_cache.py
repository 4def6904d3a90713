"""The reply cache: entries served from bytes, TTLs aged by the clock the caller passes."""

from __future__ import annotations

import dataclasses
import gc
import struct

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest
from dnslib import CNAME, EDNS0, QTYPE, RCODE, RR, SOA, A, DNSRecord

from dnsengine.core import wire
from dnsengine.core.cache import CacheEntry, ReplyCache, TtlPolicy, entry_from_reply
from dnsengine.core.wire import ScannedReply

T0 = 1000.0


def client_query(name="www.example.com", rdtype="A", qid=0xBEEF, **make_kwargs) -> wire.Query:
    return wire.parse_query(dns.message.make_query(name, rdtype, id=qid, **make_kwargs).to_wire())


def cname_chain_reply(*, ad: bool = False) -> bytes:
    reply = DNSRecord.question("www.example.com", "A").reply()
    reply.header.ad = int(ad)
    reply.add_answer(RR("www.example.com", QTYPE.CNAME, rdata=CNAME("cdn.example.net"), ttl=300))
    reply.add_answer(RR("cdn.example.net", QTYPE.CNAME, rdata=CNAME("edge.example.net"), ttl=60))
    reply.add_answer(RR("edge.example.net", QTYPE.A, rdata=A("192.0.2.1"), ttl=120))
    reply.add_ar(EDNS0(udp_len=1232))
    return bytes(reply.pack())


def many_a_reply(count: int) -> bytes:
    reply = DNSRecord.question("www.example.com", "A").reply()
    for i in range(count):
        reply.add_answer(RR("www.example.com", QTYPE.A, rdata=A(f"192.0.2.{i + 1}"), ttl=300))
    return bytes(reply.pack())


def nxdomain_reply(soa_ttl: int = 900, minimum: int = 300, answers: tuple[RR, ...] = ()) -> bytes:
    reply = DNSRecord.question("www.example.com", "A").reply()
    reply.header.rcode = RCODE.NXDOMAIN
    for answer in answers:
        reply.add_answer(answer)
    soa = SOA("ns1.example.com", "hostmaster.example.com", (2024010101, 3600, 600, 86400, minimum))
    reply.add_auth(RR("example.com", QTYPE.SOA, rdata=soa, ttl=soa_ttl))
    return bytes(reply.pack())


def rcode_reply(rcode: int) -> bytes:
    reply = DNSRecord.question("www.example.com", "A").reply()
    reply.header.rcode = rcode
    return bytes(reply.pack())


def scan(data: bytes) -> ScannedReply:
    return wire.scan_reply(data, wire.question_end(data))


def entry_for(data: bytes, *, now: float = T0, lifetime: int = 300) -> CacheEntry:
    return entry_from_reply(scan(data), now=now, lifetime=lifetime, domain="www.example.com", status="cached")


def wire_ttls(raw: bytes, query: wire.Query, entry: CacheEntry) -> list[int]:
    """The TTL fields exactly as written (dnspython would read a top-bit TTL as 0)."""
    start = 12 + len(query.question)
    return [struct.unpack_from("!I", raw, start + offset)[0] for offset in entry.ttl_offsets]


def answer_ttls(raw: bytes) -> list[int]:
    message = dns.message.from_wire(raw)
    return [rrset.ttl for rrset in message.answer]


# -- render ------------------------------------------------------------------------------


def test_it_renders_the_client_id_and_question_case():
    entry = entry_for(cname_chain_reply())
    query = client_query("wWw.ExAmPlE.cOm", qid=0x0A0B)

    message = dns.message.from_wire(entry.render(query, T0, 65535))

    assert message.id == 0x0A0B
    assert str(message.question[0].name) == "wWw.ExAmPlE.cOm."
    assert message.question[0].rdtype == dns.rdatatype.A
    assert [str(rrset.name) for rrset in message.answer] == [
        "wWw.ExAmPlE.cOm.",
        "cdn.example.net.",
        "edge.example.net.",
    ]
    assert [str(rrset[0]) for rrset in message.answer] == ["cdn.example.net.", "edge.example.net.", "192.0.2.1"]


def test_it_renders_the_reply_flags_from_the_entry_and_the_client():
    entry = entry_for(nxdomain_reply())
    query = client_query()
    assert query.flags == wire.FLAG_RD

    raw = entry.render(query, T0, 65535)

    assert struct.unpack("!H", raw[2:4])[0] == wire.FLAG_QR | wire.FLAG_RA | wire.FLAG_RD | wire.NXDOMAIN


def test_it_copies_the_cd_bit_and_clears_rd_when_the_client_did():
    entry = entry_for(cname_chain_reply())
    data = bytearray(dns.message.make_query("www.example.com", "A").to_wire())
    struct.pack_into("!H", data, 2, wire.FLAG_CD)

    raw = entry.render(wire.parse_query(bytes(data)), T0, 65535)

    assert struct.unpack("!H", raw[2:4])[0] == wire.FLAG_QR | wire.FLAG_RA | wire.FLAG_CD


def test_it_sets_ad_only_for_a_client_that_asked_for_dnssec_or_ad():
    entry = entry_for(cname_chain_reply(ad=True))
    assert entry.ad is True

    plain = dns.message.from_wire(entry.render(client_query(), T0, 65535))
    with_do = dns.message.from_wire(entry.render(client_query(want_dnssec=True), T0, 65535))

    assert not plain.flags & dns.flags.AD
    assert with_do.flags & dns.flags.AD


def test_it_never_sets_ad_for_an_entry_that_was_not_authenticated():
    entry = entry_for(cname_chain_reply(ad=False))

    message = dns.message.from_wire(entry.render(client_query(want_dnssec=True), T0, 65535))

    assert not message.flags & dns.flags.AD


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (T0, [300, 60, 120]),
        (T0 + 0.999, [300, 60, 120]),
        (T0 + 1.0, [299, 59, 119]),
        (T0 + 10.9, [290, 50, 110]),
        (T0 + 60, [240, 0, 60]),
        (T0 + 119.5, [181, 0, 1]),
        (T0 + 5000, [0, 0, 0]),
    ],
)
def test_it_ages_ttls_by_whole_seconds_and_never_below_zero(now, expected):
    entry = entry_for(cname_chain_reply())

    assert answer_ttls(entry.render(client_query(), now, 65535)) == expected


def test_it_leaves_the_stored_body_untouched_when_ageing():
    entry = entry_for(cname_chain_reply())
    body = entry.body

    entry.render(client_query(), T0 + 100, 65535)

    assert entry.body == body
    assert answer_ttls(entry.render(client_query(), T0, 65535)) == [300, 60, 120]


def test_it_ages_the_soa_of_a_negative_answer():
    entry = entry_for(nxdomain_reply(soa_ttl=900))

    message = dns.message.from_wire(entry.render(client_query(), T0 + 30, 65535))

    assert message.rcode() == dns.rcode.NXDOMAIN
    assert [rrset.ttl for rrset in message.authority] == [870]


def test_it_serves_a_ttl_with_the_top_bit_set_as_zero_from_the_first_reply():
    question = struct.pack("!HHHHHH", 1, wire.FLAG_QR, 1, 1, 0, 0) + b"\x03www\x07example\x03com\x00\x00\x01\x00\x01"
    answer = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 0x80000010, 4) + b"\xc0\x00\x02\x01"
    entry = entry_for(question + answer)
    query = client_query()

    assert wire_ttls(entry.render(query, T0, 65535), query, entry) == [0]
    assert wire_ttls(entry.render(query, T0 + 1, 65535), query, entry) == [0]


def test_it_serves_the_entry_ttls_before_a_whole_second_has_passed():
    # The resolver clamps the TTLs it caches (GLORYHOLE_CACHE_MIN/MAX_TTL) into
    # ScannedReply.ttls; a reply rendered at once must carry the clamped values.
    scanned = scan(cname_chain_reply())
    scanned.ttls = tuple(TtlPolicy(min_ttl=100, max_ttl=200).clamp(t) for t in scanned.ttls)
    entry = entry_from_reply(scanned, now=T0, lifetime=100, domain="www.example.com", status="cached")

    assert answer_ttls(entry.render(client_query(), T0, 65535)) == [200, 100, 120]
    assert answer_ttls(entry.render(client_query(), T0 + 1, 65535)) == [199, 99, 119]


def test_it_echoes_an_opt_record_only_to_an_edns_client():
    entry = entry_for(cname_chain_reply())

    plain = dns.message.from_wire(entry.render(client_query(), T0, 65535))
    edns = dns.message.from_wire(entry.render(client_query(use_edns=0, payload=1232), T0, 65535))
    dnssec = dns.message.from_wire(entry.render(client_query(want_dnssec=True), T0, 65535))

    assert plain.edns == -1
    assert (edns.edns, edns.payload, edns.ednsflags & dns.flags.DO) == (0, wire.MAX_UDP_PAYLOAD, 0)
    assert (dnssec.edns, dnssec.ednsflags & dns.flags.DO) == (0, dns.flags.DO)


def test_it_counts_the_opt_record_in_arcount_only_when_it_sends_one():
    entry = entry_for(cname_chain_reply())

    plain = entry.render(client_query(), T0, 65535)
    edns = entry.render(client_query(use_edns=0), T0, 65535)

    assert struct.unpack("!HHHH", plain[4:12]) == (1, 3, 0, 0)
    assert struct.unpack("!HHHH", edns[4:12]) == (1, 3, 0, 1)
    assert edns[-11:] == wire.opt_record(wire.MAX_UDP_PAYLOAD)


def test_it_truncates_a_reply_longer_than_the_limit_to_header_and_question():
    entry = entry_for(many_a_reply(40))
    query = client_query(qid=7)

    raw = entry.render(query, T0, 512)
    message = dns.message.from_wire(raw)

    assert len(entry.render(query, T0, 65535)) > 512
    assert message.id == 7
    assert message.flags & dns.flags.TC
    assert message.answer == []
    assert str(message.question[0].name) == "www.example.com."
    assert raw == struct.pack("!HHHHHH", 7, struct.unpack("!H", raw[2:4])[0], 1, 0, 0, 0) + query.question


def test_it_keeps_the_opt_record_in_a_truncated_reply():
    entry = entry_for(many_a_reply(40))

    message = dns.message.from_wire(entry.render(client_query(use_edns=0, payload=512), T0, 512))

    assert message.flags & dns.flags.TC
    assert message.answer == []
    assert message.edns == 0


def test_it_truncates_only_past_the_limit():
    entry = entry_for(many_a_reply(3))
    query = client_query()
    size = len(entry.render(query, T0, 65535))

    assert len(dns.message.from_wire(entry.render(query, T0, size)).answer[0]) == 3
    assert dns.message.from_wire(entry.render(query, T0, size - 1)).flags & dns.flags.TC


# -- TtlPolicy.lifetime --------------------------------------------------------------------


def test_it_caches_a_positive_answer_for_its_smallest_answer_ttl():
    assert TtlPolicy().lifetime(scan(cname_chain_reply())) == 60


def test_it_clamps_a_positive_lifetime_between_the_min_and_max():
    scanned = scan(cname_chain_reply())

    assert TtlPolicy(min_ttl=90).lifetime(scanned) == 90
    assert TtlPolicy(max_ttl=30).lifetime(scanned) == 30
    assert TtlPolicy(min_ttl=10, max_ttl=100).lifetime(scanned) == 60


def test_it_does_not_cache_an_answer_with_ttl_zero_unless_a_minimum_says_so():
    reply = DNSRecord.question("www.example.com", "A").reply()
    reply.add_answer(RR("www.example.com", QTYPE.A, rdata=A("192.0.2.1"), ttl=0))
    scanned = scan(reply.pack())

    assert TtlPolicy().lifetime(scanned) == 0
    assert TtlPolicy(min_ttl=5).lifetime(scanned) == 5


def test_it_caches_nxdomain_for_the_smaller_of_soa_ttl_and_minimum():
    assert TtlPolicy().lifetime(scan(nxdomain_reply(soa_ttl=900, minimum=300))) == 300
    assert TtlPolicy().lifetime(scan(nxdomain_reply(soa_ttl=120, minimum=300))) == 120


def test_it_caps_a_negative_lifetime_at_negative_max():
    scanned = scan(nxdomain_reply(soa_ttl=86400, minimum=86400))

    assert TtlPolicy(negative_max_ttl=3600).lifetime(scanned) == 3600
    assert TtlPolicy(negative_max_ttl=3600, max_ttl=600).lifetime(scanned) == 600


def test_it_caches_nodata_like_nxdomain():
    reply = DNSRecord.question("www.example.com", "AAAA").reply()
    soa = SOA("ns1.example.com", "hostmaster.example.com", (1, 3600, 600, 86400, 45))
    reply.add_auth(RR("example.com", QTYPE.SOA, rdata=soa, ttl=3600))

    assert TtlPolicy().lifetime(scan(reply.pack())) == 45


def test_it_uses_the_negative_ttl_for_an_nxdomain_at_the_end_of_a_cname():
    cname = RR("www.example.com", QTYPE.CNAME, rdata=CNAME("gone.example.net"), ttl=3000)

    assert TtlPolicy().lifetime(scan(nxdomain_reply(soa_ttl=900, minimum=30, answers=(cname,)))) == 30


def test_it_does_not_cache_a_negative_answer_without_an_soa():
    assert TtlPolicy().lifetime(scan(rcode_reply(RCODE.NXDOMAIN))) == 0
    assert TtlPolicy().lifetime(scan(rcode_reply(RCODE.NOERROR))) == 0
    assert TtlPolicy(min_ttl=60).lifetime(scan(rcode_reply(RCODE.NXDOMAIN))) == 0


@pytest.mark.parametrize("rcode", [RCODE.SERVFAIL, RCODE.REFUSED, RCODE.FORMERR, RCODE.NOTIMP])
def test_it_does_not_cache_an_error(rcode):
    reply = DNSRecord.question("www.example.com", "A").reply()
    reply.header.rcode = rcode
    soa = SOA("ns1.example.com", "hostmaster.example.com", (1, 3600, 600, 86400, 300))
    reply.add_auth(RR("example.com", QTYPE.SOA, rdata=soa, ttl=300))

    assert TtlPolicy(min_ttl=60).lifetime(scan(reply.pack())) == 0


def test_it_does_not_cache_a_truncated_reply():
    data = bytearray(many_a_reply(2))
    data[2] |= wire.FLAG_TC >> 8

    assert TtlPolicy(min_ttl=60).lifetime(scan(bytes(data))) == 0


# -- entry_from_reply ------------------------------------------------------------------


def test_it_makes_an_entry_that_expires_after_its_lifetime():
    scanned = scan(cname_chain_reply(ad=True))

    entry = entry_from_reply(scanned, now=T0, lifetime=60, domain="www.example.com", status="blocked", rule="list:x")

    assert (entry.rcode, entry.ad, entry.ancount, entry.nscount, entry.arcount) == (0, True, 3, 0, 0)
    assert (entry.body, entry.ttl_offsets, entry.ttls) == (scanned.body, scanned.ttl_offsets, (300, 60, 120))
    assert (entry.stored, entry.expires) == (T0, T0 + 60)
    assert (entry.domain, entry.status, entry.rule) == ("www.example.com", "blocked", "list:x")


# -- ReplyCache --------------------------------------------------------------------------


def entry(lifetime: int = 60, now: float = T0) -> CacheEntry:
    return entry_for(cname_chain_reply(), now=now, lifetime=lifetime)


def test_it_serves_an_entry_until_it_expires():
    cache = ReplyCache(10)
    stored = entry(lifetime=60)
    cache.put(b"k", stored)

    assert cache.get(b"k", T0) == stored
    assert cache.get(b"k", T0 + 59.999) == stored
    assert cache.get(b"k", T0 + 60) is None
    assert len(cache) == 0
    assert (cache.hits, cache.misses) == (2, 1)


def test_a_full_cache_is_invisible_to_the_garbage_collector():
    # Tracked entries made every full collection walk the whole cache: a DNS stall.
    cache = ReplyCache(1000)
    for i in range(1000):
        cache.put(str(i).encode(), entry())
    # A collection untracks tuples holding only untracked values; an entry's inner
    # tuples (TTL offsets, TTLs) may be untracked after their entry was looked at.
    gc.collect()
    gc.collect()

    assert sum(gc.is_tracked(fields) for fields in cache._entries.values()) == 0
    assert cache.get(b"7", T0) == entry()


def test_it_counts_a_miss_for_an_unknown_key():
    cache = ReplyCache(10)

    assert cache.get(b"nope", T0) is None
    assert (cache.hits, cache.misses) == (0, 1)


def test_it_finds_an_entry_whatever_the_case_of_the_question():
    cache = ReplyCache(10)
    stored = entry()
    upper = wire.parse_query(dns.message.make_query("EXAMPLE.com", "A").to_wire())
    lower = wire.parse_query(dns.message.make_query("example.COM", "A").to_wire())
    cache.put(upper.key, stored)

    assert cache.get(lower.key, T0) == stored


def test_it_keeps_dnssec_and_plain_answers_apart():
    cache = ReplyCache(10)
    cache.put(client_query(use_edns=0).key, entry())

    assert cache.get(client_query(want_dnssec=True).key, T0) is None
    assert cache.get(client_query().key, T0) is not None


def test_it_evicts_the_least_recently_used_entry():
    cache = ReplyCache(2)
    a, b, c = (dataclasses.replace(entry(), domain=f"{n}.example") for n in "abc")
    cache.put(b"a", a)
    cache.put(b"b", b)
    assert cache.get(b"a", T0) == a  # a is now the most recently used

    cache.put(b"c", c)

    assert len(cache) == 2
    assert cache.evictions == 1
    assert cache.get(b"b", T0) is None
    assert cache.get(b"a", T0) == a
    assert cache.get(b"c", T0) == c


def test_it_never_holds_more_than_max_size():
    cache = ReplyCache(3)
    for i in range(10):
        cache.put(bytes([i]), entry())

    assert len(cache) == 3
    assert cache.evictions == 7
    assert [cache.get(bytes([i]), T0) is not None for i in range(10)] == [False] * 7 + [True] * 3


def test_it_replaces_an_entry_under_the_same_key_without_evicting():
    cache = ReplyCache(2)
    old, new, other = (dataclasses.replace(entry(), domain=f"{n}.example") for n in ("old", "new", "other"))
    cache.put(b"a", old)
    cache.put(b"b", other)

    cache.put(b"a", new)
    cache.put(b"c", entry())

    assert cache.get(b"a", T0) == new
    assert cache.get(b"b", T0) is None
    assert cache.evictions == 1


def test_it_stores_nothing_when_its_size_is_zero():
    cache = ReplyCache(0)
    cache.put(b"k", entry())

    assert len(cache) == 0
    assert cache.get(b"k", T0) is None


@pytest.mark.parametrize("data", [rcode_reply(RCODE.SERVFAIL), rcode_reply(RCODE.REFUSED), rcode_reply(RCODE.NXDOMAIN)])
def test_it_does_not_store_an_entry_with_lifetime_zero(data):
    cache = ReplyCache(10)
    scanned = scan(data)
    lifetime = TtlPolicy().lifetime(scanned)
    assert lifetime == 0

    cache.put(b"k", entry_from_reply(scanned, now=T0, lifetime=lifetime, domain="x", status="cached"))

    assert len(cache) == 0


def test_it_does_not_store_a_truncated_reply():
    data = bytearray(many_a_reply(2))
    data[2] |= wire.FLAG_TC >> 8
    scanned = scan(bytes(data))
    cache = ReplyCache(10)

    cache.put(b"k", entry_from_reply(scanned, now=T0, lifetime=TtlPolicy().lifetime(scanned), domain="x", status="c"))

    assert len(cache) == 0


def test_it_caches_an_nxdomain_for_its_negative_lifetime():
    cache = ReplyCache(10)
    scanned = scan(nxdomain_reply(soa_ttl=900, minimum=300))
    lifetime = TtlPolicy(negative_max_ttl=120).lifetime(scanned)
    cache.put(b"k", entry_from_reply(scanned, now=T0, lifetime=lifetime, domain="x", status="cached"))

    assert cache.get(b"k", T0 + 119) is not None
    assert cache.get(b"k", T0 + 120) is None


def test_it_forgets_everything_on_clear():
    cache = ReplyCache(10)
    cache.put(b"a", entry())
    cache.put(b"b", entry())

    cache.clear()

    assert len(cache) == 0
    assert cache.get(b"a", T0) is None


def test_it_stays_within_its_memory_budget_however_few_the_entries():
    big = entry_for(many_a_reply(200), now=T0, lifetime=60)  # ~3.2 KB of records
    cache = ReplyCache(1000, max_bytes=40_000)

    for i in range(100):
        cache.put(f"k{i}".encode(), big)

    assert cache.bytes <= 40_000
    assert 5 <= len(cache) <= 12
    assert cache.get(b"k99", T0) is not None and cache.get(b"k0", T0) is None  # the oldest went first
    assert cache.evictions == 100 - len(cache)


def test_it_does_not_cache_an_answer_bigger_than_an_eighth_of_its_budget():
    cache = ReplyCache(1000, max_bytes=16_000)

    cache.put(b"big", entry_for(many_a_reply(200), now=T0, lifetime=60))

    assert len(cache) == 0 and cache.bytes == 0 and cache.too_big == 1


def test_its_byte_count_follows_replacements_expiry_and_clear():
    cache = ReplyCache(10, max_bytes=1 << 20)
    cache.put(b"a", entry(lifetime=10))
    one = cache.bytes
    cache.put(b"a", entry(lifetime=10))
    assert cache.bytes == one
    cache.put(b"b", entry(lifetime=10))
    assert cache.bytes == 2 * one
    assert cache.get(b"b", T0 + 11) is None
    assert cache.bytes == one
    cache.clear()
    assert cache.bytes == 0
