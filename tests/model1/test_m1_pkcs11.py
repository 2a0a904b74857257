"""Model 1 with the owner KSK on a SoftHSM2 token and two Knot providers: sync from
scratch (test 1), the inception backdate, and faults (test 4): a wrong PIN, keymgr failing
at one provider, an import failing at one provider, a provider ZSK of another algorithm, a
KSK or CSK at a provider, and a sync killed in the middle."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.dnssec
import dns.name
import pytest
from rollover.rollkit import select

from model1.m1kit import (
    DUE,
    LAB_REFRESH_GAP,
    MULTISIGNER,
    REPO,
    apex,
    assert_same_skr,
    bug_unless,
    check_sync_from_scratch,
    cli_proc,
    config_copy,
    expect_served,
    import_wrapper,
    kill_pid,
    knot_generate,
    ksr_ttl,
    model1_lab,
    needs_tools,
    ok,
    owner_dnskey,
    owner_sig,
    servfails,
    signatures,
    sync,
    sync_processes,
    verify,
    wait_until,
    write_config,
)
from multisigner_lab.model1 import Model1Lab

pytestmark = [pytest.mark.lab, needs_tools("softhsm2-util", "ldns-verify-zone", "dnssec-verify")]

SCRATCH = "sync.test."
PIN = "pin.test."
BASELINE = ["plain.test.", "keymgr.test.", "import.test.", "alg.test.", "ksk.test.",
            "csk.test.", "crash.test."]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Model1Lab]:
    """Two Knots, the owner KSKs on a SoftHSM2 token; every BASELINE zone synced once
    (one ``sync --all`` process), SCRATCH and PIN left without any SKR."""
    zones = [SCRATCH, PIN, *BASELINE]
    with model1_lab(tmp_path_factory, "m1-pkcs11", providers=2, zones=zones) as lab:
        res = ok(sync(config_copy(lab, "baseline.toml", BASELINE)))
        for zone in BASELINE:
            assert f"{zone}: synced" in res.out, res.out
        yield lab


def test_sync_from_scratch_two_knots_pkcs11(lab: Model1Lab, tmp_path: Path) -> None:
    for line in check_sync_from_scratch(lab, SCRATCH, tmp_path):
        print(line)


def test_inception_backdated_for_clock_skew(lab: Model1Lab) -> None:
    """The owner's RRSIGs start 1.5 h before their SKR block (as keymgr sign-ksr does), so
    a validator or controller whose clock runs up to 1.5 h behind accepts them."""
    zone = "plain.test."
    name = dns.name.from_text(zone)
    served = expect_served(lab, zone)
    now = time.time()
    for k in lab.providers:
        sig = owner_sig(lab, k, zone)
        assert sig.inception <= now - 3600, f"{k.name}: inception {now - sig.inception:.0f} s ago"
        assert sig.expiration - sig.inception == 5400 + 60  # backdate + the lab's validity
        a = served[k.name]
        dns.dnssec.validate(a.rrsets["DNSKEY"], a.sigs["DNSKEY"], {name: a.rrsets["DNSKEY"]},
                            now=now - 3600)  # a clock one hour behind
        with pytest.raises(dns.dnssec.ValidationFailure):
            dns.dnssec.validate(a.rrsets["DNSKEY"], a.sigs["DNSKEY"],
                                {name: a.rrsets["DNSKEY"]}, now=now - 5500)


def test_dnskey_ttl_is_the_one_knot_asks_for(lab: Model1Lab) -> None:
    """The SKR carries the DNSKEY TTL Knot asks for in its KSR (its policy's dnskey-ttl,
    the lab's TTL), also on a first sync when nothing is served yet to copy it from."""
    zone = "plain.test."
    asked = {ksr_ttl(k, zone) for k in lab.providers}
    assert asked == {lab.ttl}, asked
    served = expect_served(lab, zone)
    assert {a.rrsets["DNSKEY"].ttl for a in served.values()} == asked
    assert {a.sigs["DNSKEY"][0].original_ttl for a in served.values()} == asked


# ---------------------------------------------------------------------- faults (test 4)


def _pin_config(lab: Model1Lab, pin: str) -> Path:
    def mutate(data: dict[str, Any]) -> None:
        for z in data["zones"]:
            z["owner_ksk"]["pin"] = pin

    return write_config(lab, "wrong-pin.toml", zones=[PIN], mutate=mutate)  # type: ignore[arg-type]


def test_wrong_pin_names_the_token_and_changes_nothing(lab: Model1Lab) -> None:
    real_pin = next(ln.split('"')[1] for ln in lab.config_path.read_text().splitlines()
                    if ln.startswith("pin = "))
    res = sync(_pin_config(lab, "0000"), PIN)
    print(res.err)
    assert res.rc == 1, res.text
    assert "pkcs11 token 'multisigner'" in res.err and "wrong PIN" in res.err, res.err
    assert "owner_ksk.pin" in res.err, res.err
    assert real_pin not in res.text and "0000" not in res.text
    assert servfails(lab, PIN) == ["k0", "k1"], "an SKR reached a Knot"
    assert sync_processes(lab.config_path, PIN) == []
    # the right PIN: the same owner KSK (no new key was made) signs, the zone comes up
    res = ok(sync(lab.config_path, PIN))
    assert f"{PIN}: synced" in res.out and "generated owner KSK" not in res.text
    expect_served(lab, PIN)


def test_keymgr_failing_at_one_provider(lab: Model1Lab) -> None:
    """k1's knot_config points at a missing file: keymgr fails there while reading its
    keys, so nothing is signed and k0 gets no new SKR although a re-sign is due."""
    zone = "keymgr.test."
    missing = lab.directory / "missing" / "knot.conf"
    broken = config_copy(lab, "keymgr-missing.toml", [zone], DUE, k1={"knot_config": str(missing)})
    before = signatures(lab, zone)
    procs = len(sync_processes(lab.config_path, zone))
    res = sync(broken, zone)
    print(res.err)
    assert res.rc == 1, res.text
    assert f"{zone}: cannot sync, 1 provider(s) failed; nothing was changed" in res.err, res.err
    assert f"provider 'k1', zone {zone}" in res.err and str(missing) in res.err, res.err
    assert "provider 'k0'" not in res.err
    assert_same_skr(before, signatures(lab, zone), gap=LAB_REFRESH_GAP)
    assert len(sync_processes(lab.config_path, zone)) == procs
    # fixed: the due re-sign goes to both
    due = config_copy(lab, "keymgr-due.toml", [zone], DUE)
    assert f"{zone}: synced" in ok(sync(due, zone)).out
    after = signatures(lab, zone)
    for name, (_, expiration, _) in after.items():
        assert expiration > time.time() + 3000, f"{name} did not get the 1 h signatures"
    expect_served(lab, zone)


def test_import_failing_at_one_provider(lab: Model1Lab) -> None:
    """``keymgr import-skr`` fails at k1 only (a command_prefix wrapper). The sync fails
    naming k1; by design (model1_sync.deliver) k0 keeps the new SKR: the same combined
    set, fresher signatures, so every Knot still serves a valid, identical DNSKEY RRset.
    A re-run completes."""
    zone = "import.test."
    prefix, _ = import_wrapper(lab.directory, "fail")
    failing = config_copy(lab, "import-fail.toml", [zone], DUE, k1={"command_prefix": prefix})
    before = signatures(lab, zone)
    res = sync(failing, zone)
    print(res.err)
    assert res.rc == 1, res.text
    assert "1 of 2 SKR imports failed" in res.err, res.err
    assert f"provider 'k1', zone {zone}, keymgr {zone} import-skr" in res.err, res.err
    assert "provider 'k0'" not in res.err
    assert "simulated import-skr failure" in res.err, res.err
    after = signatures(lab, zone)
    assert after["k1"][1] - before["k1"][1] in (0, LAB_REFRESH_GAP), \
        "k1 imported after all"
    assert after["k0"][1] > time.time() + 3000, "k0 did not keep the new SKR"
    expect_served(lab, zone)  # identical combined set everywhere, every signature valid
    proc = sync_processes(lab.config_path, zone)[-1]
    assert proc["states"][-1] == "failed" and "k1" in proc["entries"][-1]["reason"], proc
    res = ok(sync(config_copy(lab, "import-due.toml", [zone], DUE), zone))
    assert f"{zone}: synced" in res.out
    assert all(exp > time.time() + 3000 for _, exp, _ in signatures(lab, zone).values())


@pytest.fixture(scope="module")
def foreign_algorithm(lab: Model1Lab) -> tuple[str, int]:
    """alg.test.: an Ed25519 ZSK made by hand at k1 (published and active now)."""
    return knot_generate(lab.provider("k1"), "alg.test.", "algorithm=ed25519", "ksk=no",
                         "zsk=yes")


def test_zsk_of_another_algorithm_refused(lab: Model1Lab,
                                          foreign_algorithm: tuple[str, int]) -> None:
    zone = "alg.test."
    _, tag = foreign_algorithm
    before = signatures(lab, zone)
    res = sync(config_copy(lab, "alg-due.toml", [zone], DUE), zone)  # a re-sign is due
    print(res.err)
    assert res.rc == 1, res.text
    assert f"{zone}: refusing to sync; nothing was changed" in res.err, res.err
    assert "of algorithm ED25519; the zone uses ECDSAP256SHA256" in res.err
    assert "RFC 8901 sec. 4" in res.err
    assert "k0" not in res.err
    assert_same_skr(before, signatures(lab, zone), gap=LAB_REFRESH_GAP)
    served = expect_served_without(lab, zone, tag)
    assert len(served) == 2


def expect_served_without(lab: Model1Lab, zone: str, tag: int) -> dict[str, Any]:
    """Nothing of the refused key reached any Knot's DNSKEY RRset."""
    out = {}
    for k in lab.providers:
        a = apex(k, zone, ("DNSKEY",))
        tags = {dns.dnssec.key_id(rd) for rd in a.rrsets["DNSKEY"]}
        assert tag not in tags and len(tags) == 3, (k.name, tags)
        out[k.name] = a
    return out


def test_zsk_of_another_algorithm_error_names_the_key(lab: Model1Lab,
                                                      foreign_algorithm: tuple[str, int]) -> None:
    zone = "alg.test."
    key_id, tag = foreign_algorithm
    res = sync(config_copy(lab, "alg-due.toml", [zone], DUE), zone)
    assert res.rc == 1, res.text
    assert "of algorithm ED25519; the zone uses ECDSAP256SHA256" in res.err, res.text
    bug_unless(str(tag) in res.err or key_id in res.err,
               f"the refusal does not name key tag {tag} / id {key_id}: {res.err}")


@pytest.fixture(scope="module")
def provider_ksks(lab: Model1Lab) -> dict[str, tuple[str, int]]:
    """ksk.test.: a KSK made by hand at k0; csk.test.: a CSK (ksk=yes zsk=yes) at k0."""
    k0 = lab.provider("k0")
    return {"ksk.test.": knot_generate(k0, "ksk.test.", "ksk=yes", "zsk=no"),
            "csk.test.": knot_generate(k0, "csk.test.", "ksk=yes", "zsk=yes")}


@pytest.mark.parametrize("zone", ["ksk.test.", "csk.test."])
def test_ksk_or_csk_at_a_provider_refused(lab: Model1Lab, zone: str,
                                          provider_ksks: dict[str, tuple[str, int]]) -> None:
    """RFC 8901 sec. 7: in Model 1 the owner holds the only KSK (no CSK)."""
    _, tag = provider_ksks[zone]
    before = signatures(lab, zone)
    res = sync(config_copy(lab, f"due-{zone}toml", [zone], DUE), zone)
    print(res.err)
    assert res.rc == 1, res.text
    assert f"{zone}: refusing to sync; nothing was changed" in res.err, res.err
    assert "k0 publishes its own" in res.err and "RFC 8901 sec. 7" in res.err
    assert_same_skr(before, signatures(lab, zone), gap=LAB_REFRESH_GAP)
    expect_served_without(lab, zone, tag)
    # the zone's DNSKEY RRset is still signed by the owner KSK alone
    owner_tag = dns.dnssec.key_id(owner_dnskey(lab, zone))
    for k in lab.providers:
        assert owner_sig(lab, k, zone).key_tag == owner_tag


def test_ksk_at_a_provider_error_names_the_key(lab: Model1Lab,
                                               provider_ksks: dict[str, tuple[str, int]]
                                               ) -> None:
    zone = "ksk.test."
    key_id, tag = provider_ksks[zone]
    res = sync(config_copy(lab, f"due-{zone}toml", [zone], DUE), zone)
    assert res.rc == 1 and "k0 publishes its own" in res.err, res.text
    bug_unless(str(tag) in res.err or key_id in res.err,
               f"the refusal does not name key tag {tag} / id {key_id}: {res.err}")


# ---------------------------------------------------------------------- a killed sync


def test_daemon_resigns_after_a_killed_sync(lab: Model1Lab, tmp_path: Path) -> None:
    zone = "crash.test."
    prefix, pidfile = import_wrapper(lab.directory, "hang")
    hang = config_copy(lab, "crash-hang.toml", [zone], DUE,
                       k0={"command_prefix": prefix, "timeout": "10m",
                           "skr_directory": str(tmp_path)})
    with (tmp_path / "sync.log").open("wb") as log:
        p = subprocess.Popen([str(MULTISIGNER), "--config", str(hang), "sync", zone],
                             stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                             start_new_session=True)
    try:
        wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), 30,
                   "keymgr import-skr hangs at k0")
        wait_until(lambda: [q["states"][-1] for q in sync_processes(hang, zone)][-1:]
                   == ["deliver:act"], 10, "the sync is delivering")  # act converges
    finally:
        os.killpg(p.pid, signal.SIGKILL)  # the controller dies mid-delivery
        p.wait(timeout=10)
        if pidfile.exists() and pidfile.read_text().strip():
            kill_pid(int(pidfile.read_text()))
    rows = select(hang, "SELECT kind, state FROM process WHERE zone = ? AND status = 'running'",
                  (zone,))
    assert [tuple(r) for r in rows] == [("sync", "deliver:act")]
    expect_served(lab, zone)  # k1 got the new SKR, k0 kept the old one: both valid

    due = config_copy(lab, "crash-due.toml", [zone], DUE)
    k0_before = signatures(lab, zone)["k0"]
    res = cli_proc(due, "run", "--once")
    assert res.rc == 0, res.text
    k0_after = signatures(lab, zone)["k0"]
    resigned = k0_after[1] > time.time() + 3000
    # afterwards a foreground sync finds nothing left to do (or finishes the job)
    res = ok(sync(due, zone))
    assert f"{zone}: synced" in res.out or "in sync; nothing to change" in res.out, res.out
    assert signatures(lab, zone)["k0"][1] > time.time() + 3000
    assert verify(lab.config_path, zone)[0] == 0
    bug_unless(resigned, f"`run --once` with a re-sign due left k0's signatures as they were "
                         f"({k0_before[1]} -> {k0_after[1]}): the daemon skipped {zone} "
                         "because of the killed sync's 'running' process")
