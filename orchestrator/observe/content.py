"""Fetch each provider's zone content for ``decide.content.compare``: a zone transfer
where every provider allows it, else a sample of apex and common names queried directly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import cast

import dns.exception
import dns.name
import dns.query
import dns.rdataset
import dns.rdatatype
import dns.zone
from dns.rdtypes.ANY.SOA import SOA

from core.config import hostport
from core.errors import ObservationError
from orchestrator.decide.content import Content, Rrsets, Soa, keep
from providers.nameservers import query

SAMPLE_TYPES = ("SOA", "NS", "A", "AAAA", "MX", "TXT", "CNAME", "CAA")
SAMPLE_LABELS = ("", "www", "mail")


def soa_of(rdataset: dns.rdataset.Rdataset) -> Soa:
    rdata = cast(SOA, rdataset[0])
    return Soa(ttl=int(rdataset.ttl), minimum=int(rdata.minimum), text=rdata.to_text())


def from_zone(zone: dns.zone.Zone) -> Content:
    rrsets: Rrsets = {}
    soa: Soa | None = None
    origin = zone.origin or dns.name.root
    for name, node in zone.nodes.items():
        owner = name.derelativize(origin)
        for rdataset in node.rdatasets:
            rdtype = dns.rdatatype.to_text(rdataset.rdtype)
            if rdtype == "SOA" and owner == origin:
                soa = soa_of(rdataset)
            elif keep(rdtype):
                rrsets[(owner.to_text(), rdtype)] = frozenset(rd.to_text() for rd in rdataset)
    return Content(rrsets, soa)


async def transfer(server: str, zone: str, timeout: float = 5.0) -> Content | None:
    """The zone by AXFR, or None if the server refuses it."""
    host, port = hostport(server)

    def run() -> dns.zone.Zone:
        return dns.zone.from_xfr(dns.query.xfr(host, zone, port=port, timeout=timeout,
                                               lifetime=timeout * 4))

    try:
        return from_zone(await asyncio.to_thread(run))
    except (dns.exception.DNSException, OSError, EOFError, ValueError):
        return None


async def sample(server: str, zone: str, names: set[str]) -> Content:
    rrsets: Rrsets = {}
    soas: list[Soa] = []

    async def one(owner: str, rdtype: str) -> None:
        try:
            answer = await query(server, dns.name.from_text(owner), dns.rdatatype.from_text(rdtype))
        except ObservationError:
            return
        for rrset in answer.answer:
            kind = dns.rdatatype.to_text(rrset.rdtype)
            if rrset.name.to_text() != owner or kind != rdtype:
                continue
            if kind == "SOA":
                if owner == zone:
                    soas.append(soa_of(rrset))
            elif keep(kind):
                rrsets[(owner, rdtype)] = frozenset(rd.to_text() for rd in rrset)

    await asyncio.gather(*(one(n, t) for n in names for t in SAMPLE_TYPES))
    return Content(rrsets, soas[0] if soas else None)


async def fetch(servers: Mapping[str, str], zone: str) -> tuple[dict[str, Content], str]:
    """Each provider's content from one of its servers; AXFR for all if every one allows
    it, else a sample of the same names everywhere. Returns (contents, method)."""
    transfers = dict(zip(servers, await asyncio.gather(
        *(transfer(s, zone) for s in servers.values())), strict=True))
    if all(c is not None for c in transfers.values()):
        return {p: c for p, c in transfers.items() if c is not None}, "AXFR"
    names = {f"{label}.{zone}" if label else zone for label in SAMPLE_LABELS}
    for c in transfers.values():
        if c is not None:
            names |= {owner for owner, _ in c.rrsets}
    sampled = await asyncio.gather(*(sample(s, zone, names) for s in servers.values()))
    return dict(zip(servers, sampled, strict=True)), f"sample of {len(names)} names"
