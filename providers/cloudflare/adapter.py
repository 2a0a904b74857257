"""``type = "cloudflare"``: Cloudflare DNS as a Model 2 signer (RFC 8901 multi-signer).

Cloudflare signs with its own KSK and ZSK. Foreign DNSKEYs are ordinary ``DNSKEY``
records created through the DNS records API, accepted only once the zone's DNSSEC
settings have ``dnssec_multi_signer`` on (checked, never switched on silently: it is the
zone owner's decision). Its own KSK comes from the DNSSEC endpoint, its ZSK(s) from what
its nameservers serve (the keys their signatures verify with).

Two limits, both documented in docs/providers/cloudflare.md:

* Cloudflare is reported to leave other signers' KSKs (SEP keys) out of the DNSKEY RRset
  it serves, although the API accepts them. After a write the served set is read back;
  if the ZSKs written with them are served and the SEP keys are not, the write fails
  with an error that says so and how to configure the zone (``import_ksks = false``).
* It publishes CDS/CDNSKEY for its own KSK only and has no CDS, CDNSKEY or CSYNC record
  type, so it declares neither ``PUBLISH_CDS`` nor ``MANAGE_NS``; ``check`` refuses it
  as a signer of a zone whose processes need them, naming the capability.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import ClassVar

import dns.rdata
import dns.rdataclass
import dns.rdatatype
import httpx

from core.config import CloudflareProviderConfig
from core.errors import ProviderError
from core.keys import Key
from core.observation import ApiKey, ApiZoneState
from providers.base import ApiRRset, Capability, Provider, name_in_zone
from providers.cloudflare.api import (
    MIN_TTL,
    CloudflareApi,
    dnskey_body,
    error_text,
    record_text,
    scope,
)
from providers.rest import RestApi, read_back
from providers.rfc2136.served import key_handle
from providers.served_keys import ServeFn, dns_reader, own_keys, served_dnskeys

READBACK_SECONDS = 10.0  # how long Cloudflare's nameservers may take to serve a new key


def _canonical(rdtype: str, texts: Sequence[str]) -> frozenset[str]:
    kind = dns.rdatatype.from_text(rdtype)
    return frozenset(dns.rdata.from_text(dns.rdataclass.IN, kind, t).to_text() for t in texts)


def _one(rdtype: str, text: str) -> str:
    return dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.from_text(rdtype),
                               text).to_text()


class CloudflareProvider(Provider):
    capabilities: ClassVar[Capability] = (
        Capability.IMPORT_FOREIGN_DNSKEY | Capability.WRITE_RRSETS
    )
    type_name: ClassVar[str] = "cloudflare"

    def __init__(
        self, config: CloudflareProviderConfig, *,
        transport: httpx.AsyncBaseTransport | None = None, serve: ServeFn | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__(config.name)
        sleep = sleep or asyncio.sleep
        rest = RestApi.of(
            config, auth={"Authorization": f"Bearer {config.token.get_secret_value()}"},
            scope=scope, error_text=error_text, transport=transport, clock=clock, sleep=sleep)
        self._cf = CloudflareApi(rest, config.zone_ids,
                                 config.consistency_window.total_seconds(), clock, sleep)
        self._serve = serve or dns_reader(config.name, config.nameservers,
                                          config.timeout.total_seconds())

    async def check_access(self) -> None:
        await self._cf.api.request("GET", "/user/tokens/verify")

    async def _own(self, zone: str, written: set[Key] | None = None) -> tuple[ApiKey, ...]:
        """The KSK of the DNSSEC endpoint plus the keys Cloudflare's signatures verify
        with (its ZSKs, which the endpoint does not list); with ``written`` (the DNSKEY
        records the controller wrote) also the served keys that sign nothing and were not
        written: Cloudflare's pre-published successors, published and not active."""
        settings = await self._cf.dnssec(zone)
        own = {k.key: k for k in own_keys(await self._serve(zone), written)}
        if settings.get("public_key"):
            ksk = Key.parse(f"{settings.get('flags', 257)} 3 {settings['algorithm']} "
                            f"{settings['public_key']}")
            own.setdefault(ksk, ApiKey(key=ksk, role="ksk", active=True, published=True,
                                       key_id=key_handle(ksk)))
        return tuple(own[k] for k in sorted(own))

    async def read_zone(self, zone: str) -> ApiZoneState:
        written = {Key.parse(record_text(r)) for r in await self._cf.records(zone, "DNSKEY")}
        own = await self._own(zone, written)
        mine = {k.key for k in own}
        ns = await self._cf.records(zone, "NS")
        return ApiZoneState(
            provider=self.name, own_keys=own,
            foreign_dnskeys=frozenset(k for k in written if k not in mine),
            cds=frozenset(), cdnskey=frozenset(),  # Cloudflare's own, not the controller's
            ns=frozenset(str(r.get("content", "")).lower().rstrip(".") + "." for r in ns),
        )

    async def read_keys(self, zone: str) -> ApiZoneState:
        return ApiZoneState(provider=self.name, own_keys=await self._own(zone),
                            foreign_dnskeys=frozenset(), cds=frozenset(), cdnskey=frozenset())

    async def set_foreign_dnskeys(self, zone: str, keys: Sequence[Key], ttl: int) -> None:
        settings = await self._cf.dnssec(zone)
        if not settings.get("dnssec_multi_signer") or settings.get("status") != "active":
            raise ProviderError(
                "the zone's DNSSEC settings do not allow foreign DNSKEYs (status "
                f"{settings.get('status')!r}, dnssec_multi_signer "
                f"{settings.get('dnssec_multi_signer')!r}); turn multi-signer DNSSEC on: "
                "PATCH /zones/{zone_id}/dnssec {\"status\": \"active\", "
                "\"dnssec_multi_signer\": true} (dashboard: DNS > Settings); nothing changed",
                provider=self.name, zone=zone)
        own = {k.key for k in await self._own(zone)}
        wanted = set(keys) - own
        current = {Key.parse(record_text(r)): r for r in await self._cf.records(zone, "DNSKEY")}
        for key in sorted(wanted - set(current)):
            await self._cf.create(zone, dnskey_body(zone, key, ttl))
        for key in sorted(set(current) - wanted - own):
            await self._cf.delete(zone, str(current[key]["id"]))

        async def read() -> frozenset[str]:
            records = await self._cf.records(zone, "DNSKEY")
            return frozenset(Key.parse(record_text(r)).text for r in records) - \
                {k.text for k in own}

        await read_back(read, frozenset(k.text for k in wanted), window=self._cf.window,
                        clock=self._cf.clock, provider=self.name, zone=zone,
                        what="DNSKEY records", sleep=self._cf.sleep)
        await self._served_check(zone, wanted)

    async def _served_check(self, zone: str, wanted: set[Key]) -> None:
        """Refuse, naming the cause, a Cloudflare that serves the ZSKs it accepted but not
        the SEP keys (the reported behaviour); a set not served yet is left to the
        controller's observation, which holds the step until it is."""
        zsks = {k for k in wanted if not k.sep}
        sep = wanted - zsks
        if not sep or not zsks:
            return  # no witness that the write is live: observation decides
        deadline = self._cf.clock() + READBACK_SECONDS
        witnessed = False
        while True:
            served = served_dnskeys(await self._serve(zone))
            if sep <= served:
                return
            if zsks <= served:
                if witnessed:  # the ZSKs are live for a while now, the SEP keys are not
                    break
                witnessed = True
            elif self._cf.clock() >= deadline:
                return
            await self._cf.sleep(1.0)
        missing = sep - served
        if missing:
            tags = ", ".join(k.short() for k in sorted(missing))
            raise ProviderError(
                f"Cloudflare accepted the DNSKEY record(s) of other signers' KSK(s) ({tags}) "
                "but leaves them out of the DNSKEY RRset it serves, while it serves the "
                "ZSKs written with them. Set policy.import_ksks = false for this zone (RFC "
                "8901 Model 2 needs only the ZSKs cross-imported); a signer with a "
                "combined signing key (CSK) cannot pair with Cloudflare. See "
                "docs/providers/cloudflare.md", provider=self.name, zone=zone)

    async def read_rrset(self, zone: str, name: str, rdtype: str) -> ApiRRset | None:
        owner = name_in_zone(self.name, zone, name)
        records = await self._cf.records(zone, rdtype.upper(), owner)
        if not records:
            return None
        return ApiRRset(name=owner, rdtype=rdtype.upper(),
                        ttl=min(int(r.get("ttl") or MIN_TTL) for r in records),
                        records=tuple(sorted(record_text(r) for r in records)))

    async def set_rrset(
        self, zone: str, name: str, rdtype: str, records: Sequence[str], ttl: int
    ) -> None:
        owner = name_in_zone(self.name, zone, name)
        kind = rdtype.upper()
        wanted = _canonical(kind, records)
        current = {_one(kind, record_text(r)): r
                   for r in await self._cf.records(zone, kind, owner)}
        for text in sorted(wanted - set(current)):
            await self._cf.create(zone, {"type": kind, "name": owner.rstrip("."),
                                         "content": text, "ttl": max(ttl, MIN_TTL)})
        for text in sorted(set(current) - wanted):
            await self._cf.delete(zone, str(current[text]["id"]))

        async def read() -> frozenset[str]:
            return _canonical(kind, [record_text(r)
                                     for r in await self._cf.records(zone, kind, owner)])

        await read_back(read, wanted, window=self._cf.window, clock=self._cf.clock,
                        provider=self.name, zone=zone, what=f"{kind} records at {owner}",
                        sleep=self._cf.sleep)

    async def aclose(self) -> None:
        await self._cf.api.aclose()
