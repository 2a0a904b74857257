"""The parent side end to end (DSYNC + SIG(0)-signed DNS UPDATE): a lab whose parent zone
``test.`` is a real PowerDNS with the product's ``multisigner parent-agent`` (a real
process, its own config and history) in front of it, publishing DSYNC and not scanning
(the lab's own CDS scanner is stopped too: no DS or NS can change but by UPDATE), real
PowerDNS providers as signers, a validating Unbound, and a Model 2 zone configured with
``[zones.parent] type = "dsync"``.

From an unsigned delegation (no DS at the parent), ``sync`` publishes the zone's SIG(0)
KEY at every signer, sends the self-signed bootstrap UPDATE; the agent finds the KEY at
every child nameserver three times (its ``unsigned`` method) and trusts it; the DS goes
in by a signed UPDATE. Then a KSK rollover (the DS swap by UPDATE), a signer add and a
signer remove (DS and NS by UPDATE; the joining signer's nameserver is named inside the
zone, ``ns2.dsync.test.``, so its glue goes in the same UPDATE): the RFC 8901
invariant watcher (every cache modelled) runs throughout, Unbound answers with AD from
the moment the DS is in. TTLs are 1 s so the whole test takes about a minute and a half."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from dsynckit import (
    AgentProcess,
    accepted_updates,
    dsync_config,
    ns_names_of,
    parent_agent,
    parent_glue,
    resolver_ad,
    secure_breaches,
    sent,
    set_address,
    tags_of,
    unsign_delegation,
    watched,
)
from rollover import rollkit
from rollover.rollkit import (
    LAB,
    cli,
    entries_of,
    latest,
    ok,
    running_lab,
    stop_parent_automation,
    when,
)
from signers.signerkit import (
    add_states,
    audit_ok,
    check_chain,
    check_holds,
    ksk_ds,
    lab_ttls,
    remove_states,
)

from multisigner_lab import Lab

pytestmark = LAB

ZONE = "dsync.test."
NS2 = "ns2.dsync.test."  # p2's nameserver name, in bailiwick: the parent needs its glue
RENAMED = {"p2": NS2}
POLICY = {"safety_margin": "0s", "propagation_delay": "0s", "parent_timeout": "60s",
          "propagation_timeout": "60s"}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with running_lab(tmp_path_factory, "dsync-e2e", providers=3, zones=[ZONE], ttl=1,
                     ds_ttl=1, delegated=["p0", "p1"]) as running:
        stop_parent_automation(running)
        assert [p for p in running.procs if p.name == "parent-agent" and p.alive()] == []
        unsign_delegation(running, ZONE)
        set_address(running, ZONE, NS2, running.server("p2").address)
        yield running


@pytest.fixture(scope="module")
def agent(lab: Lab) -> Iterator[AgentProcess]:
    with parent_agent(lab, lab.directory / "agent", checks=3, interval="300ms",
                      hosts={NS2: lab.server("p2").nameserver}) as running:
        yield running


def ns_of(lab: Lab, providers: list[str]) -> list[str]:
    names = {**lab.ns_names, **RENAMED}
    return sorted(names[p].lower() for p in providers)


def main_entries(config: Any, process: dict[str, Any]) -> list[dict[str, Any]]:
    """A process's state transitions, without the ``parent: sent`` entries (recorded in
    the state they were sent from)."""
    return [e for e in entries_of(config, ZONE, process["id"])
            if not str(e["reason"]).startswith("parent: ")]


def test_dsync_end_to_end(lab: Lab, agent: AgentProcess) -> None:
    config = dsync_config(lab, "dsync.toml", ZONE, lab.directory / "sig0", POLICY, RENAMED)
    assert lab.parent_ds(ZONE) == [] and lab.parent_ns(ZONE) == ns_of(lab, ["p0", "p1"])
    started = time.time()
    # Insecure until the DS is in: the watcher only (a resolver gives no AD yet).
    with watched(lab, ZONE, RENAMED, resolver=False) as obs:
        res = ok(cli(config, "sync", ZONE))
        synced = time.time()
    assert f"{ZONE}: synced" in res.out, res.out
    assert obs.rounds >= 5 and not obs.watcher.errors, obs.watcher.errors[:20]
    assert not secure_breaches(obs), "\n".join(str(b) for b in secure_breaches(obs)[:20])
    assert lab.parent_ds(ZONE) == ksk_ds(lab, ZONE, ["p0", "p1"])
    check_bootstrap(config, agent, started, synced)

    took: dict[str, float] = {}
    with watched(lab, ZONE, RENAMED) as obs:
        mark = time.time()
        res = ok(cli(config, "rollover", ZONE, "--key", "ksk", "--signer", "p0", "--wait"))
        took["ksk rollover"], mark = time.time() - mark, time.time()
        assert "ksk-rollover done" in res.out, res.out
        assert lab.parent_ds(ZONE) == ksk_ds(lab, ZONE, ["p0", "p1"])
        res = ok(cli(config, "signer", "add", ZONE, "p2", "--wait"))
        took["signer add"], mark = time.time() - mark, time.time()
        assert "signer-add done" in res.out, res.out
        assert lab.parent_ns(ZONE) == ns_of(lab, ["p0", "p1", "p2"])
        assert parent_glue(lab, NS2) == [lab.server("p2").address]
        assert lab.parent_ds(ZONE) == ksk_ds(lab, ZONE, ["p0", "p1", "p2"])
        res = ok(cli(config, "signer", "remove", ZONE, "p0", "--wait"))
        took["signer remove"] = time.time() - mark
        assert "signer-remove done" in res.out, res.out
        assert lab.parent_ns(ZONE) == ns_of(lab, ["p1", "p2"])
        assert lab.parent_ds(ZONE) == ksk_ds(lab, ZONE, ["p1", "p2"])
        rollkit.verify_ok(config, ZONE)
        time.sleep(lab_ttls(lab)["TTLns"])  # the watcher sees the last caches run out
    obs.assert_clean()
    # the watcher followed the delegation: p2 (under its in-bailiwick name) once added
    assert obs.watcher.ever_watched() == {"p0", "p1", "p2"}, obs.watcher.watched
    assert obs.watcher.watched[-1][1] == ("p1", "p2"), obs.watcher.watched
    assert resolver_ad(lab, ZONE), "Unbound does not validate the zone (no AD) at the end"
    print(f"{ZONE}: everything over DSYNC/UPDATE in {time.time() - started:.1f} s ("
          + ", ".join(f"{what} {s:.1f} s" for what, s in took.items()) + ")")

    check_processes(lab, config)
    check_updates(lab, config, agent)
    status: dict[str, Any] = ok(cli(config, "status", ZONE, "--json")).json()["zones"][0]
    parent = status["parent"]
    assert parent["channel"] == f"dsync UPDATE to updater.test. port {agent.port}", parent
    assert parent["key_state"] == "trusted", parent
    assert parent["sig0_key"] == tags_of(sent(config, ZONE)[0][1])[0], parent
    audit_ok(config)


def check_bootstrap(config: Any, agent: AgentProcess, started: float,
                    synced: float) -> None:
    """The sync's KEY bootstrap and DS UPDATE, as the controller and the agent recorded
    them; prints the figures."""
    pushes = sent(config, ZONE)
    assert [r.split(" SIG(0)")[0] for _, r in pushes[:1]] == [
        "parent: sent the KEY bootstrap UPDATE for"], pushes
    assert len(pushes) == 2 and pushes[1][1].startswith("parent: sent UPDATE DS = "), pushes
    boot = agent.history()
    methods = [(h["kind"], h["to_state"], h["evidence"].get("method")) for h in boot
               if h["kind"] == "bootstrap"]
    # at-apex needs a DS the parent does not hold; unsigned then passes
    assert methods == [("bootstrap", "refused", "at-apex"),
                       ("bootstrap", "accepted", "unsigned")], methods
    trusted = when(next(h["at"] for h in boot if h["to_state"] == "accepted"
                        and h["kind"] == "bootstrap")).timestamp()
    assert "3 times" in next(h["reason"] for h in boot if h["kind"] == "bootstrap"
                             and h["to_state"] == "accepted")
    boot_sent, ds_sent = (when(at).timestamp() for at, _ in pushes)
    sync = latest(config, ZONE, "sync")
    print(f"sync from an unsigned delegation: {synced - started:.1f} s in all; bootstrap "
          f"UPDATE sent after {boot_sent - started:.1f} s, key trusted "
          f"{trusted - boot_sent:.1f} s later, DS UPDATE sent {ds_sent - trusted:.1f} s "
          f"after that, sync done {when(sync['finished_at']).timestamp() - ds_sent:.1f} s "
          "after the DS UPDATE")
    assert boot_sent < trusted < ds_sent, (boot_sent, trusted, ds_sent)


def check_processes(lab: Lab, config: Any) -> None:
    """Each process ran exactly its runbook's states, held exactly its TTL terms, and
    recorded the UPDATEs it sent in the state that waited for the parent."""
    roll = latest(config, ZONE, "ksk-rollover")
    entries = main_entries(config, roll)
    assert [e["to_state"] for e in entries] == rollkit.main_states("ksk")
    assert rollkit.check_holds(entries, "ksk", rollkit.lab_ttls(lab)) == 3
    assert [r for _, r in sent(config, ZONE, roll["id"])] and all(
        e["to_state"] == "swap-ds:observe" for e in entries_of(config, ZONE, roll["id"])
        if str(e["reason"]).startswith("parent: "))
    ttls = lab_ttls(lab)
    for kind, states, holds in (("signer-add", add_states(), ["import-keys", "add-ds"]),
                                ("signer-remove", remove_states(), ["drain", "remove-ds"])):
        proc = latest(config, ZONE, kind)
        assert (proc["state"], proc["status"]) == ("done", "done"), proc
        entries = main_entries(config, proc)
        check_chain(entries, states)
        assert check_holds(entries, ttls) == holds
        pushed = [r for _, r in sent(config, ZONE, proc["id"])]
        assert any(" NS = " in r for r in pushed) and any(" DS = " in r for r in pushed), \
            pushed


def check_updates(lab: Lab, config: Any, agent: AgentProcess) -> None:
    """Every UPDATE the controller's history says it sent, the agent's history shows
    accepted, in the same order with the same DS key tags / NS names; nothing refused."""
    pushes = [r for _, r in sent(config, ZONE)]
    accepted = accepted_updates(agent.history(), ZONE)
    assert len(accepted) == len(pushes), (pushes, accepted)
    for pushed, change in zip(pushes, accepted, strict=True):
        if "bootstrap" in pushed:
            assert any(c.startswith(f"add {ZONE} KEY ") for c in change), change
        for tag in tags_of(pushed) if " DS = " in pushed else ():
            assert any(c.startswith(f"add {ZONE} DS {tag} ") for c in change), (pushed, change)
        for name in ns_names_of(pushed):
            assert f"add {ZONE} NS {name}" in change, (pushed, change)
        if f"NS = ns1.p0.test., ns1.p1.test., {NS2}" in pushed:  # the add: p2's glue too
            assert f"glue {NS2} = {lab.server('p2').address}" in pushed, pushed
            assert f"add {NS2} A {lab.server('p2').address}" in change, change
    refused = [h for h in agent.history() if h["kind"] == "update"
               and h["to_state"] != "accepted"]
    assert refused == [], refused
