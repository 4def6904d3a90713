"""The lean wire reader: every packet is hostile until each bound has been checked."""

from __future__ import annotations

import struct

import dns.edns
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import pytest
from dnslib import CNAME, EDNS0, QTYPE, RCODE, RR, SOA, A, DNSRecord

from dnsengine.core import wire
from dnsengine.core.wire import WireError

EXAMPLE_COM = b"\x07example\x03com\x00"
A_IN = b"\x00\x01\x00\x01"


def header(qid=0x1234, flags=wire.FLAG_RD, qd=1, an=0, ns=0, ar=0) -> bytes:
    return struct.pack("!HHHHHH", qid, flags, qd, an, ns, ar)


def opt(payload=1232, ext_rcode=0, version=0, do=False, rdata=b"", owner=b"\x00") -> bytes:
    ttl = (ext_rcode << 24) | (version << 16) | (wire.EDNS_DO if do else 0)
    return owner + struct.pack("!HHIH", wire.TYPE_OPT, payload, ttl, len(rdata)) + rdata


def rr(owner: bytes, rtype: int, ttl: int, rdata: bytes, rclass: int = wire.CLASS_IN) -> bytes:
    return owner + struct.pack("!HHIH", rtype, rclass, ttl, len(rdata)) + rdata


def query_bytes(name=EXAMPLE_COM, ar=0, additional=b"", **header_fields) -> bytes:
    return header(ar=ar, **header_fields) + name + A_IN + additional


def soa_rdata(minimum: int) -> bytes:
    # Root names for MNAME and RNAME: the shortest SOA RDATA there is (22 bytes).
    return b"\x00\x00" + struct.pack("!IIIII", 1, 3600, 600, 86400, minimum)


def refusal(data: bytes) -> int | None:
    with pytest.raises(WireError) as info:
        wire.parse_query(data)
    return info.value.rcode


# -- parse_query: well-formed queries ---------------------------------------------------


def test_it_reads_a_plain_query():
    data = DNSRecord.question("example.com", "AAAA").pack()

    query = wire.parse_query(data)

    assert query.qid == struct.unpack("!H", data[:2])[0]
    assert query.flags == wire.FLAG_RD
    assert query.qname_wire == EXAMPLE_COM
    assert query.qtype == wire.TYPE_AAAA
    assert query.qclass == wire.CLASS_IN
    assert query.question == EXAMPLE_COM + b"\x00\x1c\x00\x01"
    assert query.key == EXAMPLE_COM + b"\x00\x1c\x00\x01\x00"
    assert query.name == "example.com"
    assert (query.edns, query.payload, query.do, query.edns_version) == (False, 512, False, 0)


def test_it_reads_edns_payload_and_do_bit():
    data = dns.message.make_query("example.com", "A", use_edns=0, payload=1232, want_dnssec=True).to_wire()

    query = wire.parse_query(data)

    assert (query.edns, query.payload, query.do, query.edns_version) == (True, 1232, True, 0)
    assert query.key == EXAMPLE_COM + A_IN + b"\x01"


def test_it_reads_edns_through_dnslib_options():
    record = DNSRecord.question("example.com", "A")
    record.add_ar(EDNS0(udp_len=1400, flags="do"))

    query = wire.parse_query(record.pack())

    assert (query.edns, query.payload, query.do) == (True, 1400, True)


def test_it_reads_an_opt_record_carrying_options():
    cookie = dns.edns.GenericOption(dns.edns.COOKIE, b"\x01" * 8)
    data = dns.message.make_query("example.com", "A", use_edns=0, payload=1232, options=[cookie]).to_wire()

    query = wire.parse_query(data)

    assert (query.edns, query.payload, query.do) == (True, 1232, False)


@pytest.mark.parametrize(("offered", "promised"), [(100, 512), (511, 512), (512, 512), (4096, 4096), (65535, 4096)])
def test_it_bounds_the_payload_the_client_offers(offered, promised):
    data = query_bytes(ar=1, additional=opt(payload=offered))

    assert wire.parse_query(data).payload == promised


