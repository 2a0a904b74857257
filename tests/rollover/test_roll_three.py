"""Rollovers with three providers (every one with KSK+ZSK): a ZSK and a KSK rollover at
different signers, each run to the end with ``--wait`` under the watcher."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from multisigner_lab import Lab
from rollover.rollkit import FAST, LAB, roll_and_check, running_lab, sync_zones, write_config

pytestmark = LAB

ZSK, KSK = "zsk3.test.", "ksk3.test."


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with running_lab(tmp_path_factory, "three", providers=3, ds_ttl=3,
                     zones=[ZSK, KSK]) as running:
        sync_zones(running, [ZSK, KSK])
        yield running


@pytest.fixture(scope="module")
def fast(lab: Lab) -> Path:
    return write_config(lab, "fast.toml", policy=FAST)


def test_zsk_rollover_three_providers(lab: Lab, fast: Path) -> None:
    roll_and_check(lab, fast, ZSK, "zsk", "p1")


def test_ksk_rollover_three_providers(lab: Lab, fast: Path) -> None:
    roll_and_check(lab, fast, KSK, "ksk", "p2")
