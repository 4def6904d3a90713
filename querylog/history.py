"""A query-history search as plain values: the validated filter, its bounds, and the page cursor.

`querylog.forms.HistoryFilterForm` builds a HistoryFilter from the URL; the
selectors (`querylog.selectors.query_history`) turn it into one query and hand
back the cursor of the next page. Neither side needs the other's module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

# Substring and suffix matches, and the client name and group filters, cannot use
# an index, so they scan rows until a page is full; for a rare value that is every
# row in range. The time bound keeps the scan to one day of traffic.
SCAN_MAX_WINDOW = timedelta(hours=24)
MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 50

_CURSOR_RE = re.compile(r"^(\d{1,20})-(\d{1,20})$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class HistoryFilter:
    """A validated history search; the selector turns it into one query."""

    start: datetime | None = None
    end: datetime | None = None
    client: str = ""
    # As the log recorded them when the query was decided (no index: bounded like a substring).
    client_name: str = ""
    client_group: str = ""
    domain: str = ""
    domain_mode: str = ""  # "" | exact | suffix | substring
    qtype: str = ""
    status: str = ""
    rcode: str = ""
    limit: int = DEFAULT_PAGE_SIZE
    before: tuple[datetime, int] | None = None  # keyset cursor: (timestamp, id) of the last row shown
    scan_window_applied: bool = False


def cursor_encode(timestamp: datetime, pk: int) -> str:
    """Opaque-looking but plain: microseconds since the epoch and the row id."""
    micros = (timestamp - _EPOCH) // timedelta(microseconds=1)
    return f"{micros}-{pk}"


def cursor_decode(value: str) -> tuple[datetime, int] | None:
    match = _CURSOR_RE.match(value)
    if not match:
        return None
    micros, pk = int(match.group(1)), int(match.group(2))
    try:
        # Integers all the way: a float round trip could shift a microsecond and
        # skip or repeat a row at the page boundary.
        ts = _EPOCH + timedelta(microseconds=micros)
    except OverflowError:
        return None
    return ts, pk
