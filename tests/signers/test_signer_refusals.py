"""Signer add/remove interlocks (docs/design-notes.md, "Safety interlocks"): each refusal
exits 1 (2 for a usage
error) with a message naming the reason, and changes nothing -- at any provider (API
snapshots before and after), at the parent, in the membership or the processes."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rollover.rollkit import (
    FAST,
    LAB,
    bug_unless,
    cli,
    processes,
    running_lab,
    sync_zones,
    write_config,
)

from multisigner_lab import Lab
from signers.signerkit import api_snapshot, delete_zone, refused, signers
from state.store import StateStore

pytestmark = LAB

SYNCED = "synced.test."  # p0 + p1 in their steady state; p2 ready to join; p3 uses ED25519
GONE = "gone.test."  # synced; p2 no longer has the zone
UNSYNCED = "unsynced.test."  # never synced; the test makes the parent's DS name p0's KSK only
LAST = "last.test."  # a zone whose only signer is p0 (own state database)
ORPHAN = "orphan.test."  # synced; a killed 'signer add' left p2 'joining' without a process


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with running_lab(tmp_path_factory, "sig-refuse", providers=4,
                     zones=[SYNCED, GONE, UNSYNCED, LAST, ORPHAN], delegated=["p0", "p1"],
                     algorithms={"p3": "ED25519"}) as running:
        sync_zones(running, [SYNCED, GONE, ORPHAN])
        yield running


@pytest.fixture(scope="module")
def config(lab: Lab) -> Path:
    return write_config(lab, "refuse.toml", zones=[SYNCED, GONE, UNSYNCED, ORPHAN],
                        policy=FAST)


def everything(lab: Lab, config: Path, zone: str) -> dict[str, Any]:
    return {
        "apis": api_snapshot(lab, zone),
        "parent": (lab.parent_ns(zone), lab.parent_ds(zone)),
        "processes": processes(config, zone),
        "signers": signers(config, zone),
    }


def refuses(lab: Lab, config: Path, zone: str, args: list[str], *needles: str,
            code: int = 1) -> str:
    before = everything(lab, config, zone)
    message = refused(cli(config, "signer", *args), *needles, code=code)
    print(f"signer {' '.join(args)}: exit {code}: {message}")
    assert everything(lab, config, zone) == before, "a refused command changed something"
    return message


def test_add_a_signer_with_another_algorithm(lab: Lab, config: Path) -> None:
    assert lab.providers[3].name == "p3" and {k.algorithm for k in lab.keys("p3", SYNCED)} \
        == {"ED25519"}
    refuses(lab, config, SYNCED, ["add", SYNCED, "p3"], "refusing to add signer p3",
            "nothing was changed", "ALGORITHM_MISMATCH", "ED25519")


def test_add_a_signer_that_is_already_one(lab: Lab, config: Path) -> None:
    refuses(lab, config, SYNCED, ["add", SYNCED, "p1"], "p1 is already a signer")


def test_add_a_provider_not_in_the_config(lab: Lab, config: Path) -> None:
    refuses(lab, config, SYNCED, ["add", SYNCED, "p9"], "no provider named 'p9'", code=2)


def test_remove_a_provider_that_is_no_signer(lab: Lab, config: Path) -> None:
    refuses(lab, config, SYNCED, ["remove", SYNCED, "p2"], "p2 is not a signer")


def test_add_a_provider_that_does_not_serve_the_zone(lab: Lab, config: Path) -> None:
    delete_zone(lab, "p2", GONE)
    assert api_snapshot(lab, GONE)["p2"] == "absent"
    refuses(lab, config, GONE, ["add", GONE, "p2"], "refusing to add signer p2", "'p2'")


def test_remove_the_signer_whose_ksk_alone_the_parent_ds_names(lab: Lab,
                                                                config: Path) -> None:
    # never synced, and the parent's DS names p0's KSK only (as the owner registered it
    # when p0 signed alone; the lab's own start registers every delegated KSK)
    p0_ksk = next(k for k in lab.keys("p0", UNSYNCED) if k.flags == 257)
    lab.register_ds(UNSYNCED, [p0_ksk.ds(UNSYNCED)])
    assert [d.split()[0] for d in lab.parent_ds(UNSYNCED)] == [str(p0_ksk.key_tag)]
    refuses(lab, config, UNSYNCED, ["remove", UNSYNCED, "p0"], "refusing to remove signer p0",
            "names no KSK of a signer that stays")


def test_remove_the_last_signer(lab: Lab) -> None:
    def only_p0(data: dict[str, Any]) -> None:
        data["state"]["url"] = "sqlite:///" + str(lab.directory / "last.db")
        for z in data["zones"]:
            z["signers"] = ["p0"]

    config = write_config(lab, "last.toml", zones=[LAST], policy=FAST, mutate=only_p0)
    assert tomllib.loads(config.read_text())["zones"][0]["signers"] == ["p0"]
    assert signers(config, LAST) == ["p0"]  # (creates the state database)
    refuses(lab, config, LAST, ["remove", LAST, "p0"], "p0 is the last signer")
    assert signers(config, LAST) == ["p0"]


def test_signer_add_killed_before_its_process_was_recorded_can_be_retried(
        lab: Lab, config: Path) -> None:
    """A 'joining' membership row with no process (what a controller killed between two
    separate writes used to leave; the two are one transaction now, but a database from
    before, or a process finished elsewhere, can still show it): the join can be retried."""
    url = tomllib.loads(config.read_text())["state"]["url"]
    assert signers(config, ORPHAN) == ["p0", "p1"]
    store = StateStore.open(url)
    try:
        store.set_member(ORPHAN, "p2", "joining")
    finally:
        store.close()
    assert not [p for p in processes(config, ORPHAN) if p["status"] == "running"]
    # a join without its process never made p2 a signer: sync must not take it for one
    plan = cli(config, "sync", ORPHAN, "--dry-run")
    print(plan.text)
    assert plan.rc == 0 and "p2" not in plan.out, plan.text
    res = cli(config, "signer", "add", ORPHAN, "p2")
    print(res.text)
    bug_unless(res.rc == 0, f"the interrupted join cannot be retried: {res.err.strip()}")
