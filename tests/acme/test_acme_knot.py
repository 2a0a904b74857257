"""KnotProvider's ``WRITE_RRSETS`` (read_rrset/set_rrset) against a real Knot DNS 3.2 in
offline-KSK mode: a TXT RRset at a name below the apex, changed in a knotc zone
transaction, served signed by Knot's ZSK (validating under the owner-signed DNSKEY RRset
it serves); names outside the zone and types Knot's signing owns are refused."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import dns.rcode
import pytest
from acmekit import digest
from knot.knotkit import (
    NEEDS_KNOT,
    ZONE_TEXT,
    OwnerKsk,
    combined_skr,
    keyset,
    provider,
    served,
    validates,
)

from core.errors import ProviderError
from multisigner_lab import dnsq
from multisigner_lab.knot import KnotInstance
from providers.base import Capability

pytestmark = [pytest.mark.lab, NEEDS_KNOT]
T = TypeVar("T")
NAME = f"_acme-challenge.www.{ZONE_TEXT}"


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@pytest.fixture
def knot(tmp_path: Path) -> Iterator[KnotInstance]:
    instance = KnotInstance.create("k0", tmp_path / "k0")
    try:
        instance.start()
        yield instance
    finally:
        instance.stop()


def test_knot_txt_rrset_read_and_replace(knot: KnotInstance, tmp_path: Path) -> None:
    p = provider(knot)
    assert p.can(Capability.WRITE_RRSETS)
    ksr = run(p.key_signing_request(ZONE_TEXT))
    with pytest.raises(ProviderError, match="not loaded"):  # no SKR yet
        run(p.set_rrset(ZONE_TEXT, NAME, "TXT", ['"x"'], 60))
    run(p.serve_signed_keyset(ZONE_TEXT, keyset(combined_skr([ksr], [OwnerKsk.create(
        tmp_path)]))))
    assert run(p.read_rrset(ZONE_TEXT, NAME, "TXT")) is None
    a, b = digest("a"), digest("b")
    run(p.set_rrset(ZONE_TEXT, NAME, "TXT", [f'"{a}"', f'"{b}"'], 60))
    got = run(p.read_rrset(ZONE_TEXT, NAME, "TXT"))
    assert got is not None and got.ttl == 60
    assert got.records == tuple(sorted([f'"{a}"', f'"{b}"']))
    txt = served(knot, "TXT", NAME)
    assert {b"".join(rd.strings).decode() for rd in txt.rrset} == {a, b}  # type: ignore[attr-defined]
    assert validates(txt, served(knot, "DNSKEY").rrset)
    run(p.set_rrset(ZONE_TEXT, NAME, "TXT", [f'"{b}"'], 60))
    assert {b"".join(rd.strings).decode()  # type: ignore[attr-defined]
            for rd in served(knot, "TXT", NAME).rrset} == {b}
    serial = served(knot, "SOA").rrset[0].serial  # type: ignore[attr-defined]
    run(p.set_rrset(ZONE_TEXT, NAME, "TXT", [f'"{b}"'], 60))  # unchanged: nothing run
    assert served(knot, "SOA").rrset[0].serial == serial
    run(p.set_rrset(ZONE_TEXT, NAME, "TXT", [], 60))
    assert run(p.read_rrset(ZONE_TEXT, NAME, "TXT")) is None
    resp = dnsq.query(knot.address, knot.port, NAME, "TXT")
    assert resp.rcode() == dns.rcode.NXDOMAIN and not resp.answer


def test_knot_refuses_outside_names_and_owned_types(knot: KnotInstance) -> None:
    p = provider(knot)
    with pytest.raises(ProviderError, match="outside zone"):
        run(p.set_rrset(ZONE_TEXT, "_acme-challenge.other.test.", "TXT", ['"x"'], 60))
    with pytest.raises(ProviderError, match="outside zone"):
        run(p.read_rrset(ZONE_TEXT, "example.org.", "TXT"))
    for rtype in ("DNSKEY", "NS", "RRSIG", "CNAME"):
        with pytest.raises(ProviderError, match=f"refusing to set {rtype}"):
            run(p.set_rrset(ZONE_TEXT, NAME, rtype, ["x"], 60))


def test_knot_leftover_transactions(knot: KnotInstance, tmp_path: Path) -> None:
    """A transaction a killed ACME write left open is aborted and the write goes on; one
    changing anything else is someone else's: refused, left open, nothing changed."""
    p = provider(knot)
    ksr = run(p.key_signing_request(ZONE_TEXT))
    run(p.serve_signed_keyset(ZONE_TEXT, keyset(combined_skr([ksr], [OwnerKsk.create(
        tmp_path)]))))
    knot.knotc("zone-begin", ZONE_TEXT)
    knot.knotc("zone-set", ZONE_TEXT, NAME, "60", "TXT", '"leftover"')
    value = digest("after a crash")
    run(p.set_rrset(ZONE_TEXT, NAME, "TXT", [f'"{value}"'], 60))
    assert {b"".join(rd.strings).decode()  # type: ignore[attr-defined]
            for rd in served(knot, "TXT", NAME).rrset} == {value}
    knot.knotc("zone-begin", ZONE_TEXT)
    knot.knotc("zone-set", ZONE_TEXT, f"www.{ZONE_TEXT}", "60", "A", "192.0.2.1")
    with pytest.raises(ProviderError, match="another zone transaction is open"):
        run(p.set_rrset(ZONE_TEXT, NAME, "TXT", [], 60))
    assert "192.0.2.1" in knot.knotc("zone-diff", ZONE_TEXT)  # left alone
    knot.knotc("zone-abort", ZONE_TEXT)
    assert run(p.read_rrset(ZONE_TEXT, NAME, "TXT")) is not None
