"""The parent zone as the agent sees it through the provider's API: its delegations (NS,
DS) and the address records inside it, read in one call per scan round or request; and
where each child nameserver answers (the ``hosts`` table, else the parent's own address
records, else DNS)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field

import dns.asyncresolver
import dns.exception
import dns.name
import dns.rdatatype

from core.config_types import hostport
from orchestrator.decide.cds_consistency import ds_text, parse_ds
from orchestrator.decide.csync_consistency import Delegation, in_bailiwick
from providers.base import ApiRRset
from providers.powerdns import PowerDNSProvider
from providers.powerdns_rrsets import read_all_rrsets


@dataclass(frozen=True)
class ParentView:
    zone: str
    rrsets: Mapping[tuple[str, str], ApiRRset] = field(default_factory=dict)

    @property
    def children(self) -> list[str]:
        """Every name below the apex with an NS RRset: the delegations."""
        return sorted(name for name, rdtype in self.rrsets
                      if rdtype == "NS" and name != self.zone)

    def records(self, name: str, rdtype: str) -> tuple[str, ...]:
        rrset = self.rrsets.get((name.lower(), rdtype))
        return rrset.records if rrset is not None else ()

    def ttl(self, name: str, rdtype: str, default: int) -> int:
        rrset = self.rrsets.get((name.lower(), rdtype))
        return rrset.ttl if rrset is not None else default

    def ns(self, child: str) -> tuple[str, ...]:
        return tuple(sorted(dns.name.from_text(t).to_text().lower()
                            for t in self.records(child, "NS")))

    def ds(self, child: str) -> tuple[str, ...]:
        return tuple(sorted(ds_text(d) for d in parse_ds(self.records(child, "DS"))))

    def delegation(self, child: str) -> Delegation:
        apex = dns.name.from_text(child)
        names = in_bailiwick(apex, self.ns(child))
        glue = {n: (self.records(n, "A"), self.records(n, "AAAA")) for n in names}
        return Delegation(self.ns(child), self.ds(child), glue)


class ChildLocks:
    """One lock per child: an UPDATE and a scan of the same child (or two UPDATEs) read,
    decide and write its delegation one after the other, never interleaved (each reads
    the current RRsets and replaces them: interleaved, one change would be lost)."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}

    def hold(self, child: str) -> asyncio.Lock:
        lock = self._locks.get(child)
        if lock is None:
            if len(self._locks) > 10000:  # forget idle ones; children are finite anyway
                self._locks = {c: lk for c, lk in self._locks.items() if lk.locked()}
            lock = self._locks[child] = asyncio.Lock()
        return lock


async def read_parent(api: PowerDNSProvider, zone: str) -> ParentView:
    rrsets = await read_all_rrsets(api, zone)
    return ParentView(zone, {(r.name, r.rdtype): r for r in rrsets})


async def addresses(name: str, parent: ParentView, hosts: Mapping[str, str]
                    ) -> list[tuple[str, int]]:
    """Every (address, port) at which nameserver ``name`` answers. Order: the configured
    ``hosts`` entry; the parent zone's own A/AAAA records for it (glue, or host records
    of the parent zone); DNS (A and AAAA, port 53)."""
    key = name.lower()
    if key in hosts:
        return [hostport(hosts[key])]
    own = list(parent.records(key, "A")) + list(parent.records(key, "AAAA"))
    if own:
        return [(address, 53) for address in own]
    found: list[tuple[str, int]] = []
    for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
        try:
            answer = await dns.asyncresolver.resolve(name, rdtype, lifetime=3.0)
        except dns.exception.DNSException:
            continue
        found += [(rd.to_text(), 53) for rd in answer]
    return found
