"""Direct (non-recursive) DNS queries to one lab server, for synchronous lab code and
tests: :func:`query` is the product's own query (:mod:`providers.nameservers`), run on the
lab's event loop; :func:`answer` picks an RRset out of a reply."""

from __future__ import annotations

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


