"""``type = "ns1"``: NS1 as a Model 2 signer.

NS1 signs with its own KSK and a ZSK per network and lists them in the zone's DNSSEC
answer. Foreign DNSKEYs go into one *external key set* of the zone (``key_set``, default
``multisigner``), which NS1 serves as extra answers of the DNSKEY RRset; the adapter owns
that set and never touches other sets. NS1 documents multi-signer DNSSEC for algorithm
13 (ECDSAP256SHA256) only: a key of another algorithm is refused before anything is
written. NS1 has no CDS, CDNSKEY or CSYNC records the controller could write, so the
adapter declares neither ``PUBLISH_CDS`` nor ``MANAGE_NS``; ``check`` refuses it as a
Model 2 signer naming what it lacks (docs/providers/ns1.md).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar

import httpx

from core.config import Ns1ProviderConfig
from core.errors import ProviderError
from core.keys import Key
from core.observation import ApiKey, ApiZoneState
from providers.base import ApiRRset, Capability, Provider, name_in_zone
from providers.ns1.api import Ns1Api, dnskey, error_text, key_object, scope
from providers.rest import RestApi, read_back
from providers.rfc2136.served import key_handle

ALGORITHM = 13  # the one algorithm NS1 documents for multi-signer DNSSEC


def _answer(rdtype: str, text: str) -> list[str]:
    """Presentation format → NS1's answer fields (TXT: the unquoted string)."""
    if rdtype == "TXT":
        return [text[1:-1] if len(text) > 1 and text[0] == text[-1] == '"' else text]
    return text.split()


def _text(rdtype: str, answer: list[Any]) -> str:
    if rdtype == "TXT":
        return '"' + "".join(str(a) for a in answer) + '"'
    return " ".join(str(a) for a in answer)


