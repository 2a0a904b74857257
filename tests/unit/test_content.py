"""Content comparison across providers (the pure part, ``orchestrator.decide.content``)."""

from __future__ import annotations

from datetime import UTC, datetime

import dns.name
import dns.rrset
import dns.zone

from core.observation import ServerView, SignedRRset, ZoneView
from orchestrator.decide.content import Content, Soa, compare
from orchestrator.decide.timing import measure
from orchestrator.observe.content import from_zone

ZONE = "z."
SOA_P0 = Soa(3600, 300, "ns.p0.example. hostmaster.p0.example. 2026112501 3600 600 86400 300")


def test_identical_contents_have_no_differences() -> None:
    a = Content({("www.z.", "A"): frozenset({"192.0.2.1"})}, SOA_P0)
    assert compare({"p0": a, "p1": Content(dict(a.rrsets), SOA_P0)}, ZONE) == []


def test_a_differing_and_a_missing_rrset_are_named_as_breaches() -> None:
    a = Content({("www.z.", "A"): frozenset({"192.0.2.1"}), ("z.", "MX"): frozenset({"10 m.z."})},
                SOA_P0)
    b = Content({("www.z.", "A"): frozenset({"192.0.2.2"})}, SOA_P0)
    found = compare({"p0": a, "p1": b}, ZONE)
    assert [(d.severity, d.code, d.message) for d in found] == [
        ("breach", "CONTENT_DIFFERS", "www.z. A differs (p0: 192.0.2.1; p1: 192.0.2.2)"),
        ("breach", "CONTENT_DIFFERS", "z. MX differs (p0: 10 m.z.; p1: absent)"),
    ]


def test_a_managed_rrset_a_joining_signer_lacks_is_no_difference() -> None:
    # A dsync zone's apex KEY: the controller writes it at every signer, a joining one too.
    key = {("z.", "KEY"): frozenset({"512 3 13 AAAA"})}
    member = Content({**key, ("www.z.", "A"): frozenset({"192.0.2.1"})}, SOA_P0)
    joiner = Content({("www.z.", "A"): frozenset({"192.0.2.1"})}, SOA_P0)
    assert compare({"p0": member, "p2": joiner}, ZONE, managed=frozenset(key)) == []
    # without it, or for any other RRset, the difference stands
    assert [d.message for d in compare({"p0": member, "p2": joiner}, ZONE)] == [
        "z. KEY differs (p0: 512 3 13 AAAA; p2: absent)"]
    other = Content({("www.z.", "A"): frozenset({"192.0.2.9"})}, SOA_P0)
    assert [d.code for d in compare({"p0": member, "p2": other}, ZONE,
                                    managed=frozenset(key))] == ["CONTENT_DIFFERS"]


def test_soas_differing_in_every_field_but_the_negative_ttl_are_no_difference() -> None:
    # Each signer is its own primary: its own MNAME, RNAME, serial, refresh/retry/expire,
    # even its own SOA TTL and minimum, as long as min(TTL, minimum) is the same.
    p0 = Content({}, Soa(3600, 300, "ns.p0.example. hostmaster.p0.example. 1 3600 600 86400 300"))
    p2 = Content({}, Soa(300, 7200, "ns.p2.example. dns.p2.example. 2026120201 7200 900 "
                                    "1209600 7200"))
    assert p0.soa is not None and p2.soa is not None
    assert p0.soa.negative_ttl == p2.soa.negative_ttl == 300
    assert compare({"p0": p0, "p2": p2}, ZONE) == []


def test_a_different_negative_ttl_is_a_warning_naming_the_largest() -> None:
    p0 = Content({}, Soa(3600, 300))
    p1 = Content({}, Soa(3600, 900))
    found = compare({"p0": p0, "p1": p1}, ZONE)
    assert len(found) == 1
    assert found[0].severity == "warning" and found[0].code == "NEGATIVE_TTL_DIFFERS"
    assert "p0: 300 = min(TTL 3600, minimum 300)" in found[0].message
    assert "p1: 900 = min(TTL 3600, minimum 900)" in found[0].message
    assert "up to 900 s" in found[0].message


def test_a_provider_serving_no_soa_is_a_breach() -> None:
    found = compare({"p0": Content({}, SOA_P0), "p1": Content({}, None)}, ZONE)
    assert [(d.severity, d.code) for d in found] == [("breach", "CONTENT_DIFFERS")]
    assert "absent at p1" in found[0].message


def test_one_provider_alone_is_never_a_difference() -> None:
    assert compare({"p0": Content({}, None)}, ZONE) == []


def test_a_transferred_zone_keeps_the_soa_apart_and_drops_signing_material() -> None:
    text = """
@ 3600 IN SOA ns.p0.example. hostmaster.p0.example. 7 3600 600 86400 300
@ 3600 IN NS ns.p0.example.
@ 3600 IN DNSKEY 257 3 13 ( mdsswUyr3DPW132mOi8V9xESWE8jTo0dxCjjnopKl+GqJxpVXckHAeF+
    KkxLbxILfDLUT0rAK9iUzy1L53eKGQ== )
www 300 IN A 192.0.2.1
"""
    content = from_zone(dns.zone.from_text(text, origin="z.", relativize=True))
    assert content.soa == Soa(3600, 300,
                              "ns.p0.example. hostmaster.p0.example. 7 3600 600 86400 300")
    assert set(content.rrsets) == {("z.", "NS"), ("www.z.", "A")}


def _server(provider: str, ttl: int, soa: str) -> ServerView:
    rrset = dns.rrset.from_text(ZONE, ttl, "IN", "SOA", soa)
    return ServerView(provider=provider, server=f"{provider}:53", at=datetime.now(UTC),
                      soa=SignedRRset(rrset, None))


def test_hold_times_use_the_largest_negative_ttl_any_provider_serves() -> None:
    # TTLsig covers cached negative answers, min(SOA TTL, minimum): with SOAs differing
    # between providers the largest counts, whichever provider serves it.
    for first, second in ((300, 1800), (1800, 300)):
        view = ZoneView(zone=dns.name.from_text(ZONE), servers=(
            _server("p0", first, f"ns.p0.example. h.p0.example. 1 3600 600 86400 {first}"),
            _server("p2", second, f"ns.p2.example. h.p2.example. 9 7200 900 1209600 {second}"),
        ), parent=())
        assert measure(view).sig == 1800
