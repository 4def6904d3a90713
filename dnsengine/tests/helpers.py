from __future__ import annotations

import dns.message
import dns.rcode


def answers(reply: dns.message.Message) -> list[str]:
    """The answer section as sorted 'type value' strings."""
    return sorted(f"{dns.rdatatype.to_text(rrset.rdtype)} {rdata}" for rrset in reply.answer for rdata in rrset)


def rcode(reply: dns.message.Message) -> str:
    return dns.rcode.to_text(reply.rcode())
