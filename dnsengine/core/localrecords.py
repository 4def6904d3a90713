"""Local records: the names this network answers itself, as plain values for the resolver.

Two sources: the LocalRecord table (the web page and the admin) and a hosts-format
file (`GLORYHOLE_LOCAL_HOSTS_FILE`). A record of the table wins over the file's
for the same name and type. `LocalRecords.build` turns both into dicts the
resolver reads with one lookup per name:

- `records`: name -> {qtype: ((value text, ttl, dnslib rdata), ...)}, with a PTR
  generated for each A and AAAA record's address (in-addr.arpa, or ip6.arpa
  nibbles) unless the table holds a PTR for that reverse name.
- `wildcards`: for a record named `*.dev.lan`, "dev.lan" -> the same shape. A
  wildcard answers every name below its parent, however many labels deep; an
  exact name wins over any wildcard and the nearest wildcard wins over one
  further up (RFC 4592, loosely: an exact name between the wildcard and the
  asked name does not stop the match).

The value syntax of each type is parsed here (`parse_value`), so the model's
validation and the engine read values the same way. Nothing here imports Django.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from dnslib import AAAA, CNAME, MX, PTR, QTYPE, SRV, TXT, A

from dnsengine.core.names import normalize_domain

TYPES = ("A", "AAAA", "CNAME", "PTR", "TXT", "MX", "SRV")
TYPE_A, TYPE_AAAA, TYPE_CNAME, TYPE_PTR = QTYPE.A, QTYPE.AAAA, QTYPE.CNAME, QTYPE.PTR  # plain ints, read often
ADDRESS_TYPES = frozenset({TYPE_A, TYPE_AAAA})
MAX_TXT_STRING = 255  # bytes in one character-string (RFC 1035 3.3)
MAX_TXT_STRINGS = 16  # a sane bound: SPF, DKIM and verification strings need a few at most

# The hosts file's bounds: a file past MAX_BYTES is not read, lines past MAX_ENTRIES records are left out.
HOSTS_TTL = 300
HOSTS_MAX_BYTES = 10 << 20
HOSTS_MAX_ENTRIES = 100_000

# One answer: (canonical value text, ttl). Its dnslib rdata is made when a query first needs
# it (the built answer is then cached): a 100,000-line hosts file must not cost a dnslib
# object per line.
Answer = tuple[str, int]
ByType = dict[int, tuple[Answer, ...]]


class RecordError(ValueError):
    """A value that does not parse for its type; the message says what is expected."""


# -- values -------------------------------------------------------------------------


def parse_name(value: str, what: str = "name") -> str:
    name = normalize_domain(value, require_dot=False)
    if name is None:
        raise RecordError(f"{value.strip()!r} is not a valid {what}")
    return name


def parse_u16(text: str, what: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise RecordError(f"the {what} must be a whole number from 0 to 65535, not {text!r}")
    return int(text)


def parse_mx(value: str) -> tuple[int, str]:
    """ "10 mail.lan" -> (10, "mail.lan")."""
    fields = value.split()
    if len(fields) != 2:
        raise RecordError('an MX value is a preference and a mail server name, as "10 mail.lan"')
    return parse_u16(fields[0], "preference"), parse_name(fields[1], "mail server name")


def parse_srv(value: str) -> tuple[int, int, int, str]:
    """ "0 5 5060 sip.lan" -> (priority, weight, port, target); target "." means no service."""
    fields = value.split()
    if len(fields) != 4:
        raise RecordError('an SRV value is "priority weight port target", as "0 5 5060 sip.lan"')
    numbers = [parse_u16(text, what) for text, what in zip(fields[:3], ("priority", "weight", "port"), strict=True)]
    target = "." if fields[3] == "." else parse_name(fields[3], "target name")
    return numbers[0], numbers[1], numbers[2], target


def parse_txt(value: str) -> tuple[bytes, ...]:
    """The character-strings of a TXT value, UTF-8 encoded.

    Plain text (not starting with a double quote) is one string, taken as it is
    (quotes inside are kept). Several strings: each in double quotes, separated by
    spaces: `"v=DKIM1; k=rsa; " "p=MIGf..."`; inside quotes `\\"` is a quote and
    `\\\\` a backslash. Each string is at most 255 bytes once encoded as UTF-8.
    """
    text = value.strip()
    if not text.startswith('"'):
        strings = [text]
    else:
        strings, i = [], 0
        while i < len(text):
            if text[i].isspace():
                i += 1
                continue
            if text[i] != '"':
                raise RecordError(f"text outside double quotes at character {i + 1}: put every string in quotes")
            i += 1
            chars = []
            while True:
                if i >= len(text):
                    raise RecordError("a quoted string is not closed")
                c = text[i]
                if c == "\\" and i + 1 < len(text) and text[i + 1] in '"\\':
                    chars.append(text[i + 1])
                    i += 2
                elif c == '"':
                    i += 1
                    break
                else:
                    chars.append(c)
                    i += 1
            strings.append("".join(chars))
            if i < len(text) and not text[i].isspace():
                raise RecordError(f"a space must separate the quoted strings (character {i + 1})")
    if len(strings) > MAX_TXT_STRINGS:
        raise RecordError(f"at most {MAX_TXT_STRINGS} strings")
    encoded = []
    for n, string in enumerate(strings, 1):
        data = string.encode("utf-8")
        if len(data) > MAX_TXT_STRING:
            where = f"string {n} is" if len(strings) > 1 else "the text is"
            raise RecordError(f'{where} {len(data)} bytes, more than {MAX_TXT_STRING}: split it into quoted strings,'
                              ' as "first part" "second part"')  # fmt: skip
        encoded.append(data)
    return tuple(encoded)


def txt_text(strings: tuple[bytes, ...]) -> str:
    """The canonical text of TXT strings: plain when one string reads back the same, else quoted."""
    decoded = [s.decode("utf-8") for s in strings]
    if len(decoded) == 1 and not decoded[0].startswith('"') and decoded[0] == decoded[0].strip():
        return decoded[0]
    return " ".join('"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"' for s in decoded)


def parse_value(rtype: str, value: str) -> str:
    """The canonical text of `value` for a record of type `rtype`; RecordError with a clear message."""
    value = value.strip()
    if rtype == "A":
        try:
            return str(ipaddress.IPv4Address(value))
        except ValueError:
            raise RecordError(f"{value!r} is not an IPv4 address") from None
    if rtype == "AAAA":
        try:
            return str(ipaddress.IPv6Address(value))
        except ValueError:
            raise RecordError(f"{value!r} is not an IPv6 address") from None
    if rtype in ("CNAME", "PTR"):
        return parse_name(value, "domain name")
    if rtype == "MX":
        preference, host = parse_mx(value)
        return f"{preference} {host}"
    if rtype == "SRV":
        return " ".join(str(part) for part in parse_srv(value))
    if rtype == "TXT":
        return txt_text(parse_txt(value))
    raise RecordError(f"unknown record type {rtype!r}; one of {', '.join(TYPES)}")


def parse_owner(name: str, rtype: str = "A") -> str:
    """A record's name: a domain name, `*.` and a domain name, or (for PTR) an address, made its reverse name."""
    name = name.strip().rstrip(".")
    if rtype == "PTR":
        try:
            return ipaddress.ip_address(name).reverse_pointer
        except ValueError:
            pass
    if name.startswith("*."):
        return "*." + parse_name(name[2:])
    if "*" in name:
        raise RecordError(f"{name!r}: a wildcard is written *.parent, as *.dev.lan; '*' goes nowhere else")
    return parse_name(name)


