"""``type = "rfc2136"``: a Model 2 signer that rolls its own keys and takes everything
else by DNS UPDATE.

Reads come from what the provider's nameservers serve (own keys: those the served
signatures verify with, see ``served``). Writes are diffs against what ``server`` serves:
one UPDATE adds the missing records and deletes the extra ones (adds first, so an RRset
such as the apex NS is never empty in between). After a DNSKEY update the server's answer
is read back: a server that accepts the UPDATE but does not serve the added keys (BIND 9.18
inline signing replaces the DNSKEY RRset with its own keys) is refused with a clear error
instead of being trusted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import ClassVar

import dns.rdata
import dns.rdataclass
import dns.rdatatype
from dns.update import UpdateMessage

from core.config import Rfc2136ProviderConfig
from core.errors import ProviderError
from core.keys import Digest, Key
from core.observation import ApiZoneState
from providers.base import Capability, Provider
from providers.rfc2136.served import Served
from providers.rfc2136.transport import Transport

READBACK_SECONDS = 5.0  # how long the server may take to sign and serve an UPDATE


class Rfc2136Provider(Provider):
    capabilities: ClassVar[Capability] = (
        Capability.IMPORT_FOREIGN_DNSKEY | Capability.PUBLISH_CDS | Capability.MANAGE_NS
    )
    type_name: ClassVar[str] = "rfc2136"
    keys_from_signatures: ClassVar[bool] = True

    def __init__(self, config: Rfc2136ProviderConfig) -> None:
        super().__init__(config.name)
        self._dns = Transport(config)
        # Per zone: served keys without a signature that the server put back after an
        # UPDATE deleted them, so its own (pre-published) keys, not foreign ones.
        self._kept: dict[str, set[Key]] = {}

    async def check_access(self) -> None:
        """The update server answers DNS over TCP. (The TSIG key is proven only by an
        UPDATE to a zone, which the first write does, failing with BADKEY/BADSIG named.)"""
        await self._dns.probe()

    async def read_zone(self, zone: str) -> ApiZoneState:
        await self._dns.prove_key(zone)
        served = await self._dns.read_any(zone)
        return _state(self.name, served, self._kept.get(zone, set()))

    async def set_foreign_dnskeys(self, zone: str, keys: Sequence[Key], ttl: int) -> None:
        served = await self._dns.read(zone, self._dns.server, ("DNSKEY", "SOA"))
        own = {k.key for k in served.own_keys(self._kept.get(zone, set()))}
        wanted = set(keys) - own
        current = served.dnskeys - own
        await self._apply(zone, "DNSKEY", {k.text for k in current},
                          {k.text for k in wanted}, ttl)
        await self._read_back(zone, wanted, current - wanted)

    async def set_cds(
        self, zone: str, cds: Sequence[Digest], cdnskey: Sequence[Key], ttl: int
    ) -> None:
        served = await self._dns.read(zone, self._dns.server, ("CDS", "CDNSKEY"))
        update = self._dns.message(zone)
        changed = _diff(update, zone, "CDS", {d.text for d in served.cds},
                        {d.text for d in cds}, ttl)
        changed |= _diff(update, zone, "CDNSKEY", {k.text for k in served.cdnskey},
                         {k.text for k in cdnskey}, ttl)
        if changed:  # one UPDATE for both: never a CDS without its CDNSKEY twin
            await self._dns.update(zone, update, "CDS/CDNSKEY")

    async def set_apex_rrset(
        self, zone: str, rrtype: str, contents: Sequence[str], ttl: int
    ) -> None:
        served = await self._dns.read(zone, self._dns.server, (rrtype,))
        await self._apply(zone, rrtype, _canonical(rrtype, served.texts(rrtype)),
                          _canonical(rrtype, contents), ttl)

    async def _apply(self, zone: str, rrtype: str, current: set[str], wanted: set[str],
                     ttl: int) -> None:
        update = self._dns.message(zone)
        if _diff(update, zone, rrtype, current, wanted, ttl):
            await self._dns.update(zone, update, rrtype)

    async def _read_back(self, zone: str, added: set[Key], removed: set[Key]) -> None:
        """Wait until the server serves the DNSKEYs it accepted; refuse a server that keeps
        serving without them. An UPDATE is one transaction: once its additions show, a
        deleted key still served is one the server put back, i.e. one of its own keys
        that does not sign yet (Knot re-adds the keys of its key store on every signing);
        it is remembered as own and never deleted again."""
        deadline = asyncio.get_running_loop().time() + READBACK_SECONDS
        while True:
            served = (await self._dns.read(zone, self._dns.server, ("DNSKEY",))).dnskeys
            missing = added - served
            if not missing:
                if removed & served:  # confirm after a moment: put back, not merely late
                    await asyncio.sleep(0.5)
                    again = (await self._dns.read(zone, self._dns.server, ("DNSKEY",))).dnskeys
                    self._kept.setdefault(zone, set()).update(removed & again)
                return
            if asyncio.get_running_loop().time() >= deadline:
                break
            await asyncio.sleep(0.2)
        tags = ", ".join(k.short() for k in sorted(missing))
        raise ProviderError(
            f"the server accepted the UPDATE but does not serve the DNSKEY(s) it added "
            f"({tags}) after {READBACK_SECONDS:g}s: it does not keep foreign DNSKEYs "
            "(BIND 9.18 with inline signing replaces the DNSKEY RRset with its own keys; "
            "Knot needs dnskey-management: incremental). This signer cannot take part "
            "in Model 2 multi-signing; see docs/providers/rfc2136.md",
            provider=self.name, zone=zone, endpoint=f"DNSKEY at {self._dns.server}")


def _canonical(rrtype: str, texts: Iterable[str]) -> set[str]:
    """Records in the server's own presentation form (dnspython's), so a diff compares
    like with like (``ns1.example.`` vs ``NS1.Example.``, spacing in CSYNC)."""
    kind = dns.rdatatype.from_text(rrtype)
    out = {dns.rdata.from_text(dns.rdataclass.IN, kind, t).to_text() for t in texts}
    return {t.lower() for t in out} if rrtype == "NS" else out


def _diff(update: UpdateMessage, zone: str, rrtype: str, current: set[str],
          wanted: set[str], ttl: int) -> bool:
    """Add to ``update`` the records to add (first) and to delete; True if any."""
    current, wanted = _canonical(rrtype, current), _canonical(rrtype, wanted)
    kind = dns.rdatatype.from_text(rrtype)
    for text in sorted(wanted - current):
        update.add(f"{zone}", ttl, dns.rdata.from_text(dns.rdataclass.IN, kind, text))
    for text in sorted(current - wanted):
        update.delete(f"{zone}", dns.rdata.from_text(dns.rdataclass.IN, kind, text))
    return bool(wanted ^ current)


def _state(provider: str, served: Served, kept: set[Key]) -> ApiZoneState:
    own = served.own_keys(kept)
    return ApiZoneState(
        provider=provider,
        own_keys=tuple(own),
        foreign_dnskeys=frozenset(served.dnskeys - {k.key for k in own}),
        cds=frozenset(served.cds),
        cdnskey=frozenset(served.cdnskey),
        max_ttl=None,  # only the apex is visible by DNS; the zone's largest TTL is not
        ns=frozenset(t if t.endswith(".") else f"{t}." for t in served.ns()),
        csync=frozenset(served.texts("CSYNC")),
    )
