"""In-test stand-ins for a parent: a small authoritative UDP server for one zone, and an
UPDATE receiver on TCP whose answers each test scripts. Both run in the test's asyncio
loop on loopback ports the OS picks.

The authoritative server answers from a dnspython zone: exact matches, NODATA (also for
empty non-terminals), NXDOMAIN, wildcards (``*.x`` synthesised at the query name), and
referrals below a delegation; always with AA, the SOA in the authority section of
negative answers, as RFC 1034/2308 servers do.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.zone


class _Auth(asyncio.DatagramProtocol):
    def __init__(self, zone: dns.zone.Zone) -> None:
        self.zone = zone
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # a datagram transport (not a DatagramTransport subclass)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(answer(self.zone, dns.message.from_wire(data)).to_wire(), addr)


def _soa(zone: dns.zone.Zone) -> dns.rrset.RRset:
    node = zone.find_node(zone.origin)
    rds = node.find_rdataset(dns.rdataclass.IN, dns.rdatatype.SOA)
    return dns.rrset.from_rdata_list(zone.origin, rds.ttl, list(rds))


def answer(zone: dns.zone.Zone, query: dns.message.Message) -> dns.message.Message:
    response = dns.message.make_response(query)
    response.flags |= dns.flags.AA
    question = query.question[0]
    qname, qtype = question.name, question.rdtype
    origin = zone.origin
    assert origin is not None
    if not qname.is_subdomain(origin):
        response.set_rcode(dns.rcode.REFUSED)
        return response
    # A delegation on the way down: refer.
    for depth in range(len(origin) + 1, len(qname) + 1):
        cut = dns.name.Name(qname.labels[-depth:])
        node = zone.get_node(cut)
        ns = node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.NS) if node else None
        if ns is not None and not (cut == qname and qtype == dns.rdatatype.DS):
            response.flags &= ~dns.flags.AA
            response.authority.append(dns.rrset.from_rdata_list(cut, ns.ttl, list(ns)))
            return response
    node = zone.get_node(qname)
    owner = qname
    if node is None:
        wildcard = dns.name.Name(("*",)).concatenate(qname.parent())
        node = zone.get_node(wildcard)
        has_children = any(n != qname and n.is_subdomain(qname) for n in zone.nodes)
        if node is None:
            if not has_children:
                response.set_rcode(dns.rcode.NXDOMAIN)
            response.authority.append(_soa(zone))
            return response
    rdataset = node.get_rdataset(dns.rdataclass.IN, qtype)
    if rdataset is None:
        response.authority.append(_soa(zone))
        return response
    response.answer.append(dns.rrset.from_rdata_list(owner, rdataset.ttl, list(rdataset)))
    return response


async def start_auth(zone_text: str, origin: str) -> tuple[str, Any]:
    """Serve ``zone_text``; returns ``"127.0.0.1:PORT"`` and the transport to close."""
    zone = dns.zone.from_text(zone_text, origin=origin, relativize=False,
                              check_origin=False)
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: _Auth(zone), local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    return f"127.0.0.1:{port}", transport


Handler = Callable[[bytes], Awaitable[bytes | None]]


@dataclass
class Receiver:
    """A scripted UPDATE receiver on TCP: ``handle`` gets each request's wire and returns
    the answer's wire (None: close without answering). ``seen`` keeps every request."""

    handle: Handler
    seen: list[bytes] = field(default_factory=list)
    port: int = 0
    server: asyncio.Server | None = None

    async def start(self) -> Receiver:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            (size,) = struct.unpack("!H", await reader.readexactly(2))
            request = await reader.readexactly(size)
            self.seen.append(request)
            reply = await self.handle(request)
            if reply is not None:
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        finally:
            writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
