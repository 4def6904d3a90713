"""The in-memory matcher: which names are allowed, blocked, and by what.

A Matcher is an immutable snapshot built from the database on each reload and
swapped in by one attribute assignment, so queries in flight never see a half
built one and never wait for a reload.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from dnsengine.names import normalize_domain

MAX_REGEX_LENGTH = 500


def compile_rule(kind: str, pattern: str) -> re.Pattern:
    """Compile a wildcard or regex block rule; ValueError says what is wrong with it.

    Wildcards: `*` matches any run of characters (dots included) and `?` one
    character, so `*.example.com` blocks every name below example.com but not
    example.com itself, as people expect from hosts-style wildcards.
    """
    pattern = pattern.strip()
    if not pattern:
        raise ValueError("the pattern is empty")
    if len(pattern) > MAX_REGEX_LENGTH:
        raise ValueError(f"the pattern is longer than {MAX_REGEX_LENGTH} characters")
    if kind == "wildcard":
        text = pattern.lower().rstrip(".")
        if not re.fullmatch(r"[a-z0-9_.*?-]+", text):
            raise ValueError("a wildcard may hold only letters, digits, '-', '_', '.', '*' and '?'")
        regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in text)
        return re.compile(r"\A" + regex + r"\Z")
    if kind == "regex":
        try:
            return re.compile(pattern, re.IGNORECASE)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
    raise ValueError(f"unknown rule kind {kind!r}")


@dataclass(frozen=True, slots=True)
class Decision:
    action: str  # "allow" | "block"
    rule: str  # what decided it, for the query log: "list:NAME", "allow:DOMAIN", "regex:..."


@dataclass(slots=True)
class Matcher:
    blocked: dict[str, int] = field(default_factory=dict)  # domain -> index into list_names
    list_names: list[str] = field(default_factory=list)
    rules: list[tuple[re.Pattern, str]] = field(default_factory=list)
    allowed_exact: dict[str, str] = field(default_factory=dict)  # domain -> label
    allowed_tree: dict[str, str] = field(default_factory=dict)  # domain -> label, covers subdomains

    @classmethod
    def build(
        cls,
        lists: Iterable[tuple[str, Iterable[str]]] = (),
        rules: Iterable[tuple[str, str]] = (),
        allowed: Iterable[tuple[str, bool]] = (),
    ) -> Matcher:
        """lists: (list name, domains); rules: (kind, pattern); allowed: (domain, include_subdomains).

        Invalid names and rules are skipped here: they were validated on the way
        into the database, and a bad row must not stop a reload.
        """
        m = cls()
        for list_name, domains in lists:
            index = len(m.list_names)
            m.list_names.append(list_name)
            for domain in domains:
                # A name already blocked by an earlier list keeps its first attribution.
                m.blocked.setdefault(domain, index)
        for kind, pattern in rules:
            try:
                m.rules.append((compile_rule(kind, pattern), f"{kind}:{pattern}"))
            except ValueError:
                continue
        for domain, include_subdomains in allowed:
            name = normalize_domain(domain, require_dot=False)
            if name is None:
                continue
            if include_subdomains:
                m.allowed_tree[name] = f"allow:*.{name}"
            else:
                m.allowed_exact[name] = f"allow:{name}"
        return m

    def match(self, name: str) -> Decision | None:
        """Decide for a lower-case name without trailing dot: allow wins over every block."""
        label = self.allowed_exact.get(name)
        if label is not None:
            return Decision("allow", label)
        tree = self.allowed_tree
        blocked = self.blocked
        block_index = None
        suffix = name
        while True:
            if tree:
                label = tree.get(suffix)
                if label is not None:
                    return Decision("allow", label)
            if block_index is None:
                block_index = blocked.get(suffix)
            dot = suffix.find(".")
            if dot < 0:
                break
            suffix = suffix[dot + 1 :]
        if block_index is not None:
            return Decision("block", f"list:{self.list_names[block_index]}")
        for regex, label in self.rules:
            # search, not match: a regex rule matches anywhere in the name, as in Pi-hole
            # (`(\.|^)doubleclick\.net$`); wildcards carry their own anchors.
            if regex.search(name):
                return Decision("block", label)
        return None

    @property
    def size(self) -> int:
        return len(self.blocked)
