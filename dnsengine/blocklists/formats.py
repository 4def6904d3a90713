"""Parsing of blocklist files: hosts files, plain domain lists, Adblock-style DNS lists and regex lists.

Everything here is pure (no database) and streams: lines are handled one at a
time, so a 100 MB list never sits in memory as one string. Blocklists come from
the internet, so no input line may raise; a line that cannot be used is counted
under a short human-readable reason in `ParseResult.skipped` instead.

One module past ~500 lines on purpose: format detection, the line parser and the
readers apply the same line rules (comments, boilerplate, junk reasons), and a
module per format would have each importing the others' rules.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import BinaryIO

from dnsengine.blocklists.list_suffixes import is_icann_suffix
from dnsengine.core.names import normalize_domain
from dnsengine.core.rules import compile_rule

logger = logging.getLogger(__name__)

# "regex" is never detected: a plain domain list read as regexes would block far
# too much (each dot matches any character), so only a list marked so is read as one.
FORMATS = ("auto", "hosts", "domains", "adblock", "regex")

# Every regex rule is tried, one after the other, on each name no list blocks: a
# domain list mistaken for a regex list must not turn each query into a million searches.
MAX_REGEX_RULES = 1000

# No domain rule needs more; longer lines are skipped unread, so a hostile
# multi-megabyte line costs one length check instead of a regex scan.
MAX_LINE_LENGTH = 1024
# Auto-detection looks at this many rule lines, and buffers at most
# DETECT_MAX_BUFFERED lines in all, so a huge comment header cannot grow the buffer.
DETECT_LINES = 200
DETECT_MAX_BUFFERED = 5000

# A list is refused as "not a blocklist" when more than half of its entries (lines
# that are neither blank nor comments; per name on a hosts line) are unreadable, and at
# least this many: a short hand-made list with a few typos is still loaded.
JUNK_MIN = 10
# Reasons that mean "this line is not list syntax at all". Everything else that is
# skipped is a rule we recognise and cannot use in DNS (an Adblock cosmetic or URL
# rule, a modifier, an IP address, a public suffix, a duplicate): EasyList is mostly
# such rules and is still a list.
JUNK_REASONS = frozenset(
    {"invalid domain", "not a DNS rule", "malformed line", "not text", "line too long", "invalid regex"}
)

_CHUNK_SIZE = 1 << 16
_SNIFF_BYTES = 1024
_UTF8_BOM = b"\xef\xbb\xbf"

# Names every hosts file maps for the machine itself: never worth blocking, and
# so common that they are not worth a warning either.
_HOSTS_BOILERPLATE = frozenset(
    {
        "localhost",
        "localhost.localdomain",
        "localhost4",
        "localhost4.localdomain4",
        "localhost6",
        "localhost6.localdomain6",
        "local",
        "broadcasthost",
        "0.0.0.0",
    }
)

# Adblock modifiers that only narrow a rule by request type or party. A DNS
# sinkhole cannot see either, so the rule still means "block this domain".
_IGNORABLE_MODIFIERS = frozenset(
    {
        "important",
        "third-party",
        "3p",
        "first-party",
        "1p",
        "strict-first-party",
        "strict1p",
        "strict-third-party",
        "strict3p",
        "all",
        "document",
        "doc",
        "popup",
        "script",
        "image",
        "stylesheet",
        "css",
        "xmlhttprequest",
        "xhr",
        "subdocument",
        "frame",
        "media",
        "font",
        "object",
        "other",
        "ping",
        "websocket",
        "webrtc",
        "match-case",
    }
)
# Modifiers that change what a rule means for DNS (undo another rule, answer
# with other records, apply to some clients only, ...): applying the rule as a
# plain block would be wrong. These get their own reason, any other modifier
# shares "unsupported modifier" so hostile input cannot grow the Counter.
_MEANINGFUL_MODIFIERS = frozenset(
    {"badfilter", "dnsrewrite", "client", "denyallow", "ctag", "dnstype", "domain", "redirect", "removeparam", "csp"}
)

# "##", "#@#", "#?#", "#$#", "#%#", "#@$?#", ... and HTML filters "$$", "$@$".
_COSMETIC = re.compile(r"#@?[$?%]{0,2}#|\$@?\$")

# Pi-hole's own additions to a regex (";querytype=AAAA", ";invert", ";reply=nxdomain")
# change what the rule means; read as plain regex they would block the wrong names.
_PIHOLE_REGEX_EXTENSION = re.compile(r";(querytype|invert|reply)\b")
# An inline comment: whitespace, then "#". A name holds no whitespace, so a pattern
# cannot need a literal space before a "#".
_INLINE_COMMENT = re.compile(r"\s+#")


class BlocklistError(Exception):
    """A blocklist file that cannot be used at all; the message says why, for a person."""


class BlocklistTooLarge(BlocklistError):
    """A list over a size limit; reading stopped there. `limit` is "bytes" or "names"."""

    def __init__(self, message: str, limit: str) -> None:
        super().__init__(message)
        self.limit = limit


@dataclass(slots=True)
class ParseResult:
    domains: list[str] = field(default_factory=list)  # normalised, unique, in file order
    rules: list[str] = field(default_factory=list)  # regex patterns (regex lists only), valid, unique, in file order
    allowed: list[str] = field(default_factory=list)  # from Adblock @@||domain^ exceptions
    # reason -> number of entries; a hosts line naming several hosts counts once per name.
    skipped: Counter[str] = field(default_factory=Counter)
    format: str = "domains"
    lines: int = 0
    comments: int = 0  # comment, header and blank lines: expected, so not "skipped"
    ignored_modifiers: int = 0  # rules kept although they carried e.g. $third-party

    @property
    def considered(self) -> int:
        """Entries read: the names and patterns kept plus everything skipped."""
        return len(self.domains) + len(self.rules) + len(self.allowed) + sum(self.skipped.values())

    @property
    def junk(self) -> int:
        """Entries that are not list syntax at all (JUNK_REASONS)."""
        return sum(count for reason, count in self.skipped.items() if reason in JUNK_REASONS)

    @property
    def mostly_junk(self) -> bool:
        """More than half of the entries are unreadable, and at least JUNK_MIN of them."""
        junk = self.junk
        return junk >= JUNK_MIN and junk * 2 > self.considered


def describe_skipped(skipped: Counter[str], top: int | None = None) -> str:
    """'120 invalid domain, 3 line too long', most frequent first; 'none' when empty.

    With `top`, only that many reasons and "N more" for the rest.
    """
    if not skipped:
        return "none"
    common = skipped.most_common()
    text = ", ".join(f"{count:,} {reason}" for reason, count in common[:top])
    if top is not None and len(common) > top:
        text += f", {sum(count for _, count in common[top:]):,} other"
    return text


def check_mostly_entries(result: ParseResult, display: str) -> None:
    """BlocklistError when most of `result` is unreadable: random text or bytes, not a list."""
    if result.mostly_junk:
        raise BlocklistError(
            f"{display} does not look like a blocklist: {result.junk:,} of its {result.considered:,} entries "
            f"are unreadable (read as {result.format}; skipped {describe_skipped(result.skipped, top=3)})"
        )


@lru_cache(maxsize=256)
def _is_ip(token: str) -> bool:
    # Cached: a hosts file repeats one or two addresses on every line.
    try:
        ipaddress.ip_address(token)
    except ValueError:
        return False
    return True


def detect_format(sample: Iterable[str]) -> str:
    """Guess the format from stripped, non-blank lines (the first few hundred are enough).

    Hosts and plain-domain lists are parsed by the same tolerant rules, so the
    decision that matters is Adblock or not: reading an Adblock list as plain
    domains would throw away every ||domain^ rule, while the Adblock parser also
    takes plain domains. So a modest share of Adblock rules is enough.
    """
    adblock = hosts = domains = 0
    for line in sample:
        first = line[0]
        if first == "[" and line.lower().startswith(("[adblock", "[ublock", "[adguard")):
            return "adblock"
        if first == "!":
            continue
        if first == "#":
            # Not even "##..." counts: hosts files draw banners with it.
            continue
        if line.startswith(("||", "@@", "|")) or _COSMETIC.search(line):
            adblock += 1
            continue
        parts = line.split(None, 2)
        if len(parts) > 1 and _is_ip(parts[0]):
            hosts += 1
        else:
            domains += 1
    if adblock and adblock * 10 >= adblock + hosts + domains:
        return "adblock"
    if hosts and hosts >= domains:
        return "hosts"
    return "domains"


_BRACES = re.compile(r"\{(\d*)(,?)(\d*)\}")
# One label and its dot, `([a-z0-9-]+\.)` or `(?:[^.]+\.)`: safe to repeat, since the
# dot ends each repetition and the class cannot take it, so a name splits one way only.
_LABEL_GROUP = re.compile(r"\((?:\?:)?\[(\^?)([^\]\\]*)\][+*]\\\.\)")
# POSIX classes such as [:space:] (Pi-hole's regexes are POSIX): Python reads
# `[^.[:space:]]` as a set followed by a literal "]", which no name holds.
_POSIX_CLASS = re.compile(r"\[:[a-z]+:\]")


def _label_group(m: re.Match) -> str:
    negated, members = m.groups()
    return "x" if ("." in members) == bool(negated) else m.group()


def _braces_repeat(braces: re.Match) -> bool:
    """Whether a {m}, {m,} or {m,n} quantifier allows more than one repetition."""
    low, comma, high = braces.groups()
    if comma:
        return not high or int(high) > 1
    return bool(low) and int(low) > 1


def has_nested_quantifier(pattern: str) -> bool:
    r"""True if a repeated group holds a repetition, as in `(a+)+`, `(\w*\.?)*` or `(x+){2,}`.

    Python's `re` backtracks without a time limit, and such a pattern can take
    exponential time on a name that almost matches: one query would hold a DNS
    thread (and the GIL) for minutes. This is a plain scan of the text, not a
    proof: a repeated label, `([a-z0-9-]+\.)*` or `([^.]+\.)+`, is let through, but
    other harmless patterns are refused (`(ads?-)+`), and overlapping
    alternatives (`(a|a)+`) are missed.
    """
    pattern = _LABEL_GROUP.sub(_label_group, pattern)
    # One flag per open group: does it hold a quantifier so far?
    stack: list[bool] = [False]
    i, n = 0, len(pattern)
    closed_group_has_quantifier = False  # the group that closed just before position i
    while i < n:
        c = pattern[i]
        after_group = closed_group_has_quantifier
        closed_group_has_quantifier = False
        if c == "\\":
            i += 2
            continue
        if c == "[":
            # A character class: skip to its end; "]" first in it is literal.
            i += 1
            if i < n and pattern[i] == "^":
                i += 1
            if i < n and pattern[i] == "]":
                i += 1
            while i < n and pattern[i] != "]":
                i += 2 if pattern[i] == "\\" else 1
            i += 1
            continue
        if c == "(":
            stack.append(False)
            i += 1
            if i < n and pattern[i] == "?":
                i += 1  # group syntax ((?:, (?P<name>, (?=, ...), not a quantifier
            continue
        if c == ")":
            if len(stack) > 1:
                inner = stack.pop()
                closed_group_has_quantifier = inner
                stack[-1] = stack[-1] or inner
            i += 1
            continue
        braces = _BRACES.match(pattern, i) if c == "{" else None
        if c in "*+?" or braces is not None:
            # A repeated group that holds a repetition; "?" or {0,1} only make it optional.
            repeats = c in "*+" or (braces is not None and _braces_repeat(braces))
            if after_group and repeats:
                return True
            stack[-1] = True
            i = braces.end() if braces is not None else i + 1
            if i < n and pattern[i] in "?+":
                i += 1  # lazy or possessive: still the same quantifier
            continue
        i += 1
    return False


def _why_rejected(raw: str, name: str | None, invalid_reason: str) -> str:
    low = raw.lower()
    if low in _HOSTS_BOILERPLATE or (name is None and low.startswith("ip6-")):
        return "hosts boilerplate"
    if _is_ip(raw):
        return "IP address"
    return invalid_reason


class _Parser:
    __slots__ = ("_allowed_seen", "_room", "_seen", "max_names", "result")

    def __init__(self, max_names: int | None = None) -> None:
        self.result = ParseResult()
        self._seen: set[str] = set()
        self._allowed_seen: set[str] = set()
        self.max_names = max_names
        # Names (blocked and allowed) that may still be added before the limit.
        self._room = max_names if max_names is not None else -1

    def text_lines(self, lines: Iterable[str] | Iterable[bytes]) -> Iterator[str]:
        """Yield stripped, non-blank text lines; count the ones that are not text or too long."""
        result = self.result
        skipped = result.skipped
        first = True
        for raw in lines:
            result.lines += 1
            if len(raw) > MAX_LINE_LENGTH:
                skipped["line too long"] += 1
                first = False
                continue
            if isinstance(raw, bytes):
                if first:
                    raw = raw.removeprefix(_UTF8_BOM)
                line = raw.decode("utf-8", "replace")
                if "\ufffd" in line:
                    first = False
                    if line.lstrip().startswith(("#", "!")):
                        # A comment in Latin-1 (an accented author's name): no entry lost.
                        result.comments += 1
                    else:
                        skipped["not text"] += 1
                    continue
            else:
                line = raw.removeprefix("\ufeff") if first else raw
            first = False
            if "\x00" in line:
                skipped["not text"] += 1
                continue
            line = line.strip()
            if not line:
                result.comments += 1
                continue
            yield line

    def add(self, raw: str, allow: bool = False, invalid_reason: str = "invalid domain") -> bool:
        """Add one name; False (and a skip counted) when it is not a usable domain."""
        if raw[0] == "*" and raw.startswith("*."):
            # A plain-list wildcard: the matcher blocks a name with all its
            # subdomains, which is what *.domain is meant to say.
            raw = raw[2:]
        name = normalize_domain(raw)
        # No top-level domain is all digits, so such a name is an IPv4 address or junk.
        if name is None or name in _HOSTS_BOILERPLATE or (name[-1].isdigit() and name.rpartition(".")[2].isdigit()):
            self.result.skipped[_why_rejected(raw, name, invalid_reason)] += 1
            return False
        seen = self._allowed_seen if allow else self._seen
        if name in seen:
            self.result.skipped["duplicate"] += 1
            return True
        if is_icann_suffix(name):
            # A rule for co.uk would block (or allow) every site registered under it.
            # Private suffixes (github.io, duckdns.org) stay: lists name those on purpose.
            self.result.skipped["public suffix"] += 1
            return False
        if not self._room:
            raise BlocklistTooLarge(f"holds more than {self.max_names:,} names", "names")
        self._room -= 1
        seen.add(name)
        (self.result.allowed if allow else self.result.domains).append(name)
        return True

    def hosts_line(self, line: str) -> None:
        """A hosts line, or a plain domain: real lists mix both, so both formats take both."""
        first = line[0]
        if first == "#":
            self.result.comments += 1
            return
        if (first == "|" or first == "@") and line.startswith(("||", "@@")):
            # Adblock syntax in a list read as plain (URLhaus's starts with addresses and
            # ends with ||host/path^ rules): a rule of another format, not junk.
            self.result.skipped["Adblock rule"] += 1
            return
        cut = line.find("#")
        if cut >= 0:
            line = line[:cut]
        parts = line.split()
        if not parts:
            self.result.comments += 1
        elif len(parts) == 1:
            self.add(parts[0])
        elif _is_ip(parts[0]):
            for name in parts[1:]:
                self.add(name)
        else:
            self.result.skipped["malformed line"] += 1

    def adblock_line(self, line: str) -> None:
        result = self.result
        first = line[0]
        if first == "!" or (first == "[" and line[-1] == "]"):
            result.comments += 1
            return
        if first == "#":
            if _COSMETIC.match(line):
                result.skipped["cosmetic rule"] += 1
            else:
                result.comments += 1
            return
        if ("#" in line or "$" in line) and _COSMETIC.search(line):
            result.skipped["cosmetic rule"] += 1
            return
        allow = line.startswith("@@")
        body = line[2:] if allow else line
        if body.startswith("||"):
            self._adblock_domain_rule(body[2:], allow)
        elif body.startswith("|"):
            result.skipped["URL rule"] += 1
        elif body.startswith("/"):
            regex = body.endswith("/") or "/$" in body
            result.skipped["regex rule" if regex else "URL rule"] += 1
        elif allow:
            self.add(body, allow=True, invalid_reason="not a DNS rule")
        elif " " in body or "\t" in body:
            # AdGuard Home reads hosts lines in any list, so do we.
            self.hosts_line(body)
        else:
            self.add(body, invalid_reason="not a DNS rule")

    def regex_line(self, line: str) -> None:
        """One line of a regex list: a Python-compatible regular expression, or a # comment."""
        result = self.result
        if line[0] == "#":
            result.comments += 1
            return
        comment = _INLINE_COMMENT.search(line)
        if comment is not None:
            line = line[: comment.start()]
        skipped = result.skipped
        if _PIHOLE_REGEX_EXTENSION.search(line):
            skipped["Pi-hole regex extension"] += 1
            return
        if _POSIX_CLASS.search(line):
            skipped["POSIX character class"] += 1
            return
        try:
            compile_rule("regex", line)
        except ValueError as exc:
            skipped["regex too long" if "longer than" in str(exc) else "invalid regex"] += 1
            return
        if has_nested_quantifier(line):
            skipped["nested quantifier"] += 1
            return
        if line in self._seen:
            skipped["duplicate"] += 1
            return
        if len(result.rules) >= MAX_REGEX_RULES:
            skipped[f"over the {MAX_REGEX_RULES:,}-regex limit"] += 1
            return
        self._seen.add(line)
        result.rules.append(line)

    def _adblock_domain_rule(self, rule: str, allow: bool) -> None:
        skipped = self.result.skipped
        modifiers = False
        dollar = rule.find("$")
        if dollar >= 0:
            for option in rule[dollar + 1 :].split(","):
                option_name = option.partition("=")[0].strip().lstrip("~").lower()
                if option_name in _IGNORABLE_MODIFIERS:
                    continue
                if option_name in _MEANINGFUL_MODIFIERS:
                    skipped[f"modifier ${option_name}"] += 1
                else:
                    skipped["unsupported modifier"] += 1
                return
            modifiers = True
            rule = rule[:dollar]
        if rule.endswith("^|"):
            rule = rule[:-2]
        elif rule.endswith(("^", "|")):
            rule = rule[:-1]
        if "/" in rule or ":" in rule:
            skipped["URL rule"] += 1
            return
        if "*" in rule.removeprefix("*."):
            skipped["wildcard rule"] += 1
            return
        if self.add(rule, allow=allow) and modifiers:
            self.result.ignored_modifiers += 1


