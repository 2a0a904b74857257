"""``type = "route53"``: an Amazon Route 53 public hosted zone.

Route 53 signs with a key-signing key it keeps in AWS KMS (one or two, listed by
``GetDNSSEC``) and a zone-signing key it manages itself and never lists; the ZSK is read
from what its nameservers serve (the key their signatures over the SOA verify with).
Route 53 has no DNSKEY, CDS, CDNSKEY or CSYNC record type, so it takes no foreign key
and cannot publish the controller's CDS: it declares only ``WRITE_RRSETS`` (ACME TXT),
and ``check`` refuses it as a Model 2 (or Model 1) signer, naming what it lacks.
docs/providers/route53.md has the IAM actions and what is verified.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar

import dns.name

from core.config import Route53ProviderConfig
from core.errors import ProviderError, ZoneMissing
from core.keys import Key
from core.observation import ApiKey, ApiZoneState
from providers.base import ApiRRset, Capability, Provider, name_in_zone
from providers.route53.api import Route53Api, make_client
from providers.served_keys import ServeFn, dns_reader, own_keys


def _fqdn(name: str) -> str:
    return dns.name.from_text(name).to_text().lower()


class Route53Provider(Provider):
    capabilities: ClassVar[Capability] = Capability.WRITE_RRSETS
    type_name: ClassVar[str] = "route53"

    def __init__(
        self, config: Route53ProviderConfig, *, client: Any = None,
        serve: ServeFn | None = None, clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        super().__init__(config.name)
        self._api = Route53Api(client if client is not None else make_client(config),
                               config.name)
        self._ids = {_fqdn(k): v for k, v in config.hosted_zone_ids.items()}
        self._serve = serve or dns_reader(config.name, config.nameservers,
                                          config.timeout.total_seconds())
        self._window = config.consistency_window.total_seconds()
        self._clock = clock
        self._sleep = sleep

    async def check_access(self) -> None:
        await self._api.call("GetHostedZoneCount")

    async def _zone_id(self, zone: str) -> str:
        name = _fqdn(zone)
        if name not in self._ids:
            found = await self._api.call("ListHostedZonesByName", zone, DNSName=name,
                                         MaxItems="1")
            zones = [z for z in found.get("HostedZones", [])
                     if _fqdn(z["Name"]) == name and not z.get("Config", {}).get("PrivateZone")]
            if not zones:
                raise ZoneMissing("no public hosted zone of this name in the account",
                                  provider=self.name, zone=zone)
            self._ids[name] = str(zones[0]["Id"]).rsplit("/", 1)[-1]
        return self._ids[name]

    async def _own(self, zone: str) -> tuple[ApiKey, ...]:
        dnssec = await self._api.call("GetDNSSEC", zone, HostedZoneId=await self._zone_id(zone))
        status = dnssec.get("Status", {}).get("ServeSignature")
        if status != "SIGNING":
            raise ProviderError(
                f"the hosted zone does not sign (ServeSignature {status!r}); enable DNSSEC "
                "signing (a KSK backed by an ECC_NIST_P256 KMS key in us-east-1, then "
                "EnableHostedZoneDNSSEC); see docs/providers/route53.md",
                provider=self.name, zone=zone)
        own: dict[Key, ApiKey] = {}
        for ksk in dnssec.get("KeySigningKeys", []):
            if ksk.get("Status") in ("DELETED", "ACTION_NEEDED") or "DNSKEYRecord" not in ksk:
                continue
            key = Key.parse(ksk["DNSKEYRecord"])
            own[key] = ApiKey(key=key, role="ksk", active=ksk.get("Status") == "ACTIVE",
                              published=True, key_id=str(ksk["Name"]))
        for served in own_keys(await self._serve(zone)):
            own.setdefault(served.key, served)  # the AWS-managed ZSK
        return tuple(own[k] for k in sorted(own))

    async def read_zone(self, zone: str) -> ApiZoneState:
        own = await self._own(zone)
        ns = await self.read_rrset(zone, zone, "NS")
        return ApiZoneState(provider=self.name, own_keys=own, foreign_dnskeys=frozenset(),
                            cds=frozenset(), cdnskey=frozenset(),
                            ns=frozenset(_fqdn(r) for r in ns.records) if ns else frozenset())

    async def read_keys(self, zone: str) -> ApiZoneState:
        return ApiZoneState(provider=self.name, own_keys=await self._own(zone),
                            foreign_dnskeys=frozenset(), cds=frozenset(), cdnskey=frozenset())

    async def _rrset(self, zone: str, owner: str, rdtype: str) -> dict[str, Any] | None:
        found = await self._api.call(
            "ListResourceRecordSets", zone, HostedZoneId=await self._zone_id(zone),
            StartRecordName=owner, StartRecordType=rdtype, MaxItems="1")
        for rrset in found.get("ResourceRecordSets", []):
            if _fqdn(rrset["Name"]) == owner and rrset["Type"] == rdtype:
                return dict(rrset)
        return None

    async def read_rrset(self, zone: str, name: str, rdtype: str) -> ApiRRset | None:
        owner = name_in_zone(self.name, zone, name)
        rrset = await self._rrset(zone, owner, rdtype.upper())
        if rrset is None:
            return None
        return ApiRRset(name=owner, rdtype=rdtype.upper(), ttl=int(rrset.get("TTL", 0)),
                        records=tuple(sorted(r["Value"] for r in rrset["ResourceRecords"])))

    async def set_rrset(
        self, zone: str, name: str, rdtype: str, records: Sequence[str], ttl: int
    ) -> None:
        owner, kind = name_in_zone(self.name, zone, name), rdtype.upper()
        current = await self._rrset(zone, owner, kind)
        if records:
            change = {"Action": "UPSERT", "ResourceRecordSet": {
                "Name": owner, "Type": kind, "TTL": ttl,
                "ResourceRecords": [{"Value": r} for r in sorted(records)]}}
        elif current is not None:
            change = {"Action": "DELETE", "ResourceRecordSet": current}  # must match exactly
        else:
            return
        answer = await self._api.call(
            "ChangeResourceRecordSets", zone, HostedZoneId=await self._zone_id(zone),
            ChangeBatch={"Comment": "multisigner", "Changes": [change]})
        await self._in_sync(zone, str(answer["ChangeInfo"]["Id"]), answer["ChangeInfo"])

    async def _in_sync(self, zone: str, change_id: str, info: dict[str, Any]) -> None:
        """Route 53 answers PENDING until every one of its nameservers serves the change."""
        deadline = self._clock() + self._window
        while info.get("Status") != "INSYNC":
            if self._clock() >= deadline:
                raise ProviderError(
                    f"change {change_id} is still {info.get('Status')} after "
                    f"{self._window:g}s (consistency_window); the step retries",
                    provider=self.name, zone=zone)
            await self._sleep(2.0)
            info = (await self._api.call("GetChange", zone, Id=change_id))["ChangeInfo"]
