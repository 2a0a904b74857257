"""Model 1: aborting a signer add (``multisigner rollover ZONE --abort``). In import-keys --
k2's ZSK is in the owner-signed set at k0 and k1, no NS names k2 -- the abort takes it out
again (``unimport``): the combined set at k0 and k1 no longer holds k2's ZSK, the
membership is k0 and k1 again. Once the delegation changes (add-ns onwards) an abort is
refused, changes nothing, and the add finishes exactly as without it. All under the
reachable-only invariant watcher and the Unbound AD probe.

The owner KSK is in key files: the engine may run in this process (phase by phase, to
stop the add in chosen states)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import dns.dnssec
import pytest
from rollover.rollkit import step_until
from signers.signerkit import advance_until

from multisigner_lab.model1 import Model1Lab
from signers_m1.m1kit import (
    LAB,
    LONG,
    Watched,
    aborted_add_states,
    add_states,
    apex,
    audit_ok,
    check_chain,
    check_holds,
    check_members,
    cli,
    config_copy,
    entries_of,
    lab_ttls,
    latest,
    m1_lab,
    ok,
    processes,
    refused,
    signers,
    sync,
    verify_ok,
    zsk_of,
)

pytestmark = LAB

ZONE = "abort.test."
# where the second add is stopped and an abort tried: each step once the delegation changes
STOPS = ("add-ns:act", "add-ns:hold", "parent-ns:observe", "cleanup:act", "cleanup:observe")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Model1Lab]:
    with m1_lab(tmp_path_factory, "m1sig-abort", providers=3, zones=[ZONE], ttl=2, ds_ttl=3,
                store="file", delegated=["k0", "k1"]) as running:
        yield running


def _refuse_abort(config: Path) -> str:
    before = latest(config, ZONE)
    res = cli(config, "rollover", ZONE, "--abort")
    step = before["state"].split(":")[0]
    message = refused(res, "cannot abort", f"'{step}'", "opposite signer process")
    after = latest(config, ZONE)
    assert (after["id"], after["state"], after["status"]) == (
        before["id"], before["state"], "running"), after
    return message


def test_abort_an_add_in_import_keys_then_abort_refused_later(lab: Model1Lab) -> None:
    config = config_copy(lab, "abort.toml", zones=[ZONE], policy=LONG)
    sync(config, ZONE)
    time.sleep(lab.ttl + 1)
    check_members(lab, ZONE, ["k0", "k1"])
    tag2 = zsk_of(lab.provider("k2"), ZONE).tag
    with Watched(lab, ZONE) as watched:
        res = ok(cli(config, "signer", "add", ZONE, "k2"))
        first = latest(config, ZONE, "signer-add")
        reached = first["state"]  # import-keys:hold, unless a nameserver was slow
        assert reached.startswith("import-keys:"), res.text
        if reached == "import-keys:hold":
            for p in ("k0", "k1", "k2"):
                served = {dns.dnssec.key_id(z) for z in apex(lab.provider(p), ZONE).zsks}
                assert tag2 in served, f"{p} does not serve k2's ZSK {tag2} yet: {served}"
        res = ok(cli(config, "rollover", ZONE, "--abort"))
        assert f"aborting signer-add {first['id']}: abort:unimport:act" in res.out, res.out
        step_until(config, ZONE, lambda s: s == "aborted")
        # back to k0 and k1: k2's ZSK out of the combined set at both, no NS ever named k2
        check_members(lab, ZONE, ["k0", "k1"])
        assert signers(config, ZONE) == ["k0", "k1"]
        verify_ok(config, ZONE)
        # nothing running: nothing to abort
        refused(cli(config, "rollover", ZONE, "--abort"), "no running process", code=2)

        # join again; from add-ns on (NS and delegation change) an abort is refused
        ok(cli(config, "signer", "add", ZONE, "k2"))
        second = latest(config, ZONE, "signer-add")
        assert second["id"] != first["id"]
        messages = {}
        for state in STOPS:
            advance_until(config, ZONE, lambda s, state=state: s == state)
            messages[state] = _refuse_abort(config)
        step_until(config, ZONE, lambda s: s == "done")
        check_members(lab, ZONE, ["k0", "k1", "k2"])
        assert signers(config, ZONE) == ["k0", "k1", "k2"]
        verify_ok(config, ZONE)
    watched.assert_clean()
    print("\n".join(f"{s}: {m.strip()}" for s, m in messages.items()))

    ttls = lab_ttls(lab)
    row = latest(config, ZONE, "signer-add")
    assert row["id"] == second["id"] and row["status"] == "done"
    entries = entries_of(config, ZONE, first["id"])
    check_chain(entries, aborted_add_states("import-keys", reached))
    assert check_holds(entries, ttls) == (["import-keys"] if reached.endswith(":hold") else [])
    aborted = [p for p in processes(config, ZONE) if p["id"] == first["id"]]
    assert [(p["state"], p["status"], p["signer"]) for p in aborted] == [
        ("aborted", "aborted", "k2")]
    entries = entries_of(config, ZONE, second["id"])
    check_chain(entries, add_states())  # the refused aborts left no trace
    assert check_holds(entries, ttls) == ["import-keys"]
    audit_ok(config)
