"""Test 3: the SKR's refresh block. After ONE sync with a 20 s signature validity and a
10 s re-sign window, and no daemon, every Knot switches by itself to the refresh block's
signatures at about +SWITCH s (a quarter window early); nothing lapses before +LAPSE s;
verify says RRSIG_EXPIRING from +EXPIRING_FROM s (still valid); at +LAPSE s, with nobody
re-signing, the last signatures do run out. Two Knots, the owner KSK in key files; also
test 1 (sync from scratch) for that combination.

The observation runs once (module fixture); the tests assert on what it recorded."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from rollover.probe import Failure, ResolverProbe

from model1.m1kit import (
    FAST,
    SigWatch,
    bug_unless,
    check_sync_from_scratch,
    config_copy,
    expect_served,
    model1_lab,
    needs_tools,
    ok,
    owner_sig,
    resolve_ad,
    sync,
    sync_processes,
    verify,
)
from multisigner_lab.model1 import Model1Lab

pytestmark = [pytest.mark.lab, needs_tools("ldns-verify-zone", "dnssec-verify")]

ZONE = "r1.test."
SCRATCH = "sync.test."
VALIDITY, REFRESH = 20, 10  # FAST
# owner_signing.block_times: the refresh block starts a quarter of the refresh window
# before the first block's signatures enter it; its signatures run out VALIDITY later, and
# a served signature is due for re-signing (RRSIG_EXPIRING) REFRESH before that.
SWITCH = int(VALIDITY - REFRESH - REFRESH / 4)
LAPSE = SWITCH + VALIDITY
EXPIRING_FROM = LAPSE - REFRESH


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Model1Lab]:
    with model1_lab(tmp_path_factory, "m1-refresh", providers=2, zones=[ZONE, SCRATCH],
                    store="file") as lab:
        yield lab


def test_sync_from_scratch_two_knots_file_store(lab: Model1Lab,
                                                tmp_path_factory: pytest.TempPathFactory
                                                ) -> None:
    for line in check_sync_from_scratch(lab, SCRATCH, tmp_path_factory.mktemp("zones")):
        print(line)


@dataclass
class Observed:
    start: int  # the first block's time (the owner's RRSIG inception + 1.5 h)
    watch: SigWatch
    # (seconds after start, exit code, breach codes): verify away from, and hammered
    # around, the refresh-block boundary at +10 s
    verdicts: list[tuple[float, int, set[str]]] = field(default_factory=list)
    edge: list[tuple[float, int, set[str]]] = field(default_factory=list)
    unbound: tuple[list[Failure], int] = ([], 0)
    refresh_block: int = 0  # the refresh block's time, from its RRSIG inception


@pytest.fixture(scope="module")
def observed(lab: Model1Lab) -> Observed:
    fast = config_copy(lab, "fast.toml", [ZONE], FAST)
    res = ok(sync(fast, ZONE))
    assert f"{ZONE}: synced" in res.out, res.out
    (proc,) = sync_processes(fast, ZONE)
    assert any("SKR (2 blocks" in c for c in proc["entries"][1]["evidence"]["changes"]), proc
    expect_served(lab, ZONE)
    resolve_ad(lab, ZONE)
    first = {k.name: owner_sig(lab, k, ZONE) for k in lab.providers}
    (start,) = {int(s.expiration) - VALIDITY for s in first.values()}
    assert {int(s.inception) for s in first.values()} == {start - 5400}

    probe = ResolverProbe(lab.resolver, ZONE, interval=0.2).start()
    try:
        with SigWatch(lab, [ZONE], interval=0.1) as watch:
            out = Observed(start, watch)

            def switched() -> bool:
                return all(len(watch.generations(ZONE, k.name)) >= 2 for k in lab.providers)

            while time.time() < start + LAPSE + 2:
                offset = time.time() - start
                if SWITCH - 0.7 < offset < VALIDITY - 1 and not switched():
                    rc, report = verify(fast, ZONE)  # back to back around the boundary
                    out.edge.append((time.time() - start, rc,
                                     {b["code"] for b in report["breaches"]}))
                elif (2 < offset < EXPIRING_FROM - 1.5
                      or EXPIRING_FROM + 1.5 < offset < LAPSE - 1) and (
                        not out.verdicts or time.time() - start - out.verdicts[-1][0] > 3):
                    rc, report = verify(fast, ZONE)
                    out.verdicts.append((time.time() - start, rc,
                                         {b["code"] for b in report["breaches"]}))
                time.sleep(0.05)
    finally:
        out.unbound = probe.stop()
    refresh_blocks = {int(s.inception) + 5400 for s in watch.snapshot()
                      if s.expiration == start + LAPSE}
    (out.refresh_block,) = refresh_blocks
    return out


def test_refresh_block_takes_over_without_the_controller(lab: Model1Lab,
                                                        observed: Observed) -> None:
    start, watch = observed.start, observed.watch
    lapse = start + LAPSE  # the refresh block's expiration
    samples = watch.snapshot()
    assert not watch.errors, watch.errors[:10]
    lines = []
    for k in lab.providers:
        mine = [s for s in samples if s.provider == k.name]
        gens = watch.generations(ZONE, k.name)
        # the first block (expiring at start+VALIDITY) until about +SWITCH, then the refresh
        assert [e for _, e in gens] == [start + VALIDITY, lapse], gens
        switched = gens[1][0] - start
        assert SWITCH - 0.5 <= switched <= SWITCH + 3, switched
        # nothing lapses before the refresh block's signatures run out ...
        valid = [s for s in mine if s.at < lapse - 0.3]
        assert valid and all(s.problem is None for s in valid), [
            s for s in valid if s.problem][:5]
        # ... and then they do: nobody re-signed
        late = [s for s in mine if s.at > lapse + 0.3]
        assert late and all(s.problem and "not valid now" in s.problem for s in late), late[:3]
        least = min(s.remaining for s in valid)
        lines.append(f"{k.name}: switched to the refresh block at +{switched:.1f} s; valid "
                     f"until +{LAPSE} s (least remaining {least:.1f} s), then "
                     "lapsed as expected")
    assert observed.refresh_block == start + SWITCH
    # Unbound: AD throughout the valid period
    bad, answers = observed.unbound
    assert answers > 50 and not [f for f in bad if f.at < lapse - 1], bad[:5]
    # verify: OK while more than the re-sign window is left, RRSIG_EXPIRING after it
    early = [v for v in observed.verdicts if v[0] < EXPIRING_FROM - 1]
    due = [v for v in observed.verdicts if EXPIRING_FROM + 1 < v[0] < LAPSE - 1]
    assert early and all(rc == 0 for _, rc, _ in early), early
    assert due and all(rc == 1 and codes == {"RRSIG_EXPIRING"} for _, rc, codes in due), due
    print("\n".join(lines))

    fast = lab.directory / "fast.toml"
    res = ok(sync(fast, ZONE))  # after the lapse: a sync brings valid signatures back
    assert f"{ZONE}: synced" in res.out, res.out
    expect_served(lab, ZONE)
    assert verify(fast, ZONE)[0] == 0


def test_no_expiring_breach_at_the_refresh_block_boundary(lab: Model1Lab,
                                                          observed: Observed) -> None:
    watch, start = observed.watch, observed.start
    switches = {k.name: round(watch.generations(ZONE, k.name)[1][0] - start, 1)
                for k in lab.providers}
    assert observed.edge, "no verify ran around the boundary"
    false = [(round(t, 2), codes) for t, rc, codes in observed.edge if rc != 0]
    assert all(codes == {"RRSIG_EXPIRING"} for _, codes in false), false
    left = start + VALIDITY - observed.refresh_block  # the first block's validity left then
    bug_unless(left > REFRESH and not false,
               f"the refresh block starts at +{observed.refresh_block - start} s, when the "
               f"first block has {left} s left = the re-sign window ({REFRESH} s); Knots "
               f"switched at {switches} s; verify said RRSIG_EXPIRING at {false} (of "
               f"{len(observed.edge)} runs) although the refresh block was about to be served")
