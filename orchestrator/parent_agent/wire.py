"""The agent's first look at a received message, and the answers it builds: nothing here
raises on bad input (a hostile or broken sender must never stop the listener).

A message shorter than a DNS header cannot be answered (there is no ID to answer to) and
is dropped. Anything longer gets an answer: a request that does not parse gets FORMERR
built from its header alone, with an Extended DNS Error (RFC 8914) saying why.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import dns.edns
import dns.flags
import dns.message
import dns.opcode
import dns.rcode

from core import sig0

HEADER = 12
# A DS/NS/glue UPDATE with its SIG(0) is well under 4 KiB; anything far larger is refused
# before parsing, so a flood of large messages costs no parse work.
MAX_MESSAGE = 16384
UDP_PAYLOAD = 1232  # what the agent offers and answers with over UDP (the DNS flag day value)


@dataclass(frozen=True)
class Header:
    id: int
    flags: int
    qdcount: int

    @property
    def opcode(self) -> int:
        return (self.flags >> 11) & 0xF

    @property
    def is_response(self) -> bool:
        return bool(self.flags & dns.flags.QR)


def header(wire: bytes) -> Header | None:
    """The fixed header, or None when ``wire`` is too short to hold one."""
    if len(wire) < HEADER:
        return None
    ident, flags, qdcount = struct.unpack("!HHH", wire[:6])
    return Header(ident, flags, qdcount)


def error_answer(head: Header, rcode: dns.rcode.Rcode, ede: dns.edns.EDECode | None = None,
                 text: str = "") -> bytes:
    """A header-only answer (no question: the request may not have a parsable one)."""
    answer = dns.message.Message(id=head.id)
    answer.flags = dns.flags.QR | (head.flags & dns.flags.RD)
    answer.set_opcode(dns.opcode.Opcode.make(head.opcode))
    answer.use_edns(0, 0, UDP_PAYLOAD, options=_ede(ede, text))
    answer.set_rcode(rcode)
    return answer.to_wire()


def answer_to(request: dns.message.Message, rcode: dns.rcode.Rcode,
              ede: dns.edns.EDECode | None = None, text: str = "",
              *, authoritative: bool = True) -> dns.message.Message:
    """The answer to a parsed request, echoing its question; EDNS with the EDE option."""
    answer = dns.message.make_response(request, our_payload=UDP_PAYLOAD)
    if authoritative:
        answer.flags |= dns.flags.AA
    answer.use_edns(0, 0, UDP_PAYLOAD, options=_ede(ede, text))
    answer.set_rcode(rcode)
    return answer


def _ede(code: dns.edns.EDECode | None, text: str) -> list[dns.edns.Option]:
    if code is None:
        return []
    # EDE text is free-form UTF-8; kept short so an answer always fits a UDP payload.
    return [dns.edns.EDEOption(code, text[:300] or None)]


def parse(wire: bytes) -> dns.message.Message | str:
    """A QUERY or NOTIFY request, with or without a trailing SIG(0) (a KeyState inquiry is
    signed; dnspython alone would reject that RR); a str says why it does not parse."""
    try:
        return sig0.parse(wire).message
    except sig0.Sig0Error as exc:
        return exc.detail


def opcode_name(head: Header) -> str:
    try:
        return dns.opcode.to_text(dns.opcode.Opcode.make(head.opcode))
    except ValueError:
        return str(head.opcode)
