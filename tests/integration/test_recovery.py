"""Failure and repair: a provider dying mid-sync (then a plain re-run finishes the job), a
provider down before sync, ``verify`` catching a hand-made breach that ``sync`` repairs,
and ``audit verify`` catching an edited history row."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from itkit import (
    NEEDS_SERVERS,
    Run,
    api_snapshot,
    assert_synced,
    assert_validates,
    history,
    own_keys,
    restart_provider,
    running_lab,
    served,
    sql,
    state_db,
    stop_provider,
    sync_ok,
    sync_states,
    wait_settled,
)
from rollover.watcher import Breach
from watchkit import Watching, cached_from_only

from core.keys import Digest, Key
from multisigner_lab import Lab
from providers.powerdns import PowerDNSProvider

pytestmark = [pytest.mark.lab, NEEDS_SERVERS]

MIDSYNC = "midsync.test."
STOPPED = "stopped.test."
REPAIR = "repair.test."
AUDIT = "audit.test."


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with running_lab(tmp_path_factory, "recovery", providers=3,
                     zones=[MIDSYNC, STOPPED, REPAIR, AUDIT]) as lab:
        yield lab


def test_provider_dies_mid_sync_then_rerun_completes(
    lab: Lab, ms: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    """p1's PowerDNS is killed just before its CDS PATCH (keys already imported
    everywhere): the PATCH fails for real (connection refused, after retries)."""
    cfg = lab.config_path
    original = PowerDNSProvider.set_cds
    killed: list[str] = []

    async def dies_first(self: PowerDNSProvider, zone: str, cds: Sequence[Digest],
                         cdnskey: Sequence[Key], ttl: int) -> None:
        if self.name == "p1" and zone == MIDSYNC and not killed:
            stop_provider(lab, "p1")
            killed.append(self.name)
        await original(self, zone, cds, cdnskey, ttl)

    monkeypatch.setattr(PowerDNSProvider, "set_cds", dies_first)
    # The zone starts not yet multi-signer (each provider serves its own keys only; the
    # DS names every KSK): the watcher watches p0 through the failed sync, the re-run and
    # its settling; neither the failure nor the repair may break what p0 serves.
    ds_before = lab.parent_ds(MIDSYNC)
    with Watching(lab, MIDSYNC, ["p0"]) as watching:
        try:
            res = ms(cfg, "sync", MIDSYNC)
        finally:
            monkeypatch.undo()
            if killed:
                restart_provider(lab, "p1")
        assert killed == ["p1"]
        assert res.rc == 1, res
        assert f"error: {MIDSYNC}: 1 of 3 changes failed; the others were applied" in res.err
        assert f"provider 'p1', zone {MIDSYNC}, PATCH /zones/{MIDSYNC}: cannot connect" in res.err
        rows = history(ms, cfg, MIDSYNC)
        assert [r["to_state"] for r in rows] == [*sync_states()[:3], "failed"]
        failed = rows[-1]
        assert failed["from_state"] == "publish-cds:act"  # it converges in the act's turn
        assert failed["reason"].startswith("failed in publish-cds:act: ")
        assert "'p1'" in failed["reason"]
        assert len({r["process_id"] for r in rows}) == 1
        # what the failure left: keys everywhere, CDS at p0 and p2 only, parent unchanged
        keys = own_keys(lab, MIDSYNC)
        assert lab.parent_ds(MIDSYNC) == ds_before  # unchanged: CDS differ between providers
        for provider, s in served(lab, MIDSYNC):
            assert len(s.keys) == 6, s.where
            assert (s.cds is None) == (provider == "p1"), s.where
        status = ms(cfg, "status", MIDSYNC, "--json").json()["zones"][0]
        assert status["process"] is None  # failed processes are not "running"

        res = ms(cfg, "sync", MIDSYNC)
        assert res.rc == 0, res
        assert f"{MIDSYNC}: plan (1 change)" in res.out
        assert "  2. p1: CDS/CDNSKEY: add " in res.out and "  1. " not in res.out
        assert_synced(lab, MIDSYNC)
        assert len(lab.parent_ds(MIDSYNC)) == 3
        assert {k.dnskey for ks in keys.values() for k in ks} == next(
            s.keys for _, s in served(lab, MIDSYNC))
        rows = history(ms, cfg, MIDSYNC)
        assert rows[-1]["to_state"] == "done"
        assert [r["to_state"] for r in rows[4:]] == sync_states()
        # The re-run changed no DNSKEY or DS RRset (the DS named every KSK from the start),
        # so sync may name no settling time: then wait out the TTLs
        wait_settled(res, lab, required=False)
    watching.assert_clean()
    res = ms(cfg, "verify", MIDSYNC)
    assert res.rc == 0, res
    assert_validates(lab, MIDSYNC)


def test_provider_process_down_refuses_sync(lab: Lab, ms: Run) -> None:
    """p2's PowerDNS (API and nameserver) is stopped: refused, nothing changed at p0/p1;
    once it is back, sync works."""
    cfg = lab.config_path
    before = api_snapshot(lab, STOPPED)
    ds = lab.parent_ds(STOPPED)
    stop_provider(lab, "p2")
    try:
        res = ms(cfg, "sync", STOPPED)
        after = _snapshot_live(lab, STOPPED)  # p0 and p1, while p2 is down
    finally:
        restart_provider(lab, "p2")
    assert res.rc == 1, res
    assert f"provider 'p2', zone {STOPPED}" in res.err and "cannot connect" in res.err
    assert "nothing was changed" in res.err
    assert after == {p: before[p] for p in ("p0", "p1")}
    assert api_snapshot(lab, STOPPED) == before
    assert lab.parent_ds(STOPPED) == ds
    assert history(ms, cfg, STOPPED) == []
    res = ms(cfg, "verify", STOPPED, "--json")
    # back up: not synced yet, but observable (no UNOBSERVABLE breach for p2)
    assert "UNOBSERVABLE" not in {b["code"] for b in res.json()["zones"][0]["breaches"]}
    with Watching(lab, STOPPED, ["p0"]) as watching:  # p0: valid from the start
        wait_settled(sync_ok(ms, cfg, STOPPED), lab)
    watching.assert_clean()
    assert_synced(lab, STOPPED)


def _snapshot_live(lab: Lab, zone: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in ("p0", "p1"):
        with lab.pdns_api(p) as api:
            rrsets = api.get(f"/zones/{zone}").json()["rrsets"]
            keys = api.get(f"/zones/{zone}/cryptokeys").json()
        out[p] = {
            "rrsets": sorted((r["name"], r["type"], r["ttl"], tuple(sorted(
                (c["content"], c["disabled"]) for c in r["records"]))) for r in rrsets),
            "keys": sorted((k["id"], k["active"], k["published"], k["dnskey"]) for k in keys),
        }
    return out


def test_verify_detects_missing_zsk_and_sync_repairs(lab: Lab, ms: Run) -> None:
    cfg = lab.config_path
    res = sync_ok(ms, cfg, REPAIR)
    wait_settled(res, lab)
    assert ms(cfg, "verify", REPAIR).rc == 0
    (zsk,) = [k for k in lab.keys("p1", REPAIR) if k.keytype == "zsk"]
    # Synced and settled: every provider is watched, from before the operator's break
    # to after the repair has settled. The break itself breaches the invariant (p1's
    # data, signed by its ZSK, fails under p0's DNSKEY RRset without it); those breaches
    # are the starting state's and are accepted, but only those, and only until the
    # broken RRset has run out of caches: the repair must not add one of its own.
    with Watching(lab, REPAIR) as watching:
        with lab.pdns_api("p0") as api:
            (rrset,) = [r for r in api.get(f"/zones/{REPAIR}").json()["rrsets"]
                        if r["type"] == "DNSKEY" and r["name"] == REPAIR]
            kept = [r for r in rrset["records"] if r["content"] != zsk.dnskey]
            assert len(kept) == len(rrset["records"]) - 1
            resp = api.patch(f"/zones/{REPAIR}", json={"rrsets": [{
                "name": REPAIR, "type": "DNSKEY", "ttl": rrset["ttl"], "changetype": "REPLACE",
                "records": kept}]})
            assert resp.status_code == 204, resp.text
        p0, p1 = lab.server("p0"), lab.server("p1")

        res = ms(cfg, "verify", REPAIR)
        assert res.rc == 1, res
        assert f"{REPAIR}: BROKEN" in res.out
        breach = (f"BREACH ZSK_MISSING: p1 ({p1.nameserver}) signs its data with key "
                  f"{zsk.key_tag}, which is missing from the DNSKEY RRset served by p0 "
                  f"({p0.nameserver})")
        assert breach in res.out, res.out
        res = ms(cfg, "verify", REPAIR, "--json")
        assert res.rc == 1, res
        item = res.json()["zones"][0]
        assert item["ok"] is False
        missing = [b for b in item["breaches"] if b["code"] == "ZSK_MISSING"]
        assert missing and all(b["provider"] == "p1" and b["key_tag"] == zsk.key_tag
                               for b in missing), item["breaches"]
        assert {b["code"] for b in item["breaches"]} == {"ZSK_MISSING"}
        status = ms(cfg, "status", REPAIR, "--json").json()["zones"][0]
        assert status["consistent"] is False

        res = ms(cfg, "sync", REPAIR)
        repaired = time.time()
        assert res.rc == 0, res
        wait_settled(res, lab)

    def the_break(b: Breach) -> bool:
        return (b.kind == "signature" and b.tags == (zsk.key_tag,)
                and zsk.key_tag not in b.cached_tags and cached_from_only(b, {"p0"})
                and b.at < repaired + lab.dnskey_ttl + 1.0)

    seen = watching.assert_clean(accepted=the_break)
    assert seen, "the watcher did not see the operator's break"  # its positive control
    assert f"  1. p0: foreign DNSKEYs: add {zsk.key_tag}/ECDSAP256SHA256/ZSK" in res.out
    assert "  2. " not in res.out  # CDS was never touched
    assert_synced(lab, REPAIR)
    res = ms(cfg, "verify", REPAIR)
    assert res.rc == 0, res


def test_audit_detects_edited_history(lab: Lab, ms: Run) -> None:
    cfg = lab.config_path
    sync_ok(ms, cfg, AUDIT)
    res = ms(cfg, "audit", "verify")
    assert res.rc == 0, res
    total = len(sql(state_db(cfg), "SELECT seq FROM history"))
    assert res.out.strip() == f"history chain OK: {total} entries verified"

    rows = history(ms, cfg, AUDIT)
    (target,) = [r["seq"] for r in rows if r["to_state"] == "import-keys:observe"]  # changes
    db = state_db(cfg)
    ((original,),) = sql(db, "SELECT evidence FROM history WHERE seq = ?", (target,))
    evidence = json.loads(original)
    assert evidence["changes"], evidence
    evidence["changes"] = evidence["changes"][:1]
    sql(db, "UPDATE history SET evidence = ? WHERE seq = ?", (json.dumps(evidence), target))
    try:
        res = ms(cfg, "audit", "verify")
        assert res.rc == 1, res
        assert f"history chain BROKEN at entry {target}:" in res.out, res.out
        res = ms(cfg, "audit", "verify", "--json")
        assert res.rc == 1, res
        assert res.json()["ok"] is False and res.json()["first_bad_seq"] == target
    finally:
        sql(db, "UPDATE history SET evidence = ? WHERE seq = ?", (original, target))
    res = ms(cfg, "audit", "verify")
    assert res.rc == 0, res