def rdata(qtype: int, value: str):
    """The dnslib rdata of a canonical value (as parse_value returns it)."""
    if qtype == QTYPE.A:
        return A(value)
    if qtype == QTYPE.AAAA:
        return AAAA(value)
    if qtype == QTYPE.CNAME:
        return CNAME(value)
    if qtype == QTYPE.PTR:
        return PTR(value)
    if qtype == QTYPE.MX:
        preference, host = parse_mx(value)
        return MX(host, preference)
    if qtype == QTYPE.SRV:
        priority, weight, port, target = parse_srv(value)
        return SRV(priority, weight, port, target)
    if qtype == QTYPE.TXT:
        return TXT(list(parse_txt(value)))
    raise RecordError(f"unknown record type {qtype}")


# -- the hosts file -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HostsRecords:
    """What a hosts file gave: rows (name, type, address, ttl, line number), the malformed lines' numbers."""

    rows: tuple[tuple[str, str, str, int, int], ...] = ()
    bad_lines: tuple[int, ...] = ()
    truncated: bool = False  # more than max_entries records: the rest left out


def parse_hosts_records(text: str, max_entries: int = HOSTS_MAX_ENTRIES, ttl: int = HOSTS_TTL) -> HostsRecords:
    """A and AAAA rows from `/etc/hosts`-style text: `address name [alias...]  # comment`.

    Every name of a line gets the address (its PTR is generated by LocalRecords.build).
    A line whose address or any name does not parse is skipped and its number kept.
    """
    rows: list[tuple[str, str, str, int, int]] = []
    seen: set[tuple[str, str]] = set()
    bad: list[int] = []
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        try:
            if len(fields) < 2:
                raise ValueError("no name")
            address = ipaddress.ip_address(fields[0].split("%", 1)[0])  # fe80::1%eth0: the zone is no use in DNS
            names = [normalize_domain(f, require_dot=False) for f in fields[1:]]
            if None in names:
                raise ValueError("bad name")
        except ValueError:
            bad.append(number)
            continue
        rtype = "A" if address.version == 4 else "AAAA"
        for name in names:
            if (name, str(address)) in seen:
                continue
            if len(rows) >= max_entries:
                return HostsRecords(tuple(rows), tuple(bad), truncated=True)
            seen.add((name, str(address)))
            rows.append((name, rtype, str(address), ttl, number))
    return HostsRecords(tuple(rows), tuple(bad))


