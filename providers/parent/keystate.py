"""Ask the parent's UPDATE receiver what it thinks of our SIG(0) key: a QUERY for
``<child> ANY`` carrying the KeyState option (KEY-STATE 2, key inquiry; see
``core/keystate.py``), SIG(0)-signed by the key asked about, over TCP.

The answer folds into unknown / bootstrapping / trusted / refused. A receiver that does
not know the option answers without one: that is "unknown", with the reason saying so.
When the receiver's KEYs are given, an answer not signed by one of them is not believed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
from dns.rdtypes.ANY.KEY import KEY

from core import keystate
from core.keystate import KeyState, ParentKeyState
from core.sig0 import Sig0Error, Sig0Signer, parse, sign, verify
from providers.parent.errors import ParentUnreachable
from providers.parent.exchange import tcp_exchange


@dataclass(frozen=True)
class KeyStateAnswer:
    """The parent's view of the key, the raw option (None if it sent none) and a line
    for ``status``."""

    view: ParentKeyState
    state: KeyState | None
    detail: str


async def query_key_state(
    child: dns.name.Name,
    key: Sig0Signer,
    address: str,
    port: int,
    *,
    receiver_keys: Sequence[KEY] = (),
    receiver: dns.name.Name | None = None,
    timeout: float = 5.0,
    now: int | None = None,
) -> KeyStateAnswer:
    """One KeyState inquiry about ``key`` to the receiver at ``address``:``port``."""
    stamp = now if now is not None else int(time.time())
    query = dns.message.make_query(child, dns.rdatatype.ANY)
    query.flags &= ~dns.flags.RD
    keystate.add_option(query, KeyState(key.key_tag, keystate.KeyStateCode.INQUIRY_KEY))
    wire = sign(query.to_wire(), key, now=stamp)
    server = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
    answer = await tcp_exchange(address, port, wire, timeout=timeout)
    try:
        signed = parse(answer)
    except Sig0Error as exc:
        raise ParentUnreachable(f"UPDATE receiver {server}: unreadable KeyState answer "
                                f"({exc})") from None
    if signed.message.id != query.id or not signed.message.flags & dns.flags.QR:
        raise ParentUnreachable(f"UPDATE receiver {server}: the answer is not to our query")
    if receiver_keys:
        try:
            verify(signed, receiver_keys, now=stamp, name=receiver, request=wire)
        except Sig0Error as exc:
            raise ParentUnreachable(f"UPDATE receiver {server}: KeyState answer not signed "
                                    f"by the receiver's KEY ({exc}); not believed") from None
    try:
        state = keystate.find(signed.message)
    except keystate.KeyStateError as exc:
        raise ParentUnreachable(f"UPDATE receiver {server}: {exc}") from None
    rcode = dns.rcode.to_text(signed.message.rcode())
    if state is None:
        return KeyStateAnswer(ParentKeyState.UNKNOWN, None,
                              f"{server} answered {rcode} without a KeyState option (it "
                              "does not support KeyState)")
    if state.key_id != key.key_tag:
        raise ParentUnreachable(f"UPDATE receiver {server}: KeyState answer about key "
                                f"{state.key_id}, we asked about {key.key_tag}")
    view = keystate.parent_view(state)
    return KeyStateAnswer(view, state, f"{server}: {state.describe()} → {view.value}")