def parse_blocklist(
    lines: Iterable[str] | Iterable[bytes], fmt: str = "auto", *, max_names: int | None = None
) -> ParseResult:
    """Parse blocklist lines (str or bytes, with or without line endings) of format `fmt`.

    With fmt="auto" the format is guessed from the first DETECT_LINES rule
    lines, which are buffered and then parsed like the rest. Never raises on
    content, with one exception: BlocklistTooLarge as soon as the list holds
    more than `max_names` distinct names (blocked and allowed), so a file of
    16 million names is never held whole. ValueError for an unknown `fmt`.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown blocklist format {fmt!r}; use one of {', '.join(FORMATS)}")
    parser = _Parser(max_names)
    texts = parser.text_lines(lines)
    buffered: list[str] = []
    if fmt == "auto":
        rules = 0
        for line in texts:
            buffered.append(line)
            if line[0] not in "#![":
                rules += 1
                if rules >= DETECT_LINES:
                    break
            if len(buffered) >= DETECT_MAX_BUFFERED:
                break
        fmt = detect_format(buffered)
    parser.result.format = fmt
    if fmt == "regex":
        handle = parser.regex_line
    else:
        handle = parser.adblock_line if fmt == "adblock" else parser.hosts_line
    for line in buffered:
        handle(line)
    del buffered
    for line in texts:
        handle(line)
    result = parser.result
    logger.debug(
        "parsed %s lines as %s: %s domains, %s allowed, %s regexes, skipped %s",
        result.lines,
        result.format,
        len(result.domains),
        len(result.allowed),
        len(result.rules),
        describe_skipped(result.skipped),
    )
    return result


def iter_binary_lines(fp: BinaryIO, head: bytes = b"", *, max_bytes: int | None = None) -> Iterator[bytes]:
    """Yield the lines of a binary stream, after `head` (bytes already read from it).

    Unlike iterating the file, a line without end is never held whole: it is
    cut to MAX_LINE_LENGTH + 1 bytes, still long enough to be skipped as too
    long, so memory stays at about one chunk whatever the file holds.
    BlocklistTooLarge as soon as more than `max_bytes` bytes were read.
    """
    tail = b""
    chunk = head or fp.read(_CHUNK_SIZE)
    size = 0
    while chunk:
        size += len(chunk)
        if max_bytes is not None and size > max_bytes:
            raise BlocklistTooLarge(f"is over the {max_bytes:,}-byte limit", "bytes")
        lines = chunk.split(b"\n")
        if tail:
            lines[0] = tail + lines[0]
        tail = lines.pop()
        if len(tail) > MAX_LINE_LENGTH:
            tail = tail[: MAX_LINE_LENGTH + 1]
        yield from lines
        chunk = fp.read(_CHUNK_SIZE)
    if tail:
        yield tail


def _check_head(head: bytes, path: str) -> None:
    """Refuse files that are clearly not a blocklist, with a message that says what they are."""
    if not head:
        raise BlocklistError(f"{path} is empty")
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise BlocklistError(f"{path} is UTF-16 text; save it as UTF-8")
    if head.startswith(b"\x1f\x8b"):
        raise BlocklistError(f"{path} is gzip-compressed; unpack it first")
    start = head.removeprefix(_UTF8_BOM).lstrip().lower()
    if start.startswith(b"<!doctype") or b"<html" in start:
        raise BlocklistError(f"{path} looks like an HTML page, not a blocklist (an error page saved by a download?)")


def read_blocklist(
    fp: BinaryIO, fmt: str = "auto", *, display: str, max_bytes: int | None = None, max_names: int | None = None
) -> ParseResult:
    """Parse an open binary file, streaming it; BlocklistError when it is not a usable list.

    Refused, with a message naming `display`: what is clearly no list (empty,
    UTF-16, gzip, HTML), a list over `max_bytes` or `max_names` (reading stops
    there), one without a valid entry, and one that is mostly unreadable.
    """
    head = fp.read(_SNIFF_BYTES)
    _check_head(head, display)
    try:
        result = parse_blocklist(iter_binary_lines(fp, head, max_bytes=max_bytes), fmt, max_names=max_names)
    except BlocklistTooLarge as exc:
        raise BlocklistTooLarge(f"{display} {exc}; nothing of it was used", exc.limit) from None
    if not result.domains and not result.rules:
        what = "regex" if result.format == "regex" else "domain"
        raise BlocklistError(
            f"no valid {what} in {display} (read as {result.format}): {result.lines:,} lines, "
            f"skipped {describe_skipped(result.skipped)}"
        )
    check_mostly_entries(result, display)
    return result


def read_blocklist_file(
    path: str | os.PathLike[str], fmt: str = "auto", *, max_bytes: int | None = None, max_names: int | None = None
) -> ParseResult:
    """read_blocklist() for the file at `path`; a file over `max_bytes` is refused unread."""
    display = os.fspath(path)
    try:
        with open(path, "rb") as fp:
            size = os.fstat(fp.fileno()).st_size
            if max_bytes is not None and size > max_bytes:
                raise BlocklistTooLarge(
                    f"{display} is {size:,} bytes, over the {max_bytes:,}-byte limit; nothing of it was used", "bytes"
                )
            return read_blocklist(fp, fmt, display=display, max_bytes=max_bytes, max_names=max_names)
    except OSError as exc:
        raise BlocklistError(f"cannot read {display}: {exc.strerror or exc}") from exc
