"""Model 1: a third Knot (k2) joins a zone signed by k0 and k1, then k0 leaves
(``signer add ... --wait``, ``signer remove ... --wait``; runbooks/signer-*-model1.toml),
under the invariant watcher restricted to the providers resolvers can reach and the
Unbound AD probe, with a sampler recording what every Knot and the parent serve.

The owner KSK is in a SoftHSM2 token (every ``multisigner`` that opens it is a real
process). The parent's DS TTL (3 s) differs from every other TTL (2 s), so a hold using
TTLds instead of the runbook's terms shows."""

from __future__ import annotations

import time
from collections.abc import Iterator

import dns.dnssec
import pytest

from multisigner_lab.model1 import Model1Lab
from signers_m1.m1kit import (
    LAB,
    LONG,
    Sampler,
    Watched,
    add_states,
    audit_ok,
    check_chain,
    check_holds,
    check_members,
    config_copy,
    entries_of,
    knot_keys,
    lab_ttls,
    latest,
    m1_lab,
    ms,
    ns_names,
    ok,
    owner_key,
    remove_states,
    served_csync,
    served_ns,
    status,
    stored_keys,
    sync,
    verify_ok,
    zsk_of,
)

pytestmark = LAB

ZONE = "join.test."


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Model1Lab]:
    with m1_lab(tmp_path_factory, "m1sig-join", providers=3, zones=[ZONE], ttl=2, ds_ttl=3,
                store="pkcs11", delegated=["k0", "k1"]) as running:
        yield running


def test_join_then_leave(lab: Model1Lab) -> None:
    config = config_copy(lab, "join.toml", zones=[ZONE], policy=LONG)
    sync(config, ZONE)
    time.sleep(lab.ttl + 1)  # nothing from before the first SKR is cached any more
    check_members(lab, ZONE, ["k0", "k1"])
    ttls = lab_ttls(lab)
    k = {p.name: p for p in lab.providers}
    zsk = {name: zsk_of(p, ZONE) for name, p in k.items()}
    keys_before = {name: knot_keys(p, ZONE) for name, p in k.items()}
    stored_before = stored_keys(config, ZONE)
    owner = owner_key(lab, ZONE)
    assert list(stored_before.values()) == [owner]
    started = time.monotonic()
    with Watched(lab, ZONE) as watched, Sampler(lab, ZONE) as sampler:
        res = ok(ms(config, "signer", "add", ZONE, "k2", "--wait"))
        added = time.time()
        took_add = time.monotonic() - started
        assert "signer-add done" in res.out, res.text
        check_members(lab, ZONE, ["k0", "k1", "k2"])
        st = status(config, ZONE)
        assert [s["name"] for s in st["signers"]] == ["k0", "k1", "k2"], st["signers"]
        assert st["process"] is None and st["consistent"], st

        res = ok(ms(config, "signer", "remove", ZONE, "k0", "--wait"))
        removed = time.time()
        took_remove = time.monotonic() - started - took_add
        assert "signer-remove done" in res.out, res.text
        # the watcher goes on until every NS RRset naming k0 and what k0 served expired
        time.sleep(ttls["TTLns"] + 0.5)
        verify_ok(config, ZONE)
    watched.assert_clean()
    print(f"{ZONE}: add {took_add:.1f} s, remove {took_remove:.1f} s")

    # afterwards: delegated to k1 and k2, each serving the owner-signed set with exactly
    # their ZSKs, identical NS RRsets, no CSYNC; k0 (still serving the zone) dropped its
    # own name and its CSYNC too (it was a signer until remove-keys)
    check_members(lab, ZONE, ["k1", "k2"])
    assert served_ns(k["k0"], ZONE) == set(ns_names(lab, ["k1", "k2"]))
    assert served_csync(k["k0"], ZONE) == ()
    st = status(config, ZONE)
    assert [s["name"] for s in st["signers"]] == ["k1", "k2"], st["signers"]
    assert st["process"] is None and st["consistent"] and not st["findings"], st
    for s in st["signers"]:
        assert sorted(x["origin"] for x in s["dnskeys"]) == ["k1", "k2", "owner"], s
    # nobody's keys changed: no ZSK made or deleted at any Knot, no KSK in the store
    assert {name: knot_keys(p, ZONE) for name, p in k.items()} == keys_before
    assert stored_keys(config, ZONE) == stored_before

    # the watcher watched k2 from the moment an NS RRset named it, and k0 until every NS
    # RRset naming it may have expired
    w = watched.watcher
    assert w.watched[0][1] == ("k0", "k1"), w.watched
    assert "k2" in w.watched_at(added), w.watched
    assert w.watched[-1][1] == ("k1", "k2"), w.watched
    assert w.watched[-1][0] < removed, "k0 was watched until the end"

    # the order and spacing, as served (RFC 8901 sec. 6.1; RFC 7583 terms):
    # k2's ZSK at every Knot, then TTLkey, then the first NS RRset naming k2 ...
    assert not sampler.errors[:3], sampler.errors[:3]
    tag2, tag0 = zsk["k2"].tag, zsk["k0"].tag
    in_everywhere = sampler.first_all(["k0", "k1", "k2"], tag2, present=True)
    named = sampler.named(lab.provider("k2").ns_name.lower())
    assert named, "no NS RRset ever named k2"
    print(f"k2's ZSK served everywhere -> first NS naming k2: {named[0] - in_everywhere:.2f} s "
          f"(TTLkey {ttls['TTLkey']})")
    assert named[0] - in_everywhere >= ttls["TTLkey"] - 0.5
    # ... and: the last NS RRset naming k0, then TTLns + TTLsig, then k0's ZSK leaves
    last_named = sampler.named(lab.provider("k0").ns_name.lower())
    out = sampler.first_any(["k1", "k2"], tag0, present=False, after=named[0])
    left = [at for at in last_named if at < out]
    print(f"last NS naming k0 -> k0's ZSK leaves the set: {out - left[-1]:.2f} s "
          f"(TTLns + TTLsig {ttls['TTLns'] + ttls['TTLsig']})")
    assert out - left[-1] >= ttls["TTLns"] + ttls["TTLsig"] - 0.5
    assert not [at for at in last_named if at > out], "an NS RRset named k0 after its ZSK left"
    # (a resolver may hold that NS RRset for TTLns: the watcher checked k0 that long)
    assert "k0" in w.watched_at(left[-1] + ttls["TTLns"] - 0.5), w.watched
    for p in ("k1", "k2"):
        after = [s.keys for s in sampler.samples[p] if s.at > out + 0.5]
        assert after and all(s is not None and tag0 not in s for s in after), p

    # the history: exactly the runbooks' states; each hold its terms, exactly
    add = latest(config, ZONE, "signer-add")
    assert (add["state"], add["status"], add["signer"]) == ("done", "done", "k2")
    entries = entries_of(config, ZONE, add["id"])
    check_chain(entries, add_states())
    assert check_holds(entries, ttls) == ["import-keys"]
    remove = latest(config, ZONE, "signer-remove")
    assert (remove["state"], remove["status"], remove["signer"]) == ("done", "done", "k0")
    entries = entries_of(config, ZONE, remove["id"])
    check_chain(entries, remove_states())
    assert check_holds(entries, ttls) == ["drain"]
    audit_ok(config)
    assert dns.dnssec.key_id(owner) in {int(d.split()[0]) for d in lab.parent_ds(ZONE)}
