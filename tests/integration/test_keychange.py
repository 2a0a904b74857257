"""A provider changes its own keys after the zone was synced: ``sync`` imports the new
ZSK everywhere and keeps the retired one at the other providers as long as signatures
made with it may be cached (sync_plan.stale_after), then removes it."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
from itkit import (
    NEEDS_SERVERS,
    Run,
    assert_synced,
    running_lab,
    served,
    sync_ok,
    wait_settled,
)
from rollover.watcher import Breach
from watchkit import Watching, cached_from_only

from multisigner_lab import Lab
from multisigner_lab.powerdns import CryptoKey

pytestmark = [pytest.mark.lab, NEEDS_SERVERS]

KEEP = "keep.test."
ROLL = "roll.test."
PLAN = "plan.test."
KEEPING = re.compile(r"note: (p\d): keeping retired key (\d+)/\S+ until (\S+) \(cached")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with running_lab(tmp_path_factory, "keychange", providers=3, zones=[KEEP, ROLL, PLAN],
                     unbound=False) as lab:
        yield lab


def replace_zsk(lab: Lab, provider: str, zone: str) -> tuple[CryptoKey, CryptoKey]:
    """The provider rolls its ZSK abruptly: a new active ZSK, the old one deleted."""
    (old,) = [k for k in lab.keys(provider, zone) if k.keytype == "zsk"]
    with lab.pdns_api(provider) as api:
        resp = api.post(f"/zones/{zone}/cryptokeys", json={
            "keytype": "zsk", "active": True, "published": True,
            "algorithm": "ECDSAP256SHA256"})
        assert resp.status_code == 201, resp.text
        assert api.delete(f"/zones/{zone}/cryptokeys/{old.id}").status_code == 204
    (new,) = [k for k in lab.keys(provider, zone) if k.keytype == "zsk"]
    assert new.key_tag != old.key_tag
    return old, new


def the_providers_own(old: CryptoKey, new: CryptoKey) -> Callable[[Breach], bool]:
    """The breaches p2's abrupt roll causes by itself, which the watcher must see but no
    sync can prevent: data signed by the new ZSK before every cacheable DNSKEY RRset has
    it (p2 signs with it at once, unpublished), and data signed by the old ZSK against
    p2's own DNSKEY RRset (p2 deleted it at once). What sync must prevent is the rest:
    data signed by the old ZSK failing under the *other* providers' DNSKEY RRsets, which
    happens if they drop it while such data may still be cached."""

    def accepted(b: Breach) -> bool:
        if b.kind != "signature":
            return False
        if b.tags == (new.key_tag,):
            return new.key_tag not in b.cached_tags
        return b.tags == (old.key_tag,) and cached_from_only(b, {"p2"})

    return accepted


def test_retired_zsk_is_kept_then_removed(lab: Lab, ms: Run) -> None:
    cfg = lab.config_path
    wait_settled(sync_ok(ms, cfg, KEEP), lab)
    assert ms(cfg, "status", KEEP).rc == 0  # the controller sees p2's keys (API) now
    # Synced and settled: every provider is watched from before p2's roll to the end.
    with Watching(lab, KEEP) as watching:
        old, new = replace_zsk(lab, "p2", KEEP)
        _keep_then_remove(lab, ms, old, new)
    seen = watching.assert_clean(accepted=the_providers_own(old, new))
    assert seen, "the watcher did not see p2's abrupt roll"  # its positive control


def _keep_then_remove(lab: Lab, ms: Run, old: CryptoKey, new: CryptoKey) -> None:
    cfg = lab.config_path

    res = ms(cfg, "verify", KEEP, "--json")
    assert res.rc == 1, res
    missing = {(b["provider"], b["key_tag"]) for b in res.json()["zones"][0]["breaches"]
               if b["code"] == "ZSK_MISSING"}
    assert missing == {("p2", new.key_tag)}, res.out

    res = sync_ok(ms, cfg, KEEP)
    for p in ("p0", "p1"):
        line = next(x for x in res.out.splitlines() if x.startswith(f"  1. {p}: foreign"))
        assert line == f"  1. {p}: foreign DNSKEYs: add {new.key_tag}/ECDSAP256SHA256/ZSK"
    notes = KEEPING.findall(res.out)
    assert {(p, int(tag)) for p, tag, _ in notes} == {("p0", old.key_tag),
                                                       ("p1", old.key_tag)}, res.out
    until = max(datetime.fromisoformat(u) for _, _, u in notes)
    for provider, s in served(lab, KEEP):
        assert (old.dnskey in s.keys) == (provider != "p2"), s.where
        assert new.dnskey in s.keys, s.where
    # Only with time to spare: a CLI start on a loaded machine takes seconds, and a sync
    # that plans after the grace period rightly removes the key.
    if (until - datetime.now(UTC)).total_seconds() > 8:
        res = ms(cfg, "sync", KEEP)
        assert res.rc == 0 and "in sync; nothing to change" in res.out, res

    time.sleep(max((until - datetime.now(UTC)).total_seconds(), 0) + 1.1)
    res = sync_ok(ms, cfg, KEEP)
    for p in ("p0", "p1"):
        assert (f"  1. {p}: foreign DNSKEYs: remove {old.key_tag}/ECDSAP256SHA256/ZSK"
                in res.out), res.out
    assert_synced(lab, KEEP)
    assert all(old.dnskey not in s.keys for _, s in served(lab, KEEP))
    wait_settled(res, lab)
    res = ms(cfg, "verify", KEEP)
    assert res.rc == 0, res


def test_retired_zsk_grace_starts_when_controller_sees_it_gone(lab: Lab, ms: Run) -> None:
    cfg = lab.config_path
    sync_ok(ms, cfg, ROLL)
    # Watched from the synced state on (the pre-sync RRsets are the lab's starting state,
    # see test_sync.py), through p2's roll and the sync, until the retired key's
    # signatures are out of every cache.
    with Watching(lab, ROLL) as watching:
        old, new = _grace_from_when_seen(lab, ms)
    seen = watching.assert_clean(accepted=the_providers_own(old, new))
    assert seen, "the watcher did not see p2's abrupt roll"


def _grace_from_when_seen(lab: Lab, ms: Run) -> tuple[CryptoKey, CryptoKey]:
    cfg = lab.config_path
    # the last API read was sync's; let more than the grace (max TTL + margin = 3 s) pass
    time.sleep(lab.ttl + 1 + 1.5)
    old, new = replace_zsk(lab, "p2", ROLL)
    res = sync_ok(ms, cfg, ROLL)
    assert f"1. p0: foreign DNSKEYs: add {new.key_tag}/ECDSAP256SHA256/ZSK" in res.out
    # p2 signed with the old ZSK a moment ago: resolvers may hold those RRSIGs for their
    # TTL, so the other providers must still serve the old ZSK now
    for provider, s in served(lab, ROLL):
        if provider != "p2":
            assert old.dnskey in s.keys, f"{s.where} dropped ZSK {old.key_tag} at once"
    assert "keeping retired key" in res.out, res.out
    time.sleep(lab.ttl + 0.5)  # watched while the old ZSK's signatures run out of caches
    return old, new


def test_plan_does_not_wait_for_a_parent_that_already_follows(lab: Lab, ms: Run) -> None:
    cfg = lab.config_path
    sync_ok(ms, cfg, PLAN)
    ds = lab.parent_ds(PLAN)
    (zsk,) = [k for k in lab.keys("p1", PLAN) if k.keytype == "zsk"]
    with lab.pdns_api("p0") as api:
        (rrset,) = [r for r in api.get(f"/zones/{PLAN}").json()["rrsets"]
                    if r["type"] == "DNSKEY"]
        records = [r for r in rrset["records"] if r["content"] != zsk.dnskey]
        resp = api.patch(f"/zones/{PLAN}", json={"rrsets": [{
            "name": PLAN, "type": "DNSKEY", "ttl": rrset["ttl"], "changetype": "REPLACE",
            "records": records}]})
        assert resp.status_code == 204, resp.text
    res = ms(cfg, "sync", PLAN, "--dry-run")
    assert res.rc == 0, res
    assert f"  1. p0: foreign DNSKEYs: add {zsk.key_tag}/ECDSAP256SHA256/ZSK" in res.out
    assert lab.parent_ds(PLAN) == ds and len(ds) == 3
    assert "then wait for the parent's DS RRset" not in res.out, res.out
