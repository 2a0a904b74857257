"""``run --metrics-listen`` on a Model 1 lab (two Knots, the owner KSK in the file store,
20 s signature validity): the signature expiry horizon is exported and moves back up when
the daemon re-signs (or the next pre-signed block is served), and the zone's verdict is
``in_sync``."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from model1.m1kit import FAST, config_copy, daemon, model1_lab, needs_tools, ok, stop_daemon, sync
from rollover.fakes import closed_port

from metrics.scrapekit import fetch, reachable, scrape, total, until
from multisigner_lab.model1 import Model1Lab

pytestmark = [pytest.mark.lab, needs_tools()]

ZONE = "m1metrics.test."
VALIDITY = 20  # FAST's signature_validity, seconds


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Model1Lab]:
    with model1_lab(tmp_path_factory, "m1-metrics", providers=2, zones=[ZONE],
                    store="file") as lab:
        yield lab


def test_signature_expiry_horizon_moves_with_resigning(lab: Model1Lab, tmp_path: Path) -> None:
    config = config_copy(lab, "fast.toml", [ZONE], FAST)
    ok(sync(config, ZONE))
    port = closed_port()
    base = f"http://127.0.0.1:{port}"
    horizons: list[tuple[float, float]] = []  # (monotonic time, seconds to expiry)
    with daemon(config, tmp_path / "daemon.log", "--poll-interval", "1s",
                "--metrics-listen", f"127.0.0.1:{port}") as child:
        until("the endpoint answers", lambda: reachable(base), 30)
        until("/readyz is 200", lambda: fetch(base, "/readyz")[0] == 200, 30)

        def renewed() -> bool:
            samples = scrape(base)
            if total(samples, "multisigner_zone_verdict", zone=ZONE, verdict="in_sync") == 1:
                horizon = total(samples, "multisigner_signature_expiry_seconds", zone=ZONE)
                if horizon:
                    horizons.append((time.monotonic(), horizon))
            # renewed: the horizon went up by more than the scrape interval's drift
            return any(b[1] > a[1] + 2 for a, b in itertools.pairwise(horizons))

        until("the horizon moves back up (re-signed)", renewed, 3 * VALIDITY)
        assert stop_daemon(child) == 0
    assert horizons and all(0 < h <= VALIDITY + 1 for _, h in horizons), horizons
