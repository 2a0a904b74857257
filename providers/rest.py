"""The one HTTP seam of the token-authenticated REST adapters (deSEC, Cloudflare).

Every call is retried with tenacity while the failure is worth retrying: connection
trouble, a timeout, a 5xx answer, or a 429 (waiting as long as its ``Retry-After`` says).
The retrying stops at the provider's ``retry_budget``: before a wait that would cross
it, the call gives up with ``ProviderUnreachable`` naming the attempts, the time spent
and the last failure. A 401 is a rejected token; a 403 a token lacking a permission,
reported with the scope the adapter says the endpoint needs. A 404 is returned to the
caller (only it knows whether that means "no such zone" or "no such RRset").

Every request here is idempotent (GET, PUT, PATCH, DELETE; a Cloudflare POST is made
safe to repeat by its adapter), so a request that may have reached the provider is
simply sent again.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type

from core import events
from core.errors import ProviderAuthError, ProviderError, ProviderUnreachable

MAX_BACKOFF = 10.0  # seconds between two 5xx retries at most
_ID = re.compile(r"/(?:[0-9a-f]{32}|[0-9]+)(?=/|$)")


class _Retry(Exception):
    """A failure worth retrying; ``after``: the wait the provider asked for (429)."""

    def __init__(self, detail: str, after: float | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.after = after


def retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date), None if absent/bad."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


class NotFound(Exception):
    """A list endpoint answered 404 (its parent object, e.g. the zone, does not exist)."""


ScopeHint = Callable[[str, str], str]  # (method, path) → the permission the call needs
ErrorText = Callable[[httpx.Response], str]  # the provider's error message in an answer


class RestConfig(Protocol):
    """What every REST provider's config table gives the API client."""

    @property
    def name(self) -> str: ...
    @property
    def api_url(self) -> str: ...
    @property
    def timeout(self) -> timedelta: ...
    @property
    def retry_budget(self) -> timedelta: ...


