"""Guard rails on blocking: what a person may block, what needs a second look, what a rule blocks.

One place that the one-click "block this domain", the admin and any API go
through (list imports have their own, line by line, in the blocklist code).
Pure functions: the caller reads the recent traffic (querylog.traffic) and the
threshold setting and hands them in, so this module needs no database.

- Refused outright: IP addresses (with or without brackets, and names whose
  last label is a number, which resolvers and browsers read as addresses),
  `localhost` and every name below it (RFC 6761: always this machine), and the
  root (an empty name).
- Confirmed first: a public suffix (com, co.uk, github.io: every site
  registered under it), any single-label name, and a rule that would block at
  least the configured share of the last 24 hours' queries.
- Every verdict says what the rule blocks, with the recent figures.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass

from dnsengine.blocklists.suffixes import ICANN, PRIVATE, public_suffix_kind
from dnsengine.core.names import normalize_domain
from dnsengine.core.rules import compile_rule

DOMAIN = "domain"  # a list entry: the name and every name below it
WILDCARD = "wildcard"
REGEX = "regex"

LOCALHOST = "localhost"
# 0x7f000001, 0x7f.1: inet_aton reads these as IPv4 addresses.
_HEX_NUMBER = re.compile(r"0x[0-9a-f]*")


@dataclass(frozen=True, slots=True)
class RecentTraffic:
    """What the query log saw in the last `hours` hours, and how much of it a rule covers."""

    queries: int  # every query logged in the window
    matched_queries: int  # queries for names the rule covers
    matched_names: int  # distinct names the rule covers
    hours: int = 24
    # For a wildcard or regex, only the busiest names seen are tried: how many
    # distinct names there were and how many were tried.
    names_seen: int = 0
    names_tried: int = 0

    @property
    def share(self) -> float:
        """Percent of the window's queries the rule covers."""
        return 100.0 * self.matched_queries / self.queries if self.queries else 0.0

    @property
    def partial(self) -> bool:
        return self.names_tried < self.names_seen


@dataclass(frozen=True, slots=True)
class Verdict:
    kind: str  # DOMAIN | WILDCARD | REGEX
    target: str  # the normalised domain, or the pattern
    refused: str  # why the rule is refused; "" when it may be added
    confirm: tuple[str, ...]  # why a person must confirm it first; empty when not needed
    scope: str  # "blocks doubleclick.net and every name below it"
    traffic: RecentTraffic | None  # None when the figures could not be read

    @property
    def needs_confirmation(self) -> bool:
        return not self.refused and bool(self.confirm)

    @property
    def summary(self) -> str:
        """What the rule blocks, with the recent figures: the sentence people read before and after."""
        return self.scope + traffic_clause(self.traffic)


def traffic_clause(traffic: RecentTraffic | None) -> str:
    """': 1,234 of 56,789 queries (2.2 %) and 12 names seen in the last 24 h' (or why there are no figures)."""
    if traffic is None:
        return " (no query-log figures to say how much of the recent traffic that is)"
    if not traffic.queries:
        return f"; no queries were logged in the last {traffic.hours} h to measure it against"
    names = f"{traffic.matched_names:,} name{'' if traffic.matched_names == 1 else 's'}"
    text = (
        f": {traffic.matched_queries:,} of {traffic.queries:,} queries ({format_share(traffic.share)})"
        f" and {names} seen in the last {traffic.hours} h"
    )
    if traffic.partial:
        text += f" (of the {traffic.names_tried:,} busiest of {traffic.names_seen:,} names, so at least that)"
    return text


def format_share(share: float) -> str:
    if 0 < share < 0.1:
        return "< 0.1 %"
    return f"{share:.1f} %"


# --- Refusals -------------------------------------------------------------------------


def _address(value: str) -> str | None:
    """The address `value` spells ([::1], 127.0.0.1, fe80::1%eth0), or None."""
    text = value.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if ":" in text:
        text = text.split("%", 1)[0]  # an IPv6 zone: fe80::1%eth0
    text = text.rstrip(".")
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def domain_refusal(value: str) -> str:
    """Why a domain rule for `value` (as typed, or as stored) is refused outright; "" when it is not.

    Runs before any normalisation, so "[::1]" is refused as an address rather
    than as a malformed name.
    """
    text = value.strip()
    if text in ("", "."):
        return "the empty name is the DNS root: a rule for it would block every name"
    address = _address(text)
    if address is not None:
        return (
            f"{text} is an IP address, not a domain name: a block rule matches names that clients look up,"
            " never addresses"
        )
    name = text.rstrip(".").lower()
    last = name.rsplit(".", 1)[-1]
    if last.isdigit() or _HEX_NUMBER.fullmatch(last):
        return (
            f"{text} reads as an IP address (its last label is a number, which no top-level domain is):"
            " a block rule matches names, never addresses"
        )
    if name == LOCALHOST or name.endswith("." + LOCALHOST):
        return f"{text} is localhost or a name below it, which always means this machine (RFC 6761): never blocked"
    return ""


# --- Verdicts -------------------------------------------------------------------------


def covers_domain(name: str) -> Callable[[str], bool]:
    """The names a domain rule blocks: the name and every name below it, label by label."""
    below = "." + name

    def covers(candidate: str) -> bool:
        return candidate == name or candidate.endswith(below)

    return covers


