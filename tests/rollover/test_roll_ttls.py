"""Model 2 rollovers on a lab whose TTL terms all differ: DNSKEY TTL 3 s, signed data
7 s, DS 5 s. In a lab with one TTL for everything, a hold on the wrong term (TTLkey where
the runbook needs TTLsig, say) lasts exactly as long as the right one and passes; here
every hold must have exactly the length of its own term, the product must have measured
exactly the lab's TTLs, and the cache-modelling watcher must see no breach.

Fed a hold on the wrong term, these checks fail: tests/unit/test_watcher.py ("wrong
term") has the breach a ZSK withdrawn TTLkey instead of TTLsig after the switch causes
(and an old KSK withdrawn TTLkey instead of TTLds after the DS swap),
tests/unit/test_hold_terms.py has check_exact_holds rejecting such histories, also a
hold on a longer wrong term, which breaks nothing the watcher could see."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from multisigner_lab import Lab
from rollover.rollkit import (
    FAST,
    LAB,
    ask,
    check_exact_holds,
    endpoints,
    lab_ttls,
    roll_and_check,
    rrset_of,
    running_lab,
    sync_zones,
    write_config,
)
from rollover.watcher import Watcher

pytestmark = LAB

ZSK, KSK = "zskttl.test.", "kskttl.test."
DNSKEY_TTL, DATA_TTL, DS_TTL = 3, 7, 5


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with running_lab(tmp_path_factory, "ttls", providers=2, zones=[ZSK, KSK], ttl=DATA_TTL,
                     dnskey_ttl=DNSKEY_TTL, ds_ttl=DS_TTL) as running:
        # The sync to the steady state under the watcher too: from the lab's start only
        # p0's answers are valid (p1 serves keys no DS names yet), and they must stay so
        # in every combination a resolver may hold, whatever the TTLs.
        parent = [(running.parent.address, running.parent.dns_port)]
        watchers = [Watcher(z, {"p0": endpoints(running)["p0"]}, parent) for z in (ZSK, KSK)]
        for w in watchers:
            w.start()
            w.wait_rounds(2)
        try:
            sync_zones(running, [ZSK, KSK])
        finally:
            found = [(w.stop(), list(w.errors)) for w in watchers]
        for (breaches, rounds), errors in found:
            assert rounds >= 5 and not errors, errors[:20]
            assert not breaches, "\n".join(map(str, breaches[:20]))
        yield running


@pytest.fixture(scope="module")
def fast(lab: Lab) -> Path:
    return write_config(lab, "fast.toml", policy=FAST)


def test_the_lab_serves_three_distinct_ttls(lab: Lab) -> None:
    """What the holds are checked against: the TTLs really served (PowerDNS serves the
    DNSKEY RRset with the SOA minimum, whatever TTL it was stored with)."""
    assert lab_ttls(lab) == {"TTLkey": DNSKEY_TTL, "TTLsig": DATA_TTL, "TTLds": DS_TTL}
    for p in lab.providers:
        where = (p.address, p.dns_port)
        for rdtype, want in (("DNSKEY", DNSKEY_TTL), ("SOA", DATA_TTL), ("A", DATA_TTL)):
            rrset = rrset_of(ask(where, ZSK, rdtype), ZSK, rdtype)
            assert rrset is not None and rrset.ttl == want, (p.name, rdtype, rrset)
    parent = (lab.parent.address, lab.parent.dns_port)
    ds = rrset_of(ask(parent, ZSK, "DS"), ZSK, "DS")
    assert ds is not None and ds.ttl == DS_TTL, ds


def test_zsk_rollover_holds_each_its_own_term(lab: Lab, fast: Path) -> None:
    entries = roll_and_check(lab, fast, ZSK, "zsk", "p0")
    held = check_exact_holds(entries, "zsk", lab_ttls(lab))
    margin = _margin(entries)
    assert held == {"publish": DNSKEY_TTL + margin, "activate": DATA_TTL + margin,
                    "withdraw": 0.0}, held


def test_ksk_rollover_holds_each_its_own_term(lab: Lab, fast: Path) -> None:
    entries = roll_and_check(lab, fast, KSK, "ksk", "p1")
    held = check_exact_holds(entries, "ksk", lab_ttls(lab))
    margin = _margin(entries)
    assert held == {"publish": DNSKEY_TTL + margin, "swap-ds": DS_TTL + margin,
                    "withdraw": 0.0}, held


def _margin(entries: list[dict[str, object]]) -> float:
    """propagation_delay + safety_margin of the policy the process ran with."""
    ev = next(e["evidence"] for e in entries if str(e["to_state"]).endswith(":hold"))
    assert isinstance(ev, dict)
    return float(ev["propagation_delay_s"]) + float(ev["safety_margin_s"])
