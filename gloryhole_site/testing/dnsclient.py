"""A real DNS client (dnspython) pointed at an engine on loopback, and readers of its replies."""

from __future__ import annotations

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype


class Client:
    """A real DNS client (dnspython) pointed at an engine on loopback."""

    def __init__(self, port: int) -> None:
        self.port = port

    def query(self, name: str, rdtype: str = "A", *, tcp: bool = False, timeout: float = 3.0, **make_kwargs):
        message = dns.message.make_query(name, rdtype, **make_kwargs)
        if tcp:
            return dns.query.tcp(message, "127.0.0.1", port=self.port, timeout=timeout)
        return dns.query.udp(message, "127.0.0.1", port=self.port, timeout=timeout, ignore_trailing=False)


def answers(reply: dns.message.Message) -> list[str]:
    """The answer section as sorted 'type value' strings."""
    return sorted(f"{dns.rdatatype.to_text(rrset.rdtype)} {rdata}" for rrset in reply.answer for rdata in rrset)


def rcode(reply: dns.message.Message) -> str:
    return dns.rcode.to_text(reply.rcode())


def query_from(source: str, port: int, name: str = "example.com", rdtype: str = "A", *, tcp: bool = False,
               timeout: float = 3.0) -> dns.message.Message:  # fmt: skip
    """A query to the engine on 127.0.0.1 sent from `source`: any 127.0.0.x binds, the whole 127/8 is loopback."""
    message = dns.message.make_query(name, rdtype)
    if tcp:
        return dns.query.tcp(message, "127.0.0.1", port=port, timeout=timeout, source=source)
    return dns.query.udp(message, "127.0.0.1", port=port, timeout=timeout, source=source)