def test_it_gives_the_same_key_whatever_the_case_of_the_name():
    upper = wire.parse_query(DNSRecord.question("EXAMPLE.com", "A").pack())
    lower = wire.parse_query(DNSRecord.question("example.COM", "A").pack())

    assert upper.key == lower.key == EXAMPLE_COM + A_IN + b"\x00"
    # The name as sent is kept, so the reply echoes the client's 0x20 casing.
    assert upper.qname_wire == b"\x07EXAMPLE\x03com\x00"
    assert lower.qname_wire == b"\x07example\x03COM\x00"
    assert upper.name == lower.name == "example.com"


def test_it_puts_the_do_bit_and_the_type_in_the_key():
    plain = wire.parse_query(dns.message.make_query("example.com", "A", use_edns=0).to_wire())
    dnssec = wire.parse_query(dns.message.make_query("example.com", "A", want_dnssec=True).to_wire())
    aaaa = wire.parse_query(dns.message.make_query("example.com", "AAAA", use_edns=0).to_wire())

    assert plain.key[-1:] == b"\x00"
    assert dnssec.key[-1:] == b"\x01"
    assert len({plain.key, dnssec.key, aaaa.key}) == 3


def test_it_reads_the_edns_version_so_the_caller_can_answer_badvers():
    data = query_bytes(ar=1, additional=opt(version=1, do=True))

    query = wire.parse_query(data)

    assert (query.edns, query.edns_version, query.do) == (True, 1, True)


def test_it_accepts_a_name_of_exactly_255_bytes():
    name = (b"\x3f" + b"a" * 63) * 3 + b"\x3d" + b"b" * 61 + b"\x00"
    assert len(name) == 255

    query = wire.parse_query(query_bytes(name=name))

    assert query.qname_wire == name


def test_it_accepts_a_label_of_63_bytes():
    name = b"\x3f" + b"a" * 63 + b"\x03com\x00"

    assert wire.parse_query(query_bytes(name=name)).name == "a" * 63 + ".com"


def test_it_reads_a_query_for_the_root():
    query = wire.parse_query(header() + b"\x00" + b"\x00\x02\x00\x01")

    assert (query.qname_wire, query.name, query.qtype) == (b"\x00", "", wire.TYPE_NS)


def test_it_skips_additional_records_that_are_not_opt():
    additional = rr(b"\x00", wire.TYPE_A, 60, b"\x7f\x00\x00\x01") + opt(payload=2048)

    query = wire.parse_query(query_bytes(ar=2, additional=additional))

    assert (query.edns, query.payload) == (True, 2048)


def test_it_does_not_follow_a_pointer_loop_in_an_additional_record():
    # The additional record's owner points at itself: following it would never end.
    own_offset = 12 + len(EXAMPLE_COM) + 4
    looping = rr(struct.pack("!H", 0xC000 | own_offset), wire.TYPE_A, 60, b"\x7f\x00\x00\x01")

    query = wire.parse_query(query_bytes(ar=1, additional=looping))

    assert (query.edns, query.name) == (False, "example.com")


# -- parse_query: packets it refuses ----------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"\x12", b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00"])
def test_it_drops_a_packet_shorter_than_a_header(data):
    assert refusal(data) is None


def test_it_drops_a_response_to_avoid_reflection_loops():
    data = query_bytes(flags=wire.FLAG_QR | wire.FLAG_RD)

    assert refusal(data) is None


@pytest.mark.parametrize("opcode", [dns.opcode.IQUERY, dns.opcode.STATUS, dns.opcode.NOTIFY, dns.opcode.UPDATE])
def test_it_answers_notimp_to_an_opcode_other_than_query(opcode):
    data = query_bytes(flags=opcode << 11)

    assert refusal(data) == wire.NOTIMP


def test_it_answers_notimp_to_a_dnspython_notify():
    message = dns.message.make_query("example.com", "SOA")
    message.set_opcode(dns.opcode.NOTIFY)

    assert refusal(message.to_wire()) == wire.NOTIMP


def test_it_refuses_a_query_without_a_question():
    assert refusal(header(qd=0)) == wire.FORMERR


def test_it_refuses_a_query_with_two_questions():
    data = header(qd=2) + EXAMPLE_COM + A_IN + EXAMPLE_COM + A_IN

    assert refusal(data) == wire.FORMERR


@pytest.mark.parametrize("counts", [{"an": 1}, {"ns": 1}])
def test_it_refuses_a_query_carrying_answer_or_authority_records(counts):
    record = rr(b"\xc0\x0c", wire.TYPE_A, 60, b"\x7f\x00\x00\x01")
    data = header(**counts) + EXAMPLE_COM + A_IN + record

    assert refusal(data) == wire.FORMERR


