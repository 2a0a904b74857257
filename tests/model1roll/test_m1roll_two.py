"""Model 1 rollovers with two Knot providers and the owner KSK in a SoftHSM2 token: a
provider ZSK rollover, an owner KSK rollover with the parent DS following the CDS, and the
refusals (CSK, KSK with --signer, ZSK without --signer, a zone never synced)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import dns.rcode
import pytest
from rollover.rollkit import bug_unless

from model1roll.m1roll import (
    LAB,
    LONG,
    REPO,
    apexes,
    ask,
    config_copy,
    endpoint,
    history,
    knot_keys,
    model1_lab,
    ms,
    processes,
    roll_ksk,
    roll_zsk,
    stored_keys,
    sync_all,
)
from multisigner_lab.model1 import Model1Lab

pytestmark = LAB

ZSK, KSK, REFUSE, FRESH = "zsk2.test.", "ksk2.test.", "refuse.test.", "fresh.test."


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Model1Lab]:
    with model1_lab(tmp_path_factory, "m1two", providers=2, zones=[ZSK, KSK, REFUSE, FRESH],
                    store="pkcs11") as running:
        yield running


@pytest.fixture(scope="module")
def config(lab: Model1Lab) -> Path:
    """Every zone but FRESH, synced once (owner signatures valid for 10 minutes)."""
    path = config_copy(lab, "roll.toml", zones=[ZSK, KSK, REFUSE], policy=LONG)
    sync_all(path)
    return path


def test_zsk_rollover_of_one_provider(lab: Model1Lab, config: Path) -> None:
    roll_zsk(lab, config, ZSK, "k1")


def test_owner_ksk_rollover_parent_ds_follows(lab: Model1Lab, config: Path) -> None:
    roll_ksk(lab, config, KSK)


def _snapshot(lab: Model1Lab, config: Path) -> dict[str, object]:
    return {
        "history": history(config, REFUSE),
        "fresh": processes(config, FRESH),
        "knot": {k.name: [(x.id, x.timers) for z in (REFUSE, FRESH) for x in knot_keys(k, z)]
                 for k in lab.providers},
        "store": {z: stored_keys(lab.config_path, z) for z in (REFUSE, FRESH)},
        "served": apexes(lab, REFUSE),
    }


def test_refusals_change_nothing(lab: Model1Lab, config: Path) -> None:
    before = _snapshot(lab, config)

    res = ms(config, "rollover", REFUSE, "--key", "csk")
    assert res.rc == 2, res.text
    assert "RFC 8901 sec. 7" in res.err and "CSK" in res.err, res.err

    res = ms(config, "rollover", REFUSE, "--key", "ksk", "--signer", "k0")
    assert res.rc == 2, res.text
    assert "without --signer" in res.err, res.err

    res = ms(config, "rollover", REFUSE, "--key", "zsk")
    assert res.rc == 2, res.text
    assert "--signer" in res.err and "k0, k1" in res.err, res.err

    # a zone that was never synced: Knot cannot even load it (no SKR yet)
    assert all(ask(endpoint(k), FRESH, "SOA").rcode() == dns.rcode.SERVFAIL
               for k in lab.providers)
    for args in (["--key", "ksk"], ["--key", "zsk", "--signer", "k0"]):
        res = ms(lab.config_path, "rollover", FRESH, *args)
        assert res.rc == 1, res.text
        assert f"run 'multisigner sync {FRESH}' first" in res.err, res.err
        assert "nothing was changed" in res.err, res.err

    assert _snapshot(lab, config) == before
    assert before["fresh"] == []


def test_converge_evidence_names_the_combined_set(lab: Model1Lab, config: Path) -> None:
    """Runs after the two rollovers above (same module, file order). Every converge
    transition of a Model 1 rollover should record the combined set it delivered (owner
    KSKs, signing KSKs, CDS, every provider's ZSKs): that is the evidence of what the owner
    signed. What is recorded is an empty Model 2 sync plan."""
    checked = 0
    for zone in (ZSK, KSK):
        for e in history(config, zone):
            if e["kind"].endswith("-rollover") and e["to_state"].endswith(":observe"):
                target = e["evidence"]["target"]
                bug_unless("owner" in target and "zsks" in target,
                           f"{zone} {e['to_state']}: target recorded as {target}")
                checked += 1
    assert checked == 6, "run with the rollover tests of this module"


DOC = REPO / "docs" / "processes" / "ksk-rollover-model1.md"


def test_ksk_process_doc_gives_a_command_the_cli_accepts(lab: Model1Lab, config: Path) -> None:
    text = DOC.read_text()
    (command,) = re.findall(r"Started with `multisigner ([^`]*)`", text)
    args = command.replace("ZONE", REFUSE).replace(" [--wait]", "").split()
    args = [lab.providers[0].name if a == "NAME" else a for a in args]
    res = ms(config, *args)
    if res.rc == 0:  # not expected: undo it
        ms(config, "rollover", REFUSE, "--abort")
    bug_unless(res.rc != 2, f"the documented `multisigner {' '.join(args)}` exits 2: "
               f"{res.err.strip()}")
