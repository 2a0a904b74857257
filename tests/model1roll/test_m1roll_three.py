"""Model 1 rollovers with three Knot providers and the owner KSK in key files: a ZSK
rollover of the third provider (the other two import its successor through the combined
set) and an owner KSK rollover whose successor is a new PEM file next to the old one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from model1roll.m1roll import LAB, LONG, config_copy, model1_lab, roll_ksk, roll_zsk, sync_all
from multisigner_lab.model1 import Model1Lab

pytestmark = LAB

ZSK, KSK = "zsk3.test.", "ksk3.test."


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Model1Lab]:
    with model1_lab(tmp_path_factory, "m1three", providers=3, zones=[ZSK, KSK],
                    store="file") as running:
        yield running


@pytest.fixture(scope="module")
def config(lab: Model1Lab) -> Path:
    path = config_copy(lab, "roll.toml", policy=LONG)
    sync_all(path)
    return path


def test_zsk_rollover_of_the_third_provider(lab: Model1Lab, config: Path) -> None:
    roll_zsk(lab, config, ZSK, "k2")


def test_owner_ksk_rollover_file_store(lab: Model1Lab, config: Path) -> None:
    roll_ksk(lab, config, KSK)
