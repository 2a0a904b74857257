"""The product's two ends together: the controller's DSYNC parent client
(providers/parent: discovery, SIG(0)-signed UPDATE, KeyState, the receiver's KEY checked
on every answer) against the parent agent, in front of real PowerDNS servers."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import dns.name
import dns.rdata
import pytest
from agentkit import AgentThread, agent_config, parent_provider, wait_for
from dns.rdtypes.ANY.DS import DS
from prereq import needs

from core.config import ParentConfig
from core.delegation_update import delegation_update, key_bootstrap
from core.keystate import ParentKeyState
from multisigner_lab import Lab
from multisigner_lab.dnsq import answer, query
from orchestrator.parent_agent.trust import canonical
from providers.parent.client import DsyncParent
from providers.parent.errors import ParentUpdateRefused

pytestmark = [pytest.mark.lab, needs("pdns_server", what="Debian package pdns-server")]

CHILD = "iop.test."
PARENT = dns.name.from_text("test.")
NAME = dns.name.from_text(CHILD)
NEW_DS = "44444 13 2 " + "12" * 32


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with Lab.start(tmp_path_factory.mktemp("ilab"), providers=1, zones=[CHILD],
                   scanner=False, unbound=False) as running:
        yield running


@pytest.fixture(scope="module")
def agent(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentThread]:
    base = Path(tmp_path_factory.mktemp("iagent"))
    config = agent_config(lab, key_directory=str(base / "keys"))
    running = AgentThread(config, parent_provider(lab), base / "agent.db").start()
    try:
        yield running
    finally:
        running.stop()


def test_child_client_bootstraps_and_updates(lab: Lab, agent: AgentThread,
                                             tmp_path: Path) -> None:
    sig0_dir = tmp_path / "sig0"
    sig0_dir.mkdir(mode=0o700)
    config = ParentConfig(type="dsync", nameservers=[lab.parent.nameserver],
                          sig0_directory=sig0_dir)
    client = DsyncParent(NAME, config, [lab.parent.nameserver])

    async def run() -> None:
        found = await client.discover()
        assert found.endpoint is not None and found.endpoint.port == agent.port
        assert str(found.endpoint.target) == "updater.test."
        key = client.ensure_key()
        assert (await client.key_state()).view == ParentKeyState.UNKNOWN
        with lab.pdns_api("p0") as api:  # the controller publishes the KEY at every signer
            r = api.patch(f"/zones/{CHILD}", json={"rrsets": [{
                "name": CHILD, "type": "KEY", "ttl": lab.ttl, "changetype": "REPLACE",
                "records": [{"content": canonical(k), "disabled": False}
                            for k in client.published_keys()]}]})
            assert r.status_code == 204, r.text
        started = await client.send(key_bootstrap(PARENT, NAME, key.key_rdata()))
        assert started.receiver_verified and "bootstrap started" in started.ede[0][1]
        for _ in range(100):
            state = await client.key_state()
            if state.view != ParentKeyState.BOOTSTRAPPING:
                break
            await asyncio.sleep(0.1)
        assert state.view == ParentKeyState.TRUSTED, state.detail
        ds = dns.rdata.from_text("IN", "DS", NEW_DS)
        assert isinstance(ds, DS)
        done = await client.send(delegation_update(PARENT, NAME, ds=[ds]))
        assert done.receiver_verified
        with pytest.raises(ParentUpdateRefused) as refused:
            await client.send(delegation_update(PARENT, NAME, ns=[
                dns.name.from_text("ns1.p0.test."), dns.name.from_text(f"ns1.{CHILD}")]))
        assert refused.value.rcode == "REFUSED"
        assert "without an address" in refused.value.ede[0][1]

    asyncio.run(run())
    p = lab.parent
    served = answer(query(p.address, p.dns_port, CHILD, "DS"), CHILD, "DS")
    assert served is not None and [rd.to_text() for rd in served] == [NEW_DS]
    wait_for(lambda: any(h.to_state == "refused" for h in agent.history("update")), 5,
             "the refusal recorded")
