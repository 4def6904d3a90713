"""Domain-name normalisation shared by the parser, the matcher and the models."""

from __future__ import annotations

import re
import unicodedata

import idna

_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")


def normalize_domain(value: str, *, require_dot: bool = True) -> str | None:
    """Lower-case, strip the trailing dot, IDNA-encode; None when it is not a valid name.

    Underscores are allowed (SRV-style and many tracker names use them); a name
    needs at least one dot, since a blocklist line "localhost" or "ads" is not
    something to block.

    A non-ASCII label is encoded by IDNA 2008 without the UTS 46 mapping
    (the `idna` package), so a name is stored as what it says, never as what
    it looks like: Python's own "idna" codec (IDNA 2003) maps compatibility
    characters first and would store `ⓖⓞⓞⓖⓛⓔ.com` or the same name in
    full-width letters (U+FF47 ...) as google.com, and drop a soft hyphen or a
    zero-width space inside a label. IDNA 2008 refuses such code points, so those names
    are not valid here. Only NFC is applied first: it joins a letter and its
    combining accent into the one character they stand for.
    """
    name = value.strip().rstrip(".").lower()
    if not name or len(name) > 253:
        return None
    if not name.isascii():
        name = _to_ascii(name)
        if name is None or len(name) > 253:
            return None
    labels = name.split(".")
    if require_dot and len(labels) < 2:
        return None
    for label in labels:
        if not _LABEL.match(label):
            return None
    return name


def _to_ascii(name: str) -> str | None:
    """The name with each non-ASCII label as its xn-- form; None when a label is not a valid IDN."""
    labels = unicodedata.normalize("NFC", name).split(".")
    try:
        return ".".join(label if label.isascii() else idna.alabel(label).decode("ascii") for label in labels)
    except (idna.IDNAError, UnicodeError):
        return None
