"""``type = "desec"``: a Model 2 signer that signs with its own keys (one CSK) and serves
the DNSKEY, CDS and CDNSKEY records written through its API *merged with its own*.

deSEC's API does not say which keys it signs with, so its own keys are read by DNS from
its nameservers (``providers.served_keys``: the keys its served signatures verify with).
What the API holds at the apex is what the controller wrote: the foreign DNSKEYs and the
CDS/CDNSKEY it chose. TTLs below the domain's ``minimum_ttl`` are raised to it (deSEC
refuses them). See docs/providers/desec.md for what is verified and what is documented.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar

import httpx

from core.config import DesecProviderConfig
from core.keys import Digest, Key
from core.observation import ApiZoneState
from providers.base import ApiRRset, Capability, Provider, name_in_zone
from providers.desec.api import APEX, DesecApi, error_text, scope, subname
from providers.rest import RestApi
from providers.served_keys import ServeFn, dns_reader, own_keys


def _records(rrsets: list[dict[str, Any]], rdtype: str) -> list[str]:
    for rrset in rrsets:
        if rrset.get("subname", "") == "" and rrset.get("type") == rdtype:
            return list(rrset.get("records") or [])
    return []


class DesecProvider(Provider):
    capabilities: ClassVar[Capability] = (
        Capability.IMPORT_FOREIGN_DNSKEY | Capability.PUBLISH_CDS | Capability.WRITE_RRSETS
    )
    type_name: ClassVar[str] = "desec"

    def __init__(
        self, config: DesecProviderConfig, *,
        transport: httpx.AsyncBaseTransport | None = None, serve: ServeFn | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__(config.name)
        sleep = sleep or asyncio.sleep
        rest = RestApi.of(
            config, auth={"Authorization": f"Token {config.token.get_secret_value()}"},
            scope=scope, error_text=error_text, transport=transport, clock=clock, sleep=sleep)
        self._api = DesecApi(rest, config.consistency_window.total_seconds(), clock, sleep)
        self._serve = serve or dns_reader(config.name, config.nameservers,
                                          config.timeout.total_seconds())

    async def check_access(self) -> None:
        """The token is accepted (the domain list needs nothing but a valid token)."""
        await self._api.api.request("GET", "/domains/", params={"cursor": ""})

    async def read_zone(self, zone: str) -> ApiZoneState:
        await self._api.domain(zone)  # ZoneMissing first, before any DNS query
        rrsets = await self._api.rrsets(zone)
        written = {Key.parse(t) for t in _records(rrsets, "DNSKEY")}
        # deSEC's own unsigned keys (a successor it pre-publishes) are the served keys
        # the API does not hold: reported as published, not active, so they are followed.
        own = own_keys(await self._serve(zone), written)
        own_set = {k.key for k in own}
        return ApiZoneState(
            provider=self.name,
            own_keys=own,
            foreign_dnskeys=frozenset(k for k in written if k not in own_set),
            cds=frozenset(Digest.parse(t) for t in _records(rrsets, "CDS")),
            cdnskey=frozenset(Key.parse(t) for t in _records(rrsets, "CDNSKEY")),
            max_ttl=max((int(r.get("ttl") or 0) for r in rrsets), default=None),
            ns=frozenset(t.lower() for t in _records(rrsets, "NS")),
        )

    async def read_keys(self, zone: str) -> ApiZoneState:
        own = own_keys(await self._serve(zone))
        return ApiZoneState(provider=self.name, own_keys=own, foreign_dnskeys=frozenset(),
                            cds=frozenset(), cdnskey=frozenset())

    async def set_foreign_dnskeys(self, zone: str, keys: Sequence[Key], ttl: int) -> None:
        # deSEC adds its own keys to whatever DNSKEY RRset is written: write only foreign
        # ones (an own key written here would stay served after deSEC retired it).
        own = {k.key for k in own_keys(await self._serve(zone))}
        records = sorted(k.text for k in set(keys) - own)
        await self._api.put(zone, [(APEX, "DNSKEY", records, ttl)])

    async def set_cds(
        self, zone: str, cds: Sequence[Digest], cdnskey: Sequence[Key], ttl: int
    ) -> None:
        # One bulk request: deSEC applies it atomically, so a CDS never goes out without
        # its CDNSKEY twin.
        await self._api.put(zone, [(APEX, "CDS", sorted(d.text for d in cds), ttl),
                                   (APEX, "CDNSKEY", sorted(k.text for k in cdnskey), ttl)])

    async def read_rrset(self, zone: str, name: str, rdtype: str) -> ApiRRset | None:
        owner = name_in_zone(self.name, zone, name)
        got = await self._api.rrset(zone, subname(zone, owner), rdtype.upper())
        if not got or not got.get("records"):
            return None
        return ApiRRset(name=owner, rdtype=rdtype.upper(), ttl=int(got["ttl"]),
                        records=tuple(sorted(got["records"])))

    async def set_rrset(
        self, zone: str, name: str, rdtype: str, records: Sequence[str], ttl: int
    ) -> None:
        owner = name_in_zone(self.name, zone, name)
        await self._api.put(zone, [(subname(zone, owner), rdtype.upper(), list(records), ttl)])

    async def aclose(self) -> None:
        await self._api.api.aclose()