def test_it_refuses_compression_pointers_in_the_question():
    data = header() + b"\x03www\xc0\x0c" + A_IN

    assert refusal(data) == wire.FORMERR


def test_it_refuses_a_question_that_is_only_a_pointer_to_itself():
    data = header() + b"\xc0\x0c" + A_IN

    assert refusal(data) == wire.FORMERR


@pytest.mark.parametrize("length_byte", [0x40, 0x7F, 0x80, 0xBF])
def test_it_refuses_labels_longer_than_63_bytes_and_extended_label_types(length_byte):
    name = bytes([length_byte]) + b"a" * 200 + b"\x00"

    assert refusal(query_bytes(name=name)) == wire.FORMERR


def test_it_refuses_a_name_longer_than_255_bytes():
    name = (b"\x3f" + b"a" * 63) * 3 + b"\x3e" + b"b" * 62 + b"\x00"
    assert len(name) == 256

    assert refusal(query_bytes(name=name)) == wire.FORMERR


def test_it_refuses_a_name_made_of_many_short_labels_past_255_bytes():
    name = b"\x01a" * 128 + b"\x00"

    assert refusal(query_bytes(name=name)) == wire.FORMERR


def test_it_refuses_a_name_that_runs_past_the_end():
    assert refusal(header() + b"\x07example\x03co") == wire.FORMERR
    assert refusal(header() + b"\x07example\x03com") == wire.FORMERR


@pytest.mark.parametrize("tail", [b"", b"\x00", b"\x00\x01", b"\x00\x01\x00"])
def test_it_refuses_a_question_without_its_type_and_class(tail):
    assert refusal(header() + EXAMPLE_COM + tail) == wire.FORMERR


def test_it_refuses_an_opt_record_cut_short_in_its_fixed_part():
    data = query_bytes(ar=1, additional=opt()[:7])

    assert refusal(data) == wire.FORMERR


def test_it_refuses_an_opt_record_whose_data_runs_past_the_end():
    cut = opt(rdata=b"\x00\x0a\x00\x08" + b"\x01" * 8)[:-3]

    assert refusal(query_bytes(ar=1, additional=cut)) == wire.FORMERR


def test_it_refuses_two_opt_records():
    data = query_bytes(ar=2, additional=opt() + opt(payload=4096))

    assert refusal(data) == wire.FORMERR


def test_it_refuses_an_opt_record_not_owned_by_the_root():
    assert refusal(query_bytes(ar=1, additional=opt(owner=EXAMPLE_COM))) == wire.FORMERR
    assert refusal(query_bytes(ar=1, additional=opt(owner=b"\xc0\x0c"))) == wire.FORMERR


@pytest.mark.parametrize(("arcount", "additional"), [(1, b""), (2, opt()), (3, opt() + rr(b"\x00", 1, 0, b"1234"))])
def test_it_refuses_an_arcount_that_promises_more_records_than_sent(arcount, additional):
    assert refusal(query_bytes(ar=arcount, additional=additional)) == wire.FORMERR


def test_it_refuses_a_truncated_compression_pointer_in_an_additional_record():
    assert refusal(query_bytes(ar=1, additional=b"\xc0")) == wire.FORMERR


def test_it_refuses_an_extended_label_type_in_an_additional_record():
    assert refusal(query_bytes(ar=1, additional=b"\x41" + opt()[1:])) == wire.FORMERR


# -- names ------------------------------------------------------------------------------


def test_it_turns_a_wire_name_into_lower_case_text():
    assert wire.name_to_text(b"\x03WwW\x07ExAmPlE\x03cOm\x00") == "www.example.com"
    assert wire.name_to_text(b"\x00") == ""
    assert wire.name_to_text(b"\x03a\xffB\x03com\x00") == "a\\255b.com"


def test_it_turns_text_into_a_wire_name():
    assert wire.text_to_name("example.com") == EXAMPLE_COM
    assert wire.text_to_name("example.com.") == EXAMPLE_COM
    assert wire.text_to_name("") == b"\x00"
    assert wire.name_to_text(wire.text_to_name("a.b-c.d_e")) == "a.b-c.d_e"


# -- error_reply --------------------------------------------------------------------------


