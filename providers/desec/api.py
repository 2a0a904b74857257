"""deSEC's REST API as the adapter uses it: domains, RRsets (subname ``@`` is the apex),
token permissions, and reading an RRset back until deSEC's API answers what was written.

Documented shapes this follows (desec.readthedocs.io, "Domain Management", "Retrieving
and Creating DNS Records", "Token Scoping: Policies", "Rate Limits"):
``GET /domains/{name}/`` gives ``minimum_ttl``; ``GET /domains/{name}/rrsets/?cursor=``
lists RRsets ``{subname, type, ttl, records}`` 500 a page with ``Link: rel="next"``;
``PUT /domains/{name}/rrsets/`` with a list replaces each listed RRset atomically (empty
``records`` deletes it); 401 ``{"detail": "Invalid token."}``; 403 when no token policy
grants ``perm_write`` for (domain, subname, type); 429 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import quote

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import httpx

from core.errors import ZoneMissing
from providers.rest import NotFound, RestApi, read_back

APEX = "@"


def error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase
    if isinstance(body, dict) and "detail" in body:
        return str(body["detail"])
    return str(body)[:300]


def scope(method: str, path: str) -> str:
    """deSEC tokens read everything their account holds; writes need a token policy."""
    if method == "GET":
        return "read access to this domain (a token of the account that owns it)"
    return ("a token policy with perm_write = true for this domain and the RRset's subname "
            "and type (or a default policy allowing writes)")


def subname(zone: str, name: str) -> str:
    """``name`` relative to ``zone`` as deSEC's URLs want it (``@`` for the apex)."""
    relative = dns.name.from_text(name).relativize(dns.name.from_text(zone)).to_text()
    return APEX if relative == "@" else relative


def canonical(rdtype: str, records: Iterable[str]) -> frozenset[str]:
    """Records in one presentation form, so what deSEC echoes compares equal to what was
    sent (it normalises spacing, case and base64 line breaks)."""
    kind = dns.rdatatype.from_text(rdtype)
    return frozenset(dns.rdata.from_text(dns.rdataclass.IN, kind, r).to_text() for r in records)


class DesecApi:
    def __init__(self, api: RestApi, window: float,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.api = api
        self._window = window
        self._clock = clock
        self._sleep = sleep
        self._minimum_ttl: dict[str, int] = {}

    def _domain(self, zone: str) -> str:
        return f"/domains/{quote(zone.rstrip('.'), safe='')}/"

    async def domain(self, zone: str) -> dict[str, Any]:
        response = await self.api.request("GET", self._domain(zone), zone=zone)
        if response.status_code == 404:
            raise ZoneMissing("deSEC has no such domain in this token's account",
                              provider=self.api.provider, zone=zone)
        body: dict[str, Any] = response.json()
        self._minimum_ttl[zone] = int(body.get("minimum_ttl") or 0)
        return body

    async def minimum_ttl(self, zone: str) -> int:
        if zone not in self._minimum_ttl:
            await self.domain(zone)
        return self._minimum_ttl[zone]

    async def rrsets(self, zone: str) -> list[dict[str, Any]]:
        try:
            return await self.api.link_pages(self._domain(zone) + "rrsets/", zone=zone)
        except NotFound:
            raise ZoneMissing("deSEC has no such domain in this token's account",
                              provider=self.api.provider, zone=zone) from None

    async def rrset(self, zone: str, sub: str, rdtype: str) -> dict[str, Any] | None:
        path = f"{self._domain(zone)}rrsets/{quote(sub, safe='@')}/{rdtype}/"
        response = await self.api.request("GET", path, zone=zone)
        if response.status_code == 404:
            await self.domain(zone)  # ZoneMissing if it is the domain that is missing
            return None
        body: dict[str, Any] = response.json()
        return body

    async def put(self, zone: str, changes: list[tuple[str, str, list[str], int]]) -> None:
        """Replace these RRsets (subname, type, records, ttl) in one atomic bulk request,
        then wait until the API reads them back (deSEC's reads may lag a write)."""
        floor = await self.minimum_ttl(zone)
        body = [{"subname": "" if sub == APEX else sub, "type": rdtype,
                 "ttl": max(ttl, floor), "records": sorted(records)}
                for sub, rdtype, records, ttl in changes]
        need = "; ".join(f"perm_write for subname {sub!r}, type {rdtype}"
                         for sub, rdtype, _, _ in changes)
        await self.api.request("PUT", self._domain(zone) + "rrsets/", zone=zone, json=body,
                               scope=f"a token policy granting {need} on {zone}")
        for sub, rdtype, records, _ in changes:
            await self._confirm(zone, sub, rdtype, canonical(rdtype, records))

    async def _confirm(self, zone: str, sub: str, rdtype: str, wanted: frozenset[str]) -> None:
        async def read() -> frozenset[str]:
            got = await self.rrset(zone, sub, rdtype)
            return canonical(rdtype, got["records"]) if got else frozenset()

        await read_back(read, wanted, window=self._window, clock=self._clock,
                        provider=self.api.provider, zone=zone,
                        what=f"{rdtype} RRset at {sub}", sleep=self._sleep)
