"""KeyState answers (draft-berra-dnsop-keystate): a child asks, in a QUERY carrying the
KeyState EDNS(0) option with KEY-STATE "inquiry" and its key tag, what the agent thinks
of its SIG(0) key; the answer carries the option back with the state: trusted, unknown,
bootstrap ongoing, or refused (with the reason as extra text)."""

from __future__ import annotations

import dns.edns
import dns.message
import dns.rcode

from core import keystate
from core.keystate import KeyState, KeyStateCode
from orchestrator.parent_agent import wire
from orchestrator.parent_agent.trust import TrustStore

CODES = {"trusted": KeyStateCode.KEY_TRUSTED,
         "bootstrapping": KeyStateCode.BOOTSTRAP_AUTO_ONGOING,
         "refused": KeyStateCode.KEY_REFUSED}


def inquiry(request: dns.message.Message) -> KeyState | str | None:
    """The KeyState inquiry of ``request``; None when it has none; a str when malformed."""
    try:
        found = keystate.find(request)
    except keystate.KeyStateError as exc:
        return str(exc)
    if found is None or found.state != KeyStateCode.INQUIRY_KEY:
        return None
    return found


def answer(request: dns.message.Message, asked: KeyState, trust: TrustStore,
           children: list[str]) -> tuple[dns.message.Message, str]:
    """The answer and the state it reports."""
    if len(request.question) != 1:
        return wire.answer_to(request, dns.rcode.FORMERR, dns.edns.EDECode.OTHER,
                              "a KeyState inquiry names the child zone in its question"), "-"
    child = request.question[0].name.to_text().lower()
    if child not in children:
        state = KeyState(asked.key_id, KeyStateCode.KEY_UNKNOWN, 0,
                         "not a child of this parent")
    else:
        records = trust.find(child, asked.key_id)
        best = next((r for s in ("trusted", "bootstrapping", "refused") for r in records
                     if r.state == s), None)
        if best is None:
            state = KeyState(asked.key_id, KeyStateCode.KEY_UNKNOWN, 0, "")
        else:
            state = KeyState(asked.key_id, CODES[best.state], 0, best.reason[:200])
    reply = wire.answer_to(request, dns.rcode.NOERROR, authoritative=False)
    keystate.add_option(reply, state)
    return reply, state.describe()
