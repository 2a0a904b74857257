"""One RRset at any name of a Knot zone (``Capability.WRITE_RRSETS``, for ACME TXT
records): read with ``knotc zone-read ZONE OWNER TYPE``, replaced in one knotc zone
transaction, the way apex.py changes the apex NS/CSYNC RRsets.

Facts this relies on (Knot 3.2.6, verified): ``zone-read`` of a name without records
answers "no such node in zone found"; ``zone-set ZONE OWNER TTL TYPE DATA...`` takes an
absolute owner name and TXT data as zone-file text (a quoted string stays one word, so
the word-by-word passing of transactions.py keeps it intact); the commit re-signs the
changed RRset with Knot's ZSK. A name outside the zone, and the types Knot's signing or
the delegation own (DNSKEY, CDS, CDNSKEY, RRSIG, NSEC*, SOA, NS, DS), are refused before
any command runs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass

from core.errors import ProviderError, ProviderUnreachable, ZoneMissing
from providers.base import ApiRRset, name_in_zone
from providers.knot.apex import MAX_TTL, NOT_SETTABLE, parse_zone_read
from providers.knot.commands import LOGGER, KnotCommands
from providers.knot.transactions import ZoneTransactions

REFUSED_TYPES = NOT_SETTABLE | {"NS", "DS", "CNAME", "DNAME"}
# The names ACME writes at: a leftover transaction touching only TXT RRsets there (or the
# apex NS/CSYNC the adapter changes) is a killed run of this controller's, aborted.


class NamedRRsets:
    """Reads and replaces RRsets at arbitrary names of one Knot provider's zones."""

    def __init__(self, commands: KnotCommands, transactions: ZoneTransactions) -> None:
        self._cmd = commands
        self._tx = transactions

    async def read(self, zone: str, name: str, rdtype: str) -> ApiRRset | None:
        owner = name_in_zone(self._cmd.name, zone, name)
        rtype = rdtype.strip().upper()
        try:
            text = await self._cmd.run("knotc", "zone-read", zone, owner, rtype, zone=zone)
        except ZoneMissing:
            raise
        except ProviderError as exc:
            if "no such node" in str(exc) or "not exists" in str(exc):
                return None
            raise
        records = [r for r in parse_zone_read(text, zone) if r.rrtype == rtype]
        if not records:
            return None
        return ApiRRset(owner, rtype, records[0].ttl, tuple(sorted(r.data for r in records)))

    async def set(self, zone: str, name: str, rdtype: str, contents: Sequence[str],
                  ttl: int) -> None:
        """Make ``contents`` the RRset (empty: remove it) in one zone transaction; refused
        outside the zone, for the types in REFUSED_TYPES, and on a zone not loaded.
        Nothing is run when Knot already serves exactly that."""
        owner = name_in_zone(self._cmd.name, zone, name)
        rtype = rdtype.strip().upper()
        endpoint = f"knotc zone-set {zone} {owner} {ttl} {rtype}"
        if rtype in REFUSED_TYPES:
            raise self._cmd.error(f"refusing to set {rtype} at {owner}: Knot's signing or "
                                  "the zone's delegations own it; nothing changed",
                                  zone=zone, endpoint=endpoint)
        if not 0 <= ttl <= MAX_TTL:
            raise self._cmd.error(f"invalid TTL {ttl}; nothing changed", zone=zone,
                                  endpoint=endpoint)
        want = self._canonical(zone, rtype, contents, endpoint)
        async with self._tx.lock(zone):
            if not (await self._tx.status(zone)).loaded:
                raise self._cmd.error("the zone is not loaded (an offline-KSK zone loads "
                                      "with its first SKR): run sync first; nothing changed",
                                      zone=zone, endpoint=endpoint)
            current = await self.read(zone, owner, rtype)
            have = self._canonical(zone, rtype, current.records if current else [], endpoint)
            if have.keys() == want.keys() and (not want or (current and current.ttl == ttl)):
                return
            await self._transaction(zone, owner, rtype, sorted(want.values()), ttl,
                                    remove=current is not None)
        LOGGER.info("%s: %s %s of %s = %d record(s)", self._cmd.name, owner, rtype, zone,
                    len(want), extra={"provider": self._cmd.name, "zone": zone})

    async def _transaction(self, zone: str, owner: str, rtype: str, records: Sequence[str],
                           ttl: int, *, remove: bool) -> None:
        await self._tx.begin(zone)
        try:
            if remove:
                try:
                    await self._cmd.run("knotc", "zone-unset", zone, owner, rtype, zone=zone)
                except ProviderUnreachable:
                    raise
                except ProviderError as exc:
                    if "not exists" not in str(exc):
                        raise
            for data in records:
                await self._cmd.run("knotc", "zone-set", zone, owner, str(ttl), rtype,
                                    *data.split(), zone=zone)
            await self._cmd.run("knotc", "zone-commit", zone, zone=zone)
        except BaseException:
            # shielded: a cancelled caller must not leave the transaction open either
            with contextlib.suppress(Exception):
                await asyncio.shield(self._cmd.run("knotc", "zone-abort", zone, zone=zone))
            raise

    def _canonical(self, zone: str, rtype: str, contents: Sequence[str], endpoint: str
                   ) -> dict[dns.rdata.Rdata, str]:
        out: dict[dns.rdata.Rdata, str] = {}
        for text in contents:
            try:
                rd = dns.rdata.from_text(dns.rdataclass.IN, rtype, text,
                                         origin=dns.name.root, relativize=False)
            except (dns.exception.DNSException, ValueError) as exc:
                raise self._cmd.error(f"{rtype} record {text!r} does not parse: {exc}; "
                                      "nothing changed", zone=zone, endpoint=endpoint) from None
            out.setdefault(rd, rd.to_text())
        return out
