"""Direct, non-recursive DNS queries to a provider's (or the parent's) nameservers.

"Is it live?" is answered here, never by an API: every wait condition looks at what each
nameserver actually serves. Queries go over UDP with the DO bit and fall back to TCP on
truncation; an answer without the AA bit means the server does not serve the zone.
"""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from core.config import hostport
from core.errors import ObservationError
from core.observation import ParentView, ServerView, SignedRRset

PAYLOAD = 1232  # DNS flag day 2020: avoids fragmentation; larger answers go to TCP


RESOLVE_TIMEOUT = 10.0  # a nameserver's host name; the system resolver may hang


async def _address(host: str) -> str:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
        return host
    except OSError:
        pass
    # The loop's getaddrinfo runs in a thread: a slow resolver must not block the event
    # loop (which renews the zone's lease) the way a bare socket.getaddrinfo would.
    try:
        found = await asyncio.wait_for(asyncio.get_running_loop().getaddrinfo(
            host, None, proto=socket.IPPROTO_UDP), RESOLVE_TIMEOUT)
        return str(found[0][4][0])
    except socket.gaierror as exc:
        raise ObservationError(f"cannot resolve nameserver {host!r}: {exc}") from None
    except TimeoutError:
        raise ObservationError(f"cannot resolve nameserver {host!r}: no answer within "
                               f"{RESOLVE_TIMEOUT:g}s") from None


async def query(
    server: str,
    qname: dns.name.Name,
    rdtype: dns.rdatatype.RdataType,
    *,
    timeout: float = 2.0,
    tries: int = 2,
) -> dns.message.Message:
    """One authoritative query; raise ObservationError with the server named on failure."""
    host, port = hostport(server)
    where = await _address(host)
    request = dns.message.make_query(qname, rdtype, want_dnssec=True, payload=PAYLOAD)
    request.flags &= ~dns.flags.RD
    last: Exception | None = None
    for _ in range(tries):
        try:
            response = await dns.asyncquery.udp(request, where, port=port, timeout=timeout)
            if response.flags & dns.flags.TC:
                response = await dns.asyncquery.tcp(request, where, port=port, timeout=timeout)
            return response
        except (dns.exception.Timeout, OSError, dns.exception.DNSException) as exc:
            last = exc
    raise ObservationError(
        f"{server}: no answer to {qname} {dns.rdatatype.to_text(rdtype)} "
        f"after {tries} tries ({last.__class__.__name__ if last else 'unknown'})"
    )


def _signed(
    response: dns.message.Message, qname: dns.name.Name, rdtype: dns.rdatatype.RdataType
) -> SignedRRset | None:
    rrset: dns.rrset.RRset | None = None
    sigs: dns.rrset.RRset | None = None
    for candidate in response.answer:
        if candidate.name != qname:
            continue
        if candidate.rdtype == rdtype:
            rrset = candidate
        elif candidate.rdtype == dns.rdatatype.RRSIG and candidate.covers == rdtype:
            sigs = candidate
    return SignedRRset(rrset, sigs) if rrset is not None else None


def _check_authoritative(server: str, zone: dns.name.Name, response: dns.message.Message) -> None:
    rcode = response.rcode()
    if rcode == dns.rcode.REFUSED:
        raise ObservationError(f"{server} refuses queries for {zone}: it does not serve the zone")
    if rcode != dns.rcode.NOERROR:
        raise ObservationError(f"{server} answered {dns.rcode.to_text(rcode)} for {zone}")
    if not response.flags & dns.flags.AA:
        raise ObservationError(f"{server} is not authoritative for {zone} (no AA bit)")


APEX_TYPES = (  # what one observation asks each nameserver (public: the benchmarks)
    dns.rdatatype.SOA,
    dns.rdatatype.DNSKEY,
    dns.rdatatype.CDS,
    dns.rdatatype.CDNSKEY,
    dns.rdatatype.NSEC3PARAM,
    dns.rdatatype.NS,
)


