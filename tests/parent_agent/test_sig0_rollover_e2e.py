"""The child's SIG(0) key roll end to end: a lab whose parent zone ``test.`` has the
product's ``multisigner parent-agent`` in front of it (no CDS scanning: DS changes come
by UPDATE only), two PowerDNS signers, a Model 2 zone with ``[zones.parent] type =
"dsync"``.

``sync`` bootstraps the zone's SIG(0) key and puts the DS in; ``rollover --key sig0
--wait`` publishes the successor next to it at every signer, has the agent trust the
successor by an UPDATE the predecessor signs, retires the predecessor (its files kept
in the store's retired/ directory) and leaves the successor alone in the KEY RRset; a
KSK rollover afterwards swaps the DS by UPDATEs the successor signs. The agent's history
shows the KEY change accepted (signed by the predecessor) and every later UPDATE signed by
the successor; nothing refused."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dsynckit import AgentProcess, dsync_config, parent_agent, sent, unsign_delegation
from rollover.rollkit import (
    LAB,
    cli,
    entries_of,
    latest,
    ok,
    provider_entry,
    running_lab,
    stop_parent_automation,
    write_config,
)
from signers.signerkit import ksk_ds

from multisigner_lab import Lab
from multisigner_lab.dnsq import answer, query
from multisigner_lab.net import free_port
from orchestrator.parent_agent.trust import canonical
from providers.sig0keys import Sig0KeyStore, StoredSig0Key

pytestmark = LAB

ZONE = "keyroll.test."
POLICY = {"safety_margin": "0s", "propagation_delay": "0s", "parent_timeout": "60s",
          "propagation_timeout": "60s"}
STATES = ["add-successor:act", "add-successor:observe", "roll-at-parent:act",
          "roll-at-parent:observe", "retire-predecessor:act", "retire-predecessor:observe",
          "done"]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with running_lab(tmp_path_factory, "sig0-roll", providers=2, zones=[ZONE], ttl=1,
                     ds_ttl=1, delegated=["p0", "p1"]) as running:
        stop_parent_automation(running)
        unsign_delegation(running, ZONE)
        yield running


@pytest.fixture(scope="module")
def agent(lab: Lab) -> Iterator[AgentProcess]:
    with parent_agent(lab, lab.directory / "agent", checks=2, interval="300ms") as running:
        yield running


def served_keys(lab: Lab) -> dict[str, list[str]]:
    """The KEY RRset each signer's nameserver serves at the zone's apex."""
    out = {}
    for p in lab.providers:
        rrset = answer(query(p.address, p.dns_port, ZONE, "KEY"), ZONE, "KEY")
        out[p.name] = sorted(rd.to_text() for rd in rrset) if rrset is not None else []
    return out


def signed_by(entry: dict[str, Any]) -> int:
    """The key tag an agent's ``update`` history entry says signed the UPDATE."""
    return int(str(entry["evidence"]["key"]).rsplit("/", 1)[1])


