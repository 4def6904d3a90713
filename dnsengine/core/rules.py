"""The in-memory matcher: which names are allowed, blocked, and by what.

A Matcher is an immutable snapshot built from the database on each reload and
swapped in by one attribute assignment, so queries in flight never see a half
built one and never wait for a reload.
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice

from xxhash import xxh3_64_intdigest

from dnsengine.core.names import normalize_domain

MAX_REGEX_LENGTH = 500
# Fill limit of the blocked-name table: linear probing stays at a few probes per lookup below it.
_MAX_LOAD = 0.6


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
    # What decided it, for the query log: "list:NAME", "allow:DOMAIN", "regex:...",
    # "list:NAME regex:..." (a rule of a regex list).
    rule: str


class _DomainTable:
    """Blocked names as 64-bit XXH3 keys, each with the index of its set of lists, in two flat arrays.

    Open addressing with linear probing, at most 60% full: n names take the next
    power of two above n / 0.6 slots of 8 + 2 bytes, a fraction of a dict of str
    (`make bench-blocklist` measures both, and the other designs tried).

    A name held by several lists points at one interned tuple of their indices
    (`sets`, in list order), so one table serves every client group: each group's
    matcher maps a set index to its decision (the first list of the set the group
    uses), and a list used by several groups costs its memory once.

    The names themselves are not kept, so an unlisted name whose key equals a
    listed one's would be blocked. XXH3 spreads names like a random function,
    so with n listed names that chance is n / 2**64 per lookup: 5e-14 for a
    million, one false block in about 10,000 years at a million lookups a day.
    Keys are XXH3, not hash(), because hash() of a str changes with every
    process (PYTHONHASHSEED): XXH3 keys can be compared across runs and machines.
    A key of 0 marks an empty slot, so a name whose hash is 0 is keyed 1.
    """

    __slots__ = ("keys", "lists", "mask", "sets", "single_labels", "size")

    def __init__(self, capacity: int = 0, list_count: int = 1) -> None:
        slots = 8
        while slots * _MAX_LOAD < capacity:
            slots *= 2
        self.keys = array("Q", bytes(8 * slots))
        self.lists = array("H", bytes(2 * slots)) if list_count <= 1 << 16 else array("I", bytes(4 * slots))
        self.mask = slots - 1
        self.size = 0
        # Set index -> the indices of the lists holding the name, in list order.
        self.sets: list[tuple[int, ...]] = [(i,) for i in range(list_count)]
        # Lists hold names with a dot (the parser and the model insist), so the
        # walk can skip the last label, unless some entry is a bare label.
        self.single_labels = False

    @classmethod
    def build(cls, lists: Iterable[Iterable[str]]) -> _DomainTable:
        """Index the names of each list in turn; a name listed again joins that list to its set."""
        keys = array("Q")  # 8 bytes a name while gathering, so the table is sized once
        ends: list[int] = []  # where each list's keys end in `keys`
        single_labels = False
        hash64 = xxh3_64_intdigest
        append = keys.append
        for domains in lists:
            for domain in domains:
                raw = domain.encode("utf-8", "surrogatepass")
                append(hash64(raw) or 1)
                if b"." not in raw:
                    single_labels = True
            ends.append(len(keys))
        table = cls(len(keys), len(ends))
        table.single_labels = single_labels
        slots, owners, mask = table.keys, table.lists, table.mask
        # Set i < len(ends) is list i alone; sets of several lists are interned after them.
        sets = table.sets
        interned: dict[tuple[int, ...], int] = {}
        size = 0
        pending = iter(keys)
        start = 0
        for owner, end in enumerate(ends):
            for key in islice(pending, end - start):
                i = key & mask
                while True:
                    present = slots[i]
                    if not present:
                        slots[i] = key
                        owners[i] = owner
                        size += 1
                        break
                    if present == key:
                        held = sets[owners[i]]
                        if held[-1] != owner:  # a name twice in one list changes nothing
                            joined = (*held, owner)
                            index = interned.get(joined)
                            if index is None:
                                index = interned[joined] = len(sets)
                                sets.append(joined)
                                if index > 0xFFFF and owners.typecode == "H":
                                    owners = table.lists = array("I", owners)
                            owners[i] = index
                        break
                    i = (i + 1) & mask
            start = end
        table.size = size
        return table

    def decide(self, name: str, decisions: list[Decision | None]) -> Decision | None:
        """The decision of the most specific listed name among `name` and its parents whose
        set of lists has one in `decisions` (a policy's view of the table).

        A name listed only by lists the policy does not use is passed over for its parents:
        a group's list of `example.com` still blocks `ads.example.com` when another group's
        list names `ads.example.com` itself.
        """
        if not self.size:
            return None
        raw = name.encode("utf-8", "surrogatepass")
        slots, mask, owners, hash64 = self.keys, self.mask, self.lists, xxh3_64_intdigest
        suffixes = raw.count(b".") + 1 if self.single_labels else raw.count(b".")
        start = 0
        for _ in range(suffixes):
            key = hash64(raw[start:]) or 1
            i = key & mask
            while True:
                present = slots[i]
                if present == key:
                    decision = decisions[owners[i]]
                    if decision is not None:
                        return decision
                    break
                if not present:
                    break
                i = (i + 1) & mask
            start = raw.find(b".", start) + 1
        return None

    def find(self, name: str) -> int | None:
        """The list-set index of the most specific listed name among `name` and its parents."""
        if not self.size:
            return None
        raw = name.encode("utf-8", "surrogatepass")
        slots, mask, hash64 = self.keys, self.mask, xxh3_64_intdigest
        # One suffix per dot: "a.b.example.com" -> itself, b.example.com, example.com.
        # A dot is one byte in UTF-8 and never part of another character's bytes.
        suffixes = raw.count(b".") + 1 if self.single_labels else raw.count(b".")
        start = 0
        for _ in range(suffixes):
            key = hash64(raw[start:]) or 1
            i = key & mask
            while True:
                present = slots[i]
                if present == key:
                    return self.lists[i]
                if not present:
                    break
                i = (i + 1) & mask
            start = raw.find(b".", start) + 1
        return None


@dataclass(slots=True)
class Matcher:
    """The decision for one policy: the default group's, or one client group's.

    `blocked` may be shared by the matchers of several groups; `set_decisions`
    is this matcher's own view of it (see _DomainTable).
    """

    list_names: list[str] = field(default_factory=list)
    rules: list[tuple[re.Pattern, str]] = field(default_factory=list)
    allowed_exact: dict[str, str] = field(default_factory=dict)  # domain -> label
    allowed_tree: dict[str, str] = field(default_factory=dict)  # domain -> label, covers subdomains
    blocked: _DomainTable = field(default_factory=_DomainTable)
    # Set index of `blocked` -> the Decision (shared: a blocked lookup allocates
    # nothing), or None when no list of the set applies to this policy.
    set_decisions: list[Decision | None] = field(default_factory=list)

    @classmethod
    def build(
        cls,
        lists: Iterable[tuple[str, Iterable[str]]] = (),
        rules: Iterable[tuple[str, str]] = (),
        allowed: Iterable[tuple[str, bool]] = (),
        list_rules: Iterable[tuple[str, str, str]] = (),
    ) -> Matcher:
        """lists: (list name, domains); rules: (kind, pattern); allowed: (domain, include_subdomains);
        list_rules: (list name, kind, pattern), the rules of regex lists, tried after `rules`.

        Invalid names and rules are skipped here: they were validated on the way
        into the database, and a bad row must not stop a reload. Lists are read
        once, as streams; a name in several lists is decided by the first.
        """
        m = cls()

        def names_of_each_list() -> Iterator[Iterable[str]]:
            for list_name, domains in lists:
                m.list_names.append(list_name)
                yield domains

        m.blocked = _DomainTable.build(names_of_each_list())
        m.set_decisions = set_decisions(m.blocked, list_decisions(m.list_names), range(len(m.list_names)))
        m.rules = compile_rules(rules) + compile_list_rules(list_rules)
        m.allowed_exact, m.allowed_tree = allow_tables(allowed)
        return m

    def match(self, name: str) -> Decision | None:
        """Decide for a lower-case name without trailing dot: allow wins over every block."""
        label = self.allowed_exact.get(name)
        if label is not None:
            return Decision("allow", label)
        tree = self.allowed_tree
        if tree:
            suffix = name
            while True:
                label = tree.get(suffix)
                if label is not None:
                    return Decision("allow", label)
                dot = suffix.find(".")
                if dot < 0:
                    break
                suffix = suffix[dot + 1 :]
        decision = self.blocked.decide(name, self.set_decisions)
        if decision is not None:
            return decision
        for regex, label in self.rules:
            # search, not match: a regex rule matches anywhere in the name, as in Pi-hole
            # (`(\.|^)doubleclick\.net$`); wildcards carry their own anchors.
            if regex.search(name):
                return Decision("block", label)
        return None

    @property
    def size(self) -> int:
        """Distinct blocked names in the (shared) table: a name in several lists counts once."""
        return self.blocked.size


# --- Pieces of a matcher, for building one per client group (dnsengine.core.groups) -------


def list_decisions(list_names: list[str], suffix: str = "") -> list[Decision]:
    """One block Decision per list, its rule text `list:NAME` plus `suffix` (e.g. " (group kids)")."""
    return [Decision("block", f"list:{name}{suffix}") for name in list_names]


def set_decisions(table: _DomainTable, decisions: list[Decision], active: Iterable[int]) -> list[Decision | None]:
    """Set index -> the decision of the first list of the set in `active`, or None.

    Costs one pass over the distinct list sets, never over the names: this is what a
    time window opening or closing rebuilds.
    """
    on = set(active)
    out: list[Decision | None] = []
    for members in table.sets:
        out.append(next((decisions[i] for i in members if i in on), None))
    return out


def compile_rules(rules: Iterable[tuple[str, str]]) -> list[tuple[re.Pattern, str]]:
    """(kind, pattern) -> (compiled, rule text); invalid ones are skipped."""
    out = []
    for kind, pattern in rules:
        try:
            out.append((compile_rule(kind, pattern), f"{kind}:{pattern}"))
        except ValueError:
            continue
    return out


def compile_list_rules(list_rules: Iterable[tuple[str, str, str]]) -> list[tuple[re.Pattern, str]]:
    """(list name, kind, pattern) -> (compiled, rule text naming the list); invalid ones are skipped."""
    out = []
    for list_name, kind, pattern in list_rules:
        try:
            out.append((compile_rule(kind, pattern), f"list:{list_name} {kind}:{pattern}"))
        except ValueError:
            continue
    return out


def allow_tables(allowed: Iterable[tuple[str, bool]], suffix: str = "") -> tuple[dict[str, str], dict[str, str]]:
    """(domain, include_subdomains) -> (exact names, names covering their subdomains), each to its label."""
    exact: dict[str, str] = {}
    tree: dict[str, str] = {}
    for domain, include_subdomains in allowed:
        name = normalize_domain(domain, require_dot=False)
        if name is None:
            continue
        if include_subdomains:
            tree[name] = f"allow:*.{name}{suffix}"
        else:
            exact[name] = f"allow:{name}{suffix}"
    return exact, tree
