"""Token buckets per source address and per SIG(0) key, so one sender (or one stolen
key used from many addresses) cannot take the agent's time from the others: a request
over the limit is answered REFUSED before any parse, signature or API work."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

# Buckets are forgotten oldest-first past this many, so a spoofed-source flood cannot
# grow the table without bound (a forgotten bucket starts full again, which is harmless).
MAX_BUCKETS = 65536


class RateLimiter:
    """``rate`` requests per second per key, with a burst of ``burst`` (default ``rate``)."""

    def __init__(self, rate: float, burst: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate
        self._burst = max(1.0, burst if burst is not None else rate)
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def allow(self, key: str) -> bool:
        """Take one token from ``key``'s bucket; False when it is empty."""
        now = self._clock()
        tokens, last = self._buckets.pop(key, (self._burst, now))
        tokens = min(self._burst, tokens + (now - last) * self._rate)
        allowed = tokens >= 1.0
        self._buckets[key] = (tokens - 1.0 if allowed else tokens, now)
        while len(self._buckets) > MAX_BUCKETS:
            self._buckets.popitem(last=False)
        return allowed
