"""A third PowerDNS provider joins a running two-provider Model 2 zone, then one of the
original two leaves (docs/design-notes.md, "Steps per model"), under the invariant
watcher (restricted to the providers resolvers can reach) and the Unbound AD probe.

The lab's TTLs differ per term (DNSKEY/signatures 2 s, DS 3 s, parent NS 4 s) so every
hold's TTL term is told apart in the history's evidence."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from rollover.rollkit import (
    FAST,
    LAB,
    cli,
    entries_of,
    latest,
    ok,
    running_lab,
    sync_zones,
    verify_ok,
    write_config,
)

from multisigner_lab import Lab
from multisigner_lab.powerdns import set_rrset
from signers.signerkit import (
    Observed,
    add_states,
    apex,
    audit_ok,
    check_chain,
    check_holds,
    ksk_ds,
    lab_ttls,
    ns_of,
    own_keys,
    remove_states,
    signers,
    status,
)

pytestmark = LAB

# zone -> the original signer that leaves after p2 has joined: p0, whose KSK alone the
# parent's DS named before the first sync (test_signer_crash.py lets p1 leave)
ZONES = {"join.test.": "p0"}
EARLY = "early.test."  # the watcher's own check: NS names p2 before its keys are in


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with running_lab(tmp_path_factory, "sig-join", providers=3, zones=[*ZONES, EARLY], ttl=2,
                     ds_ttl=3, ns_ttl=4, delegated=["p0", "p1"]) as running:
        sync_zones(running, [*ZONES, EARLY])
        yield running


def check_members(lab: Lab, zone: str, members: list[str]) -> None:
    """Parent NS and DS, and what every member serves: the steady state of ``members``."""
    assert lab.parent_ns(zone) == ns_of(lab, members)
    assert lab.delegated(zone) == members
    assert lab.parent_ds(zone) == ksk_ds(lab, zone, members)
    keys = set().union(*(own_keys(lab, m, zone) for m in members))
    ksks = {k.dnskey for m in members for k in lab.keys(m, zone) if k.active and k.flags == 257}
    served = apex(lab, zone, members)
    for name, a in served.items():
        assert a.keys == keys, f"{name} serves DNSKEY {sorted(a.keys)}, not {sorted(keys)}"
        assert a.cds == set(ksk_ds(lab, zone, members)), f"{name} CDS {sorted(a.cds)}"
        assert a.cdnskey == ksks, f"{name} CDNSKEY {sorted(a.cdnskey)}"
        assert a.ns == set(ns_of(lab, members)), f"{name} NS {sorted(a.ns)}"
        assert a.csync == (), f"{name} still serves CSYNC {a.csync}"


@pytest.mark.parametrize("zone", list(ZONES))
def test_join_then_leave(lab: Lab, zone: str) -> None:
    leaving = ZONES[zone]
    staying = [p for p in ("p0", "p1") if p != leaving]
    config = write_config(lab, f"{zone}toml", zones=[zone], policy=FAST)
    check_members(lab, zone, ["p0", "p1"])
    leaving_keys = own_keys(lab, leaving, zone)
    started = time.monotonic()
    with Observed(lab, zone) as obs:
        res = ok(cli(config, "signer", "add", zone, "p2", "--wait"))
        added = time.time()
        took_add = time.monotonic() - started
        assert "signer-add done" in res.out, res.out
        check_members(lab, zone, ["p0", "p1", "p2"])
        st = status(config, zone)
        assert [s["name"] for s in st["signers"]] == ["p0", "p1", "p2"]
        assert st["process"] is None and st["consistent"], st
        verify_ok(config, zone)

        res = ok(cli(config, "signer", "remove", zone, leaving, "--wait"))
        took_remove = time.monotonic() - started - took_add
        assert "signer-remove done" in res.out, res.out
        check_members(lab, zone, [*staying, "p2"])
        for name, a in apex(lab, zone, [*staying, "p2"]).items():
            assert not a.keys & leaving_keys, f"{name} still serves {leaving}'s keys"
        assert signers(config, zone) == [*staying, "p2"]
        verify_ok(config, zone)
        time.sleep(lab_ttls(lab)["TTLns"])  # the watcher sees every cache run out
    obs.assert_clean()
    print(f"{zone}: add {took_add:.1f} s, remove {took_remove:.1f} s")

    # the watcher really watched the joining signer, and stopped watching the leaving one
    w = obs.watcher
    assert w.watched[0][1] == ("p0", "p1"), w.watched
    assert "p2" in w.watched_at(added), w.watched
    assert w.watched[-1][1] == tuple(sorted([*staying, "p2"])), w.watched

    ttls = lab_ttls(lab)
    add = latest(config, zone, "signer-add")
    assert (add["state"], add["status"], add["signer"]) == ("done", "done", "p2")
    entries = entries_of(config, zone, add["id"])
    check_chain(entries, add_states())
    assert check_holds(entries, ttls) == ["import-keys", "add-ds"]
    remove = latest(config, zone, "signer-remove")
    assert (remove["state"], remove["status"], remove["signer"]) == ("done", "done", leaving)
    entries = entries_of(config, zone, remove["id"])
    check_chain(entries, remove_states())
    assert check_holds(entries, ttls) == ["drain", "remove-ds"]
    audit_ok(config)


def test_watcher_sees_a_signer_named_before_its_keys_are_in(lab: Lab) -> None:
    """The restricted watcher is quiet while p2 (serving the zone with keys no DS names) is
    unreachable, and reports breaches at p2 as soon as a delegated signer's NS RRset names
    it -- the unsafe join the runbook's order prevents -- and for that NS TTL after."""
    obs = Observed(lab, EARLY, resolver=False)
    w = obs.watcher
    with obs:
        w.wait_rounds(3)
        assert w.breaches == [] and w.watched[-1][1] == ("p0", "p1")
        with lab.pdns_api("p0") as api:
            set_rrset(api, EARLY, EARLY, "NS", ttl=lab.ttl, contents=ns_of(lab, ["p0", "p1", "p2"]))
        named_at, round_at = time.time(), w.rounds
        w.wait_rounds(3)
        with lab.pdns_api("p0") as api:
            set_rrset(api, EARLY, EARLY, "NS", ttl=lab.ttl, contents=ns_of(lab, ["p0", "p1"]))
        repaired_at = time.time()
        time.sleep(2 * lab.ttl + 1.0)
    print(w.summary(), w.watched)
    assert w.errors == []
    assert obs.breaches, "no breach seen"
    assert obs.breaches[0].round <= round_at + 2
    # p2's DNSKEY RRset has no DS-matching key, and p2's signatures and those of p0 and p1
    # do not validate under each other's DNSKEY RRsets: every breach involves p2
    assert ("p2", "ds") in {(b.provider, b.kind) for b in obs.breaches}
    assert all(b.provider == "p2" or (b.kind == "signature" and "served by p2" in b.cached_from)
               for b in obs.breaches), "\n".join(map(str, obs.breaches))
    assert all(b.at >= named_at for b in obs.breaches)
    assert any(b.at > repaired_at + 0.3 for b in obs.breaches), "cached NS not remembered"
    # p2 is watched until the NS RRset naming it expires, and the DNSKEY RRset it served
    # until then is remembered for its own TTL
    unwatched = w.watched[-1]
    assert unwatched[1] == ("p0", "p1") and unwatched[0] <= repaired_at + lab.ttl + 0.5
    assert all(b.at <= unwatched[0] + lab.ttl + 0.3 for b in obs.breaches), "kept too long"
