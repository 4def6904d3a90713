"""Names as people type them back: the query log's text form, parsed and put in canonical form.

The engine logs a name in presentation form (dnsengine.core.wire.name_to_text):
printable ASCII as itself, every other byte, a dot inside a label and the
backslash as \\DDD. The history's links and filter box take that text back;
dnspython reads it (\\DDD and \\X escapes, 63-byte labels, 255-byte names) and
the engine's own name_to_text writes it out again, so what a search looks for
is exactly what the engine logged.
"""

from __future__ import annotations

import dns.exception
import dns.name

from dnsengine.core.wire import name_to_text

# Characters the history's filter box reads as syntax, not as part of a name:
# `*` marks a suffix or substring search, and dnspython reads a lone `@` as
# "the origin". In links they are written as escapes, which mean the same bytes.
_LINK_ESCAPES = str.maketrans({"*": "\\042", "@": "\\064"})


def name_text_canonical(text: str) -> str:
    """The engine's text form of the name `text` spells (ASCII, escapes allowed); ValueError says why not.

    "A\\032B.Example.COM." -> "a\\032b.example.com"; "\\120=1.x" -> "x=1.x".
    A space is taken as itself, as it reaches us from a URL.
    """
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError:
        raise ValueError("only ASCII here: write other bytes as \\DDD (decimal)") from None
    try:
        name = dns.name.from_text(raw, origin=dns.name.root)
    except dns.exception.DNSException as exc:
        raise ValueError(str(exc).rstrip(".")) from None
    return name_to_text(name.to_wire())


def name_text_for_link(name: str) -> str:
    """The logged text `name` written so that the filter box reads it back as this exact name."""
    return name.translate(_LINK_ESCAPES)
