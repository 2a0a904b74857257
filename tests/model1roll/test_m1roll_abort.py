"""Aborted Model 1 rollovers (``rollover ZONE --abort``): a provider ZSK rollover aborted in
its publish and in its activate step, an owner KSK rollover aborted in publish and in
swap-ds (after the parent's DS named the successor: it goes back to the predecessor).
Each under the invariant watcher, the Unbound AD probe and the timeline; afterwards the
zone serves exactly its previous keys."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import dns.dnssec
import pytest

from model1roll.m1roll import (
    LAB,
    LONG,
    SLACK,
    Sample,
    Timeline,
    Watched,
    abort_now,
    abort_states,
    apexes,
    check_chain,
    check_holds_lab,
    config_copy,
    dnskey,
    ds_of,
    durations,
    first_after,
    knot_keys,
    model1_lab,
    process_entries,
    processes,
    rolled_data,
    start_rollover,
    step_until,
    stored_keys,
    sync_all,
    to_states,
    verify_ok,
)
from multisigner_lab.model1 import Model1Lab

pytestmark = LAB

ZSK_PUB, ZSK_ACT, KSK_PUB, KSK_DS = "zpub.test.", "zact.test.", "kpub.test.", "kds.test."
SIGNER = "k0"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Model1Lab]:
    with model1_lab(tmp_path_factory, "m1abort", providers=2,
                    zones=[ZSK_PUB, ZSK_ACT, KSK_PUB, KSK_DS], store="pkcs11") as running:
        yield running


@pytest.fixture(scope="module")
def config(lab: Model1Lab) -> Path:
    path = config_copy(lab, "roll.toml", policy=LONG)
    sync_all(path)
    return path


def _zsk_abort(lab: Model1Lab, config: Path, zone: str,
               during: str) -> tuple[Timeline, int, int]:
    """A ZSK rollover at k0 aborted in step ``during``; returns the timeline and the tags
    (old, new), after checking the zone is back to its previous keys."""
    before = {k.name: [(x.id, x.zsk, x.signing) for x in knot_keys(k, zone)]
              for k in lab.providers}
    served_before = apexes(lab, zone)
    with Watched(lab, zone) as watched, Timeline(lab, zone) as tl:
        row = start_rollover(config, zone, "--key", "zsk", "--signer", SIGNER)
        if during == "activate":
            step_until(config, zone, lambda s: s == "activate:hold")
        reached = abort_now(config, zone)
        assert reached.startswith(during + ":"), reached
        step_until(config, zone, lambda s: s == "aborted")
        time.sleep(lab.ttl)
        verify_ok(config, zone)
    watched.assert_clean()

    pid, entries = process_entries(config, zone, "zsk-rollover")
    assert pid == row["id"]
    assert to_states(entries) == abort_states("zsk", during, reached)
    check_chain(entries)
    check_holds_lab(entries, "zsk", lab)
    (final,) = [p for p in processes(config, zone) if p["id"] == pid]
    assert (final["state"], final["status"]) == ("aborted", "aborted")
    data = rolled_data(final)
    old, new = dns.dnssec.key_id(dnskey(data["old"])), dns.dnssec.key_id(dnskey(data["new"]))
    print(f"{zone}: zsk rollover aborted in {reached}: {durations(entries)}")

    # back to the previous keys: the successor is deleted at Knot, the predecessor signs
    after = {k.name: [(x.id, x.zsk, x.signing) for x in knot_keys(k, zone)]
             for k in lab.providers}
    assert after == before
    served = apexes(lab, zone)
    for name, a in served.items():
        b = served_before[name]
        assert (a.keys, a.signers, a.cds, a.cdnskey) == (b.keys, b.signers, b.cds, b.cdnskey)
        assert a.data_signers == b.data_signers, name
    assert set(served[SIGNER].data_signers.values()) == {frozenset({old})}
    # every Knot served the successor for a while, then not
    for name in tl.knots:
        assert tl.phases(name, lambda s: new in s.keys) == [False, True, False], name
        assert all(old in s.keys for s in tl.samples[name]), name
    return tl, old, new


def test_zsk_abort_in_publish(lab: Model1Lab, config: Path) -> None:
    tl, old, _ = _zsk_abort(lab, config, ZSK_PUB, "publish")
    # nothing was ever signed with the successor
    assert all(s.soa_signers == {old} for s in tl.samples[SIGNER])


def test_zsk_abort_in_activate(lab: Model1Lab, config: Path) -> None:
    tl, old, new = _zsk_abort(lab, config, ZSK_ACT, "activate")
    # k0 signed with the successor, then with the predecessor again; the successor left
    # the combined set no earlier than TTLsig after that
    signing = tl.phases(SIGNER, lambda s: s.soa_signers)
    assert signing[0] == {old} and {new} in signing and signing[-1] == {old}, signing
    samples = tl.samples[SIGNER]
    signed_new = next(s.at for s in samples if s.soa_signers == {new})
    back = first_after(samples, signed_new, lambda s: s.soa_signers == {old})
    out = min(first_after(tl.samples[k], back, lambda s: new not in s.keys) for k in tl.knots)
    print(f"{ZSK_ACT}: predecessor signs again -> successor out: {out - back:.2f} s "
          f"(TTLsig {lab.ttl})")
    assert out - back >= lab.ttl - SLACK


def _ksk_abort(lab: Model1Lab, config: Path, zone: str,
               during: str) -> tuple[Timeline, int, int]:
    stored_before = stored_keys(config, zone)
    ((old_id, old_key),) = stored_before.items()
    served_before = apexes(lab, zone)
    ds_before = lab.parent_ds(zone)
    assert ds_before == [ds_of(zone, old_key)]
    with Watched(lab, zone) as watched, Timeline(lab, zone) as tl:
        row = start_rollover(config, zone, "--key", "ksk")
        if during == "swap-ds":
            # the parent's DS names the successor once swap-ds holds
            step_until(config, zone, lambda s: s == "swap-ds:hold")
        reached = abort_now(config, zone)
        assert reached.startswith(during + ":"), reached
        step_until(config, zone, lambda s: s == "aborted")
        time.sleep(lab.ds_ttl)
        verify_ok(config, zone)
    watched.assert_clean()

    pid, entries = process_entries(config, zone, "ksk-rollover")
    assert pid == row["id"]
    assert to_states(entries) == abort_states("ksk", during, reached)
    check_chain(entries)
    check_holds_lab(entries, "ksk", lab)
    (final,) = [p for p in processes(config, zone) if p["id"] == pid]
    assert (final["state"], final["status"], final["signer"]) == ("aborted", "aborted", "owner")
    data = rolled_data(final)
    new_key = dnskey(data["new"])
    old, new = dns.dnssec.key_id(old_key), dns.dnssec.key_id(new_key)
    print(f"{zone}: ksk rollover aborted in {reached}: {durations(entries)}")

    # back to the previous keys; the successor stays in the store, out of every set
    stored = stored_keys(config, zone)
    assert stored.get(old_id) == old_key and len(stored) == 2, stored
    assert new_key in stored.values()
    served = apexes(lab, zone)
    for name, a in served.items():
        b = served_before[name]
        assert (a.keys, a.signers, a.cds, a.cdnskey) == (b.keys, b.signers, b.cds, b.cdnskey)
        assert a.validates(old_key)
    assert lab.parent_ds(zone) == ds_before
    for name in tl.knots:
        assert tl.phases(name, lambda s: frozenset(s.keys & {old, new})) == [
            {old}, {old, new}, {old}], name
    return tl, old, new


def test_ksk_abort_in_publish(lab: Model1Lab, config: Path) -> None:
    tl, old, _ = _ksk_abort(lab, config, KSK_PUB, "publish")
    # no CDS and no parent DS ever named the successor
    assert tl.ds_phases() == [{old}]
    for name in tl.knots:
        assert all(s.cds == {old} for s in tl.samples[name]), name


def test_ksk_abort_in_swap_ds(lab: Model1Lab, config: Path) -> None:
    tl, old, new = _ksk_abort(lab, config, KSK_DS, "swap-ds")
    # CDS and the parent's DS went to the successor and back to the predecessor
    assert tl.ds_phases() == [{old}, {new}, {old}], tl.ds_phases()
    for name in tl.knots:
        assert tl.phases(name, lambda s: s.cds) == [{old}, {new}, {old}], name

    def both_sign(s: Sample) -> bool:
        return {old, new} <= s.dnskey_signers

    for name in tl.knots:  # both KSKs signed while the successor was in the set
        assert all(both_sign(s) for s in tl.samples[name] if new in s.keys), name
    ds_new = tl.ds_first(lambda ds: ds == {new})
    back = next(at for at, ds in tl.ds if at > ds_new and ds == {old})
    out = min(first_after(tl.samples[k], back, lambda s: new not in s.keys) for k in tl.knots)
    print(f"{KSK_DS}: parent DS back to the predecessor -> successor out: {out - back:.2f} s "
          f"(TTLds {lab.ds_ttl})")
    assert out - back >= lab.ds_ttl - SLACK
