"""Building, signing and sending UPDATEs to the agent, and reading its signed answers."""

from __future__ import annotations

import struct
import time

import dns.edns
import dns.message
import dns.rcode
import dns.update
from agentkit import raw_tcp, raw_udp

from core import sig0


def update(zone: str = "test.") -> dns.update.UpdateMessage:
    return dns.update.UpdateMessage(zone)


def signed(msg: dns.message.Message, key: sig0.Sig0Key, *, now: int | None = None) -> bytes:
    return sig0.sign(msg.to_wire(), key, now=int(time.time()) if now is None else now)


def send(port: int, wire: bytes, *, tcp: bool = True) -> bytes | None:
    if tcp:
        return raw_tcp(port, struct.pack("!H", len(wire)) + wire)
    return raw_udp(port, wire)


class Answer:
    """An agent's answer: rcode, EDE text, and whether it carried a SIG(0)."""

    def __init__(self, wire: bytes | None) -> None:
        assert wire is not None, "the agent did not answer"
        self.parsed = sig0.parse(wire)
        self.message = self.parsed.message
        self.rcode = self.message.rcode()
        ede = [o for o in self.message.options if isinstance(o, dns.edns.EDEOption)]
        self.text = ede[0].text or "" if ede else ""
        self.code = int(ede[0].code) if ede else None

    def __repr__(self) -> str:
        return f"Answer({dns.rcode.to_text(self.rcode)}, {self.text!r})"


def ask(port: int, wire: bytes, *, tcp: bool = True) -> Answer:
    return Answer(send(port, wire, tcp=tcp))