def test_it_answers_a_header_only_error_when_the_question_could_not_be_read():
    flags = wire.FLAG_RD | wire.FLAG_CD | wire.FLAG_AD | wire.FLAG_TC | (5 << 11)

    reply = wire.error_reply(0xBEEF, flags, wire.NOTIMP)

    expected_flags = wire.FLAG_QR | (5 << 11) | wire.FLAG_RD | wire.FLAG_CD | wire.FLAG_RA | wire.NOTIMP
    assert reply == struct.pack("!HHHHHH", 0xBEEF, expected_flags, 0, 0, 0, 0)


def test_it_echoes_the_question_in_an_error_reply():
    data = dns.message.make_query("ExAmple.com", "A", id=4242).to_wire()
    query = wire.parse_query(data)

    reply = dns.message.from_wire(wire.error_reply(query.qid, query.flags, wire.REFUSED, query))

    assert reply.id == 4242
    assert reply.rcode() == dns.rcode.REFUSED
    assert reply.flags & dns.flags.QR
    assert reply.flags & dns.flags.RD
    assert reply.flags & dns.flags.RA
    assert str(reply.question[0].name) == "ExAmple.com."
    assert reply.answer == []
    assert reply.edns == -1


def test_it_answers_badvers_through_the_opt_record():
    query = wire.parse_query(query_bytes(ar=1, additional=opt(version=1, do=True)))

    raw = wire.error_reply(query.qid, query.flags, wire.BADVERS, query)
    reply = dns.message.from_wire(raw)

    assert raw[3] & 0x0F == 0  # the low four bits of 16
    assert reply.rcode() == dns.rcode.BADVERS
    assert reply.edns == 0
    assert reply.payload == wire.MAX_UDP_PAYLOAD
    assert reply.ednsflags & dns.flags.DO


def test_it_adds_an_opt_record_to_an_error_for_an_edns_client():
    query = wire.parse_query(dns.message.make_query("example.com", "A", use_edns=0).to_wire())

    reply = dns.message.from_wire(wire.error_reply(query.qid, query.flags, wire.SERVFAIL, query))

    assert reply.rcode() == dns.rcode.SERVFAIL
    assert (reply.edns, reply.payload, reply.ednsflags & dns.flags.DO) == (0, 4096, 0)


def test_it_writes_opt_records_byte_for_byte():
    assert wire.opt_record() == b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00"
    assert wire.opt_record(4096, do=True, ext_rcode=1) == b"\x00\x00\x29\x10\x00\x01\x00\x80\x00\x00\x00"


# -- build_query ----------------------------------------------------------------------------


def test_it_builds_an_upstream_query_with_rd_and_edns():
    data = wire.build_query(777, EXAMPLE_COM, wire.TYPE_AAAA, wire.CLASS_IN, do=True, payload=1400)

    message = dns.message.from_wire(data)

    assert message.id == 777
    assert message.flags == dns.flags.RD
    assert str(message.question[0].name) == "example.com."
    assert message.question[0].rdtype == wire.TYPE_AAAA
    assert (message.edns, message.payload, message.ednsflags & dns.flags.DO) == (0, 1400, dns.flags.DO)


def test_it_builds_a_query_that_it_reads_back_the_same():
    data = wire.build_query(1, b"\x03WWW" + EXAMPLE_COM, wire.TYPE_A, wire.CLASS_IN, do=False)

    query = wire.parse_query(data)

    assert (query.qid, query.qname_wire, query.qtype, query.edns, query.payload, query.do) == (
        1,
        b"\x03WWW" + EXAMPLE_COM,
        wire.TYPE_A,
        True,
        1232,
        False,
    )


# -- question_end and scan_reply ----------------------------------------------------------


def cname_chain_reply(with_opt: bool = True) -> bytes:
    reply = DNSRecord.question("www.example.com", "A").reply()
    reply.add_answer(RR("www.example.com", QTYPE.CNAME, rdata=CNAME("cdn.example.net"), ttl=300))
    reply.add_answer(RR("cdn.example.net", QTYPE.CNAME, rdata=CNAME("edge.example.net"), ttl=60))
    reply.add_answer(RR("edge.example.net", QTYPE.A, rdata=A("192.0.2.1"), ttl=120))
    if with_opt:
        reply.add_ar(EDNS0(udp_len=1232))
    return reply.pack()


