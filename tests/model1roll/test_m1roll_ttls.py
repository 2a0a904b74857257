"""Model 1 rollovers (a provider's ZSK, the owner's KSK) on a lab whose TTL terms all
differ: DNSKEY TTL 3 s (Knot's ``dnskey-ttl``, which its KSR asks the owner's keyset
for), signed data 7 s, DS 5 s. With one TTL for everything a hold on the wrong term
passes; here each hold must last exactly its own term, the product must have measured
exactly the lab's TTLs, and the cache-modelling watcher must see no breach (the negative
controls: tests/unit/test_watcher.py, "wrong term", and tests/unit/test_hold_terms.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from rollover.rollkit import ask, check_exact_holds, lab_ttls, rrset_of

from model1roll.m1roll import (
    LAB,
    LONG,
    config_copy,
    endpoint,
    model1_lab,
    roll_ksk,
    roll_zsk,
    sync_all,
)
from multisigner_lab.model1 import Model1Lab

pytestmark = LAB

ZSK, KSK = "zskttl.test.", "kskttl.test."
DNSKEY_TTL, DATA_TTL, DS_TTL = 3, 7, 5


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Model1Lab]:
    with model1_lab(tmp_path_factory, "m1ttls", providers=2, zones=[ZSK, KSK], ttl=DATA_TTL,
                    dnskey_ttl=DNSKEY_TTL, ds_ttl=DS_TTL, store="file") as running:
        yield running


@pytest.fixture(scope="module")
def config(lab: Model1Lab) -> Path:
    path = config_copy(lab, "roll.toml", policy=LONG)
    # Not under the watcher: until the owner's first SKR is imported the Knots answer
    # SERVFAIL for the zones, so no provider is valid yet and the invariant has nothing
    # to protect; the rollovers below are watched from their first instant.
    sync_all(path)
    return path


def test_the_lab_serves_three_distinct_ttls(lab: Model1Lab, config: Path) -> None:
    """Once the owner's keyset is in, Knot serves the DNSKEY RRset with the KSR's TTL and
    the data with the zone's."""
    assert lab_ttls(lab) == {"TTLkey": DNSKEY_TTL, "TTLsig": DATA_TTL, "TTLds": DS_TTL}
    for k in lab.providers:
        for rdtype, want in (("DNSKEY", DNSKEY_TTL), ("SOA", DATA_TTL), ("A", DATA_TTL)):
            rrset = rrset_of(ask(endpoint(k), ZSK, rdtype), ZSK, rdtype)
            assert rrset is not None and rrset.ttl == want, (k.name, rdtype, rrset)
    parent = (lab.parent.address, lab.parent.dns_port)
    ds = rrset_of(ask(parent, ZSK, "DS"), ZSK, "DS")
    assert ds is not None and ds.ttl == DS_TTL, ds


def test_zsk_rollover_holds_each_its_own_term(lab: Model1Lab, config: Path) -> None:
    rolled = roll_zsk(lab, config, ZSK, "k1")
    held = check_exact_holds(rolled.entries, "zsk", lab_ttls(lab))
    margin = _margin(rolled.entries)
    assert held == {"publish": DNSKEY_TTL + margin, "activate": DATA_TTL + margin,
                    "withdraw": 0.0}, held


def test_ksk_rollover_holds_each_its_own_term(lab: Model1Lab, config: Path) -> None:
    rolled = roll_ksk(lab, config, KSK)
    held = check_exact_holds(rolled.entries, "ksk", lab_ttls(lab))
    margin = _margin(rolled.entries)
    assert held == {"publish": DNSKEY_TTL + margin, "swap-ds": DS_TTL + margin,
                    "withdraw": 0.0}, held


def _margin(entries: list[dict[str, object]]) -> float:
    """propagation_delay + safety_margin of the policy the process ran with."""
    ev = next(e["evidence"] for e in entries if str(e["to_state"]).endswith(":hold"))
    assert isinstance(ev, dict)
    return float(ev["propagation_delay_s"]) + float(ev["safety_margin_s"])
