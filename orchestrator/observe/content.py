"""Zone content across providers: the same RRsets (signatures aside) everywhere?

Every signer must serve the same data, or a resolver's answer depends on which provider it
asked. The comparison is pure; ``fetch`` does the I/O: a zone transfer where the provider
allows it, else a sample of apex and common names queried directly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import dns.exception
import dns.name
import dns.query
import dns.rdatatype
import dns.zone

from core.config import hostport
from core.errors import ObservationError
from providers.nameservers import query

Content = dict[tuple[str, str], frozenset[str]]  # (owner, type) -> rdata texts

# Signing material differs by design between signers (Model 2) and is checked by verify.
IGNORED = {"RRSIG", "NSEC", "NSEC3", "NSEC3PARAM", "DNSKEY", "CDS", "CDNSKEY", "CSYNC",
           "TYPE65534"}  # 65534: signing-state records some signers keep in the zone
SAMPLE_TYPES = ("SOA", "NS", "A", "AAAA", "MX", "TXT", "CNAME", "CAA")
SAMPLE_LABELS = ("", "www", "mail")


def _normalise(rdtype: str, text: str) -> str:
    if rdtype == "SOA":  # serials differ legitimately (each signer bumps its own)
        parts = text.split()
        if len(parts) == 7:
            parts[2] = "*"
        return " ".join(parts)
    return text


def differences(contents: Mapping[str, Content]) -> list[str]:
    """Human-readable differences between providers' contents (empty: identical)."""
    if len(contents) < 2:
        return []
    keys = set().union(*(c.keys() for c in contents.values()))
    out = []
    for owner, rdtype in sorted(keys):
        seen = {p: c.get((owner, rdtype), frozenset()) for p, c in contents.items()}
        if len(set(seen.values())) > 1:
            detail = "; ".join(f"{p}: {', '.join(sorted(v)) or 'absent'}"
                               for p, v in sorted(seen.items()))
            out.append(f"{owner} {rdtype} differs ({detail})")
    return out


def _from_zone(zone: dns.zone.Zone) -> Content:
    out: Content = {}
    origin = zone.origin or dns.name.root
    for name, node in zone.nodes.items():
        owner = name.derelativize(origin).to_text()
        for rdataset in node.rdatasets:
            rdtype = dns.rdatatype.to_text(rdataset.rdtype)
            if rdtype in IGNORED:
                continue
            out[(owner, rdtype)] = frozenset(_normalise(rdtype, rd.to_text()) for rd in rdataset)
    return out


async def transfer(server: str, zone: str, timeout: float = 5.0) -> Content | None:
    """The zone by AXFR, or None if the server refuses it."""
    host, port = hostport(server)

    def run() -> dns.zone.Zone:
        return dns.zone.from_xfr(dns.query.xfr(host, zone, port=port, timeout=timeout,
                                               lifetime=timeout * 4))

    try:
        return _from_zone(await asyncio.to_thread(run))
    except (dns.exception.DNSException, OSError, EOFError, ValueError):
        return None


async def sample(server: str, zone: str, names: set[str]) -> Content:
    out: Content = {}

    async def one(owner: str, rdtype: str) -> None:
        try:
            answer = await query(server, dns.name.from_text(owner), dns.rdatatype.from_text(rdtype))
        except ObservationError:
            return
        for rrset in answer.answer:
            kind = dns.rdatatype.to_text(rrset.rdtype)
            if rrset.name.to_text() == owner and kind == rdtype:
                out[(owner, rdtype)] = frozenset(_normalise(rdtype, rd.to_text()) for rd in rrset)

    await asyncio.gather(*(one(n, t) for n in names for t in SAMPLE_TYPES))
    return out


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
            names |= {owner for owner, _ in c}
    sampled = await asyncio.gather(*(sample(s, zone, names) for s in servers.values()))
    return dict(zip(servers, sampled, strict=True)), f"sample of {len(names)} names"
