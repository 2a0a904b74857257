"""Fuzzing the agent's request path (hypothesis): whatever arrives, the handler answers
(or drops a message too short to answer) and never raises; answers are answers to the
request (same ID, QR set). No server is needed: the list of delegations is preset and
nothing random gets past the signature check to the provider."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.opcode
import dns.update
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from core import keystate, sig0
from core.config import ProviderConfig
from core.keystate import KeyState, KeyStateCode
from core.parent_agent_config import ParentAgentConfig
from orchestrator.parent_agent import wire
from orchestrator.parent_agent.agent import Agent
from orchestrator.parent_agent.listener import answer_safely
from orchestrator.parent_agent.trust import canonical
from providers.powerdns import PowerDNSProvider
from state.store import StateStore

KEY = sig0.Sig0Key.generate("a.test.")
Running = tuple[Agent, asyncio.AbstractEventLoop]


def seeds() -> list[bytes]:
    notify = dns.message.make_query("a.test.", "CDS")
    notify.set_opcode(dns.opcode.NOTIFY)
    upd = dns.message.make_query("test.", "SOA")
    upd.set_opcode(dns.opcode.UPDATE)
    change = dns.update.UpdateMessage("test.")
    change.replace("a.test.", 60, "DS", "1 13 2 " + "00" * 32)
    ks = dns.message.make_query("a.test.", "ANY")
    keystate.add_option(ks, KeyState(KEY.key_tag, KeyStateCode.INQUIRY_KEY))
    return [notify.to_wire(), upd.to_wire(), change.to_wire(), ks.to_wire(),
            sig0.sign(change.to_wire(), KEY, now=int(time.time()))]


SEEDS = seeds()


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "set"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif kind == "cut":
            del data[at:at + draw(st.integers(1, 16))]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif data:
            data[at] = draw(st.sampled_from([0x00, 0xC0, 0xFF, 0x3F]))
    return bytes(data)


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    base = Path(tmp_path_factory.mktemp("fuzz"))
    config = ParentAgentConfig.model_validate({
        "zone": "test.", "provider": "parent", "listen": ["127.0.0.1:5399"],
        "target": "updater.test.", "rate_limit": 1e9, "scan_interval": "0s"})
    provider = ProviderConfig(name="parent", type="powerdns", api_url="http://127.0.0.1:9",
                              api_key=SecretStr("x"), nameservers=["127.0.0.1:9"])
    store = StateStore.open(f"sqlite:///{base / 'fuzz.db'}")
    loop = asyncio.new_event_loop()
    api = PowerDNSProvider(provider, attempts=1)
    made = Agent(config, api, store)
    made._children = (time.monotonic() + 1e9, ["a.test."])  # no API call for the list
    made.trust.set("a.test.", canonical(KEY.key_rdata()), "trusted")
    try:
        yield made, loop
    finally:
        loop.run_until_complete(api.aclose())
        loop.close()
        store.close()


def check(agent: Agent, loop: asyncio.AbstractEventLoop, data: bytes, tcp: bool) -> None:
    answer = loop.run_until_complete(answer_safely(agent.handle, data, ("192.0.2.1", 53), tcp))
    head = wire.header(data)
    if head is None or head.is_response:
        assert answer is None
        return
    assert answer is not None and answer[:2] == data[:2] and answer[2] & 0x80
    # the handler itself copes too: nothing it was given reaches the provider
    direct = loop.run_until_complete(agent.handle(data, ("192.0.2.1", 53), tcp))
    assert direct is None or direct[:2] == data[:2]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=mutated(), tcp=st.booleans())
def test_mutated_messages(agent: Running, data: bytes,
                          tcp: bool) -> None:
    check(*agent, data, tcp)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=600), tcp=st.booleans())
def test_random_bytes(agent: Running, data: bytes,
                      tcp: bool) -> None:
    check(*agent, data, tcp)