class Ns1Provider(Provider):
    capabilities: ClassVar[Capability] = (
        Capability.IMPORT_FOREIGN_DNSKEY | Capability.WRITE_RRSETS
    )
    type_name: ClassVar[str] = "ns1"

    def __init__(
        self, config: Ns1ProviderConfig, *, transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        super().__init__(config.name)
        self._ns1 = Ns1Api(RestApi.of(
            config, auth={"X-NSONE-Key": config.token.get_secret_value()},
            scope=scope, error_text=error_text, transport=transport, clock=clock, sleep=sleep))
        self._set = config.key_set
        self._window = config.consistency_window.total_seconds()
        self._clock = clock
        self._sleep = sleep

    def _set_path(self, zone: str) -> str:
        return f"{Ns1Api.zone_path(zone)}/dnssec/external_keys/{self._set}"

    async def check_access(self) -> None:
        await self._ns1.api.request("GET", "/zones")

    async def _external(self, zone: str) -> tuple[set[Key], set[Key]]:
        """(keys of our key set, keys of every external set)."""
        sets = await self._ns1.get(f"{Ns1Api.zone_path(zone)}/dnssec/external_keys", zone)
        ours: set[Key] = set()
        every: set[Key] = set()
        for entry in sets or []:
            keys = {dnskey(k) for k in (entry.get("dnskey") or {}).get("data", [])}
            every |= keys
            if entry.get("name") == self._set:
                ours = keys
        return ours, every

    async def _own(self, zone: str) -> tuple[ApiKey, ...]:
        dnssec = await self._ns1.get(f"{Ns1Api.zone_path(zone)}/dnssec", zone)
        if not dnssec:
            raise ProviderError("DNSSEC is not enabled on the zone; enable online signing "
                                "(zone setting dnssec = true) first", provider=self.name,
                                zone=zone)
        _, external = await self._external(zone)
        keys = {dnskey(k) for k in (dnssec.get("keys") or {}).get("dnskey", [])} - external
        return tuple(ApiKey(key=k, role="ksk" if k.sep else "zsk", active=True,
                            published=True, key_id=key_handle(k)) for k in sorted(keys))

    async def read_zone(self, zone: str) -> ApiZoneState:
        await self._ns1.zone(zone)
        own = await self._own(zone)
        ours, _ = await self._external(zone)
        ns = await self.read_rrset(zone, zone, "NS")
        return ApiZoneState(
            provider=self.name, own_keys=own, foreign_dnskeys=frozenset(ours),
            cds=frozenset(), cdnskey=frozenset(),
            ns=frozenset(r.lower().rstrip(".") + "." for r in ns.records) if ns else frozenset())

    async def read_keys(self, zone: str) -> ApiZoneState:
        return ApiZoneState(provider=self.name, own_keys=await self._own(zone),
                            foreign_dnskeys=frozenset(), cds=frozenset(), cdnskey=frozenset())

    async def set_foreign_dnskeys(self, zone: str, keys: Sequence[Key], ttl: int) -> None:
        other = sorted(k for k in keys if k.algorithm != ALGORITHM)
        if other:
            raise ProviderError(
                f"NS1 supports multi-signer DNSSEC with algorithm {ALGORITHM} "
                "(ECDSAP256SHA256) only; refusing "
                + ", ".join(f"{k.short()} (algorithm {k.algorithm})" for k in other)
                + "; nothing changed", provider=self.name, zone=zone)
        own = {k.key for k in await self._own(zone)}
        wanted = set(keys) - own
        current, _ = await self._external(zone)
        if wanted == current:
            return
        path = self._set_path(zone)
        if not wanted:
            await self._ns1.delete(path, zone)
        else:
            body = {"dnskey": {"ttl": ttl, "data": [key_object(k) for k in sorted(wanted)]}}
            exists = await self._ns1.get(path, zone) is not None
            await self._ns1.write("POST" if exists else "PUT", path, zone, body)

        async def read() -> frozenset[str]:
            return frozenset(k.text for k in (await self._external(zone))[0])

        await read_back(read, frozenset(k.text for k in wanted), window=self._window,
                        clock=self._clock, provider=self.name, zone=zone,
                        what=f"external key set {self._set!r}", sleep=self._sleep)

    def _record_path(self, zone: str, owner: str, rdtype: str) -> str:
        return f"{Ns1Api.zone_path(zone)}/{owner.rstrip('.')}/{rdtype}"

    async def read_rrset(self, zone: str, name: str, rdtype: str) -> ApiRRset | None:
        owner, kind = name_in_zone(self.name, zone, name), rdtype.upper()
        body = await self._ns1.get(self._record_path(zone, owner, kind), zone)
        if not body or not body.get("answers"):
            return None
        return ApiRRset(name=owner, rdtype=kind, ttl=int(body.get("ttl") or 0),
                        records=tuple(sorted(_text(kind, a["answer"])
                                             for a in body["answers"])))

    async def set_rrset(
        self, zone: str, name: str, rdtype: str, records: Sequence[str], ttl: int
    ) -> None:
        owner, kind = name_in_zone(self.name, zone, name), rdtype.upper()
        path = self._record_path(zone, owner, kind)
        exists = await self._ns1.get(path, zone) is not None
        if not records:
            if exists:
                await self._ns1.delete(path, zone)
        else:
            body = {"zone": zone.rstrip("."), "domain": owner.rstrip("."), "type": kind,
                    "ttl": ttl, "answers": [{"answer": _answer(kind, r)} for r in records]}
            await self._ns1.write("POST" if exists else "PUT", path, zone, body)

        async def read() -> frozenset[str]:
            got = await self.read_rrset(zone, owner, kind)
            return frozenset(got.records) if got else frozenset()

        await read_back(read, frozenset(records), window=self._window, clock=self._clock,
                        provider=self.name, zone=zone, what=f"{kind} record at {owner}",
                        sleep=self._sleep)

    async def aclose(self) -> None:
        await self._ns1.api.aclose()
