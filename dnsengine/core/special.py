"""Names that are never sent upstream: they mean something only on this network or host.

- `localhost` and every name below it are the loopback addresses (RFC 6761 6.3).
- `invalid` and below never exist (RFC 6761 6.4).
- Reverse lookups for private, loopback, link-local and documentation addresses
  (RFC 6303) exist only on the network that uses them: a public resolver can
  only answer NXDOMAIN, and asking it tells it which private addresses the
  network has. Answered NXDOMAIN here, as dnsmasq's `bogus-priv` does.
- Names of a single label ("nas", "printer") belong to the local network, not
  the internet (dnsmasq's `domain-needed`); answered NXDOMAIN unless the
  setting forwards them.

A local record wins over all of these (the resolver asks its local records
first): one of the exact name, a wildcard above it, or the PTR generated for a
local address (dnsengine.core.localrecords), so `dig -x` of a local address in a
private range answers its name. Pure functions over the resolver's text form of a
name; nothing here imports Django.
"""

from __future__ import annotations

LOCALHOST = "localhost"
INVALID = "invalid"
PRIVATE_REVERSE = "private-reverse"
SINGLE_LABEL = "single-label"


def _ipv4_zones() -> set[str]:
    zones = {
        "10.in-addr.arpa",  # 10/8
        "127.in-addr.arpa",  # loopback
        "0.in-addr.arpa",  # "this network"
        "254.169.in-addr.arpa",  # link-local
        "168.192.in-addr.arpa",  # 192.168/16
        "2.0.192.in-addr.arpa",  # TEST-NET-1
        "100.51.198.in-addr.arpa",  # TEST-NET-2
        "113.0.203.in-addr.arpa",  # TEST-NET-3
        "255.255.255.255.in-addr.arpa",  # broadcast
    }
    zones.update(f"{n}.172.in-addr.arpa" for n in range(16, 32))  # 172.16/12
    zones.update(f"{n}.100.in-addr.arpa" for n in range(64, 128))  # 100.64/10, shared address space (RFC 7793)
    return zones


def _ipv6_zones() -> set[str]:
    nibbles = ".".join("0" * 31)
    return {
        f"0.{nibbles}.ip6.arpa",  # ::, unspecified
        f"1.{nibbles}.ip6.arpa",  # ::1, loopback
        "c.f.ip6.arpa",  # fc00::/8 and
        "d.f.ip6.arpa",  # fd00::/8, unique local
        "8.e.f.ip6.arpa",  # fe80::/10, link-local
        "9.e.f.ip6.arpa",
        "a.e.f.ip6.arpa",
        "b.e.f.ip6.arpa",
        "8.b.d.0.1.0.0.2.ip6.arpa",  # 2001:db8::/32, documentation
    }


PRIVATE_REVERSE_ZONES = frozenset(_ipv4_zones() | _ipv6_zones())


# Only address lookups of a single label are kept home (as dnsmasq's domain-needed does):
# "com NS" or a validator's "arpa DNSKEY" are real questions about the DNS itself.
ADDRESS_TYPES = frozenset({1, 28, 65})  # A, AAAA, HTTPS


def special_use(name: str, qtype: int = 1, *, forward_single_label: bool = False,
                forward_private_reverse: bool = False) -> str | None:  # fmt: skip
    """Which kind of never-forwarded name `name` is (LOCALHOST, INVALID, PRIVATE_REVERSE, SINGLE_LABEL), or None.

    `name` is lower-case text without the trailing dot, "" for the root.
    """
    dot = name.rfind(".")
    tld = name[dot + 1 :]
    if tld == "arpa" and dot >= 0:
        if forward_private_reverse or not (name.endswith(".in-addr.arpa") or name.endswith(".ip6.arpa")):
            return None
        zones = PRIVATE_REVERSE_ZONES
        suffix = name
        while True:
            if suffix in zones:
                return PRIVATE_REVERSE
            dot = suffix.find(".")
            if dot < 0:
                return None
            suffix = suffix[dot + 1 :]
    if tld == LOCALHOST:
        return LOCALHOST
    if tld == INVALID:
        return INVALID
    if dot < 0 and name and not forward_single_label and qtype in ADDRESS_TYPES:
        return SINGLE_LABEL
    return None
