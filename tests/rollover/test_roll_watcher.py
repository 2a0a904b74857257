"""The invariant watcher itself: quiet on a healthy multi-signer zone, and it catches real
breaches (a foreign ZSK removed by hand; a parent DS RRset that stops matching a
provider's KSK) within a round or two, remembering the broken RRsets for their TTL."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from multisigner_lab import Lab
from multisigner_lab.powerdns import set_rrset
from multisigner_lab.zones import PARENT_ZONE, ds_text
from rollover.rollkit import (
    LAB,
    endpoints,
    running_lab,
    stop_parent_automation,
    sync_zones,
)
from rollover.watcher import Watcher

pytestmark = LAB

QUIET = "quiet.test."
ZSK_GONE = "zskgone.test."
DS_GONE = "dsgone.test."


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with running_lab(tmp_path_factory, "watcher", providers=2,
                     zones=[QUIET, ZSK_GONE, DS_GONE]) as running:
        sync_zones(running, [QUIET, ZSK_GONE, DS_GONE])
        yield running


def watcher(lab: Lab, zone: str) -> Watcher:
    return Watcher(zone, endpoints(lab), [(lab.parent.address, lab.parent.dns_port)])


def test_quiet_on_a_synced_zone(lab: Lab) -> None:
    w = watcher(lab, QUIET).start()
    try:
        # counted rounds, not a rate: a loaded host slows the rounds, never the verdict
        w.wait_rounds(10, timeout=60)
    finally:
        breaches, rounds = w.stop()
    print(w.summary())
    assert breaches == []
    assert w.errors == []
    assert rounds >= 10, w.summary()
    # every provider serves the same DNSKEY records (each signs them with its own KSK),
    # the same DS RRset, and its own SOA signed with its own ZSK
    assert len({s.content for s in w.dnskey_sets.values()}) == 1 and len(w.ds_sets) == 1
    assert {s.providers for s in w.dnskey_sets.values()} == {"p0", "p1"}
    assert {s.providers for s in w.data_sets.values()} == {"p0", "p1"}


def _dnskey_rrset(lab: Lab, provider: str, zone: str) -> dict[str, object]:
    with lab.pdns_api(provider) as api:
        resp = api.get(f"/zones/{zone}")
        resp.raise_for_status()
    rrset: dict[str, object] = next(r for r in resp.json()["rrsets"] if r["type"] == "DNSKEY")
    return rrset


def test_detects_a_foreign_zsk_removed_by_hand(lab: Lab) -> None:
    p0_zsk = next(k for k in lab.keys("p0", ZSK_GONE) if k.flags == 256 and k.active)
    imported = _dnskey_rrset(lab, "p1", ZSK_GONE)
    contents = [r["content"] for r in imported["records"]]  # type: ignore[attr-defined]
    assert p0_zsk.dnskey in contents
    w = watcher(lab, ZSK_GONE).start()
    try:
        w.wait_rounds(3)
        assert w.breaches == []
        # taken before the change: a round already under way may see it take effect
        broken_at, round_at = time.time(), w.rounds
        with lab.pdns_api("p1") as api:
            set_rrset(api, ZSK_GONE, ZSK_GONE, "DNSKEY", ttl=lab.ttl,
                      contents=[c for c in contents if c != p0_zsk.dnskey])
        w.wait_rounds(2)
        assert w.breaches, f"no breach within 2 rounds: {w.summary()}"
        first = w.breaches[0]
        assert first.round <= round_at + 3
        assert first.kind == "signature" and first.provider == "p0"
        assert p0_zsk.key_tag in first.tags
        assert p0_zsk.key_tag not in first.cached_tags
        assert "served by p1" in first.cached_from
        # repair: the broken RRset is remembered for its TTL, then forgotten
        with lab.pdns_api("p1") as api:
            set_rrset(api, ZSK_GONE, ZSK_GONE, "DNSKEY", ttl=lab.ttl, contents=contents)
        repaired_at = time.time()
        time.sleep(lab.ttl + 1.0)
    finally:
        breaches, _ = w.stop()
    print(w.summary())
    assert w.errors == []
    assert all(b.at >= broken_at for b in breaches)
    assert any(b.at > repaired_at + 0.3 for b in breaches), "cached RRset not remembered"
    assert all(b.at <= repaired_at + lab.ttl + 0.1 for b in breaches), "kept beyond its TTL"


def test_detects_a_parent_ds_that_stops_matching(lab: Lab) -> None:
    p0_ksk = next(k for k in lab.keys("p0", DS_GONE) if k.flags == 257)
    p1_ksk = next(k for k in lab.keys("p1", DS_GONE) if k.flags == 257)
    both = [ds_text(DS_GONE, k.dnskey) for k in (p0_ksk, p1_ksk)]
    # The registry would put the DS back from the CDS within half a second, sometimes
    # before a round sees it: stop it (the last test of this module's lab).
    stop_parent_automation(lab)
    w = watcher(lab, DS_GONE).start()
    try:
        w.wait_rounds(3)
        assert w.breaches == []
        # The parent publishes a DS RRset without p1's key for a moment: resolvers may
        # hold it for the DS TTL, so p1's DNSKEY RRset fails for that long.
        with lab.pdns_api("parent") as api:
            set_rrset(api, PARENT_ZONE, DS_GONE, "DS", ttl=lab.ds_ttl,
                      contents=[ds_text(DS_GONE, p0_ksk.dnskey)])
            round_at = w.rounds
            w.wait_rounds(2)
            set_rrset(api, PARENT_ZONE, DS_GONE, "DS", ttl=lab.ds_ttl, contents=both)
        repaired_at = time.time()
        time.sleep(lab.ds_ttl + 1.0)
    finally:
        breaches, _ = w.stop()
    print(w.summary())
    assert breaches, "no breach seen"
    first = breaches[0]
    assert first.round <= round_at + 2
    assert {b.kind for b in breaches} == {"ds"}
    assert {b.provider for b in breaches} == {"p1"}
    assert p1_ksk.key_tag in first.tags and first.cached_tags == (p0_ksk.key_tag,)
    assert any(b.at > repaired_at + 0.3 for b in breaches), "cached DS RRset not remembered"
    assert all(b.at <= repaired_at + lab.ds_ttl + 0.1 for b in breaches)
