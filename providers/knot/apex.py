"""The apex NS and CSYNC RRsets of a Knot zone (``Capability.MANAGE_NS``): read with
``knotc zone-read``, changed in one knotc zone transaction.

Facts this relies on (Knot 3.2.6, verified):

* On a zone that is not loaded (offline mode, no SKR yet) ``zone-begin`` succeeds but the
  transaction starts from an *empty* zone; its commit fails ("semantic check", missing
  SOA). ``zone-read ZONE @`` answers "no such node in zone found" then.
* Knot's mandatory checks do not require an apex NS RRset: a commit removing it is
  accepted, and the zone is served without one. This module refuses that.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass

from core.errors import ProviderError, ZoneMissing
from providers.knot.commands import LOGGER, KnotCommands
from providers.knot.transactions import ZoneTransactions

# Apex RRsets Knot's signing owns (or a zone cannot lose): not set through set_rrset.
NOT_SETTABLE = frozenset(
    {"SOA", "DNSKEY", "CDS", "CDNSKEY", "RRSIG", "NSEC", "NSEC3", "NSEC3PARAM", "ZONEMD"}
)
MAX_TTL = 2**31 - 1  # RFC 2181 sec. 8


@dataclass(frozen=True)
class ApexRecord:
    """One record of the zone apex as ``knotc zone-read ZONE @`` prints it."""

    rrtype: str
    ttl: int
    data: str


class ApexRRsets:
    """Reads and replaces apex RRsets of one Knot provider's zones."""

    def __init__(self, commands: KnotCommands, transactions: ZoneTransactions) -> None:
        self._cmd = commands
        self._tx = transactions

    async def records(self, zone: str, rrtype: str | None = None) -> list[ApexRecord]:
        """The apex records (of ``rrtype``; RRSIGs left out) knotd serves now
        (``knotc zone-read ZONE @ [TYPE]``); empty when the zone is not loaded."""
        args = [zone, "@"] + ([rrtype.upper()] if rrtype else [])
        try:
            text = await self._cmd.run("knotc", "zone-read", *args, zone=zone)
        except ZoneMissing:
            raise
        except ProviderError as exc:
            if "no such node" in str(exc):  # no apex: not loaded (no SKR yet)
                return []
            raise
        return [r for r in parse_zone_read(text, zone) if r.rrtype != "RRSIG"]

    async def set_rrset(self, zone: str, rrtype: str, contents: Sequence[str], ttl: int) -> None:
        """Make ``contents`` the complete apex RRset of ``rrtype`` (TTL ``ttl``); empty
        removes it, in one zone transaction (knotd re-signs the RRset with its ZSK then);
        on any failure the transaction is aborted and a ProviderError names the command.
        Idempotent: nothing is run when Knot already serves exactly that.

        Refused: the RRsets Knot's signing owns (DNSKEY, CDS, CDNSKEY -- in Model 1 they
        come from the owner --, RRSIG, NSEC*, SOA), an empty NS RRset (Knot would serve a
        zone without one), and a zone that is not loaded (a transaction would start
        empty)."""
        rtype = rrtype.strip().upper()
        endpoint = f"knotc zone-set {zone} @ {ttl} {rtype}"
        if rtype in NOT_SETTABLE:
            raise self._cmd.error(
                f"refusing to set the apex {rtype} RRset: Knot's DNSSEC signing owns it "
                "(in Model 1 the owner's signed key set brings DNSKEY, CDS and CDNSKEY)",
                zone=zone, endpoint=endpoint,
            )
        if rtype == "NS" and not contents:
            raise self._cmd.error(
                "refusing to remove the apex NS RRset: Knot would accept it and serve the "
                "zone without one",
                zone=zone, endpoint=endpoint,
            )
        if not 0 <= ttl <= MAX_TTL:
            raise self._cmd.error(f"invalid TTL {ttl} (0..{MAX_TTL}); nothing changed",
                                  zone=zone, endpoint=endpoint)
        want = self._canonical(zone, rtype, contents, endpoint)
        async with self._tx.lock(zone):
            current = await self.records(zone, rtype)
            if not current and not (await self._tx.status(zone)).loaded:
                raise self._cmd.error(
                    "the zone is not loaded (an offline-KSK zone loads with its first SKR): "
                    "a zone transaction would start from an empty zone; import an SKR first",
                    zone=zone, endpoint=endpoint,
                )
            have = self._canonical(zone, rtype, [r.data for r in current], endpoint)
            # rdata equality is DNSSEC's canonical one: names compare case-insensitively
            if have.keys() == want.keys() and (not want or {r.ttl for r in current} == {ttl}):
                return
            records = sorted(want.values())
            await self._tx.replace_apex(zone, rtype, records, ttl, remove=bool(current))
        LOGGER.info("%s: apex %s of %s = %s", self._cmd.name, rtype, zone,
                    ", ".join(records) or "(none)",
                    extra={"provider": self._cmd.name, "zone": zone})

    def _canonical(
        self, zone: str, rtype: str, contents: Sequence[str], endpoint: str
    ) -> dict[dns.rdata.Rdata, str]:
        """``contents`` parsed (names absolute: relative ones are taken from the root, as
        the PowerDNS adapter does), deduplicated: each record's presentation form (absolute
        names: knotc would take a relative one from the zone's origin) by its rdata;
        ProviderError for one that does not parse."""
        out: dict[dns.rdata.Rdata, str] = {}
        for text in contents:
            try:
                rd = dns.rdata.from_text(
                    dns.rdataclass.IN, rtype, text, origin=dns.name.root, relativize=False
                )
            except (dns.exception.DNSException, ValueError) as exc:
                raise self._cmd.error(
                    f"{rtype} record {text!r} does not parse: {exc}; nothing changed",
                    zone=zone, endpoint=endpoint,
                ) from None
            out.setdefault(rd, rd.to_text())
        return out


def parse_zone_read(text: str, zone: str) -> list[ApexRecord]:
    """``[zone.] owner TTL TYPE DATA`` lines of ``knotc zone-read`` (class not printed)."""
    out: list[ApexRecord] = []
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("["):
            line = line.partition("]")[2].strip()
        parts = line.split(None, 3)
        if len(parts) < 4 or not parts[1].isdigit():
            continue
        _, ttl, rtype, data = parts
        rtype = rtype.upper()
        if rtype != "RRSIG":
            with contextlib.suppress(dns.exception.DNSException, ValueError):
                data = dns.rdata.from_text(
                    dns.rdataclass.IN,
                    rtype,
                    data,
                    origin=dns.name.from_text(zone),
                    relativize=False,
                ).to_text()
        out.append(ApexRecord(rtype, int(ttl), data))
    return out
