"""Send one SIG(0)-signed DNS UPDATE to the parent's receiver and say what it answered.

The answer is NOERROR (done), or an error the operator can act on:

- REFUSED: the receiver's policy refused the change (a name outside our delegation, an
  UPDATE not allowed for this child) or the key is not trusted (yet);
- NOTAUTH, or the extended rcodes BADSIG (16), BADKEY (17), BADTIME (18) that TSIG
  defined (RFC 8945) and SIG(0) receivers reuse: the signature did not verify, the key is
  unknown to the parent, or the clocks differ;
- any EDE (RFC 8914) code and text the receiver adds is shown as it came.

The same UPDATE may be sent again (replace semantics make it idempotent); a retry after
a lost answer is safe. The receiver's own SIG(0) on the answer is checked when its KEYs
are given (mutual authentication: an answer we cannot verify is not believed).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import dns.edns
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.update
from dns.rdtypes.ANY.KEY import KEY

from core.sig0 import Sig0Error, Sig0Signer, parse, sign, verify
from providers.parent.errors import ParentUnreachable, ParentUpdateRefused
from providers.parent.exchange import tcp_exchange

# TSIG's error codes (RFC 8945 sec. 5.3.2), used by SIG(0) receivers as extended rcodes.
_EXTENDED = {16: "BADSIG", 17: "BADKEY", 18: "BADTIME"}
_HINTS = {
    "BADSIG": "the parent could not verify our SIG(0): is the KEY it holds for the zone "
              "the one we sign with?",
    "BADKEY": "the parent does not know our SIG(0) key: it must be bootstrapped first "
              "(KEY published at every child nameserver, then the bootstrap UPDATE)",
    "BADTIME": "the parent found our signature outside its time window: check this "
               "host's clock (NTP)",
    "NOTAUTH": "the parent does not accept our signature or key for this zone",
    "REFUSED": "the parent's policy refused the change, or does not trust our key yet",
}


@dataclass(frozen=True)
class UpdateAnswer:
    """A NOERROR answer: where from, its EDEs, and whether the receiver's SIG(0) on it
    verified (None: not checked, no receiver KEYs given)."""

    server: str
    ede: tuple[tuple[int, str], ...]
    receiver_verified: bool | None


def _ede(message: dns.message.Message) -> tuple[tuple[int, str], ...]:
    return tuple((int(o.code), o.text or "") for o in message.options
                 if isinstance(o, dns.edns.EDEOption))


def _describe(rcode: str, reason: str, ede: tuple[tuple[int, str], ...]) -> str:
    text = rcode if rcode == reason else f"{rcode} ({reason})"
    for code, extra in ede:
        text += f"; EDE {code}" + (f" {extra!r}" if extra else "")
    return text


def interpret(server: str, request: bytes, answer: bytes, *,
              receiver_keys: Sequence[KEY] = (), receiver: dns.name.Name | None = None,
              now: int | None = None) -> UpdateAnswer:
    """Judge the receiver's ``answer`` to ``request``: an :class:`UpdateAnswer` for
    NOERROR, else :class:`ParentUpdateRefused` (or ParentUnreachable for a garbled or
    unverifiable answer)."""
    try:
        signed = parse(answer)
    except Sig0Error as exc:
        raise ParentUnreachable(f"UPDATE receiver {server}: unreadable answer ({exc})") from None
    message = signed.message
    if (message.id != int.from_bytes(request[:2], "big") or not message.flags & dns.flags.QR
            or message.opcode() != dns.opcode.UPDATE):
        raise ParentUnreachable(f"UPDATE receiver {server}: the answer does not match our "
                                "UPDATE (other id, not a response, or not UPDATE)")
    verified: bool | None = None
    if receiver_keys:
        try:
            verify(signed, receiver_keys, now=now if now is not None else int(time.time()),
                   name=receiver, request=request)
        except Sig0Error as exc:
            rcode_text = dns.rcode.to_text(message.rcode())
            said = _describe(rcode_text, rcode_text, _ede(message))
            raise ParentUnreachable(
                f"UPDATE receiver {server}: its answer ({said}) is not signed "
                f"by the receiver's published KEY ({exc}); not believed") from None
        verified = True
    code = int(message.rcode())
    ede = _ede(message)
    if code == dns.rcode.NOERROR:
        return UpdateAnswer(server, ede, verified)
    rcode = dns.rcode.to_text(dns.rcode.Rcode.make(code)) if code not in _EXTENDED else (
        _EXTENDED[code])
    reason = _EXTENDED.get(code, rcode)
    hint = _HINTS.get(reason, "")
    raise ParentUpdateRefused(
        f"UPDATE receiver {server} answered {_describe(rcode, reason, ede)}"
        + (f": {hint}" if hint else ""),
        rcode=rcode, reason=reason, ede=ede)


async def send_update(
    update: dns.update.UpdateMessage,
    key: Sig0Signer,
    addresses: Sequence[str],
    port: int,
    *,
    receiver_keys: Sequence[KEY] = (),
    receiver: dns.name.Name | None = None,
    timeout: float = 10.0,
    now: int | None = None,
) -> UpdateAnswer:
    """Sign ``update`` with ``key`` and send it over TCP to the first of ``addresses``
    that answers. A refusal is final (not tried elsewhere: every address is the same
    receiver); only an unreachable address moves on to the next."""
    stamp = now if now is not None else int(time.time())
    wire = sign(update.to_wire(), key, now=stamp)
    problems: list[str] = []
    for address in addresses:
        server = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
        try:
            answer = await tcp_exchange(address, port, wire, timeout=timeout)
            return interpret(server, wire, answer, receiver_keys=receiver_keys,
                             receiver=receiver, now=stamp)
        except ParentUnreachable as exc:
            problems.append(str(exc))
    raise ParentUnreachable("; ".join(problems) or "no address for the UPDATE receiver")
