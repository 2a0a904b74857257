"""CDS/CDNSKEY and CSYNC scans of one child: ask every address of every nameserver the
parent delegates the child to, hand the answers to the pure decisions
(``decide/cds_consistency.py``, ``decide/csync_consistency.py``), apply an accepted change
to the parent zone through the provider, and record the outcome."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import dns.name

from orchestrator.decide.cds_consistency import ServerAnswers, Verdict, decide_cds, texts
from orchestrator.decide.csync_consistency import (
    CsyncAnswers,
    CsyncVerdict,
    decide_csync,
    in_bailiwick,
)
from orchestrator.parent_agent.history import Outcome, Recorder
from orchestrator.parent_agent.parent_zone import (
    ChildLocks,
    ParentView,
    addresses,
    read_parent,
)
from orchestrator.parent_agent.probe import ProbeError, ask, ask_signed, signed
from providers.base import ApiRRset
from providers.powerdns import PowerDNSProvider
from providers.powerdns_rrsets import replace_rrsets

OUTCOME: dict[str, Outcome] = {"accept": "accepted", "refuse": "refused", "ignore": "ignored"}


@dataclass
class Scanner:
    api: PowerDNSProvider
    zone: str
    hosts: Mapping[str, str]
    ttl: int
    recorder: Recorder
    locks: ChildLocks = field(default_factory=ChildLocks)

    async def servers(self, child: str, parent: ParentView) -> list[tuple[str, str, int]]:
        """(label, address, port) of every address of every delegated nameserver; a
        nameserver without an address is a ("label", "", 0) entry (reported as broken)."""
        out = []
        for ns in parent.ns(child):
            found = await addresses(ns, parent, self.hosts)
            out += [(f"{ns}@{a}:{p}", a, p) for a, p in found] or [(ns, "", 0)]
        return out

    async def scan(self, child: str, actor: str, kinds: tuple[str, ...] = ("CDS", "CSYNC"),
                   parent: ParentView | None = None) -> dict[str, str]:
        """Scan ``child`` for the given kinds; the outcome per kind. ``parent``: a view of
        the parent zone read for a whole round (re-read before anything is applied)."""
        async with self.locks.hold(child):
            view = parent if parent is not None else await read_parent(self.api, self.zone)
            results = {}
            if "CDS" in kinds:
                results["CDS"] = await self.scan_cds(child, view, actor)
            if "CSYNC" in kinds:
                if results.get("CDS") == "accepted":
                    view = await read_parent(self.api, self.zone)  # the DS just changed
                results["CSYNC"] = await self.scan_csync(child, view, actor)
            return results

    async def _nothing_published(self, child: str, servers: list[tuple[str, str, int]],
                                 rdtype: str, current: tuple[str, ...] = ()) -> bool:
        """The cheap first look of a scheduled scan: the first address serves no such
        RRset (or exactly what the parent has). No change can follow then, since every
        address must agree, so the others are not asked and nothing is recorded."""
        if not servers or not servers[0][1]:
            return False
        _, address, port = servers[0]
        try:
            rrset, _ = await ask_signed(address, port, child, rdtype)
        except ProbeError:
            return False  # the full scan reports it
        return rrset is None or (bool(current) and texts(rrset) == current)

    async def _still(self, child: str, parent: ParentView) -> bool:
        """Whether the child's delegation is still what ``parent`` showed (a change
        between the round's read and now voids the decision: the next round decides)."""
        fresh = await read_parent(self.api, self.zone)
        return fresh.delegation(child) == parent.delegation(child)

    async def scan_cds(self, child: str, parent: ParentView, actor: str) -> str:
        servers = await self.servers(child, parent)
        if (actor == "scan"
                and await self._nothing_published(child, servers, "CDS", parent.ds(child))
                and await self._nothing_published(child, servers, "CDNSKEY")):
            return "ignored"
        answers = await asyncio.gather(*(cds_at(child, s) for s in servers))
        verdict = decide_cds(child, answers, parent.ds(child), time.time())
        if verdict.outcome == "accept" and not await self._still(child, parent):
            verdict = Verdict("ignore", "the delegation changed during the scan")
        if verdict.outcome == "accept":
            ttl = parent.ttl(child, "DS", self.ttl)
            await replace_rrsets(self.api, self.zone, [ApiRRset(child, "DS", ttl, verdict.ds)])
        await self._record("scan-cds", verdict, actor, child,
                           {"from": list(parent.ds(child)), "to": list(verdict.ds)})
        return OUTCOME[verdict.outcome]

    async def _record(self, kind: str, verdict: Verdict | CsyncVerdict, actor: str,
                      child: str, change: dict[str, Any]) -> None:
        evidence: dict[str, Any] = {"child": child, "change": change}
        if verdict.servers:
            evidence["servers"] = dict(verdict.servers)
        await self.recorder.record_scan(kind, OUTCOME[verdict.outcome], actor=actor,
                                        reason=verdict.reason, evidence=evidence)

    async def scan_csync(self, child: str, parent: ParentView, actor: str) -> str:
        servers = await self.servers(child, parent)
        if actor == "scan" and await self._nothing_published(child, servers, "CSYNC"):
            return "ignored"
        answers = await asyncio.gather(*(csync_at(child, s) for s in servers))
        current = parent.delegation(child)
        verdict = decide_csync(child, answers, current, time.time())
        if verdict.outcome == "accept":
            lame = await self._lame(child, verdict.ns, current.ns, parent)
            if lame:
                verdict = CsyncVerdict("refuse", "a new nameserver does not serve the zone "
                                       "authoritatively", servers=lame)
            elif not await self._still(child, parent):
                verdict = CsyncVerdict("ignore", "the delegation changed during the scan")
            else:
                await self._apply_csync(child, verdict, parent)
        await self._record("scan-csync", verdict, actor, child, {
            "from": {"ns": list(current.ns), "glue": _glue_json(current.glue)},
            "to": {"ns": list(verdict.ns), "glue": _glue_json(verdict.glue)}})
        return OUTCOME[verdict.outcome]

    async def _lame(self, child: str, new: tuple[str, ...], old: tuple[str, ...],
                    parent: ParentView) -> dict[str, str]:
        """New nameservers that do not answer the child's SOA authoritatively."""
        problems: dict[str, str] = {}
        for ns in (n for n in new if n not in old):
            found = await addresses(ns, parent, self.hosts)
            if not found and not dns.name.from_text(ns).is_subdomain(
                    dns.name.from_text(child)):
                problems[ns] = "no address found"
            for address, port in found:
                try:
                    await ask(address, port, child, "SOA")
                except ProbeError as exc:
                    problems[f"{ns}@{address}:{port}"] = str(exc)
        return problems

    async def _apply_csync(self, child: str, verdict: CsyncVerdict, parent: ParentView) -> None:
        apex = dns.name.from_text(child)
        ns_ttl = parent.ttl(child, "NS", self.ttl)
        changes = [ApiRRset(child, "NS", ns_ttl, verdict.ns)]
        old_glue = in_bailiwick(apex, parent.ns(child))
        for name in sorted(set(old_glue) | set(verdict.glue)):
            v4, v6 = verdict.glue.get(name, ((), ()))
            for rdtype, records in (("A", v4), ("AAAA", v6)):
                if records != parent.records(name, rdtype):
                    changes.append(ApiRRset(name, rdtype, parent.ttl(name, rdtype, ns_ttl),
                                            records))
        await replace_rrsets(self.api, self.zone, changes)