def nxdomain_reply(soa_ttl: int, minimum: int) -> bytes:
    reply = DNSRecord.question("nope.example.com", "A").reply()
    reply.header.rcode = RCODE.NXDOMAIN
    times = (2024010101, 3600, 600, 86400, minimum)
    soa = SOA("ns1.example.com", "hostmaster.example.com", times)
    reply.add_auth(RR("example.com", QTYPE.SOA, rdata=soa, ttl=soa_ttl))
    return reply.pack()


def test_it_finds_where_the_question_of_a_reply_ends():
    data = cname_chain_reply()

    assert wire.question_end(data) == 12 + len(b"\x03www" + EXAMPLE_COM) + 4


@pytest.mark.parametrize(
    "data",
    [
        b"\x00" * 11,
        header(qd=0),
        header(qd=2) + EXAMPLE_COM + A_IN + EXAMPLE_COM + A_IN,
        header() + b"\xc0\x0c" + A_IN,
    ],
)
def test_it_refuses_a_reply_without_exactly_one_readable_question(data):
    with pytest.raises(WireError):
        wire.question_end(data)


def test_it_refuses_a_reply_whose_question_lacks_its_type_and_class():
    with pytest.raises(WireError):
        wire.question_end(header(flags=wire.FLAG_QR) + EXAMPLE_COM + b"\x00\x01")


def test_it_scans_a_cname_chain_with_compressed_names():
    data = cname_chain_reply()
    qend = wire.question_end(data)

    scanned = wire.scan_reply(data, qend)

    assert scanned.rcode == wire.NOERROR
    assert scanned.flags == struct.unpack("!H", data[2:4])[0]
    assert (scanned.ancount, scanned.nscount, scanned.arcount) == (3, 0, 0)
    assert scanned.ttls == (300, 60, 120)
    assert scanned.min_answer_ttl == 60
    assert scanned.negative_ttl is None
    # The OPT record (11 bytes, last) is left out of the body.
    assert scanned.body == data[qend:-11]
    assert [struct.unpack_from("!I", scanned.body, o)[0] for o in scanned.ttl_offsets] == [300, 60, 120]


def test_it_keeps_the_body_whole_when_there_is_no_opt_record():
    data = cname_chain_reply(with_opt=False)
    qend = wire.question_end(data)

    scanned = wire.scan_reply(data, qend)

    assert scanned.body == data[qend:]
    assert scanned.arcount == 0


def test_it_reads_the_negative_ttl_from_the_soa_of_an_nxdomain():
    data = nxdomain_reply(soa_ttl=900, minimum=300)

    scanned = wire.scan_reply(data, wire.question_end(data))

    assert scanned.rcode == wire.NXDOMAIN
    assert (scanned.ancount, scanned.nscount, scanned.arcount) == (0, 1, 0)
    assert scanned.min_answer_ttl is None
    assert scanned.negative_ttl == 300
    assert scanned.ttls == (900,)


def test_it_takes_the_soa_ttl_when_it_is_below_the_soa_minimum():
    data = nxdomain_reply(soa_ttl=60, minimum=300)

    assert wire.scan_reply(data, wire.question_end(data)).negative_ttl == 60


def test_it_keeps_glue_in_the_additional_section_with_its_ttl():
    question = header(flags=wire.FLAG_QR, an=1, ar=2) + EXAMPLE_COM + b"\x00\x02\x00\x01"
    ns = rr(b"\xc0\x0c", wire.TYPE_NS, 3600, b"\x03ns1\xc0\x0c")
    glue = rr(b"\x03ns1\xc0\x0c", wire.TYPE_A, 1800, b"\xc0\x00\x02\x35")
    data = question + ns + glue + opt()

    scanned = wire.scan_reply(data, len(question))

    assert (scanned.ancount, scanned.arcount) == (1, 1)
    assert scanned.ttls == (3600, 1800)
    assert scanned.body == ns + glue


def test_it_treats_a_ttl_with_the_top_bit_set_as_zero():
    question = header(flags=wire.FLAG_QR, an=2) + EXAMPLE_COM + A_IN
    data = question + rr(b"\xc0\x0c", 1, 0x80000010, b"\x01\x02\x03\x04") + rr(b"\xc0\x0c", 1, 50, b"\x01\x02\x03\x05")

    scanned = wire.scan_reply(data, len(question))

    assert scanned.ttls == (0, 50)
    assert scanned.min_answer_ttl == 0


