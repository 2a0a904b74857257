"""The engine's dsync channel without servers: the glue its NS UPDATE carries, and the
KeyState inquiries' backoff while the parent checks the key (the whole channel runs end
to end in tests/parent_agent/test_dsync_e2e.py)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, cast

import dns.name
import pytest

from core.config import ZoneConfig
from core.keystate import ParentKeyState
from core.observation import ParentView, ZoneView
from orchestrator.engine.parent_channel import MAX_INQUIRY_SECONDS, DsyncChannel
from orchestrator.runtime import Runtime
from providers.parent.errors import ParentError
from providers.parent.keystate import KeyStateAnswer

ZONE = dns.name.from_text("child.test.")


class Channel(DsyncChannel):
    """The channel with the signers' address answers given (name -> addresses)."""

    served: dict[str, list[str]]

    async def _addresses(self, name: dns.name.Name) -> list[str]:
        return self.served.get(name.to_text(), [])


def channel(served: dict[str, list[str]]) -> Channel:
    c = Channel(rt=cast(Runtime, None), zone=cast(ZoneConfig, None))
    c.served = served
    return c


def view(parent_ns: set[str]) -> ZoneView:
    return ZoneView(ZONE, (), (ParentView("127.0.0.1:53", datetime.now(UTC),
                                          ns=frozenset(parent_ns)),))


def test_glue_for_in_bailiwick_names_only_and_none_for_a_dropped_one() -> None:
    c = channel({"ns1.child.test.": ["192.0.2.1", "2001:db8::1"]})
    glue = asyncio.run(c._glue(ZONE, frozenset({"ns1.child.test.", "ns.p0.test."}),
                               view({"ns2.child.test.", "ns.p0.test."})))
    assert {n.to_text(): a for n, a in glue.items()} == {
        "ns1.child.test.": ["192.0.2.1", "2001:db8::1"],  # new name inside the zone
        "ns2.child.test.": [],  # the parent delegates to it now; dropped: glue deleted
    }


def test_no_glue_when_every_name_is_outside_the_zone() -> None:
    glue = asyncio.run(channel({})._glue(ZONE, frozenset({"ns.p0.test."}), view(set())))
    assert glue == {}


def test_an_in_bailiwick_name_no_signer_serves_an_address_for_is_an_error() -> None:
    with pytest.raises(ParentError, match=r"nameserver ns1\.child\.test\., .*needs its glue"):
        asyncio.run(channel({})._glue(ZONE, frozenset({"ns1.child.test."}), view(set())))


class Client:
    """A DsyncParent that answers KeyState from a list."""

    def __init__(self, answers: list[ParentKeyState]) -> None:
        self.answers = answers
        self.asked = 0

    async def key_state(self) -> KeyStateAnswer:
        self.asked += 1
        return KeyStateAnswer(self.answers.pop(0), None, "")


def test_keystate_is_asked_with_backoff_while_the_parent_checks() -> None:
    c = channel({})
    client = Client([ParentKeyState.BOOTSTRAPPING] * 8 + [ParentKeyState.TRUSTED])
    waits = []
    for _ in range(8):
        assert asyncio.run(c._state(cast(Any, client))) == ParentKeyState.BOOTSTRAPPING
        assert not c.inquiry_due()  # not again at once
        assert c._key_state is not None
        # believed for the backoff: asking again before then is answered from memory
        assert asyncio.run(c._state(cast(Any, client))) == ParentKeyState.BOOTSTRAPPING
        waits.append(c._backoff)
        c._key_state = (0.0, c._key_state[1])  # the backoff has passed
        assert c.inquiry_due()
    assert client.asked == 8
    assert waits == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, MAX_INQUIRY_SECONDS, MAX_INQUIRY_SECONDS]
    assert asyncio.run(c._state(cast(Any, client))) == ParentKeyState.TRUSTED
    assert not c.inquiry_due() and c._backoff == 0.0  # trusted: the full reads suffice
