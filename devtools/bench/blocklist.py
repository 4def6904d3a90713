"""Blocklist matcher benchmark (``make bench-blocklist``): memory, build time and lookups for 1M names.

    python -m devtools.bench.blocklist [--domains 1000000] [--lookups 100000] [--designs all] [--no-reload]

Generates realistic blocked names (ad/tracker-like second-level names under a
weighted mix of TLDs, a third of them with a subdomain such as ``ads.`` or
``cdn-12.``), split over four lists with 5% of the names in two lists. Each
matcher design then runs in its own fresh process, so its RSS is not mixed
with another's, and reports:

- build: seconds to build from a stream of names (read from a file, as the
  engine streams them from the database), hashing included;
- RSS: resident memory after the build minus before it (names, index, all),
  and the peak during the build;
- lookups per second for hits (a listed name), subdomain hits (two labels
  under a listed name, so the parent walk runs) and misses (unlisted names
  with 2-4 labels), each with the same parent walk the engine does; the best
  of three passes.

Then (unless --no-reload) the real path: the lists are imported into a
throw-away SQLite database with blocklist_import and the engine's
snapshot_load() is timed, in a fresh process, as a reload would run it.

Nothing here is a test: timings depend on the machine; docs/blocklists.md has the figures.
"""

from __future__ import annotations

import argparse
import bisect
import gc
import hashlib
import itertools
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from array import array
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from devtools.bench.common import setup_django

LISTS = ("stevenblack", "oisd", "hagezi", "easyprivacy")
_PAGE = os.sysconf("SC_PAGE_SIZE")

_SYLLABLES = (
    "ad ads adx track trk pix pixel stat stats metric tag tags click bid ban ner pop push tele log beacon "
    "data hub zone media net web cloud smart fast go my top best free win lucky prize cash bet play game "
    "view vid tube stream cdn serve srv api app mob mobi sdk sync match cookie id uid user seg aud target "
    "lead conv aff link short redir go2 offer deal shop buy promo coupon news info mail spam bot scan "
    "count visit hit rank seo traf boost reach lift pulse spark nova astra omni meta ultra hyper mega "
    "giga micro nano alpha beta gamma delta sigma zeta neo geo loc fin pay coin crypto mine gold star"
).split()
_TLDS = (
    ("com", 45), ("net", 12), ("org", 5), ("io", 3), ("ru", 4), ("de", 3), ("info", 3), ("xyz", 4),
    ("top", 4), ("online", 2), ("site", 2), ("co.uk", 2), ("com.br", 2), ("jp", 1), ("cn", 2), ("fr", 1),
    ("pl", 1), ("in", 1), ("club", 1), ("biz", 1), ("us", 1), ("tk", 1),
)  # fmt: skip
_PREFIXES = ("ads", "track", "metrics", "pixel", "analytics", "stats", "tag", "log", "telemetry", "collect")


def _second_level(rng: random.Random) -> str:
    words = rng.choices(_SYLLABLES, k=rng.choice((1, 2, 2, 3)))
    name = "".join(words)
    roll = rng.random()
    if roll < 0.25:
        name += "-" + rng.choice(_SYLLABLES)
    elif roll < 0.45:
        name += str(rng.randrange(1, 1000))
    return name


def _random_name(rng: random.Random, tlds: list[str], weights: list[int]) -> str:
    name = f"{_second_level(rng)}.{rng.choices(tlds, weights)[0]}"
    roll = rng.random()
    if roll < 0.08:
        name = "www." + name
    elif roll < 0.20:
        name = f"{rng.choice(_PREFIXES)}.{name}"
    elif roll < 0.30:
        name = f"{rng.choice(_SYLLABLES)}.{name}"
    elif roll < 0.35:
        name = f"{rng.choice(_SYLLABLES)}{rng.randrange(1, 100)}.{rng.choice(_PREFIXES)}.{name}"
    return name