def test_it_reads_an_empty_noerror_reply():
    data = header(flags=wire.FLAG_QR) + EXAMPLE_COM + A_IN

    scanned = wire.scan_reply(data, wire.question_end(data))

    assert (scanned.body, scanned.ttls, scanned.min_answer_ttl, scanned.negative_ttl) == (b"", (), None, None)


def scan_error(data: bytes, qend: int) -> str:
    with pytest.raises(WireError) as info:
        wire.scan_reply(data, qend)
    return str(info.value)


def test_it_refuses_an_opt_record_in_the_answer_section():
    question = header(flags=wire.FLAG_QR, an=2) + EXAMPLE_COM + A_IN
    data = question + opt() + rr(b"\xc0\x0c", 1, 60, b"\x01\x02\x03\x04")

    assert scan_error(data, len(question)) == "misplaced or repeated OPT record"


def test_it_refuses_records_after_the_opt_record():
    question = header(flags=wire.FLAG_QR, an=1, ar=2) + EXAMPLE_COM + A_IN
    answer = rr(b"\xc0\x0c", 1, 60, b"\x01\x02\x03\x04")
    data = question + answer + opt() + rr(b"\xc0\x0c", 1, 60, b"\x01\x02\x03\x05")

    assert scan_error(data, len(question)) == "records after the OPT record"


def test_it_refuses_two_opt_records_in_a_reply():
    question = header(flags=wire.FLAG_QR, ar=2) + EXAMPLE_COM + A_IN

    assert scan_error(question + opt() + opt(), len(question)) == "misplaced or repeated OPT record"


def test_it_refuses_record_data_running_past_the_end():
    question = header(flags=wire.FLAG_QR, an=1) + EXAMPLE_COM + A_IN
    data = question + rr(b"\xc0\x0c", 1, 60, b"\x01\x02\x03\x04")[:-1]

    assert scan_error(data, len(question)) == "record data runs past the end of the reply"


def test_it_refuses_a_record_cut_short_in_its_fixed_part():
    question = header(flags=wire.FLAG_QR, an=1) + EXAMPLE_COM + A_IN
    data = question + rr(b"\xc0\x0c", 1, 60, b"\x01\x02\x03\x04")[:9]

    assert scan_error(data, len(question)) == "record runs past the end of the reply"


def test_it_refuses_counts_that_promise_more_records_than_sent():
    question = header(flags=wire.FLAG_QR, an=2) + EXAMPLE_COM + A_IN
    data = question + rr(b"\xc0\x0c", 1, 60, b"\x01\x02\x03\x04")

    assert scan_error(data, len(question)) == "name runs past the end of the packet"


def test_it_refuses_an_soa_too_short_to_hold_its_minimum():
    question = header(flags=wire.FLAG_QR | wire.NXDOMAIN, ns=1) + EXAMPLE_COM + A_IN
    data = question + rr(b"\xc0\x0c", wire.TYPE_SOA, 60, soa_rdata(30)[:21])

    assert scan_error(data, len(question)) == "SOA record too short"


def test_it_reads_the_shortest_valid_soa():
    question = header(flags=wire.FLAG_QR | wire.NXDOMAIN, ns=1) + EXAMPLE_COM + A_IN
    data = question + rr(b"\xc0\x0c", wire.TYPE_SOA, 60, soa_rdata(30))

    assert wire.scan_reply(data, len(question)).negative_ttl == 30


def test_it_refuses_a_reply_shorter_than_a_header():
    assert scan_error(b"\x00" * 11, 12) == "reply shorter than a DNS header"


def test_it_builds_a_truncated_reply_from_header_and_question():
    opt_rr = wire.opt_record(4096)

    data = wire.truncated_reply(wire.FLAG_QR | wire.FLAG_RA, 99, EXAMPLE_COM + A_IN, opt_rr)

    assert data == struct.pack("!HHHHHH", 99, wire.FLAG_QR | wire.FLAG_RA | wire.FLAG_TC, 1, 0, 0, 1) + (
        EXAMPLE_COM + A_IN + opt_rr
    )


def test_name_to_text_escapes_control_bytes_and_dots_inside_a_label():
    from dnsengine.core.wire import name_to_text

    assert name_to_text(b"\x03a\x00b\x03a.c\x03com\x00") == "a\\000b.a\\046c.com"
    assert name_to_text(b"\x07Example\x03COM\x00") == "example.com"


