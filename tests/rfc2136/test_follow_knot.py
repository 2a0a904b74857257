"""The daemon follows a real Knot DNS 3.2 rolling its own ZSK (``zsk-lifetime``) beside two
PowerDNS providers: each successor Knot pre-publishes is served by every other provider
at least a DNSKEY TTL before Knot signs with it, each predecessor is withdrawn everywhere
only after Knot dropped it, every import/withdrawal is a ``follow`` process in the
history; the cache-modelling watcher finds no combination a resolver could hold that
fails, and validating Unbounds (one through the lab's delegation, one asking PowerDNS and
Knot alike) answer with AD throughout."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from followkit import ZONE, Stopwatch, figures, follow_lab, sync, window
from knot2 import KnotSigner
from prereq import needs
from rollover.probe import ResolverProbe
from rollover.rollkit import Observed, daemon, entries_of, processes

from multisigner_lab import Lab, proc, zones
from multisigner_lab.unbound import Unbound

pytestmark = [
    pytest.mark.lab,
    needs("pdns_server", "unbound", "knotd", "knotc", "keymgr",
          what="Debian packages pdns-server, unbound, knot"),
]

ZSK_LIFETIME = 25  # seconds between Knot's ZSK rolls
ROLLS = 3


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory,
          ) -> Iterator[tuple[Lab, KnotSigner, Path]]:
    with follow_lab(tmp_path_factory.mktemp("follow"), ZSK_LIFETIME) as running:
        yield running


@pytest.fixture(scope="module")
def mixed_resolver(setup: tuple[Lab, KnotSigner, Path],
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[Unbound]:
    """A validating Unbound that asks p0 and Knot alike for the zone: it may cache p0's
    DNSKEY RRset and validate Knot's signatures with it."""
    lab, knot, _ = setup
    stubs = {zones.PARENT_ZONE: [(lab.parent.address, lab.parent.dns_port)],
             ZONE: [(lab.providers[0].address, lab.providers[0].dns_port),
                    (knot.address, knot.port)]}
    resolver = Unbound.start(tmp_path_factory.mktemp("unbound-mixed"), lab.trust_anchors,
                             stubs)
    try:
        resolver.wait_validating(zones.PARENT_ZONE)
        yield resolver
    finally:
        proc.stop(resolver.proc)


def test_daemon_follows_knot_zsk_rolls(setup: tuple[Lab, KnotSigner, Path],
                                       mixed_resolver: Unbound,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    lab, knot, config = setup
    monkeypatch.setenv("U0_TSIG", knot.secret)
    sync(config)
    others = {p.name: (p.address, p.dns_port) for p in lab.providers}
    watch = Stopwatch((knot.address, knot.port), others).start()
    mixed = ResolverProbe((mixed_resolver.address, mixed_resolver.port), ZONE).start()
    log = lab.directory / "follow-daemon.log"
    try:
        with Observed(lab, ZONE, extra={"u0": [(knot.address, knot.port)]}) as obs, \
                daemon(config, log, "--poll-interval", "60s"):
            deadline = time.monotonic() + ROLLS * ZSK_LIFETIME + 90
            while len(watch.done()) < ROLLS or sum(
                    1 for g in watch.retired.values() if g[1] is not None) < ROLLS - 1:
                assert time.monotonic() < deadline, (watch.rolls, watch.retired,
                                                     log.read_text()[-3000:])
                time.sleep(0.5)
    finally:
        watch.stop()
        failures, _ = mixed.stop()
    obs.assert_clean()
    assert mixed.answers > 0 and not failures, failures[:10]
    print(log.read_text()[-2000:])
    print(figures(watch.done(), watch.retired, window(lab)))
    for roll in watch.done():
        # Imported everywhere a DNSKEY TTL (and more) before Knot signed with it.
        assert roll.lead is not None and roll.lead >= lab.ttl, roll
    for key, (at_knot, everywhere) in watch.retired.items():
        if everywhere is not None:  # withdrawn only after Knot dropped it
            assert at_knot is not None and everywhere >= at_knot, key
    follows = [p for p in processes(config, ZONE) if p["kind"] == "follow"]
    assert len(follows) >= ROLLS, follows
    assert all(p["status"] in ("done", "running") for p in follows), follows
    assert sum(p["status"] == "done" for p in follows) >= ROLLS, follows
    first = entries_of(config, ZONE, follows[0]["id"])
    assert first[0]["reason"].startswith("follow: "), first[0]
    assert all(e["actor"].startswith("scheduler:") for e in first), first
