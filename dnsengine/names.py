"""Domain-name normalisation shared by the parser, the matcher and the models."""

from __future__ import annotations

import re

_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")


def normalize_domain(value: str, *, require_dot: bool = True) -> str | None:
    """Lower-case, strip the trailing dot, IDNA-encode; None when it is not a valid name.

    Underscores are allowed (SRV-style and many tracker names use them); a name
    needs at least one dot, since a blocklist line "localhost" or "ads" is not
    something to block.
    """
    name = value.strip().rstrip(".").lower()
    if not name or len(name) > 253:
        return None
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            return None
        if len(name) > 253:
            return None
    labels = name.split(".")
    if require_dot and len(labels) < 2:
        return None
    for label in labels:
        if not _LABEL.match(label):
            return None
    return name
