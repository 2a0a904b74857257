"""Knot DNS 3.2 as a Model 1 signer (offline KSK), driven through ``keymgr`` and ``knotc``.

Knot holds only its own ZSKs; the zone owner holds the one KSK and hands over the combined
DNSKEY RRset (owner KSK + every provider's ZSK), CDS and CDNSKEY, signed
(:class:`core.keyset.SignedKeySet`), which this adapter imports as an SKR. Knot serves
exactly that DNSKEY RRset with the owner's RRSIG and signs everything else with its own
active ZSK.

The work is split by concern, each module with the Knot behaviour it relies on:
``commands`` (the one keymgr/knotc seam, ``command_prefix``, quoting), ``transactions``
(zone status, key loading, zone transactions), ``apex`` (NS/CSYNC), ``keys`` and
``timers`` (Knot's ZSKs), ``keyset`` (signed key set -> SKR import, the KSR) and ``skr``
(the SKR/KSR text format). :class:`KnotProvider` composes them behind the provider
contract.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from typing import ClassVar

from core.config import KnotProviderConfig
from core.keys import Key, Role
from core.keyset import SignedKeySet
from core.observation import ApiKey, ApiZoneState
from providers.base import ApiRRset, Capability, Provider
from providers.knot.apex import ApexRecord, ApexRRsets
from providers.knot.commands import KnotCommands
from providers.knot.keys import KnotKeys
from providers.knot.keyset import KnotKeySets, TimeSpec
from providers.knot.rrsets import NamedRRsets
from providers.knot.skr import KsrBlock, SkrBlock
from providers.knot.timers import KnotKey
from providers.knot.transactions import ZoneTransactions, absolute


class KnotProvider(Provider):
    capabilities = (
        Capability.SIGN_EXTERNAL_DNSKEY_SET | Capability.GENERATE_KEYS | Capability.MANAGE_NS
        | Capability.WRITE_RRSETS
    )
    type_name: ClassVar[str] = "knot"

    def __init__(self, config: KnotProviderConfig) -> None:
        super().__init__(config.name)
        self.config = config
        self._cmd = KnotCommands(config)
        self._tx = ZoneTransactions(self._cmd)
        self._keys = KnotKeys(self._cmd, self._tx)
        self._apex = ApexRRsets(self._cmd, self._tx)
        self._keysets = KnotKeySets(config, self._cmd, self._tx, self._keys)
        self._rrsets = NamedRRsets(self._cmd, self._tx)

    @property
    def _public(self) -> dict[str, dict[str, Key]]:
        """The cached DNSKEYs (zone -> key id -> DNSKEY), for tests."""
        return self._keys.public

    # -- reading --------------------------------------------------------------------

    async def check_access(self) -> None:
        status, _ = await asyncio.gather(
            self._cmd.run("knotc", "status"), self._cmd.run("keymgr", options=["-l"])
        )
        if "Running" not in status:
            raise self._cmd.error(f"knotc status answered {status.strip()!r}, not 'Running'",
                                  endpoint="knotc status")

    async def zone_loaded(self, zone: str) -> bool:
        """Whether knotd serves the zone now (``zone-status`` shows a serial, not "-").
        ZoneMissing when Knot does not know the zone at all."""
        return (await self._tx.status(zone)).loaded

    async def list_keys(self, zone: str) -> list[KnotKey]:
        """Knot's keys of ``zone`` with their timers (``keymgr -j ZONE list``)."""
        return await self._keys.list_keys(zone)

    async def read_keys(self, zone: str) -> ApiZoneState:
        """Knot's own keys (ZSKs) only; ZoneMissing for a zone Knot does not know."""
        # zone-status: ZoneMissing for a zone Knot does not know (keymgr lists nothing then)
        _, keys = await asyncio.gather(self.zone_loaded(zone), self._keys.list_keys(zone))
        return ApiZoneState(
            provider=self.name,
            own_keys=tuple(await self._keys.api_keys(zone, keys)),
            foreign_dnskeys=frozenset(),
            cds=frozenset(),
            cdnskey=frozenset(),
        )

    async def read_zone(self, zone: str) -> ApiZoneState:
        """Knot's own keys (ZSKs) and the apex NS and CSYNC RRsets (``zone-read ZONE @``;
        both empty while the zone is not loaded). Offline mode has no foreign records of its
        own: the served DNSKEY/CDS/CDNSKEY come from the SKR (see :meth:`offline_records`)."""
        state, apex = await asyncio.gather(self.read_keys(zone), self._apex.records(zone))
        ns = frozenset(absolute(r.data) for r in apex if r.rrtype == "NS")
        csync = frozenset(r.data for r in apex if r.rrtype == "CSYNC")
        return dataclasses.replace(state, ns=ns, csync=csync)

    async def apex_records(self, zone: str, rrtype: str | None = None) -> list[ApexRecord]:
        """The apex records (of ``rrtype``; RRSIGs left out) knotd serves now."""
        return await self._apex.records(zone, rrtype)

    async def requested_dnskey_ttl(self, zone: str) -> int | None:
        blocks = await self.key_signing_request(zone, "+0", "+0")
        return next((b.ttl for b in blocks if b.ttl is not None), None)

    async def key_signing_request(
        self, zone: str, start: TimeSpec = "+0", end: TimeSpec = "+14d", *,
        algorithm: int | str | None = None,
    ) -> list[KsrBlock]:
        """``keymgr ZONE generate-ksr START END``, parsed and checked (no KSK; with
        ``algorithm``, no ZSK of another algorithm)."""
        return await self._keysets.key_signing_request(zone, start, end, algorithm=algorithm)

    async def offline_records(self, zone: str, start: TimeSpec = "+0") -> list[SkrBlock]:
        """The imported SKR records in effect from ``start`` on (``keymgr show-offline``)."""
        return await self._keysets.offline_records(zone, start)

    # -- Model 1 --------------------------------------------------------------------

    async def serve_signed_keyset(self, zone: str, keyset: SignedKeySet) -> None:
        """Import the set as an SKR (validated first; refused when a block lacks a ZSK
        Knot signs with then), then make knotd serve it."""
        await self._keysets.serve(zone, keyset)

    async def import_skr(self, zone: str, skr_text: str) -> None:
        """Knot-specific: import an SKR given as text, checked as
        :meth:`serve_signed_keyset` does."""
        await self._keysets.import_skr(zone, skr_text)

    # -- apex RRsets (NS, CSYNC) ----------------------------------------------------

    async def set_apex_rrset(
        self, zone: str, rrtype: str, contents: Sequence[str], ttl: int
    ) -> None:
        await self._apex.set_rrset(zone, rrtype, contents, ttl)

    # -- any RRset in the zone (ACME TXT records) -------------------------------------

    async def read_rrset(self, zone: str, name: str, rdtype: str) -> ApiRRset | None:
        return await self._rrsets.read(zone, name, rdtype)

    async def set_rrset(
        self, zone: str, name: str, rdtype: str, records: Sequence[str], ttl: int
    ) -> None:
        await self._rrsets.set(zone, name, rdtype, records, ttl)

    # -- keys -----------------------------------------------------------------------

    async def create_key(
        self, zone: str, role: Role, algorithm: str, *, active: bool, published: bool
    ) -> ApiKey:
        return await self._keys.create(zone, role, algorithm, active=active,
                                       published=published)

    async def set_key_state(self, zone: str, key_id: str, *, active: bool, published: bool) -> None:
        await self._keys.set_state(zone, key_id, active=active, published=published)

    async def delete_key(self, zone: str, key_id: str) -> None:
        await self._keys.delete(zone, key_id)

    async def aclose(self) -> None:
        await self._cmd.aclose()


__all__ = ["ApexRecord", "KnotKey", "KnotProvider", "KnotProviderConfig"]
