"""Find the parent's UPDATE receiver: the parent zone, its DSYNC RRset (child-specific
name first, then ``_dsync.<parent>``; see ``core/dsync.py``), and the target's addresses.

Everything is asked of the parent's own nameservers (the ``[zones.parent] nameservers``,
or those of the parent's NS RRset), without recursion: the answer is the parent's, not a
resolver's cache. A DSYNC target outside the parent zone is resolved by the system
resolver. When the parent offers no UPDATE endpoint, :func:`discover` says so
(``endpoint`` None) and the caller keeps to CDS scanning.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sequence
from dataclasses import dataclass

import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
from dns.rdtypes.ANY.DSYNC import DSYNC

from core.dsync import DsyncEndpoint, dsync_names, update_endpoint
from core.errors import ObservationError
from providers.nameservers import query
from providers.parent.errors import ParentError, ParentUnreachable

RESOLVE_TIMEOUT = 10.0


@dataclass(frozen=True)
class DsyncDiscovery:
    """What the parent offers: its zone, the UPDATE endpoint (None: none offered, keep
    to CDS scanning), the target's addresses, and each name looked at with what it held
    (for ``status`` and error messages)."""

    parent: dns.name.Name
    endpoint: DsyncEndpoint | None
    addresses: tuple[str, ...]
    looked_at: tuple[tuple[str, str], ...]

    @property
    def channel(self) -> str:
        """The channel in use, as ``status`` shows it."""
        if self.endpoint is None:
            return "cds-scan (the parent publishes no DSYNC UPDATE endpoint)"
        return f"dsync UPDATE to {self.endpoint.target} port {self.endpoint.port}"


async def ask_parent(nameservers: Sequence[str], qname: dns.name.Name,
               rdtype: dns.rdatatype.RdataType, timeout: float) -> dns.message.Message:
    """The first authoritative answer among ``nameservers`` (in order)."""
    if not nameservers:
        raise ParentError(f"no parent nameservers to ask for {qname}")
    problems = []
    for server in nameservers:
        try:
            response = await query(server, qname, rdtype, timeout=timeout)
        except ObservationError as exc:
            problems.append(str(exc))
            continue
        if response.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            return response
        problems.append(f"{server} answered {dns.rcode.to_text(response.rcode())}")
    raise ParentUnreachable(f"no parent nameserver answered {qname} "
                            f"{dns.rdatatype.to_text(rdtype)}: " + "; ".join(problems))


async def find_parent_zone(child: dns.name.Name, nameservers: Sequence[str], *,
                           timeout: float = 2.0) -> dns.name.Name:
    """The zone the parent's nameservers serve above ``child``: the owner of the SOA they
    give for ``child``'s parent name (in the answer, or the authority section of a
    negative answer when that name is not an apex)."""
    above = child.parent()
    response = await ask_parent(nameservers, above, dns.rdatatype.SOA, timeout)
    for section in (response.answer, response.authority):
        for rrset in section:
            if rrset.rdtype == dns.rdatatype.SOA and above.is_subdomain(rrset.name):
                return rrset.name
    raise ParentError(
        f"the parent nameservers {', '.join(nameservers)} give no SOA above {child} (a "
        "referral? they must be the servers of the zone that delegates it: check "
        "[zones.parent] nameservers)")


async def _dsync_at(nameservers: Sequence[str], owner: dns.name.Name,
                    timeout: float) -> list[DSYNC]:
    response = await ask_parent(nameservers, owner, dns.rdatatype.DSYNC, timeout)
    # A wildcard *._dsync answers the child-specific query with the synthesized owner.
    return [rd for rrset in response.answer if rrset.rdtype == dns.rdatatype.DSYNC
            and rrset.name == owner for rd in rrset if isinstance(rd, DSYNC)]


async def _addresses(target: dns.name.Name, nameservers: Sequence[str],
                     timeout: float) -> tuple[str, ...]:
    found: list[str] = []
    for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
        try:
            response = await ask_parent(nameservers, target, rdtype, timeout)
        except ParentError:
            continue
        found += [rd.to_text() for rrset in response.answer
                  if rrset.rdtype == rdtype and rrset.name == target for rd in rrset]
    if found:
        return tuple(found)
    try:  # a target outside the parent zone: the system resolver
        infos = await asyncio.wait_for(asyncio.get_running_loop().getaddrinfo(
            target.to_text(omit_final_dot=True), None, proto=socket.IPPROTO_TCP),
            RESOLVE_TIMEOUT)
    except (OSError, TimeoutError):
        infos = []
    return tuple(dict.fromkeys(str(info[4][0]) for info in infos))


async def discover(child: dns.name.Name, nameservers: Sequence[str], *,
                   timeout: float = 2.0) -> DsyncDiscovery:
    """The parent's UPDATE endpoint for ``child`` (RFC 9859 sec. 4.1 order)."""
    parent = await find_parent_zone(child, nameservers, timeout=timeout)
    looked_at: list[tuple[str, str]] = []
    endpoint: DsyncEndpoint | None = None
    for owner in dsync_names(child, parent):
        records = await _dsync_at(nameservers, owner, timeout)
        looked_at.append((owner.to_text(), "; ".join(r.to_text() for r in records)
                          or "no DSYNC"))
        if records:
            # The first name holding DSYNC records decides, UPDATE offered or not: a
            # child-specific RRset overrides the parent's default (RFC 9859 sec. 4.1).
            endpoint = update_endpoint(owner, records)
            break
    if endpoint is None:
        return DsyncDiscovery(parent, None, (), tuple(looked_at))
    addresses = await _addresses(endpoint.target, nameservers, timeout)
    if not addresses:
        raise ParentError(f"the parent's DSYNC names the UPDATE receiver {endpoint}, but "
                          f"{endpoint.target} has no address (A/AAAA) at the parent's "
                          "nameservers or in the system resolver")
    return DsyncDiscovery(parent, endpoint, addresses, tuple(looked_at))
