"""Public suffixes: names under which anyone can register a domain.

A rule that blocks a public suffix blocks every site registered under it:
`com`, `co.uk`, or a private-section suffix such as `github.io`. The guard
rails (web pages, admin, API, list imports) ask this module before they accept
such a rule. The data is the Public Suffix List bundled with the
`publicsuffixlist` package: nothing is downloaded at run time, and an update
of the list is a pinned package upgrade.
"""

from __future__ import annotations

from functools import cache

from publicsuffixlist import PublicSuffixList

ICANN = "icann"  # a top-level domain or a registry's suffix (co.uk)
PRIVATE = "private"  # a suffix a company hands out (github.io, blogspot.com)


@cache
def _lists() -> tuple[PublicSuffixList, PublicSuffixList]:
    # Loaded on first use: the DNS engine's hot path never needs it.
    return PublicSuffixList(only_icann=True), PublicSuffixList()


def public_suffix_kind(name: str) -> str | None:
    """ICANN or PRIVATE when `name` (lower-case, ASCII/punycode) is itself a public suffix, else None.

    Every single-label name counts as ICANN: the list's default rule makes any
    unknown top-level label (`lan`, `localhost`) a suffix of its own.
    """
    name = name.rstrip(".").lower()
    if not name:
        return None
    icann, everything = _lists()
    if icann.is_public(name):
        return ICANN
    if everything.is_public(name):
        return PRIVATE
    return None
