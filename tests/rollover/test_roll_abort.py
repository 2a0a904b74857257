"""Aborting a rollover from each phase that has an abort path, with the watcher running:
the zone goes back to its predecessor key without a breach. Aborting while the
predecessor is being withdrawn is refused and changes nothing."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from multisigner_lab import Lab
from multisigner_lab.zones import ds_text
from rollover.fakes import closed_port
from rollover.rollkit import (
    ABORT_STEPS,
    FAST,
    LAB,
    ROLE_FLAGS,
    Observed,
    abort_states,
    active,
    check_holds,
    cli,
    entries_of,
    history,
    latest,
    ok,
    running_lab,
    served,
    step_until,
    sync_zones,
    to_states,
    verify_ok,
    when,
    with_api_url,
    write_config,
)

pytestmark = LAB

ZSK_PUB, ZSK_ACT, KSK_PUB, KSK_SWAP, WITHDRAW = (
    "abzp.test.", "abza.test.", "abkp.test.", "abks.test.", "abwd.test.")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    zones = [ZSK_PUB, ZSK_ACT, KSK_PUB, KSK_SWAP, WITHDRAW]
    with running_lab(tmp_path_factory, "abort", providers=2, ds_ttl=3, zones=zones) as running:
        sync_zones(running, zones)
        yield running


@pytest.fixture(scope="module")
def fast(lab: Lab) -> Path:
    return write_config(lab, "fast.toml", policy=FAST)


def abort_in(lab: Lab, config: Path, zone: str, key: str, during: str, target: str) -> None:
    """Start a ``key`` rollover at p0, step until ``target``, abort, step to the end;
    then the zone is exactly as before (keys, DS, CDS) and nothing broke meanwhile."""
    ttls = {"TTLkey": lab.ttl, "TTLsig": lab.ttl, "TTLds": lab.ds_ttl}
    before = lab.keys("p0", zone)
    old = next(k for k in before if k.active and k.flags == ROLE_FLAGS[key])
    ds_before = lab.parent_ds(zone)
    with Observed(lab, zone) as obs:
        ok(cli(config, "rollover", zone, "--key", key, "--signer", "p0"))
        answer = step_until(config, zone, lambda s: s == target)
        reached = answer["state"]
        successor = next(k for k in lab.keys("p0", zone) if k.id not in {b.id for b in before})
        if target == "swap-ds:hold":
            want = sorted(ds_text(zone, k) for k in [*active(lab, "p1", zone, 257),
                                                      successor.dnskey])
            assert lab.parent_ds(zone) == want, "parent did not follow the CDS swap"
        res = ok(cli(config, "rollover", zone, "--abort"))
        assert f"{zone}: aborting {key}-rollover" in res.out, res.out
        final = step_until(config, zone, lambda s: s == "aborted")
        assert final["finished"] is True
        verify_ok(config, zone)
    obs.assert_clean()

    proc = latest(config, zone, f"{key}-rollover")
    assert proc["status"] == "aborted"
    entries = entries_of(config, zone, proc["id"])
    assert to_states(entries) == abort_states(key, during, reached)
    abort_entry = entries[to_states(entries).index(f"abort:{_first_abort(key, during)}:act")]
    assert abort_entry["reason"].startswith(f"abort requested in {reached}")
    check_holds(entries, key, ttls)

    after = lab.keys("p0", zone)
    assert {(k.id, k.active) for k in after} == {(k.id, k.active) for k in before}
    for a in served(lab, zone):
        assert successor.dnskey not in a.keys, f"{a.provider} still serves the successor"
        assert old.dnskey in a.keys
        if a.provider == "p0" and key == "zsk":
            assert a.soa_signers == {old.key_tag}, a
        if a.provider == "p0" and key == "ksk":
            assert old.key_tag in a.dnskey_signers and successor.key_tag not in a.dnskey_signers
        assert a.cds == set(ds_before), a
    assert lab.parent_ds(zone) == ds_before


def _first_abort(key: str, during: str) -> str:
    return ABORT_STEPS[key, during][0]


def test_abort_zsk_rollover_in_publish(lab: Lab, fast: Path) -> None:
    abort_in(lab, fast, ZSK_PUB, "zsk", "publish", "publish:hold")


def test_abort_zsk_rollover_in_activate(lab: Lab, fast: Path) -> None:
    abort_in(lab, fast, ZSK_ACT, "zsk", "activate", "activate:hold")
    # The successor, which signed for a while, went only after TTLsig past the moment
    # every nameserver was seen signing with the predecessor again.
    entries = entries_of(fast, ZSK_ACT, latest(fast, ZSK_ACT)["id"])
    revert = next(e for e in entries if e["to_state"] == "abort:revert-signing:hold")
    discard = next(e for e in entries if e["to_state"] == "abort:discard-new-after-revert:act")
    observed = when(revert["evidence"]["observed_at"])
    assert (when(discard["at"]) - observed).total_seconds() >= lab.ttl


def test_abort_ksk_rollover_in_publish(lab: Lab, fast: Path) -> None:
    abort_in(lab, fast, KSK_PUB, "ksk", "publish", "publish:hold")


def test_abort_ksk_rollover_in_swap_ds(lab: Lab, fast: Path) -> None:
    abort_in(lab, fast, KSK_SWAP, "ksk", "swap-ds", "swap-ds:hold")
    entries = entries_of(fast, KSK_SWAP, latest(fast, KSK_SWAP)["id"])
    revert = next(e for e in entries if e["to_state"] == "abort:revert-ds:hold")
    discard = next(e for e in entries if e["to_state"] == "abort:discard-new-after-revert:act")
    assert (when(discard["at"]) - when(revert["evidence"]["observed_at"])).total_seconds() \
        >= lab.ds_ttl


def test_abort_in_withdraw_is_refused(lab: Lab, fast: Path) -> None:
    broken = with_api_url(lab, "p1-down.toml", "p1", f"http://127.0.0.1:{closed_port()}")
    with Observed(lab, WITHDRAW) as obs:
        ok(cli(fast, "rollover", WITHDRAW, "--key", "zsk", "--signer", "p0"))
        answer = step_until(fast, WITHDRAW, lambda s: s == "activate:hold")
        time.sleep(max(0.0, (when(answer["next_check_at"]) - datetime.now(UTC))
                       .total_seconds()) + 0.1)
        # The hold is over; the next step enters withdraw and stops there (p1's API is
        # unreachable in this config), so the process sits in withdraw:act.
        res = cli(broken, "step", WITHDRAW)
        assert res.rc == 1 and "provider 'p1'" in res.err, res
        proc = latest(fast, WITHDRAW)
        assert proc["state"] == "withdraw:act", proc
        n = len(history(fast, WITHDRAW))
        res = cli(fast, "rollover", WITHDRAW, "--abort")
        assert res.rc == 1, res
        assert "cannot abort in step 'withdraw'" in res.err
        assert "let the process finish" in res.err
        again = latest(fast, WITHDRAW)
        assert (again["state"], again["status"], json.loads(again["data"])) == (
            "withdraw:act", "running", json.loads(proc["data"]))
        assert len(history(fast, WITHDRAW)) == n
        step_until(fast, WITHDRAW, lambda s: s == "done")
        verify_ok(fast, WITHDRAW)
    obs.assert_clean()
    assert latest(fast, WITHDRAW)["status"] == "done"