async def cds_at(child: str, server: tuple[str, str, int]) -> ServerAnswers:
    """DNSKEY, CDS and CDNSKEY (with signatures) at one address."""
    label, address, port = server
    if not address:
        return ServerAnswers(label, error="no address found for this nameserver")
    try:
        dnskey, cds, cdnskey = await asyncio.gather(
            ask_signed(address, port, child, "DNSKEY"), ask_signed(address, port, child, "CDS"),
            ask_signed(address, port, child, "CDNSKEY"))
    except ProbeError as exc:
        return ServerAnswers(label, error=str(exc))
    return ServerAnswers(label, dnskey=dnskey, cds=cds, cdnskey=cdnskey)


async def csync_at(child: str, server: tuple[str, str, int]) -> CsyncAnswers:
    """SOA, CSYNC, NS, DNSKEY and in-bailiwick addresses, then the SOA again (RFC 7477
    sec. 4.1: a serial that moved means the zone changed under the scan)."""
    label, address, port = server
    if not address:
        return CsyncAnswers(label, error="no address found for this nameserver")
    try:
        soa_answer = await ask(address, port, child, "SOA")
        soa = signed(soa_answer, child, "SOA")
        csync = await ask_signed(address, port, child, "CSYNC")
        ns = await ask_signed(address, port, child, "NS")
        dnskey = await ask_signed(address, port, child, "DNSKEY")
        names = [rd.to_text().lower() for rd in ns[0]] if ns[0] is not None else []
        glue = {}
        for name in in_bailiwick(dns.name.from_text(child), names):
            glue[name] = (await ask_signed(address, port, name, "A"),
                          await ask_signed(address, port, name, "AAAA"))
        again = signed(await ask(address, port, child, "SOA"), child, "SOA")
    except ProbeError as exc:
        return CsyncAnswers(label, error=str(exc))
    if soa[0] is None or again[0] is None:
        return CsyncAnswers(label, error="no SOA in the answer")
    return CsyncAnswers(label, serial_before=int(soa[0][0].serial),
                        serial_after=int(again[0][0].serial), soa=soa, csync=csync, ns=ns,
                        dnskey=dnskey, glue=glue)


def _glue_json(glue: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]]
               ) -> dict[str, list[str]]:
    return {name: list(v4) + list(v6) for name, (v4, v6) in glue.items()}
