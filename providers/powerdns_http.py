"""How a PowerDNS API call failed, sorted by what may be done about it.

A failure is *transient* when asking again may help (connection trouble, a 5xx), and
*ambiguous* when the request may have reached PowerDNS and taken effect although no answer
says so (a timeout or a broken connection after sending, a 5xx): harmless to repeat for
GET, PUT, PATCH REPLACE and DELETE, not for POST .../cryptokeys (a second key).
"""

from __future__ import annotations

import httpx


class Transient(Exception):
    """A failure worth retrying: connection trouble or a 5xx answer."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class Ambiguous(Transient):
    """The request may have reached PowerDNS and taken effect (see the module doc)."""

    def __init__(self, detail: str, *, finished: bool = False) -> None:
        super().__init__(detail)
        # PowerDNS itself answered (HTTP 500 with its JSON error): it is done with the
        # request, so whatever it created is visible now; a proxy's 502/503/504 or a
        # timeout promise no such thing.
        self.finished = finished


def retryable(exc: BaseException) -> bool:
    return isinstance(exc, Transient)


def unsent(exc: BaseException) -> bool:
    return isinstance(exc, Transient) and not isinstance(exc, Ambiguous)


def pdns_error(response: httpx.Response) -> bool:
    """Whether an error answer is PowerDNS' own (a JSON object with "error")."""
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and "error" in body


def error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase
    if isinstance(body, dict) and "error" in body:
        return str(body["error"])
    return str(body)[:200]
