"""Asking the child's nameservers: one authoritative question at one address, with
DNSSEC records (DO bit, no recursion), over UDP and again over TCP when truncated."""

from __future__ import annotations

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from orchestrator.decide.cds_consistency import Signed

TIMEOUT = 2.0


class ProbeError(Exception):
    """The server gave no usable answer (the message says what happened)."""


async def ask(address: str, port: int, qname: str, rdtype: str, *, tcp: bool = False,
              timeout: float = TIMEOUT) -> dns.message.Message:
    query = dns.message.make_query(qname, rdtype, want_dnssec=True, payload=1232)
    query.flags &= ~dns.flags.RD
    try:
        if tcp:
            response = await dns.asyncquery.tcp(query, address, timeout=timeout, port=port)
        else:
            response, _ = await dns.asyncquery.udp_with_fallback(
                query, address, timeout=timeout, port=port)
    except (dns.exception.DNSException, OSError) as exc:
        raise ProbeError(f"{qname} {rdtype}: {exc.__class__.__name__}: {exc}") from None
    rcode = response.rcode()
    if rcode != dns.rcode.NOERROR:
        raise ProbeError(f"{qname} {rdtype}: answered {dns.rcode.to_text(rcode)}")
    if not response.flags & dns.flags.AA:
        raise ProbeError(f"{qname} {rdtype}: answer not authoritative (lame delegation?)")
    return response


def signed(response: dns.message.Message, qname: str, rdtype: str) -> Signed:
    """The RRset of ``rdtype`` at ``qname`` in the answer section and its RRSIGs."""
    name = dns.name.from_text(qname)
    kind = dns.rdatatype.from_text(rdtype)
    rrset = response.get_rrset(response.answer, name, dns.rdataclass.IN, kind)
    sigs = response.get_rrset(response.answer, name, dns.rdataclass.IN,
                              dns.rdatatype.RRSIG, kind)
    return rrset, sigs


async def ask_signed(address: str, port: int, qname: str, rdtype: str, *,
                     tcp: bool = False) -> Signed:
    return signed(await ask(address, port, qname, rdtype, tcp=tcp), qname, rdtype)
