"""What the REST fakes share: a respx router in front of a handler, injected faults
(429 with Retry-After, 5xx storms, stale reads after a write), a fake clock the adapters'
retry and read-back loops sleep on (so a 30 s Retry-After costs no real time), and the
signed apex a fake's nameservers would serve (real dnspython signatures by the fake's own
keys, so the adapters' own-key detection is exercised for real)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import respx
from unit.signing import ZONE_TEXT, SigningKey, dnskey_rrset, signed, soa_rrset

from core.keys import Key
from core.observation import ServerView

ZONE = ZONE_TEXT  # "example.test.": the zone every fake hosts (signing.py signs for it)


@dataclass
class FakeClock:
    """Monotonic time that only moves when an adapter sleeps."""

    now: float = 1000.0
    slept: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def reply(status: int, body: Any = None, headers: dict[str, str] | None = None
          ) -> httpx.Response:
    content = b"" if body is None else json.dumps(body).encode()
    return httpx.Response(status, content=content, headers={
        "Content-Type": "application/json", **(headers or {})})


class FakeApi:
    """Base of a fake REST API; subclasses implement ``handle`` and ``rejected``."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.throttles: list[str | None] = []  # queued 429s (their Retry-After values)
        self.failures: list[int] = []  # queued 5xx statuses
        self.always_fail: int | None = None  # a storm that never ends
        self.lag = 0  # reads that still answer the old data after each write
        self._stale: dict[Any, tuple[Any, int]] = {}
        self.router = respx.MockRouter(assert_all_called=False)
        self.router.route().mock(side_effect=self._dispatch)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.router.handler)

    def _dispatch(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        denied = self.rejected(request)
        if denied is not None:
            return denied
        if self.throttles:
            after = self.throttles.pop(0)
            return self.throttled(after)
        if self.always_fail is not None:
            return reply(self.always_fail, {"detail": "upstream unavailable"})
        if self.failures:
            return reply(self.failures.pop(0), {"detail": "internal error"})
        return self.handle(request)

    def rejected(self, request: httpx.Request) -> httpx.Response | None:
        raise NotImplementedError

    def throttled(self, after: str | None) -> httpx.Response:
        raise NotImplementedError

    def handle(self, request: httpx.Request) -> httpx.Response:
        raise NotImplementedError

    # -- eventual consistency -----------------------------------------------------------

    def wrote(self, key: Any, old: Any) -> None:
        """A write to ``key`` was accepted; the next ``lag`` reads answer ``old``."""
        if self.lag:
            self._stale[key] = (old, self.lag)

    def read(self, key: Any, current: Any) -> Any:
        stale = self._stale.get(key)
        if stale is None:
            return current
        old, left = stale
        if left <= 1:
            del self._stale[key]
        else:
            self._stale[key] = (old, left - 1)
        return old

    def count(self, method: str, path_part: str) -> int:
        return sum(1 for r in self.requests
                   if r.method == method and path_part in r.url.path)


def serve_view(provider: str, dnskey_signers: Iterable[SigningKey],
               soa_signers: Iterable[SigningKey], served: Iterable[Key]) -> ServerView:
    """The apex as the fake's nameservers serve it: ``served`` DNSKEYs, the DNSKEY RRset
    signed by ``dnskey_signers`` and the SOA by ``soa_signers``."""
    keys = dnskey_rrset([k.rdata for k in sorted(set(served))])
    return ServerView(provider=provider, server="192.0.2.53:53", at=datetime.now(UTC),
                      dnskey=signed(keys, dnskey_signers),
                      soa=signed(soa_rrset(), soa_signers))


ServeFn = Callable[[str], Any]
