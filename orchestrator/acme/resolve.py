"""Where an ACME challenge lives: the CNAME chain at the validation name, followed as the
CA will follow it, down to the configured zone that holds the TXT RRset.

Inside a configured zone every nameserver of every signer is asked directly (no cache in
between: what a CA's resolver may be told by *any* of them is what counts, so servers
that disagree are an error). A name outside every configured zone can only be followed
through a recursive resolver (``resolver``, default the system's), one hop at a time,
until the chain enters a configured zone; a chain that leaves the configured zones again
is refused: the TXT would have to be written somewhere this controller does not manage.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.resolver

from core.config import ZoneConfig, hostport
from core.errors import MultisignerError
from orchestrator.decide.acme import (
    ChainError,
    NameAnswer,
    agreed_target,
    check_hop,
    validation_name,
    zone_of,
)
from orchestrator.runtime import Runtime
from providers.nameservers import query


@dataclass(frozen=True)
class Target:
    """Where the TXT RRset for one validation name is written."""

    zone: ZoneConfig
    name: dns.name.Name  # the owner of the TXT RRset (end of the CNAME chain)
    chain: tuple[dns.name.Name, ...]  # validation name first, ``name`` last

    @property
    def delegated(self) -> bool:
        return len(self.chain) > 1

    def describe(self) -> str:
        return " -> ".join(n.to_text() for n in self.chain) + f" (zone {self.zone.name})"


def zone_servers(rt: Runtime, zone: ZoneConfig) -> list[tuple[str, str]]:
    """(provider, nameserver) of every signer of ``zone``."""
    return [(p, ns) for p in rt.signers(zone) for ns in rt.config.provider(p).nameservers]


async def locate(rt: Runtime, fqdn: str, label: str | None, *,
                 resolver: str | None = None) -> Target:
    """The zone and owner name of the TXT RRset the CA will look up for ``fqdn``."""
    zones = {dns.name.from_text(z.name): z for z in rt.config.zones}
    start = validation_name(fqdn, label)
    chain = [start]
    entered = False
    while True:
        current = chain[-1]
        apex = zone_of(current, zones)
        if apex is None:
            if entered:
                raise ChainError(
                    f"the CNAME chain {' -> '.join(n.to_text() for n in chain)} leaves the "
                    f"configured zones ({_names(zones)}) at {current.to_text()}: the TXT "
                    "would have to be written in a zone this controller does not manage")
            target = await _outside_hop(current, chain, zones, resolver)
        else:
            entered = True
            found = await _inside_hop(rt, zones[apex], current)
            if found is None:
                return Target(zones[apex], current, tuple(chain))
            target = found
        check_hop(chain, target)
        chain.append(target)


def _names(zones: dict[dns.name.Name, ZoneConfig]) -> str:
    return ", ".join(z.name for z in zones.values()) or "none"


async def _inside_hop(rt: Runtime, zone: ZoneConfig, name: dns.name.Name
                      ) -> dns.name.Name | None:
    servers = zone_servers(rt, zone)
    answers = await asyncio.gather(*(_ask(f"{p} {ns}", ns, name) for p, ns in servers))
    return agreed_target(name, answers)


async def _ask(label: str, server: str, name: dns.name.Name) -> NameAnswer:
    """One authoritative server's word on ``name`` (asked for its CNAME RRset)."""
    try:
        response = await query(server, name, dns.rdatatype.CNAME)
    except MultisignerError as exc:
        return NameAnswer(label, "error", detail=str(exc))
    rcode = response.rcode()
    if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        return NameAnswer(label, "error", detail=f"answered {dns.rcode.to_text(rcode)}")
    if not response.flags & dns.flags.AA:
        cut = next((r.name for r in response.authority if r.rdtype == dns.rdatatype.NS),
                   None)
        if cut is not None:
            return NameAnswer(label, "referral", detail=(
                f"{name.to_text()} is delegated away (to the {cut.to_text()} zone, "
                "which is not configured here)"))
        return NameAnswer(label, "error", detail="not authoritative (no AA bit)")
    if rcode == dns.rcode.NXDOMAIN:
        return NameAnswer(label, "nxdomain")
    for rrset in response.answer:
        if rrset.name == name and rrset.rdtype == dns.rdatatype.CNAME:
            return NameAnswer(label, "cname", target=rrset[0].target)
    return NameAnswer(label, "nodata")


async def _outside_hop(name: dns.name.Name, chain: list[dns.name.Name],
                       zones: dict[dns.name.Name, ZoneConfig], resolver: str | None
                       ) -> dns.name.Name:
    """The CNAME target of a name outside every configured zone, from a recursive
    resolver; ChainError naming the zones looked at when there is none."""
    res = dns.asyncresolver.Resolver(configure=resolver is None)
    if resolver is not None:
        host, port = hostport(resolver)
        res.nameservers = [host]
        res.port = port
    res.lifetime = 5.0
    where = f"resolver {resolver}" if resolver else "the system resolver"
    try:
        answer = await res.resolve(name, dns.rdatatype.CNAME, raise_on_no_answer=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoNameservers, dns.exception.Timeout,
            dns.resolver.NoAnswer):
        answer = None
    except dns.exception.DNSException as exc:
        raise ChainError(f"cannot look up {name.to_text()} through {where}: {exc}") from None
    rrset = answer.rrset if answer is not None else None
    if rrset is None or rrset.rdtype != dns.rdatatype.CNAME:
        first = chain[0].to_text()
        raise ChainError(
            f"{name.to_text()} is in none of the configured zones ({_names(zones)}) and has "
            f"no CNAME into one (asked {where}); configure the zone that holds "
            f"{first}, or point {first} at a configured zone with a CNAME")
    target: dns.name.Name = rrset[0].target
    return target
