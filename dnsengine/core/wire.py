# cython: annotation_typing=False
"""Lean DNS wire-format helpers for the hot path.

dnslib parses a packet into a tree of objects, which costs tens of microseconds;
answering from the cache needs only the question, the EDNS OPT record and the
offsets of the TTLs to age. These functions read just that, straight from bytes,
and treat every packet as hostile: each bound is checked before it is used.
dnslib stays the tool for building the replies that are not served from bytes
(blocked answers, local records), which are built once and then cached as bytes.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

# Response codes.
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
BADVERS = 16
RCODE_NAMES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED", 16: "BADVERS"}

TYPE_A, TYPE_NS, TYPE_CNAME, TYPE_SOA, TYPE_AAAA, TYPE_OPT = 1, 2, 5, 6, 28, 41
TYPE_IXFR, TYPE_AXFR = 251, 252
CLASS_IN = 1

QTYPE_NAMES = {
    1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 13: "HINFO", 15: "MX", 16: "TXT", 28: "AAAA",
    33: "SRV", 35: "NAPTR", 39: "DNAME", 43: "DS", 46: "RRSIG", 47: "NSEC", 48: "DNSKEY", 50: "NSEC3",
    52: "TLSA", 64: "SVCB", 65: "HTTPS", 99: "SPF", 251: "IXFR", 252: "AXFR", 255: "ANY", 257: "CAA",
}  # fmt: skip

FLAG_QR = 0x8000
FLAG_AA = 0x0400
FLAG_TC = 0x0200
FLAG_RD = 0x0100
FLAG_RA = 0x0080
FLAG_AD = 0x0020
FLAG_CD = 0x0010
OPCODE_MASK = 0x7800
EDNS_DO = 0x8000

MAX_UDP_PAYLOAD = 4096  # never promise more than this, whatever a client offers
MIN_UDP_PAYLOAD = 512

_HEADER = struct.Struct("!HHHHHH")
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_RR_FIXED = struct.Struct("!HHIH")  # type, class, ttl, rdlength


def qtype_name(qtype: int) -> str:
    name = QTYPE_NAMES.get(qtype)
    return name if name is not None else f"TYPE{qtype}"


class WireError(Exception):
    """The packet cannot be read; `rcode` says what to answer (None: drop it silently)."""

    def __init__(self, message: str, rcode: int | None = FORMERR) -> None:
        super().__init__(message)
        self.rcode = rcode


@dataclass(slots=True)
class Query:
    """The parts of a client query that the engine acts on."""

    qid: int
    flags: int
    qname_wire: bytes  # the name as sent (case preserved, for echoing back)
    qtype: int
    qclass: int
    question: bytes  # the whole question section as sent
    key: bytes  # cache key: lower-cased name + type + class + DO bit
    edns: bool
    payload: int  # largest UDP reply the client accepts
    do: bool
    edns_version: int

    @property
    def name(self) -> str:
        """The name as lower-case text without the trailing dot ("" for the root)."""
        return name_to_text(self.qname_wire)


# Bytes a label may show as themselves in text: printable ASCII but the label
# separator (.) and the escape character (backslash). Every other byte is written \DDD.
_ESCAPE_NEEDED = re.compile(rb"[^!-\-/-\[\]-~]")
_BYTE_TEXT = tuple(chr(b) if 0x21 <= b <= 0x7E and b not in (0x2E, 0x5C) else f"\\{b:03d}" for b in range(256))


def name_to_text(qname_wire: bytes) -> str:
    """The name in presentation form: lower-case, no trailing dot ("" for the root).

    A label is any bytes on the wire. Printable ASCII stands for itself; a
    space, a control or non-ASCII byte, a dot inside a label and a backslash
    are written as \\DDD (decimal, as dig does). So every "." in the text
    separates labels, the text of two different names is never the same, the
    matcher's suffix walk sees the same parents as the wire does, and the
    logged name is plain text (PostgreSQL text cannot even hold a NUL).
    Only ASCII letters are lower-cased: DNS compares names ASCII
    case-insensitively (RFC 4343).
    """
    labels = []
    i = 0
    while True:
        n = qname_wire[i]
        if n == 0:
            break
        raw = qname_wire[i + 1 : i + 1 + n]
        if _ESCAPE_NEEDED.search(raw) is None:
            labels.append(raw.decode("ascii"))
        else:
            labels.append("".join([_BYTE_TEXT[b] for b in raw]))
        i += 1 + n
    return ".".join(labels).lower()


def text_to_name(name: str) -> bytes:
    """Wire form of an already-normalised (ASCII, validated) name."""
    if not name or name == ".":
        return b"\x00"
    out = bytearray()
    for label in name.rstrip(".").split("."):
        raw = label.encode("ascii")
        out.append(len(raw))
        out += raw
    out.append(0)
    return bytes(out)


def _read_question_name(data: bytes, offset: int) -> int:
    """Return the offset after an uncompressed name; compression in a question is refused."""
    total = 0
    end = len(data)
    while True:
        if offset >= end:
            raise WireError("name runs past the end of the packet")
        n = data[offset]
        if n == 0:
            return offset + 1
        if n & 0xC0:
            # Pointers are legal in theory but no stub resolver sends one in a
            # question, and following them is how loops get in.
            raise WireError("compressed or extended label in the question")
        total += n + 1
        if total > 254:
            raise WireError("name longer than 255 bytes")
        offset += 1 + n


def skip_name(data: bytes, offset: int) -> int:
    """Return the offset after a possibly compressed name, without following pointers."""
    end = len(data)
    hops = 0
    while True:
        if offset >= end:
            raise WireError("name runs past the end of the packet")
        n = data[offset]
        if n == 0:
            return offset + 1
        if n & 0xC0 == 0xC0:
            if offset + 2 > end:
                raise WireError("truncated compression pointer")
            return offset + 2
        if n & 0xC0:
            raise WireError("extended label type")
        offset += 1 + n
        hops += 1
        if hops > 128:
            raise WireError("too many labels")


def read_name(data: bytes, offset: int) -> str:
    """The possibly compressed name at `offset`, as name_to_text gives it (raises WireError).

    Every pointer must point before itself, so a loop cannot be built; the name is
    bounded at 255 bytes like any other.
    """
    out = bytearray()
    end = len(data)
    while True:
        if offset >= end:
            raise WireError("name runs past the end of the packet")
        n = data[offset]
        if n == 0:
            out.append(0)
            return name_to_text(bytes(out))
        if n & 0xC0 == 0xC0:
            if offset + 2 > end:
                raise WireError("truncated compression pointer")
            target = (n & 0x3F) << 8 | data[offset + 1]
            if target >= offset:
                raise WireError("compression pointer does not point backwards")
            offset = target
            continue
        if n & 0xC0:
            raise WireError("extended label type")
        if offset + 1 + n > end:
            raise WireError("label runs past the end of the packet")
        out += data[offset : offset + 1 + n]
        if len(out) > 254:
            raise WireError("name longer than 255 bytes")
        offset += 1 + n


def parse_query(data: bytes) -> Query:
    """Read a client query. Raises WireError with the rcode to answer, or None to drop."""
    # One copy of a bytearray (dnslib's pack) or memoryview, so the compiled twin can read bytes.
    packet = data if type(data) is bytes else bytes(data)
    if len(packet) < 12:
        raise WireError("shorter than a DNS header", rcode=None)
    qid, flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(packet)
    if flags & FLAG_QR:
        # Answering a response invites reflection loops between two servers.
        raise WireError("packet is a response (QR=1)", rcode=None)
    if flags & OPCODE_MASK:
        raise WireError("opcode is not QUERY", rcode=NOTIMP)
    if qdcount != 1:
        raise WireError(f"{qdcount} questions", rcode=FORMERR)
    if ancount or nscount:
        raise WireError("query carries answer or authority records")
    qend_name = _read_question_name(packet, 12)
    qend = qend_name + 4
    if qend > len(packet):
        raise WireError("question runs past the end of the packet")
    qtype, qclass = struct.unpack_from("!HH", packet, qend_name)
    edns = False
    payload = MIN_UDP_PAYLOAD
    do = False
    version = 0
    offset = qend
    for _ in range(arcount):
        name_end = skip_name(packet, offset)
        if name_end + 10 > len(packet):
            raise WireError("additional record runs past the end of the packet")
        rtype, rclass, ttl, rdlen = _RR_FIXED.unpack_from(packet, name_end)
        next_offset = name_end + 10 + rdlen
        if next_offset > len(packet):
            raise WireError("additional record data runs past the end of the packet")
        if rtype == TYPE_OPT:
            if edns or name_end - offset != 1:
                raise WireError("second OPT record, or OPT not owned by the root")
            edns = True
            payload = min(max(rclass, MIN_UDP_PAYLOAD), MAX_UDP_PAYLOAD)
            version = (ttl >> 16) & 0xFF
            do = bool(ttl & EDNS_DO)
        offset = next_offset
    if offset != len(packet):
        # Bytes after the last record belong to no field: a client never sends them,
        # and a padded packet must not become a large cache key.
        raise WireError(f"{len(packet) - offset} bytes after the last record")
    qname_wire = packet[12:qend_name]
    key = qname_wire.lower() + packet[qend_name:qend] + (b"\x01" if do else b"\x00")
    return Query(qid, flags, qname_wire, qtype, qclass, packet[12:qend], key, edns, payload, do, version)


def opt_record(payload: int = 1232, do: bool = False, ext_rcode: int = 0) -> bytes:
    return b"\x00" + _RR_FIXED.pack(TYPE_OPT, payload, (ext_rcode << 24) | (EDNS_DO if do else 0), 0)


def error_reply(qid: int, flags: int, rcode: int, query: Query | None = None) -> bytes:
    """A reply carrying only an rcode, for a query we will not answer properly.

    Echoes the question when it could be read, and an OPT record (carrying the
    upper bits of an extended rcode such as BADVERS) when the client sent one.
    """
    out_flags = FLAG_QR | (flags & (OPCODE_MASK | FLAG_RD | FLAG_CD)) | FLAG_RA | (rcode & 0x0F)
    if query is None:
        return _HEADER.pack(qid, out_flags, 0, 0, 0, 0)
    if query.edns:
        return (
            _HEADER.pack(qid, out_flags, 1, 0, 0, 1)
            + query.question
            + opt_record(MAX_UDP_PAYLOAD, query.do, rcode >> 4)
        )
    return _HEADER.pack(qid, out_flags, 1, 0, 0, 0) + query.question


def header_id_flags(data: bytes) -> tuple[int, int]:
    return _U16.unpack_from(data)[0], _U16.unpack_from(data, 2)[0]


@dataclass(slots=True)
class ScannedReply:
    """A reply taken apart just enough to cache it and serve it again."""

    flags: int
    rcode: int
    ancount: int
    nscount: int
    arcount: int  # without the OPT record
    body: bytes  # the record sections after the question, OPT removed
    ttl_offsets: tuple[int, ...]  # offsets of TTL fields within body
    ttls: tuple[int, ...]
    min_answer_ttl: int | None  # None when there are no answer records
    negative_ttl: int | None  # min(SOA TTL, SOA MINIMUM) from the authority section
    # The targets of the CNAME records in the answer section, in order (only when asked for).
    cname_targets: tuple[str, ...] = ()


def scan_reply(data: bytes, qend: int, cnames: bool = False) -> ScannedReply:
    """Walk the record sections of a reply whose question ends at `qend`.

    With `cnames`, the targets of the answer's CNAME records are read as text on the
    way (deep CNAME inspection): no cost for an answer without CNAMEs.
    Raises WireError on anything malformed: such a reply is not used.
    """
    # One copy of a bytearray (dnslib's pack) or memoryview, so the compiled twin can read bytes.
    packet = data if type(data) is bytes else bytes(data)
    if len(packet) < 12:
        raise WireError("reply shorter than a DNS header")
    _, flags, _, ancount, nscount, arcount = _HEADER.unpack_from(packet)
    offset = qend
    end = len(packet)
    ttl_offsets: list[int] = []
    ttls: list[int] = []
    min_answer_ttl: int | None = None
    negative_ttl: int | None = None
    kept: list[tuple[int, int]] = []  # (start, stop) of the records we keep, in order
    targets: list[str] = []
    opt_seen = False
    total = ancount + nscount + arcount
    for index in range(total):
        start = offset
        name_end = skip_name(packet, offset)
        if name_end + 10 > end:
            raise WireError("record runs past the end of the reply")
        rtype, _rclass, ttl, rdlen = _RR_FIXED.unpack_from(packet, name_end)
        offset = name_end + 10 + rdlen
        if offset > end:
            raise WireError("record data runs past the end of the reply")
        if rtype == TYPE_OPT:
            if index < ancount + nscount or opt_seen:
                raise WireError("misplaced or repeated OPT record")
            opt_seen = True
            continue
        if opt_seen:
            raise WireError("records after the OPT record")
        if ttl & 0x80000000:
            ttl = 0  # RFC 2181: a TTL with the top bit set is treated as zero
        if index < ancount:
            min_answer_ttl = ttl if min_answer_ttl is None else min(min_answer_ttl, ttl)
            if rtype == TYPE_CNAME and cnames:
                target = read_name(packet, name_end + 10)
                if skip_name(packet, name_end + 10) != offset:
                    raise WireError("CNAME data is not one name")
                targets.append(target)
        elif index < ancount + nscount and rtype == TYPE_SOA:
            # The SOA MINIMUM is the last 4 bytes of its RDATA.
            if rdlen < 22:
                raise WireError("SOA record too short")
            minimum = _U32.unpack_from(packet, offset - 4)[0]
            negative_ttl = min(ttl, minimum)
        kept.append((start, offset))
        ttl_offsets.append(name_end + 4)
        ttls.append(ttl)
    # The body is everything after the question up to the OPT record. OPT comes
    # last in practice; a reply with records after it is refused (see below), so
    # compression pointers in the kept records never point past what we keep.
    body_start = qend
    body_end = kept[-1][1] if kept else qend
    body = packet[body_start:body_end]
    rel = tuple([o - body_start for o in ttl_offsets])
    return ScannedReply(
        flags=flags,
        rcode=flags & 0x0F,
        ancount=ancount,
        nscount=nscount,
        arcount=arcount - (1 if opt_seen else 0),
        body=body,
        ttl_offsets=rel,
        ttls=tuple(ttls),
        min_answer_ttl=min_answer_ttl,
        negative_ttl=negative_ttl,
        cname_targets=tuple(targets),
    )


def question_end(data: bytes) -> int:
    """Offset after the single question of a reply (raises WireError)."""
    # One copy of a bytearray (dnslib's pack) or memoryview, so the compiled twin can read bytes.
    packet = data if type(data) is bytes else bytes(data)
    if len(packet) < 12:
        raise WireError("shorter than a DNS header")
    if _U16.unpack_from(packet, 4)[0] != 1:
        raise WireError("reply does not carry exactly one question")
    qend = _read_question_name(packet, 12) + 4
    if qend > len(packet):
        raise WireError("question runs past the end of the reply")
    return qend


def build_query(qid: int, qname_wire: bytes, qtype: int, qclass: int, do: bool, payload: int = 1232) -> bytes:
    """An upstream query: recursion desired, with EDNS so big answers fit in UDP."""
    return (
        _HEADER.pack(qid, FLAG_RD, 1, 0, 0, 1)
        + qname_wire
        + struct.pack("!HH", qtype, qclass)
        + opt_record(payload, do)
    )


def truncated_reply(reply_flags: int, qid: int, question: bytes, opt: bytes) -> bytes:
    """Header and question only, with TC set: the client should retry over TCP."""
    return _HEADER.pack(qid, reply_flags | FLAG_TC, 1, 0, 0, 1 if opt else 0) + question + opt


pack_header = _HEADER.pack
pack_u32_into = _U32.pack_into
