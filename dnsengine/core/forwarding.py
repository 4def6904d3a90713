"""Conditional forwarding: names under a domain suffix go to that suffix's own upstreams.

`ForwardingRules.route(name)` walks the name's suffixes from the most specific
(`nas.corp.lan`, `corp.lan`, `lan`) and returns the first rule it finds, so the
most specific suffix wins: O(labels) dict lookups, no regex. A name whose last
label no rule ends in is turned away after one set lookup, which is what almost
every query on a network with a few rules costs.

A rule applies to every client group: it overrides a group's own upstreams. The
runtime (dnsengine.runtime.watcher) builds the table from the database with a
forwarder per distinct upstream list; plain values, no Django.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Route:
    """One rule as the resolver uses it; the texts are built once, at snapshot build, not per query."""

    suffix: str
    forwarder: object | None  # None: the engine's default upstreams (the same list, or past the bound)
    upstreams: tuple  # the rule's dnsengine.core.options.Upstream values, in failover order
    log_rule: str  # the query log's rule text: "forward:lan"


class ForwardingRules:
    """suffix -> Route, looked up from the most specific suffix of a name."""

    __slots__ = ("_last_labels", "routes")

    def __init__(self, routes: Iterable[Route] = ()) -> None:
        self.routes: dict[str, Route] = {route.suffix: route for route in routes}
        # The top-level labels the rules end in ("lan", "arpa"): most names end elsewhere.
        self._last_labels = frozenset(suffix.rpartition(".")[2] for suffix in self.routes)

    def __len__(self) -> int:
        return len(self.routes)

    def route(self, name: str) -> Route | None:
        """The rule of the most specific suffix of `name` (lower-case text, no trailing dot), or None."""
        if name.rpartition(".")[2] not in self._last_labels:
            return None
        routes = self.routes
        suffix = name
        while True:
            route = routes.get(suffix)
            if route is not None:
                return route
            dot = suffix.find(".")
            if dot < 0:
                return None
            suffix = suffix[dot + 1 :]

    def reverse_route(self, ip: str) -> Route | None:
        """The rule that covers the reverse (PTR) name of address `ip`, or None."""
        try:
            reverse = ipaddress.ip_address(ip).reverse_pointer
        except ValueError:
            return None
        return self.route(reverse)