# -- what the resolver reads --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LocalRecords:
    """The local names, built once per reload; see the module docstring."""

    records: dict[str, ByType] = field(default_factory=dict)
    wildcards: dict[str, ByType] = field(default_factory=dict)
    # What it was built from, so a changed hosts file rebuilds it without the database.
    table_rows: tuple = ()
    hosts_rows: tuple = ()
    hosts_count: int = 0  # records from the hosts file in use (not overridden by the table)

    @classmethod
    def build(cls, rows, hosts_rows=()) -> LocalRecords:
        """rows: (name, type text, value, ttl) from the table; hosts_rows: (name, type, value, ttl, line)."""
        table_rows = tuple(tuple(row) for row in rows)
        hosts_rows = tuple(hosts_rows)
        collected: dict[str, dict[int, list[Answer]]] = {}

        def add(name: str, qtype: int, value: str, ttl: int) -> bool:
            answers = collected.setdefault(name, {}).setdefault(qtype, [])
            if any(a[0] == value for a in answers):
                return False
            answers.append((value, ttl))
            return True

        table_keys: set[tuple[str, int]] = set()
        for name, rtype, value, ttl in table_rows:
            qtype = getattr(QTYPE, rtype, None)
            if rtype in TYPES and qtype is not None and _valid(qtype, value):
                add(name, qtype, value, ttl)
                table_keys.add((name, qtype))
        hosts_count = 0
        for name, rtype, value, ttl, _line in hosts_rows:
            qtype = TYPE_A if rtype == "A" else TYPE_AAAA
            # The table wins for this name and type; a CNAME there leaves no room for addresses.
            if (name, qtype) in table_keys or (name, TYPE_CNAME) in table_keys:
                continue
            hosts_count += add(name, qtype, value, ttl)
        # A PTR for every local address, unless the table has one for that reverse name.
        explicit_ptr = {name for name, by_type in collected.items() if TYPE_PTR in by_type}
        for name, by_type in list(collected.items()):
            if name.startswith("*."):
                continue
            for qtype in (TYPE_A, TYPE_AAAA):
                for value, ttl in by_type.get(qtype, ()):
                    reverse = _reverse_name(value, qtype)
                    if reverse in explicit_ptr or TYPE_CNAME in collected.get(reverse, ()):
                        continue
                    add(reverse, TYPE_PTR, name, ttl)
        records: dict[str, ByType] = {}
        wildcards: dict[str, ByType] = {}
        for name, by_type in collected.items():
            frozen = {qtype: tuple(answers) for qtype, answers in by_type.items() if answers}
            if name.startswith("*."):
                wildcards[name[2:]] = frozen
            else:
                records[name] = frozen
        return cls(records, wildcards, table_rows, hosts_rows, hosts_count)

    def with_hosts(self, hosts_rows) -> LocalRecords:
        """The same table records with another hosts file's rows."""
        return LocalRecords.build(self.table_rows, hosts_rows)

    def lookup(self, name: str) -> ByType | None:
        """The records of `name`: its own, else the nearest wildcard's; None when it has none."""
        found = self.records.get(name)
        if found is None and self.wildcards:
            return self.match_wildcard(name)
        return found

    def match_wildcard(self, name: str) -> ByType | None:
        """The nearest wildcard above `name`: one dict lookup per label, never a scan."""
        wildcards = self.wildcards
        dot = name.find(".")
        while dot >= 0:
            name = name[dot + 1 :]
            found = wildcards.get(name)
            if found is not None:
                return found
            dot = name.find(".")
        return None


def _valid(qtype: int, value: str) -> bool:
    """False for a table row that bypassed validation (raw SQL, an older value): it is left out."""
    try:
        rdata(qtype, value)
    except Exception:  # dnslib and ipaddress raise several types on bad input
        return False
    return True


def _reverse_name(address: str, qtype: int) -> str:
    """The PTR owner name of a canonical address; IPv4 by string, the cheap common case."""
    if qtype == TYPE_A:
        return ".".join(reversed(address.split("."))) + ".in-addr.arpa"
    return ipaddress.ip_address(address).reverse_pointer
