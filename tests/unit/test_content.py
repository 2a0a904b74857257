"""Content comparison across providers (pure part)."""

from __future__ import annotations

from orchestrator.observe.content import Content, _normalise, differences


def test_identical_contents_have_no_differences() -> None:
    a: Content = {("www.z.", "A"): frozenset({"192.0.2.1"})}
    assert differences({"p0": a, "p1": dict(a)}) == []


def test_a_differing_and_a_missing_rrset_are_named() -> None:
    a: Content = {("www.z.", "A"): frozenset({"192.0.2.1"}), ("z.", "MX"): frozenset({"10 m.z."})}
    b: Content = {("www.z.", "A"): frozenset({"192.0.2.2"})}
    found = differences({"p0": a, "p1": b})
    assert found == ["www.z. A differs (p0: 192.0.2.1; p1: 192.0.2.2)",
                     "z. MX differs (p0: 10 m.z.; p1: absent)"]


def test_soa_serials_are_not_compared() -> None:
    one = _normalise("SOA", "ns.z. h.z. 2026112501 3600 600 86400 2")
    two = _normalise("SOA", "ns.z. h.z. 2026112507 3600 600 86400 2")
    assert one == two
    assert _normalise("SOA", "ns.z. h.z. 1 3600 600 86400 5") != one
