"""The parent agent against a real PowerDNS parent zone and real PowerDNS child servers
(the lab without its own scanner): DSYNC published, NOTIFY(CDS/CSYNC) then scan, and the
consistency rules that make it refuse (RFC 7344 sec. 4.1, RFC 7477, RFC 8078)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import dns.flags
import dns.rcode
import dns.rdatatype
import pytest
from agentkit import AgentThread, agent_config, notify, parent_provider, wait_for
from prereq import needs

from multisigner_lab import Lab
from multisigner_lab.dnsq import answer, query
from multisigner_lab.zones import ds_text

pytestmark = [pytest.mark.lab, needs("pdns_server", what="Debian package pdns-server")]

GROW = "grow.test."      # CDS adding p1's KSK: accepted
SWAP = "swap.test."      # a new KSK signs alone: refused
SPLIT = "split.test."    # two delegated servers disagree: refused
JOIN = "join.test."      # CSYNC adds p1 to the delegation
GONE = "gone.test."      # RFC 8078 delete
SCHED = "sched.test."    # followed by the scheduled scan, no NOTIFY
NS0, NS1 = "ns1.p0.test.", "ns1.p1.test."


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with Lab.start(tmp_path_factory.mktemp("alab"), providers=2,
                   zones=[GROW, SWAP, SPLIT, JOIN, GONE, SCHED], delegated=["p0"], scanner=False,
                   unbound=False) as running:
        yield running


@pytest.fixture(scope="module")
def agent(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentThread]:
    db = Path(tmp_path_factory.mktemp("agentdb")) / "agent.db"
    running = AgentThread(agent_config(lab), parent_provider(lab), db).start()
    try:
        yield running
    finally:
        running.stop()


def publish(lab: Lab, providers: list[str], zone: str, rtype: str, contents: list[str]) -> None:
    for p in providers:
        with lab.pdns_api(p) as api:
            change: dict[str, object] = {"name": zone, "type": rtype, "changetype": "DELETE"}
            if contents:
                change = {"name": zone, "type": rtype, "ttl": lab.ttl, "changetype": "REPLACE",
                          "records": [{"content": c, "disabled": False} for c in contents]}
            resp = api.patch(f"/zones/{zone}", json={"rrsets": [change]})
            assert resp.status_code == 204, resp.text


def ksk_ds(lab: Lab, zone: str, providers: list[str]) -> list[str]:
    return sorted(ds_text(zone, k.dnskey) for p in providers for k in lab.keys(p, zone)
                  if k.flags == 257 and k.active)


def outcomes(agent: AgentThread, kind: str, child: str) -> list[str]:
    return [h.to_state for h in agent.history(kind) if h.evidence.get("child") == child]


def test_dsync_published(lab: Lab, agent: AgentThread) -> None:
    p = lab.parent
    resp = query(p.address, p.dns_port, "_dsync.test.", "DSYNC")
    rrset = answer(resp, "_dsync.test.", "DSYNC")
    assert rrset is not None
    assert sorted(rd.to_text() for rd in rrset) == sorted([
        f"ANY 2 {agent.port} updater.test.", f"CDS NOTIFY {agent.port} updater.test.",
        f"CSYNC NOTIFY {agent.port} updater.test."])
    a = answer(query(p.address, p.dns_port, "updater.test.", "A"), "updater.test.", "A")
    assert a is not None and [rd.address for rd in a] == ["127.0.0.1"]


def test_notify_cds_accepted(lab: Lab, agent: AgentThread) -> None:
    before = lab.parent_ds(GROW)
    assert before == ksk_ds(lab, GROW, ["p0"])
    want = ksk_ds(lab, GROW, ["p0", "p1"])
    publish(lab, ["p0"], GROW, "CDS", want)
    resp = notify(agent.port, GROW, "CDS")
    assert resp.rcode() == dns.rcode.NOERROR and resp.flags & dns.flags.QR, resp.options
    wait_for(lambda: lab.parent_ds(GROW) == want, 10, f"parent DS of {GROW} == {want}")
    run(agent, agent.agent.notify.wait_idle())
    assert "accepted" in outcomes(agent, "notify", GROW)
    entry = [h for h in agent.history("scan-cds") if h.evidence.get("child") == GROW][-1]
    assert entry.to_state == "accepted" and entry.actor.startswith("udp:127.0.0.1:")
    assert entry.evidence["change"] == {"from": before, "to": want}
    # the same NOTIFY again: nothing to do, the DS already matches
    notify(agent.port, GROW, "CDS", tcp=True)
    run(agent, agent.agent.notify.wait_idle())
    assert outcomes(agent, "scan-cds", GROW)[-1] == "ignored"


def run(agent: AgentThread, coro: object) -> None:
    agent.run(coro)  # type: ignore[arg-type]


def test_cds_signed_only_by_a_new_ksk_is_refused(lab: Lab, agent: AgentThread) -> None:
    before = lab.parent_ds(SWAP)
    with lab.pdns_api("p0") as api:
        old = [k for k in api.get(f"/zones/{SWAP}/cryptokeys").json() if k["keytype"] == "ksk"]
        made = api.post(f"/zones/{SWAP}/cryptokeys", json={
            "keytype": "ksk", "active": True, "algorithm": "ECDSAP256SHA256"})
        assert made.status_code == 201, made.text
        for key in old:  # the old KSK stays published but signs nothing any more
            r = api.put(f"/zones/{SWAP}/cryptokeys/{key['id']}",
                        json={"active": False, "published": True})
            assert r.status_code == 204, r.text
    new = ksk_ds(lab, SWAP, ["p0"])
    assert new != before
    publish(lab, ["p0"], SWAP, "CDS", new)
    notify(agent.port, SWAP, "CDS")
    run(agent, agent.agent.notify.wait_idle())
    entry = [h for h in agent.history("scan-cds") if h.evidence.get("child") == SWAP][-1]
    assert entry.to_state == "refused", entry
    assert "not signed by a key the DS names" in str(entry.evidence["servers"])
    assert lab.parent_ds(SWAP) == before


def test_servers_that_disagree_are_refused(lab: Lab, agent: AgentThread) -> None:
    before = lab.parent_ds(SPLIT)
    with lab.parent_pdns_api() as api:  # delegate SPLIT to p0 and p1
        r = api.patch("/zones/test.", json={"rrsets": [{
            "name": SPLIT, "type": "NS", "ttl": lab.ttl, "changetype": "REPLACE",
            "records": [{"content": n, "disabled": False} for n in (NS0, NS1)]}]})
        assert r.status_code == 204, r.text
    publish(lab, ["p0"], SPLIT, "CDS", ksk_ds(lab, SPLIT, ["p0", "p1"]))
    notify(agent.port, SPLIT, "CDNSKEY")
    run(agent, agent.agent.notify.wait_idle())
    entry = [h for h in agent.history("scan-cds") if h.evidence.get("child") == SPLIT][-1]
    assert entry.to_state == "refused" and "different CDS" in entry.reason
    servers = entry.evidence["servers"]
    p1 = lab.server("p1")
    assert servers[f"{NS1}@{p1.address}:{p1.dns_port}"] == "(nothing)"
    assert lab.parent_ds(SPLIT) == before


def test_notify_csync_joins_a_nameserver(lab: Lab, agent: AgentThread) -> None:
    assert lab.parent_ns(JOIN) == [NS0]
    publish(lab, ["p0", "p1"], JOIN, "NS", [NS0, NS1])
    publish(lab, ["p0"], JOIN, "CSYNC", ["0 3 NS"])
    resp = notify(agent.port, JOIN, "CSYNC")
    assert resp.rcode() == dns.rcode.NOERROR
    wait_for(lambda: lab.parent_ns(JOIN) == [NS0, NS1], 10, "parent NS follows CSYNC")
    run(agent, agent.agent.notify.wait_idle())
    assert outcomes(agent, "scan-csync", JOIN)[-1] == "accepted"


def test_rfc8078_delete(lab: Lab, agent: AgentThread) -> None:
    assert lab.parent_ds(GONE)
    publish(lab, ["p0"], GONE, "CDS", ["0 0 0 00"])
    result = agent.run(agent.agent.scanner.scan(GONE, "scan", ("CDS",)))
    assert result == {"CDS": "accepted"}
    assert lab.parent_ds(GONE) == []


def test_notify_refusals(lab: Lab, agent: AgentThread) -> None:
    for zone, rdtype, why in (("nope.test.", "CDS", "is not delegated"),
                              (GROW, "TXT", "only NOTIFY(CDS)")):
        resp = notify(agent.port, zone, rdtype)
        assert resp.rcode() == dns.rcode.REFUSED
        assert resp.options and why in str(resp.options[0].text), resp.options
    refused = [h for h in agent.history("notify") if h.to_state == "refused"]
    assert {h.evidence["child"] for h in refused} >= {"nope.test.", GROW}
    assert dns.rdatatype.CSYNC  # the types above are dnspython's own


def test_scheduled_scan(lab: Lab, tmp_path: Path) -> None:
    config = agent_config(lab, scan_interval="1s")
    running = AgentThread(config, parent_provider(lab), tmp_path / "sched.db")
    running.start(schedule=True)
    try:
        want = ksk_ds(lab, SCHED, ["p0", "p1"])
        publish(lab, ["p0"], SCHED, "CDS", want)
        wait_for(lambda: lab.parent_ds(SCHED) == want, 10, "the scheduled scan applied CDS")
        wait_for(lambda: outcomes(running, "scan-cds", SCHED) != [], 5, "recorded")
        entry = [h for h in running.history("scan-cds") if h.evidence["child"] == SCHED][-1]
        assert entry.actor == "scan" and entry.to_state == "accepted"
        # scans finding nothing to do leave no trace (one entry per change, not per round)
        time.sleep(2.5)
        assert len([h for h in running.history() if h.evidence.get("child") == SCHED]) == 1
    finally:
        running.stop()
