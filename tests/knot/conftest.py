"""Fixtures of the Knot DNS (Model 1, offline-KSK) tests: two real knotd instances per
test, each on its own loopback address, in the test's temp dir, stopped afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from knotkit import OwnerKsk

from multisigner_lab.knot import KnotInstance


@pytest.fixture
def knots(tmp_path: Path) -> Iterator[tuple[KnotInstance, KnotInstance]]:
    """k0 and k1, started, each with a pregenerated ZSK for example.test. and no SKR yet
    (the zone is not loaded: Knot answers SERVFAIL until the first import)."""
    created = [KnotInstance.create(name, tmp_path / name) for name in ("k0", "k1")]
    try:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(KnotInstance.start, created))
        yield created[0], created[1]
    finally:
        for knot in created:
            knot.stop()


@pytest.fixture
def owner(tmp_path: Path) -> OwnerKsk:
    return OwnerKsk.create(tmp_path)