def covers_pattern(kind: str, pattern: str) -> Callable[[str], bool]:
    """The names a wildcard or regex rule blocks, as the engine's matcher decides (ValueError if invalid)."""
    # The engine matches every rule with search() against the name's text form;
    # wildcards carry their own anchors (dnsengine.core.rules.Matcher.match).
    return compile_rule(kind, pattern).search


def _suffix_reason(name: str, *, under: bool, exact: bool = False) -> str:
    """Why blocking every name at (or, under=True, strictly below; exact=True, only) `name` needs a
    confirmation; "" if not."""
    what = f"every name below {name}" if under else f"{name} and every name below it"
    if exact:
        what = f"exactly {name}, a name that is itself a suffix"
    if "." not in name:
        return (
            f"{name} is a single-label name (a top-level domain such as com, or a local name such as lan):"
            f" the rule blocks {what}"
        )
    kind = public_suffix_kind(name)
    if kind == ICANN:
        return (
            f"{name} is a top-level domain or registry suffix: the rule blocks {what}, every site registered under it"
        )
    if kind == PRIVATE:
        return (
            f"{name} is a public suffix that a company hands out (like github.io, listed in the Public Suffix"
            f" List's private section): the rule blocks {what}, every site its customers have under it"
        )
    return ""


def _share_reason(traffic: RecentTraffic | None, confirm_share: float) -> str:
    if traffic is None or not traffic.queries or not traffic.matched_queries:
        return ""
    if traffic.share < confirm_share:
        return ""
    return (
        f"it would block {format_share(traffic.share)} of the queries of the last {traffic.hours} h,"
        f" at or above the {confirm_share:g} % that asks for a confirmation"
    )


def domain_verdict(name: str, traffic: RecentTraffic | None, confirm_share: float) -> Verdict:
    """The verdict on blocking `name` (normalised, as dnsengine.core.names.normalize_domain returns it) and below."""
    refused = domain_refusal(name)
    reasons = [] if refused else [_suffix_reason(name, under=False), _share_reason(traffic, confirm_share)]
    return Verdict(
        kind=DOMAIN,
        target=name,
        refused=refused,
        confirm=tuple(r for r in reasons if r),
        scope=f"blocks {name} and every name below it",
        traffic=traffic,
    )


def _wildcard_suffix(text: str) -> str:
    """The whole labels every match of a wildcard ends in (its matches are all strictly below them).

    `*.co.uk` -> "co.uk"; `ads*.example.com` -> "example.com"; `*com` -> "":
    its last label is only partly fixed.
    """
    tail = re.split(r"[*?]", text)[-1]
    if tail.startswith("."):
        return tail[1:]
    _, dot, rest = tail.partition(".")
    return rest if dot else ""


def pattern_verdict(kind: str, pattern: str, traffic: RecentTraffic | None, confirm_share: float) -> Verdict:
    """The verdict on a wildcard or regex block rule."""
    text = pattern.strip()
    scope = (
        f"blocks every name that matches the wildcard {text}"
        if kind == WILDCARD
        else f"blocks every name that the regular expression {text} matches"
    )
    try:
        covers = covers_pattern(kind, text)
    except ValueError as exc:
        return Verdict(kind, text, str(exc), (), scope, traffic)
    refused = ""
    reasons: list[str] = []
    if covers(""):
        refused = "the pattern matches the empty name (the DNS root), so it matches every name"
    elif covers(LOCALHOST):
        refused = "the pattern matches localhost, which always means this machine (RFC 6761): never blocked"
    elif kind == WILDCARD:
        name = text.lower().rstrip(".")
        if not re.search(r"[*?]", name):
            # No wildcard characters: it blocks exactly this one name.
            refused = domain_refusal(name)
            scope = f"blocks exactly {name} (not the names below it)"
            if not refused:
                reasons.append(_suffix_reason(name, under=False, exact=True))
        else:
            suffix = _wildcard_suffix(name)
            if suffix:
                refused = domain_refusal(suffix)  # *.localhost, *.0.0.1
                reasons.append(_suffix_reason(suffix, under=True))
    if refused:
        return Verdict(kind, text, refused, (), scope, traffic)
    reasons.append(_share_reason(traffic, confirm_share))
    return Verdict(kind, text, refused, tuple(r for r in reasons if r), scope, traffic)


# --- History: what "block this domain" offers -----------------------------------------


def is_blockable_domain(name: str) -> bool:
    """True when `name` (a text form as the query log stores it) can be a list entry as it is, and is not refused."""
    return bool(name) and normalize_domain(name, require_dot=False) == name and not domain_refusal(name)


def blockable_parent(name: str) -> str | None:
    """The nearest name at or above `name` that "block this domain" can offer, or None.

    `name` is the query log's text form, where every "." separates labels. The
    name itself when it is a valid domain; else the longest proper suffix of
    whole labels that is (x=1.doubleclick.net -> doubleclick.net). Refused
    names (addresses, localhost, the root) are never offered; public suffixes
    are, and the block asks for a confirmation.
    """
    labels = name.split(".")
    for i in range(len(labels)):
        candidate = ".".join(labels[i:])
        if is_blockable_domain(candidate):
            return candidate
        if domain_refusal(candidate):
            # Its parents are addresses or localhost too (127.0.0.1 -> 0.0.1 -> 0.1 -> 1).
            return None
    return None