@pytest.mark.parametrize("byte", range(256))
def test_name_to_text_gives_every_byte_value_one_unambiguous_form(byte):
    text = wire.name_to_text(bytes([3, ord("a"), byte, ord("Z")]) + b"\x0bdoubleclick\x03net\x00")

    label = text.rsplit(".doubleclick.net", 1)[0]
    assert text.endswith(".doubleclick.net") and text.count(".") == 2
    if 0x21 <= byte <= 0x7E and byte not in (0x2E, 0x5C):
        assert label == ("a" + chr(byte) + "z").lower()
    else:
        assert label == f"a\\{byte:03d}z"
    assert text.isascii() and text.isprintable()


def test_name_to_text_never_gives_two_names_the_same_text():
    names = [
        b"\x03a.b\x03com\x00",  # one label holding a dot
        b"\x01a\x01b\x03com\x00",  # two labels
        b"\x06a\\046b\x03com\x00",  # the escape written out by hand, backslash and all
        b"\x03a\\b\x03com\x00",
        b"\x03a\x5cb\x03com\x00",
    ]
    texts = [wire.name_to_text(n) for n in names]

    assert len(set(texts[:4])) == 4
    assert texts[3] == texts[4] == "a\\092b.com"


def test_name_to_text_reads_the_longest_labels_and_names():
    label63 = bytes(range(1, 64))
    name = (bytes([63]) + label63) * 3 + bytes([61]) + b"x" * 61 + b"\x00"  # 255 bytes on the wire
    assert len(name) == 255

    text = wire.name_to_text(name)

    assert text.count(".") == 3 and text.endswith("." + "x" * 61)


# -- CNAME targets (deep CNAME inspection) ------------------------------------------------


def cloaked_reply() -> bytes:
    reply = DNSRecord.question("metrics.shop.example").reply()
    reply.add_answer(RR("metrics.shop.example", QTYPE.CNAME, rdata=CNAME("shop.example.eulerian.net"), ttl=60))
    reply.add_answer(RR("shop.example.eulerian.net", QTYPE.CNAME, rdata=CNAME("Edge.CDN.example"), ttl=60))
    reply.add_answer(RR("edge.cdn.example", QTYPE.A, rdata=A("192.0.2.7"), ttl=60))
    return reply.pack()  # dnslib compresses the names: the targets point into each other


def test_it_reads_the_cname_targets_of_an_answer_in_order_when_asked():
    data = cloaked_reply()

    scanned = wire.scan_reply(data, wire.question_end(data), cnames=True)

    assert scanned.cname_targets == ("shop.example.eulerian.net", "edge.cdn.example")
    assert wire.scan_reply(data, wire.question_end(data)).cname_targets == ()


def test_it_refuses_a_cname_target_whose_pointer_does_not_point_backwards():
    # Forward pointers are how loops get built: refused even when this one leads to a real name.
    question = header(flags=wire.FLAG_QR)[:6] + b"\x00\x02\x00\x00\x00\x00" + EXAMPLE_COM + A_IN
    after = len(question) + 2 + 10 + 2  # the next record's owner name, after the CNAME
    data = (
        question
        + rr(b"\xc0\x0c", wire.TYPE_CNAME, 60, struct.pack("!H", 0xC000 | after))
        + rr(EXAMPLE_COM, wire.TYPE_A, 60, b"\xc0\x00\x02\x07")
    )

    with pytest.raises(WireError):
        wire.scan_reply(data, wire.question_end(data), cnames=True)


def test_it_refuses_a_cname_whose_data_is_more_than_one_name():
    question = header(flags=wire.FLAG_QR)[:6] + b"\x00\x01\x00\x00\x00\x00" + EXAMPLE_COM + A_IN
    data = question + rr(b"\xc0\x0c", wire.TYPE_CNAME, 60, EXAMPLE_COM + b"junk")

    with pytest.raises(WireError):
        wire.scan_reply(data, wire.question_end(data), cnames=True)


def test_it_reads_a_compressed_name_as_text():
    data = b"\x00" * 12 + b"\x04shop\x07example\x00" + b"\x07metrics\xc0\x0c"

    assert wire.read_name(data, 12 + 14) == "metrics.shop.example"