def generate(directory: Path, count: int, lookups: int, seed: int = 6) -> None:
    """Write lists.tsv ("list index TAB name", grouped by list) and the lookup samples."""
    rng = random.Random(seed)
    tlds = [t for t, _ in _TLDS]
    weights = [w for _, w in _TLDS]
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < count:
        name = _random_name(rng, tlds, weights)
        if name not in seen:
            seen.add(name)
            names.append(name)
    per_list = [[] for _ in LISTS]
    for i, name in enumerate(names):
        per_list[i % len(LISTS)].append(name)
    # 5% of the names are in a second list too: duplicates across lists count once.
    for name in rng.sample(names, count // 20):
        per_list[rng.randrange(len(LISTS))].append(name)
    with open(directory / "lists.tsv", "w") as fp:
        for index, domains in enumerate(per_list):
            fp.writelines(f"{index}\t{d}\n" for d in dict.fromkeys(domains))
    hits = rng.sample(names, lookups)
    subdomains = [f"{rng.choice(_SYLLABLES)}{i % 97}.{rng.choice(_PREFIXES)}.{name}" for i, name in enumerate(hits)]
    misses: list[str] = []
    while len(misses) < lookups:
        name = _random_name(rng, tlds, weights)
        parts = name.split(".")
        if not any(".".join(parts[i:]) in seen for i in range(len(parts))):
            misses.append(name)
    for kind, sample in (("hits", hits), ("subdomains", subdomains), ("misses", misses)):
        (directory / f"{kind}.txt").write_text("\n".join(sample) + "\n")


def read_lists(directory: Path) -> Iterator[tuple[int, Iterator[str]]]:
    """(list index, its names) in file order, streaming."""
    with open(directory / "lists.tsv") as fp:
        rows = (line.rstrip("\n").split("\t", 1) for line in fp)
        for index, group in itertools.groupby(rows, key=lambda row: int(row[0])):
            yield index, (name for _, name in group)


# --- The designs ----------------------------------------------------------------------
# Each holds (name -> list index) and answers find(name) with the engine's walk:
# the name, then each parent domain, most specific first; the first hit wins.


def _blake2b64(name: str) -> int:
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little") or 1


def _xxh3(name: str) -> int:
    from xxhash import xxh3_64_intdigest

    return xxh3_64_intdigest(name.encode()) or 1


def _parents(name: str) -> Iterator[str]:
    while True:
        yield name
        dot = name.find(".")
        if dot < 0:
            return
        name = name[dot + 1 :]


class DictOfStr:
    """The old Matcher: dict name -> list index."""

    def __init__(self, lists: Iterable[tuple[int, Iterable[str]]]) -> None:
        self.d: dict[str, int] = {}
        for index, names in lists:
            for name in names:
                self.d.setdefault(name, index)

    def find(self, name: str) -> int | None:
        get = self.d.get
        for suffix in _parents(name):
            index = get(suffix)
            if index is not None:
                return index
        return None


class SetOfStr:
    """A set of names: no attribution to a list, only to see what the dict's values cost."""

    def __init__(self, lists: Iterable[tuple[int, Iterable[str]]]) -> None:
        self.s: set[str] = set()
        for _, names in lists:
            self.s.update(names)

    def find(self, name: str) -> int | None:
        s = self.s
        for suffix in _parents(name):
            if suffix in s:
                return 0
        return None


class DictOfHash:
    """dict 64-bit blake2b key -> list index."""

    def __init__(self, lists: Iterable[tuple[int, Iterable[str]]]) -> None:
        self.d: dict[int, int] = {}
        for index, names in lists:
            for name in names:
                self.d.setdefault(_blake2b64(name), index)

    def find(self, name: str) -> int | None:
        get = self.d.get
        for suffix in _parents(name):
            index = get(_blake2b64(suffix))
            if index is not None:
                return index
        return None


class SortedHashes:
    """Sorted array('Q') of 64-bit keys + parallel array('H') of list indices; bisect to look up."""

    hash: Callable[[str], int] = staticmethod(_blake2b64)

    def __init__(self, lists: Iterable[tuple[int, Iterable[str]]]) -> None:
        h = self.hash
        # key << 16 | index sorts by key, then by list: the first entry of a key is its first list.
        combined = sorted(h(name) << 16 | index for index, names in lists for name in names)
        self.keys = array("Q")
        self.lists = array("H")
        last = None
        for value in combined:
            key = value >> 16
            if key != last:
                self.keys.append(key)
                self.lists.append(value & 0xFFFF)
                last = key
        del combined

    def find(self, name: str) -> int | None:
        keys, h, n = self.keys, self.hash, len(self.keys)
        for suffix in _parents(name):
            key = h(suffix)
            i = bisect.bisect_left(keys, key)
            if i < n and keys[i] == key:
                return self.lists[i]
        return None


class SortedHashesXXH3(SortedHashes):
    hash = staticmethod(_xxh3)


class FlatSortedBuffer:
    """Reversed names ("com.example.ads") sorted in one bytes buffer, found by binary search.

    Exact (no hashing), but the binary search runs in Python.
    """

    def __init__(self, lists: Iterable[tuple[int, Iterable[str]]]) -> None:
        entries: dict[bytes, int] = {}
        for index, names in lists:
            for name in names:
                entries.setdefault(".".join(reversed(name.split("."))).encode(), index)
        ordered = sorted(entries)
        self.lists = array("H", (entries[k] for k in ordered))
        del entries
        self.offsets = array("I", [0])
        total = 0
        for key in ordered:
            total += len(key)
            self.offsets.append(total)
        self.buffer = b"".join(ordered)
        del ordered

    def _index(self, key: bytes) -> int | None:
        buf, offsets = self.buffer, self.offsets
        lo, hi = 0, len(offsets) - 1
        while lo < hi:
            mid = (lo + hi) // 2
            if buf[offsets[mid] : offsets[mid + 1]] < key:
                lo = mid + 1
            else:
                hi = mid
        if lo < len(offsets) - 1 and buf[offsets[lo] : offsets[lo + 1]] == key:
            return lo
        return None

    def find(self, name: str) -> int | None:
        labels = name.encode().split(b".")
        for start in range(len(labels)):
            i = self._index(b".".join(reversed(labels[start:])))
            if i is not None:
                return self.lists[i]
        return None


class HashTable:
    """Open addressing over array('Q') keys + array('H') list indices, linear probing, <= 60% full."""

    hash: Callable[[str], int] = staticmethod(_blake2b64)

    def __init__(self, lists: Iterable[tuple[int, Iterable[str]]]) -> None:
        keys = array("Q")
        owners = array("H")
        for index, names in lists:
            keys.extend(map(self.hash, names))
            owners.extend(itertools.repeat(index, len(keys) - len(owners)))
        slots = 8
        while slots * 0.6 < len(keys):
            slots *= 2
        self.keys = array("Q", bytes(8 * slots))
        self.lists = array("H", bytes(2 * slots))
        self.mask = mask = slots - 1
        table, table_lists = self.keys, self.lists
        for key, owner in zip(keys, owners, strict=True):
            i = key & mask
            while table[i] and table[i] != key:
                i = (i + 1) & mask
            if not table[i]:
                table[i] = key
                table_lists[i] = owner

    def find(self, name: str) -> int | None:
        table, mask, h = self.keys, self.mask, self.hash
        for suffix in _parents(name):
            key = h(suffix)
            i = key & mask
            while True:
                present = table[i]
                if present == key:
                    return self.lists[i]
                if not present:
                    break
                i = (i + 1) & mask
        return None


class EngineTable:
    """The Matcher's own table (dnsengine.core.rules._DomainTable), find() only, to compare with the designs above."""

    def __init__(self, lists: Iterable[tuple[int, Iterable[str]]]) -> None:
        from dnsengine.core.rules import _DomainTable

        self.table = _DomainTable.build(names for _, names in lists)

    def find(self, name: str) -> int | None:
        return self.table.find(name)


class EngineMatcher:
    """dnsengine.core.rules.Matcher itself (the XXH3 hash table), through match(), Decision and all."""

    def __init__(self, lists: Iterable[tuple[int, Iterable[str]]]) -> None:
        from dnsengine.core.rules import Matcher

        self.matcher = Matcher.build(lists=((LISTS[index], names) for index, names in lists))

    def find(self, name: str):
        return self.matcher.match(name)


DESIGNS: dict[str, tuple[type, str]] = {
    "dict-str": (DictOfStr, "dict of str -> list index (old Matcher)"),
    "set-str": (SetOfStr, "set of str (no attribution)"),
    "dict-hash": (DictOfHash, "dict of 64-bit blake2b -> list index"),
    "sorted-blake2b": (SortedHashes, "sorted array of 64-bit blake2b + bisect"),
    "sorted-xxh3": (SortedHashesXXH3, "sorted array of 64-bit XXH3 + bisect"),
    "flat-buffer": (FlatSortedBuffer, "flat sorted bytes buffer + bisect in Python"),
    "table-blake2b": (HashTable, "hash table in arrays, 64-bit blake2b"),
    "table-xxh3": (EngineTable, "hash table in arrays, 64-bit XXH3 (chosen)"),
    "matcher": (EngineMatcher, "the same through Matcher.match(): allowlist, Decision"),
}


# --- Measuring --------------------------------------------------------------------------


def rss_bytes() -> int:
    with open("/proc/self/statm") as fp:
        return int(fp.read().split()[1]) * _PAGE


def peak_rss_bytes() -> int:
    # VmHWM, not getrusage's ru_maxrss: that one keeps the peak of the parent
    # this process was forked from, which holds all the generated names.
    with open("/proc/self/status") as fp:
        for line in fp:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def lookups_per_second(find: Callable[[str], object], names: list[str], rounds: int = 3) -> tuple[float, int]:
    """The best of `rounds` passes over `names` (a shared machine only ever slows a pass down)."""
    best = 0.0
    for _ in range(rounds):
        found = 0
        started = time.perf_counter()
        for name in names:
            if find(name) is not None:
                found += 1
        best = max(best, len(names) / (time.perf_counter() - started))
    return best, found


def run_design(design: str, directory: Path) -> dict:
    samples = {k: (directory / f"{k}.txt").read_text().split() for k in ("hits", "subdomains", "misses")}
    if design in ("matcher", "table-xxh3"):
        import dnsengine.core.rules  # noqa: F401  (imported before the baseline)
    gc.collect()
    before = rss_bytes()
    started = time.perf_counter()
    built = DESIGNS[design][0](read_lists(directory))
    build_seconds = time.perf_counter() - started
    gc.collect()
    after = rss_bytes()
    result = {"design": design, "build_s": build_seconds, "rss_mb": (after - before) / 1e6}
    result["peak_mb"] = (peak_rss_bytes() - before) / 1e6
    for kind, names in samples.items():
        rate, found = lookups_per_second(built.find, names)
        result[f"{kind}_per_s"] = rate
        result[f"{kind}_found"] = found
    return result


def run_reload(directory: Path) -> dict:
    """Import the lists into a throw-away SQLite database, then time the engine's snapshot_load()."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-blocklist-db-", dir=directory))
    setup_django(tmp)
    from dnsengine.blocklists.formats import ParseResult
    from dnsengine.blocklists.importer import blocklist_import
    from dnsengine.models import Blocklist
    from dnsengine.runtime.watcher import snapshot_load

    # Only the benchmark's lists: the default ones the migration creates would add to the count.
    Blocklist.objects.all().delete()
    started = time.perf_counter()
    for index, names in read_lists(directory):
        blocklist_import(LISTS[index], ParseResult(domains=list(names)))
    import_seconds = time.perf_counter() - started
    gc.collect()
    before = rss_bytes()
    started = time.perf_counter()
    snapshot = snapshot_load(1)
    load_seconds = time.perf_counter() - started
    gc.collect()
    return {
        "import_s": import_seconds,
        "load_s": load_seconds,
        "rss_mb": (rss_bytes() - before) / 1e6,
        "peak_mb": (peak_rss_bytes() - before) / 1e6,
        "size": snapshot.matcher.size,
    }


def _child(args: list[str]) -> dict:
    output = subprocess.run(
        [sys.executable, "-m", "devtools.bench.blocklist", *args], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--domains", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=100_000)
    parser.add_argument("--designs", default="all", help="comma-separated: " + ", ".join(DESIGNS))
    parser.add_argument("--no-reload", action="store_true", help="skip the database import and snapshot_load")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        directory = Path(args.data)
        result = run_reload(directory) if args.child == "reload" else run_design(args.child, directory)
        print(json.dumps(result))
        return

    designs = list(DESIGNS) if args.designs == "all" else [d.strip() for d in args.designs.split(",")]
    unknown = [d for d in designs if d not in DESIGNS]
    if unknown:
        parser.error(f"unknown design(s): {', '.join(unknown)}")
    print(f"# {platform.python_implementation()} {platform.python_version()} on {platform.machine()}, "
          f"{os.cpu_count()} CPUs; {args.domains:,} names in {len(LISTS)} lists (+5% duplicates across lists), "
          f"{args.lookups:,} lookups of each kind; load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-blocklist-") as tmp:
        directory = Path(tmp)
        started = time.perf_counter()
        generate(directory, args.domains, args.lookups)
        print(f"# generated in {time.perf_counter() - started:.1f} s\n")
        print("| design | build s | RSS MB | peak MB | hits/s | subdomain hits/s | misses/s |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for design in designs:
            r = _child(["--child", design, "--data", tmp])
            wrong = [k for k in ("hits", "subdomains") if r[f"{k}_found"] != args.lookups]
            if r["misses_found"] or wrong:
                # A design that answers wrongly has no business in the table.
                sys.exit(f"{design}: wrong answers (hits {r['hits_found']}, subdomains {r['subdomains_found']}, "
                         f"misses found {r['misses_found']})")  # fmt: skip
            rates = " | ".join(f"{r[f'{k}_per_s']:,.0f}" for k in ("hits", "subdomains", "misses"))
            print(f"| {DESIGNS[design][1]} | {r['build_s']:.1f} | {r['rss_mb']:.0f} | {r['peak_mb']:.0f} | {rates} |")
        if not args.no_reload:
            r = _child(["--child", "reload", "--data", tmp])
            print(f"\nFull reload from SQLite (snapshot_load, {r['size']:,} distinct names): "
                  f"{r['load_s']:.1f} s, RSS +{r['rss_mb']:.0f} MB (peak +{r['peak_mb']:.0f} MB); "
                  f"importing the {len(LISTS)} lists first took {r['import_s']:.1f} s")  # fmt: skip


if __name__ == "__main__":
    main()