class RestApi:
    """Requests to one provider's API, retried within ``retry_budget``."""

    @classmethod
    def of(cls, config: RestConfig, *, auth: dict[str, str], scope: ScopeHint,
           error_text: ErrorText, transport: httpx.AsyncBaseTransport | None,
           clock: Callable[[], float], sleep: Callable[[float], Awaitable[None]]) -> RestApi:
        """The client for a provider's config table; ``auth`` the header carrying its
        token (each API spells it its own way)."""
        return cls(provider=config.name, base_url=config.api_url, headers=auth,
                   timeout=config.timeout, retry_budget=config.retry_budget, scope=scope,
                   error_text=error_text, transport=transport, clock=clock, sleep=sleep)

    def __init__(
        self, *, provider: str, base_url: str, headers: dict[str, str], timeout: timedelta,
        retry_budget: timedelta, scope: ScopeHint, error_text: ErrorText,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.provider = provider
        self.base_url = base_url
        self._budget = retry_budget.total_seconds()
        self._scope = scope
        self._error_text = error_text
        self._clock = clock
        self._sleep = sleep
        seconds = timeout.total_seconds()
        self._client = httpx.AsyncClient(
            headers={**headers, "Accept": "application/json"},
            timeout=httpx.Timeout(seconds, connect=min(seconds, 5.0)),
            transport=transport,
            # No proxy or .netrc from the environment: the token goes to api_url only.
            trust_env=False,
        )

    async def request(self, method: str, path: str, *, zone: str | None = None,
                      json: Any = None, params: dict[str, str] | None = None,
                      scope: str | None = None) -> httpx.Response:
        """One call (``path`` relative to the base URL, or an absolute URL the provider
        gave, e.g. a pagination link), retried as the module doc says. ``scope``: the
        permission this call needs, when the caller knows it better than the path does."""
        url = path if path.startswith(("http://", "https://")) else self.base_url + path
        endpoint = f"{method} {path.split('?', maxsplit=1)[0]}"
        started = self._clock()
        attempts = 0
        last = ""

        def stop(state: RetryCallState) -> bool:
            # Checked after the wait is chosen: give up rather than sleep past the budget.
            return self._clock() - started + state.upcoming_sleep > self._budget

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, _Retry) and exc.after is not None:
                return exc.after
            return float(min(MAX_BACKOFF, 0.5 * 2 ** (state.attempt_number - 1)))

        try:
            async for attempt in AsyncRetrying(retry=retry_if_exception_type(_Retry),
                                               stop=stop, wait=wait, sleep=self._sleep,
                                               reraise=True):
                with attempt:
                    attempts += 1
                    try:
                        return await events.timed(
                            self.provider, lambda: f"{method} {_ID.sub('/{id}', path)}",
                            self._once(method, url, endpoint, zone, json, params, scope))
                    except _Retry as exc:
                        last = exc.detail
                        raise
        except _Retry:
            spent = self._clock() - started
            raise ProviderUnreachable(
                f"gave up after {attempts} attempt(s) in {spent:.0f}s (retry_budget "
                f"{self._budget:g}s); last failure: {last}. The API is overloaded, rate "
                "limiting this token, or down; the step is retried on the next run",
                provider=self.provider, zone=zone, endpoint=endpoint) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _once(self, method: str, url: str, endpoint: str, zone: str | None,
                    json: Any, params: dict[str, str] | None, scope: str | None
                    ) -> httpx.Response:
        try:
            response = await self._client.request(method, url, json=json, params=params)
        except httpx.TimeoutException:
            raise _Retry("request timed out") from None
        except httpx.TransportError as exc:
            raise _Retry(f"cannot connect: {exc.__class__.__name__}: {exc}") from None
        status = response.status_code
        if status == 429:
            after = retry_after(response)
            asked = f", Retry-After {after:g}s" if after is not None else ""
            raise _Retry(f"HTTP 429 (rate limited{asked}): {self._error_text(response)}",
                         after)
        if status >= 500:
            raise _Retry(f"HTTP {status}: {self._error_text(response)}")
        if status == 401:
            raise ProviderAuthError(
                f"the API token was rejected (HTTP 401: {self._error_text(response)}); check "
                "the provider's token setting", provider=self.provider, zone=zone,
                endpoint=endpoint)
        if status == 403:
            raise ProviderAuthError(
                f"the token lacks a permission (HTTP 403: {self._error_text(response)}); it "
                f"needs {scope or self._scope(method, endpoint.split(' ', 1)[1])}; nothing "
                "changed",
                provider=self.provider, zone=zone, endpoint=endpoint)
        if status == 404 or status < 400:
            return response
        raise ProviderError(f"HTTP {status}: {self._error_text(response)}",
                            provider=self.provider, zone=zone, endpoint=endpoint)

    async def link_pages(self, path: str, *, zone: str | None = None) -> list[Any]:
        """Every item of a list endpoint paginated by ``Link: <url>; rel="next"`` headers
        (deSEC: a cursor, 500 items a page; the first page is asked for with an empty
        ``cursor`` so a growing list never turns into "pagination required")."""
        items: list[Any] = []
        url: str | None = path
        params: dict[str, str] | None = {"cursor": ""}
        while url is not None:
            response = await self.request("GET", url, zone=zone, params=params)
            if response.status_code == 404:
                raise NotFound(url)
            items.extend(response.json())
            url = response.links.get("next", {}).get("url")
            params = None  # the next link carries its own cursor
            if url is not None and _origin(url) != _origin(self.base_url):
                # The token goes with every request: never to a host the config did not name.
                raise ProviderError(f"refusing to follow a pagination link to another host "
                                    f"({_origin(url)}, not {_origin(self.base_url)})",
                                    provider=self.provider, zone=zone, endpoint=f"GET {path}")
        return items

    async def aclose(self) -> None:
        await self._client.aclose()


async def read_back(read: Callable[[], Awaitable[frozenset[str]]], wanted: frozenset[str],
                    *, window: float, clock: Callable[[], float], provider: str, zone: str,
                    what: str, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
                    ) -> None:
    """Poll ``read`` until it answers ``wanted``: these APIs accept a write and may answer
    the old data for a while; the adapter returns only once its own reads agree, so the
    caller's next read-modify-write starts from what it wrote. Past ``window``: an error
    (nothing assumed; the step is retried)."""
    deadline = clock() + window
    delay = 0.1
    while True:
        if await read() == wanted:
            return
        if clock() >= deadline:
            raise ProviderError(
                f"the API accepted the {what} but still answers the old data after "
                f"{window:g}s (consistency_window); nothing is assumed, the step retries",
                provider=provider, zone=zone)
        await sleep(delay)
        delay = min(2.0, delay * 2)
