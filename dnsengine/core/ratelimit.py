"""Per-client rate limit: a token bucket per source address, in a bounded table.

    limiter = RateLimiter(rate=1000, window=60.0, exempt=parse_networks("192.168.1.1", ...))
    if not limiter.allow(client, time.monotonic()):
        ...  # answer REFUSED

Each client may send `rate` queries at once and then `rate / window` queries per
second: its bucket holds at most `rate` tokens, a query takes one, and the tokens
come back at that pace. A query that finds the bucket empty is refused.

The table holds at most `max_clients` buckets, so a flood from spoofed source
addresses cannot grow memory without limit. When it is full, room is made in one
sweep (amortised over the following new clients): first every bucket that has
refilled to the brim goes, since it is no different from the fresh bucket that
client would get on its next query; only if that frees too little, the buckets
seen least recently go too. A client being limited has been seen recently, so it
is the last to go; one that is evicted anyway starts again with a full bucket,
which gives it at most `rate` more queries: the price of a bounded table.

The per-query cost is one dict lookup and a few float operations. Two threads
(UDP and TCP) may update the same bucket at once and lose one of the updates:
the count can be off by a query, never the table's bound.
"""

from __future__ import annotations

import heapq
import logging
import threading

from dnsengine.core.access import Network, in_networks
from dnsengine.core.stats import EngineStats
from dnsengine.core.throttle import RateLimitedLog

logger = logging.getLogger(__name__)

DEFAULT_MAX_CLIENTS = 10000
# A sweep of a full table frees at least this share of it, so sweeps stay rare.
SWEEP_SHARE = 8
# One line per limited client per this many seconds, and never more than one a second
# over all clients (a flood from many addresses would otherwise fill the log).
LOG_INTERVAL = 60.0
LOG_MIN_GAP = 1.0

# A bucket: [tokens, last seen (the refill stamp), next time a line may be logged, refused since that line].
_TOKENS, _SEEN, _NEXT_LOG, _REFUSED = 0, 1, 2, 3
# The table's entry for an exempt client: checked once, then never limited.
_EXEMPT = None


class RateLimiter:
    __slots__ = ("_buckets", "_lock", "_log", "evictions", "exempt", "max_clients", "per_second", "rate",
                 "refused", "stats", "window")  # fmt: skip

    def __init__(self, rate: int, window: float, exempt: tuple[Network, ...] = (),
                 max_clients: int = DEFAULT_MAX_CLIENTS, stats: EngineStats | None = None) -> None:  # fmt: skip
        if rate < 1 or window <= 0:
            raise ValueError("a rate limiter needs rate >= 1 and window > 0 (rate 0 means no limiter at all)")
        self.rate = float(rate)
        self.window = float(window)
        self.per_second = rate / window
        self.exempt = exempt
        self.max_clients = max(1, max_clients)
        self.stats = stats  # counts the evictions, as rate_limit_evictions
        self.evictions = 0
        self.refused = 0
        self._buckets: dict[str, list | None] = {}
        # Taken to add a client or sweep the table; a query of a known client takes no lock.
        self._lock = threading.Lock()
        self._log = RateLimitedLog(logger, interval=LOG_MIN_GAP)

    def allow(self, client: str, now: float) -> bool:
        """Take a token from `client`'s bucket; False when it has none left (refuse the query)."""
        bucket = self._buckets.get(client, False)
        if bucket is None:  # exempt
            return True
        if bucket is False:
            return self._first(client, now)
        tokens = bucket[_TOKENS] + (now - bucket[_SEEN]) * self.per_second
        if tokens > self.rate:
            tokens = self.rate
        bucket[_SEEN] = now
        if tokens >= 1.0:
            bucket[_TOKENS] = tokens - 1.0
            return True
        bucket[_TOKENS] = tokens
        self.refused += 1
        bucket[_REFUSED] += 1
        if now >= bucket[_NEXT_LOG]:
            bucket[_NEXT_LOG] = now + LOG_INTERVAL
            refused, bucket[_REFUSED] = bucket[_REFUSED], 0
            self._log.warning(
                "client %s is over its rate limit of %d queries per %gs: refusing its queries"
                " (%d refused since the last line about it)",
                client, self.rate, self.window, refused, now=now,
            )  # fmt: skip
        return False

    def _first(self, client: str, now: float) -> bool:
        exempt = bool(self.exempt) and in_networks(client, self.exempt)
        with self._lock:
            buckets = self._buckets
            if client not in buckets:
                if len(buckets) >= self.max_clients:
                    self._sweep(now)
                buckets[client] = _EXEMPT if exempt else [self.rate - 1.0, now, 0.0, 0]
                return True
        return self.allow(client, now)  # another thread added it meanwhile

    def _sweep(self, now: float) -> None:
        """Make room in a full table (the lock is held): full buckets first, then the least recently seen."""
        buckets = self._buckets
        rate, per_second = self.rate, self.per_second
        # An exempt entry goes as well: it costs one network check to make again.
        idle = [client for client, b in buckets.items()
                if b is None or b[_TOKENS] + (now - b[_SEEN]) * per_second >= rate]  # fmt: skip
        for client in idle:
            del buckets[client]
        evicted = len(idle)
        wanted = max(1, self.max_clients // SWEEP_SHARE) - (self.max_clients - len(buckets))
        if wanted > 0:
            for client, _ in heapq.nsmallest(wanted, buckets.items(), key=lambda item: item[1][_SEEN]):
                del buckets[client]
            evicted += wanted
        self.evictions += evicted
        if self.stats is not None:
            self.stats.count("rate_limit_evictions", evicted)

    def limited_clients(self, now: float) -> list[str]:
        """The clients whose bucket is empty at `now`: their next query would be refused."""
        with self._lock:
            items = list(self._buckets.items())
        per_second = self.per_second
        return sorted(client for client, b in items
                      if b is not None and b[_TOKENS] + (now - b[_SEEN]) * per_second < 1.0)  # fmt: skip

    @property
    def size(self) -> int:
        return len(self._buckets)
