"""The RFC 7583 hold computation (orchestrator/decide/timing.py).

Every TTL term gets its own value (DNSKEY 3 s, signed data 7 s, DS 5 s, NS 11 s), and the
propagation delay and safety margin too (2 s, 13 s), so that a hold computed from the
wrong term, combined the wrong way or missing a margin gives a different number.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from signing import (
    NOW,
    ZONE,
    dnskey_rrset,
    ds_rrset,
    ds_texts,
    make_key,
    rrset_of,
    soa_rrset,
)

from core.config import PolicyConfig
from core.observation import (
    ApiZoneState,
    CachedRRset,
    ParentView,
    ServerView,
    SignedRRset,
    ZoneView,
)
from orchestrator.decide.timing import Ttls, deadline, hold_seconds, measure

KEY, SIG, DS, NS = 3, 7, 5, 11
TTLS = Ttls(key=KEY, sig=SIG, ds=DS, ns=NS)
DELAY, MARGIN = 2, 13
KSK, ZSK = make_key(ksk=True), make_key(ksk=False)


def server(name: str, *, key_ttl: int = KEY, soa_ttl: int = SIG, ns_ttl: int = NS,
           cds_ttl: int | None = None) -> ServerView:
    cds = None
    if cds_ttl is not None:
        cds = SignedRRset(rrset_of("CDS", ds_texts([KSK]), cds_ttl), None)
    return ServerView(
        provider=name, server=f"{name}:53", at=NOW,
        dnskey=SignedRRset(dnskey_rrset([KSK, ZSK], key_ttl), None),
        soa=SignedRRset(soa_rrset(ttl=soa_ttl), None),
        ns=SignedRRset(rrset_of("NS", ["ns1.example.test."], ns_ttl), None),
        cds=cds)


def parent(ds_ttl: int = DS, ns_ttl: int | None = None) -> ParentView:
    return ParentView(server="parent:53", at=NOW,
                      ds=SignedRRset(ds_rrset(ds_texts([KSK]), ds_ttl), None), ns_ttl=ns_ttl)


def cached(rrset_ttl: int, rdtype: str) -> CachedRRset:
    rrset = (dnskey_rrset([KSK], rrset_ttl) if rdtype == "DNSKEY"
             else ds_rrset(ds_texts([KSK]), rrset_ttl))
    return CachedRRset(source="p9", server="p9:53", rrset=rrset,
                       last_seen=NOW - timedelta(seconds=1),
                       expires=NOW + timedelta(seconds=rrset_ttl - 1))


def test_each_term_comes_from_its_own_rrset() -> None:
    view = ZoneView(ZONE, (server("p0"),), (parent(),))
    assert measure(view) == TTLS


def test_largest_ttl_over_every_server() -> None:
    view = ZoneView(ZONE, (server("p0"), server("p1", key_ttl=4, soa_ttl=8, ns_ttl=12)),
                    (parent(), parent(ds_ttl=6)))
    assert measure(view) == Ttls(key=4, sig=8, ds=6, ns=12)


def test_rrsets_still_in_caches_count_with_their_older_longer_ttl() -> None:
    view = ZoneView(ZONE, (server("p0"),), (parent(),),
                    cached_dnskeys=(cached(6, "DNSKEY"),), cached_ds=(cached(9, "DS"),))
    assert measure(view) == Ttls(key=6, sig=SIG, ds=9, ns=NS)


def test_shorter_cached_rrsets_do_not_lower_a_term() -> None:
    view = ZoneView(ZONE, (server("p0"),), (parent(),),
                    cached_dnskeys=(cached(1, "DNSKEY"),), cached_ds=(cached(1, "DS"),))
    assert measure(view) == TTLS


def test_signed_data_term_covers_cds_and_the_zones_largest_ttl() -> None:
    view = ZoneView(ZONE, (server("p0", cds_ttl=9),), (parent(),))
    assert measure(view).sig == 9
    api = ApiZoneState(provider="p0", own_keys=(), foreign_dnskeys=frozenset(),
                       cds=frozenset(), cdnskey=frozenset(), max_ttl=10)
    view = ZoneView(ZONE, (server("p0", cds_ttl=9),), (parent(),), api={"p0": api})
    assert measure(view).sig == 10


def test_signature_term_is_never_below_the_dnskey_ttl() -> None:
    """The DNSKEY RRset's own RRSIGs are signatures a resolver caches for TTLkey."""
    view = ZoneView(ZONE, (server("p0", key_ttl=9),), (parent(),))
    assert measure(view) == Ttls(key=9, sig=9, ds=DS, ns=NS)


def test_ns_term_includes_the_parents_delegation_ttl() -> None:
    view = ZoneView(ZONE, (server("p0"),), (parent(ns_ttl=15),))
    assert measure(view).ns == 15


def test_nothing_observed_is_zero() -> None:
    assert measure(ZoneView(ZONE, ())) == Ttls(key=0, sig=0, ds=0, ns=0)


@pytest.mark.parametrize(("terms", "combine", "seconds"), [
    (["TTLkey"], "sum", KEY),
    (["TTLsig"], "sum", SIG),
    (["TTLds"], "sum", DS),
    (["TTLns"], "sum", NS),
    (["TTLkey", "TTLds"], "sum", KEY + DS),
    (["TTLkey", "TTLds"], "max", DS),
    (["TTLsig", "TTLkey"], "max", SIG),
    (["TTLkey", "TTLsig", "TTLds", "TTLns"], "sum", KEY + SIG + DS + NS),
    (["TTLkey", "TTLsig", "TTLds", "TTLns"], "max", NS),
    ([], "sum", 0),
    ([], "max", 0),
])
def test_hold_seconds(terms: list[str], combine: str, seconds: int) -> None:
    assert hold_seconds(terms, combine, TTLS) == seconds


def test_unknown_term_is_refused() -> None:
    with pytest.raises(KeyError):
        hold_seconds(["TTLzsk"], "sum", TTLS)


def policy() -> PolicyConfig:
    return PolicyConfig(propagation_delay=timedelta(seconds=DELAY),
                        safety_margin=timedelta(seconds=MARGIN))


@pytest.mark.parametrize(("terms", "combine", "hold"), [
    (["TTLkey"], "sum", KEY),
    (["TTLsig"], "sum", SIG),
    (["TTLds"], "sum", DS),
    (["TTLns", "TTLds"], "sum", NS + DS),
    (["TTLns", "TTLds"], "max", NS),
])
def test_deadline_adds_propagation_delay_and_safety_margin(terms: list[str], combine: str,
                                                           hold: int) -> None:
    at = deadline(NOW, terms, combine, TTLS, policy())
    assert at == NOW + timedelta(seconds=hold + DELAY + MARGIN)


def test_no_terms_means_no_wait() -> None:
    assert deadline(NOW, [], "sum", TTLS, policy()) == NOW


def test_deadline_follows_measured_ttls() -> None:
    """End to end: from an observation with a long-lived cached DS RRset."""
    view = ZoneView(ZONE, (server("p0"),), (parent(),), cached_ds=(cached(9, "DS"),))
    at = deadline(NOW, ["TTLds"], "sum", measure(view), policy())
    assert at == NOW + timedelta(seconds=9 + DELAY + MARGIN)
