"""Direct (non-recursive) DNS queries to one lab server, for synchronous lab code and
tests: :func:`query` is the product's own query (:mod:`providers.nameservers`), run on the
lab's event loop; :func:`answer` picks an RRset out of a reply.

:func:`answer_count` is the one query of the lab's own: a header-only presence probe for
the parent scanner's cheap first look at hundreds of zones a round (it goes when the
scanner is replaced by a product parent agent)."""

from __future__ import annotations

import functools
import secrets
import socket
import struct
import time

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from multisigner_lab import aio
from providers import nameservers


def query(
    address: str, port: int, qname: str, rdtype: str, timeout: float = 1.0
) -> dns.message.Message:
    """The product's authoritative query (:func:`providers.nameservers.query`: RD off, DO
    bit, TCP on truncation), one try, for synchronous lab code. Raises ObservationError
    when the server does not answer in time."""
    return aio.run(
        nameservers.query(
            f"{address}:{port}" if ":" not in address else f"[{address}]:{port}",
            dns.name.from_text(qname),
            dns.rdatatype.from_text(rdtype),
            timeout=timeout,
            tries=1,
        )
    )


def answer(
    resp: dns.message.Message, qname: str, rdtype: str, covers: str | None = None
) -> dns.rrset.RRset | None:
    """The answer-section RRset (or the RRSIGs covering ``covers``), None when absent."""
    return resp.get_rrset(
        resp.answer,
        dns.name.from_text(qname),
        dns.rdataclass.IN,
        dns.rdatatype.RRSIG if covers else dns.rdatatype.from_text(rdtype),
        dns.rdatatype.from_text(covers) if covers else dns.rdatatype.NONE,
    )


@functools.lru_cache(maxsize=4096)
def _question(qname: str, rdtype: str) -> bytes:
    """The wire form of a query without EDNS and RD, id 0 (patched per query)."""
    q = dns.message.make_query(qname, rdtype, use_edns=False)
    q.flags &= ~dns.flags.RD
    q.id = 0
    return q.to_wire()


def answer_count(
    address: str, port: int, qname: str, rdtype: str, timeout: float = 1.0
) -> tuple[dns.rcode.Rcode, int]:
    """(rcode, answer count) of a plain query, read from the reply's header only.

    A presence probe for pollers: parsing a reply with dnspython costs ~0.3 ms of CPU, this
    ~10 µs, which matters to the scanner asking hundreds of zones twice a second whether
    they publish a CDS or CSYNC. A truncated reply falls back to :func:`query`. Raises
    OSError (TimeoutError: no reply in time; ConnectionRefusedError: nothing listens)."""
    ident = secrets.randbits(16)
    wire = struct.pack("!H", ident) + _question(qname, rdtype)[2:]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.connect((address, port))  # only the server's replies get through
        sock.send(wire)
        deadline = time.monotonic() + timeout
        while True:
            sock.settimeout(max(0.0, deadline - time.monotonic()))
            reply = sock.recv(65535)  # TimeoutError (an OSError) when none comes
            if len(reply) < 12:
                continue
            rid, flags, _qd, ancount = struct.unpack("!4H", reply[:8])
            if rid == ident and flags & dns.flags.QR:
                break
    if flags & dns.flags.TC:
        resp = query(address, port, qname, rdtype, timeout)
        return resp.rcode(), len(resp.answer)
    return dns.rcode.Rcode.make(flags & 0xF), ancount