def test_sig0_key_roll_end_to_end(lab: Lab, agent: AgentProcess) -> None:
    sig0 = lab.directory / "sig0"
    config = dsync_config(lab, "sig0roll.toml", ZONE, sig0, POLICY, {})
    ok(cli(config, "sync", ZONE))
    assert lab.parent_ds(ZONE) == ksk_ds(lab, ZONE, ["p0", "p1"])
    store = Sig0KeyStore(sig0)
    [old] = store.list_keys(ZONE)
    assert all(keys == [old.key.to_text()] for keys in served_keys(lab).values())

    check_refusals(lab, config, store)
    check_abort(lab, config, store, old)
    res = ok(cli(config, "rollover", ZONE, "--key", "sig0", "--wait"))
    assert "sig0-rollover done" in res.out, res.out
    [new] = store.list_keys(ZONE)
    assert new.key_id != old.key_id
    # the predecessor is retired, not deleted: both its files are kept, still 0600
    retired = sig0 / "retired"
    assert {f"{old.key_id}.key", f"{old.key_id}.private"} <= {p.name for p in
                                                              retired.iterdir()}
    assert all(p.stat().st_mode & 0o077 == 0 for p in retired.iterdir())
    assert retired.stat().st_mode & 0o077 == 0
    assert all(keys == [new.key.to_text()] for keys in served_keys(lab).values()), \
        served_keys(lab)
    proc = latest(config, ZONE, "sig0-rollover")
    entries = entries_of(config, ZONE, proc["id"])
    assert [e["to_state"] for e in entries][-len(STATES):] == STATES, entries
    updates = [e["evidence"]["parent_update"] for e in entries
               if "parent_update" in (e["evidence"] or {})]
    assert len(updates) == 1 and re.search(
        rf"KEY roll UPDATE \(KEY = SIG\(0\) key {new.key_tag}\) signed by SIG\(0\) key "
        rf"{old.key_tag} to .*: NOERROR", updates[0]), updates

    # the DS still goes in by UPDATE, now signed by the successor
    before = sent(config, ZONE)
    res = ok(cli(config, "rollover", ZONE, "--key", "ksk", "--signer", "p0", "--wait"))
    assert "ksk-rollover done" in res.out, res.out
    assert lab.parent_ds(ZONE) == ksk_ds(lab, ZONE, ["p0", "p1"])
    assert len(sent(config, ZONE)) > len(before)

    history = [h for h in agent.history() if h["kind"] == "update"]
    assert [h for h in history if h["to_state"] != "accepted"] == [], history
    ours = [h for h in history if h["evidence"].get("child") == ZONE]
    # first the bootstrap (the predecessor adding itself), later the roll
    adds = [(i, signed_by(h)) for i, h in enumerate(ours)
            for key in (old, new) if f"add {ZONE} KEY {canonical(key.key)}"
            in h["evidence"]["change"]]
    roll = [i for i, _ in adds if f"add {ZONE} KEY {canonical(new.key)}"
            in ours[i]["evidence"]["change"]]
    assert [tag for _, tag in adds] == [old.key_tag, old.key_tag] and len(roll) == 1, adds
    change = ours[roll[0]]["evidence"]["change"]
    assert change == [f"delete-rrset {ZONE} KEY", f"add {ZONE} KEY {canonical(new.key)}"]
    later = ours[roll[0] + 1:]
    assert later and all(signed_by(h) == new.key_tag for h in later), later
    assert any(f"add {ZONE} DS" in " ".join(h["evidence"]["change"]) for h in later), later
    # the predecessor is not trusted any more: status asks with the successor
    status = ok(cli(config, "status", ZONE, "--json")).json()["zones"][0]["parent"]
    assert status["key_state"] == "trusted" and status["sig0_key"] == new.key_tag, status


def check_refusals(lab: Lab, config: Path, store: Sig0KeyStore) -> None:
    """Bad starts: usage errors (exit 2), and refusals (exit 1) that change nothing."""
    res = cli(config, "rollover", ZONE, "--key", "sig0", "--signer", "p0")
    assert res.rc == 2 and "drop --signer" in res.err, res
    plain = write_config(lab, "sig0roll-cds.toml", zones=[ZONE], policy=POLICY)
    res = cli(plain, "rollover", ZONE, "--key", "sig0")
    assert res.rc == 2 and 'type = "dsync"' in res.err, res
    extra = store.generate(ZONE)  # two keys: which one does the parent trust?
    try:
        res = cli(config, "rollover", ZONE, "--key", "sig0")
        assert res.rc == 1 and "holds 2 SIG(0) keys" in res.err, res
        assert len(store.list_keys(ZONE)) == 2
        assert ok(cli(config, "status", ZONE, "--json")).json()["zones"][0]["process"] is None
    finally:
        for suffix in (".key", ".private"):
            (store.directory / f"{extra.key_id}{suffix}").unlink()


def check_abort(lab: Lab, config: Path, store: Sig0KeyStore, old: StoredSig0Key) -> None:
    """A roll aborted in its first step: the successor is retired, the KEY RRset is the
    predecessor alone again, the parent never heard of the successor. (A config naming a
    dead nameserver for p1 keeps the first step waiting, so the abort finds it there.)"""
    dead = free_port("127.0.0.1")

    def mutate(data: dict[str, Any]) -> None:
        data["zones"][0]["parent"].update(type="dsync", sig0_directory=str(store.directory))
        provider_entry(data, "p1")["nameservers"].append(f"127.0.0.1:{dead}")

    stuck = write_config(lab, "sig0roll-dead-ns.toml", zones=[ZONE], policy=POLICY,
                         mutate=mutate)
    ok(cli(stuck, "rollover", ZONE, "--key", "sig0"))
    proc = latest(config, ZONE, "sig0-rollover")
    assert proc["state"] == "add-successor:observe", proc
    [_, successor] = store.list_keys(ZONE)
    ok(cli(stuck, "rollover", ZONE, "--abort"))
    deadline = time.monotonic() + 20
    while latest(config, ZONE, "sig0-rollover")["status"] == "running":
        assert time.monotonic() < deadline, latest(config, ZONE, "sig0-rollover")
        ok(cli(config, "step", ZONE))  # the config with every nameserver answering
        time.sleep(0.2)
    proc = latest(config, ZONE, "sig0-rollover")
    assert (proc["state"], proc["status"]) == ("aborted", "aborted"), proc
    assert [k.key_id for k in store.list_keys(ZONE)] == [old.key_id]
    assert (store.directory / "retired" / f"{successor.key_id}.private").exists()
    assert all(keys == [old.key.to_text()] for keys in served_keys(lab).values())
