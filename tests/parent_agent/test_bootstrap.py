"""KEY bootstrap (self-signed UPDATE, then at-apex or unsigned checks) and KeyState
answers, against real PowerDNS servers for the parent and the child."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.rcode
import pytest
from agentkit import AgentThread, agent_config, parent_provider, wait_for
from prereq import needs
from updatekit import ask, send, signed, update

from core import keystate, sig0
from core.keystate import KeyState, KeyStateCode
from multisigner_lab import Lab
from orchestrator.parent_agent.trust import canonical

pytestmark = [pytest.mark.lab, needs("pdns_server", what="Debian package pdns-server")]

SIGNED, NODS, NOKEY = "signed.test.", "nods.test.", "nokey.test."
DS = "33333 13 2 " + "ef" * 32


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with Lab.start(tmp_path_factory.mktemp("blab"), providers=1, zones=[SIGNED, NODS, NOKEY],
                   scanner=False, unbound=False) as running:
        with running.parent_pdns_api() as api:  # NODS: an unsigned delegation
            r = api.patch("/zones/test.", json={"rrsets": [
                {"name": NODS, "type": "DS", "changetype": "DELETE"}]})
            assert r.status_code == 204, r.text
        yield running


@pytest.fixture(scope="module")
def agent(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentThread]:
    base = Path(tmp_path_factory.mktemp("bagent"))
    config = agent_config(lab, key_directory=str(base / "keys"))
    running = AgentThread(config, parent_provider(lab), base / "agent.db").start()
    try:
        yield running
    finally:
        running.stop()


def publish_key(lab: Lab, zone: str, key: sig0.Sig0Key) -> None:
    with lab.pdns_api("p0") as api:
        r = api.patch(f"/zones/{zone}", json={"rrsets": [{
            "name": zone, "type": "KEY", "ttl": lab.ttl, "changetype": "REPLACE",
            "records": [{"content": canonical(key.key_rdata()), "disabled": False}]}]})
        assert r.status_code == 204, r.text


def key_state(agent: AgentThread, zone: str, key: sig0.Sig0Key) -> KeyState:
    query = dns.message.make_query(zone, "ANY")
    keystate.add_option(query, KeyState(key.key_tag, KeyStateCode.INQUIRY_KEY))
    wire = send(agent.port, query.to_wire(), tcp=False)
    assert wire is not None
    got = sig0.parse(wire)
    assert got.sig is not None  # answers are signed with the agent's key
    state = keystate.find(got.message)
    assert state is not None and state.key_id == key.key_tag
    return state


def bootstrap(agent: AgentThread, zone: str, key: sig0.Sig0Key) -> None:
    msg = update()
    msg.add(zone, 2, "KEY", canonical(key.key_rdata()))
    got = ask(agent.port, signed(msg, key))
    assert got.rcode == dns.rcode.NOERROR and "bootstrap started" in got.text, got


def settled(agent: AgentThread, zone: str, key: sig0.Sig0Key) -> KeyState:
    wait_for(lambda: key_state(agent, zone, key).code != KeyStateCode.BOOTSTRAP_AUTO_ONGOING,
             10, f"bootstrap of {zone} settled")
    return key_state(agent, zone, key)


def test_at_apex_bootstrap_then_updates(lab: Lab, agent: AgentThread) -> None:
    key = sig0.Sig0Key.generate(SIGNED)
    assert key_state(agent, SIGNED, key).code == KeyStateCode.KEY_UNKNOWN
    # before the bootstrap, a DS change signed with the key is refused
    change = update()
    change.replace(SIGNED, 2, "DS", DS)
    assert ask(agent.port, signed(change, key)).rcode == dns.rcode.NOTAUTH
    publish_key(lab, SIGNED, key)
    bootstrap(agent, SIGNED, key)
    assert settled(agent, SIGNED, key).code == KeyStateCode.KEY_TRUSTED
    entry = [h for h in agent.history("bootstrap") if h.evidence["child"] == SIGNED][-1]
    assert entry.to_state == "accepted" and entry.evidence["method"] == "at-apex"
    assert ask(agent.port, signed(change, key)).rcode == dns.rcode.NOERROR


def test_unsigned_bootstrap_checks_several_times(lab: Lab, agent: AgentThread) -> None:
    key = sig0.Sig0Key.generate(NODS)
    publish_key(lab, NODS, key)
    bootstrap(agent, NODS, key)
    assert settled(agent, NODS, key).code == KeyStateCode.KEY_TRUSTED
    entries = [h for h in agent.history("bootstrap") if h.evidence["child"] == NODS]
    assert [(h.evidence["method"], h.to_state) for h in entries] == [
        ("at-apex", "refused"), ("unsigned", "accepted")]
    assert "holds no DS" in entries[0].reason and "2 times" in entries[1].reason


def test_unpublished_key_is_refused(agent: AgentThread) -> None:
    key = sig0.Sig0Key.generate(NOKEY)
    bootstrap(agent, NOKEY, key)
    state = settled(agent, NOKEY, key)
    assert state.code == KeyStateCode.KEY_REFUSED and "not published" in state.extra_text
    # a bootstrap request signed by another key than the one it adds is refused outright
    other = sig0.Sig0Key.generate(NOKEY)
    msg = update()
    msg.add(NOKEY, 2, "KEY", canonical(key.key_rdata()))
    assert ask(agent.port, signed(msg, other)).rcode == dns.rcode.NOTAUTH
    # and one over UDP (a spoofed source address is much easier there)
    udp = ask(agent.port, signed(msg, key), tcp=False)
    assert udp.rcode == dns.rcode.REFUSED and "over TCP" in udp.text