async def observe_server(
    zone: dns.name.Name, provider: str, server: str, *, timeout: float = 2.0,
    csync: bool = False, only: tuple[dns.rdatatype.RdataType, ...] | None = None,
) -> ServerView:
    """Query one nameserver for the apex material; failures become ``ServerView.error``.
    ``only`` limits the query to what a wait condition needs (polling loops)."""
    at = datetime.now(UTC)
    types = list(only) if only is not None else [
        *APEX_TYPES, *((dns.rdatatype.CSYNC,) if csync else ())]
    try:
        answers = await asyncio.gather(
            *(query(server, zone, t, timeout=timeout) for t in types)
        )
        for response in answers:
            _check_authoritative(server, zone, response)
    except ObservationError as exc:
        return ServerView(provider=provider, server=server, at=at, error=str(exc))
    got = dict(zip(types, answers, strict=True))

    def signed(rdtype: dns.rdatatype.RdataType) -> SignedRRset | None:
        response = got.get(rdtype)
        return _signed(response, zone, rdtype) if response is not None else None

    nsec3 = signed(dns.rdatatype.NSEC3PARAM)
    return ServerView(
        provider=provider,
        server=server,
        at=at,
        soa=signed(dns.rdatatype.SOA),
        dnskey=signed(dns.rdatatype.DNSKEY),
        cds=signed(dns.rdatatype.CDS),
        cdnskey=signed(dns.rdatatype.CDNSKEY),
        nsec3=(nsec3 is not None) if dns.rdatatype.NSEC3PARAM in got else None,
        ns=signed(dns.rdatatype.NS),
        csync=signed(dns.rdatatype.CSYNC),
    )


async def observe_parent(
    zone: dns.name.Name, server: str, *, timeout: float = 2.0, ns: bool = True
) -> ParentView:
    """The DS RRset one parent server serves for ``zone`` (an empty set is a NODATA answer)."""
    at = datetime.now(UTC)
    try:
        response = await query(server, zone, dns.rdatatype.DS, timeout=timeout)
    except ObservationError as exc:
        return ParentView(server=server, at=at, error=str(exc))
    if response.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        return ParentView(
            server=server, at=at, error=f"{server} answered {dns.rcode.to_text(response.rcode())}"
        )
    if not response.flags & dns.flags.AA:
        return ParentView(
            server=server, at=at, error=f"{server} is not authoritative for the parent of {zone}"
        )
    ns_names: frozenset[str] = frozenset()
    ns_ttl: int | None = None
    if not ns:
        return ParentView(server=server, at=at, ds=_signed(response, zone, dns.rdatatype.DS))
    try:
        referral = await query(server, zone, dns.rdatatype.NS, timeout=timeout)
        for rrset in (*referral.authority, *referral.answer):
            if rrset.name == zone and rrset.rdtype == dns.rdatatype.NS:
                ns_names = frozenset(rd.target.to_text().lower() for rd in rrset)
                ns_ttl = int(rrset.ttl)
    except ObservationError as exc:
        return ParentView(server=server, at=at, error=str(exc))
    return ParentView(server=server, at=at, ds=_signed(response, zone, dns.rdatatype.DS),
                      ns=ns_names, ns_ttl=ns_ttl)


async def find_parent_servers(zone: dns.name.Name) -> list[str]:
    """Parent nameserver addresses from the parent's NS RRset (system resolver)."""
    import dns.asyncresolver

    parent = zone.parent()
    try:
        apex = await dns.asyncresolver.zone_for_name(parent)
        ns = await dns.asyncresolver.resolve(apex, dns.rdatatype.NS)
        out: list[str] = []
        for rd in ns:
            for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
                try:
                    addrs = await dns.asyncresolver.resolve(rd.target, rdtype)
                except dns.exception.DNSException:
                    continue
                out.extend(a.address for a in addrs)
        if out:
            return out
    except dns.exception.DNSException as exc:
        raise ObservationError(
            f"cannot find the parent's nameservers for {zone} ({exc}); set "
            "[zones.parent].nameservers in the config"
        ) from None
    raise ObservationError(
        f"the parent of {zone} lists no reachable nameservers; set [zones.parent].nameservers"
    )

