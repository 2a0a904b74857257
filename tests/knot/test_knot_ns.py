"""KnotProvider's apex NS and CSYNC RRsets (``Capability.MANAGE_NS``) against real Knot DNS
3.2 servers in offline-KSK mode (Model 1): changed in knotc zone transactions, re-signed
by Knot's own ZSK beside the owner-signed DNSKEY RRset of the SKR, kept across SKR
imports, ``zone-keys-load``, ``zone-reload`` and a restart. Everything served is checked
with dnspython straight from the servers.
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import dns.flags
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import pytest
from knotkit import (
    NEEDS_KNOT,
    TTL,
    VALIDITY,
    ZONE,
    ZONE_TEXT,
    OwnerKsk,
    combined_skr,
    keyset,
    provider,
    served,
    validates,
)

from core.errors import ProviderError
from core.keys import Key
from multisigner_lab import dnsq
from multisigner_lab.knot import KnotInstance
from orchestrator.decide.membership import CSYNC_RECORD
from providers.base import Capability
from providers.knot.adapter import KnotProvider

pytestmark = [pytest.mark.lab, NEEDS_KNOT]

T = TypeVar("T")
NS0, NS1, NS2 = "ns1.k0.test.", "ns1.k1.test.", "ns1.k2.test."


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def own_zsk(p: KnotProvider) -> Key:
    state = run(p.read_keys(ZONE_TEXT))
    (key,) = [k.key for k in state.own_keys if k.active]
    return key


def import_skr(
    knots: tuple[KnotInstance, ...], owner: OwnerKsk, validity: int = VALIDITY
) -> list[Key]:
    """A fresh combined signed key set (owner KSK + every Knot's ZSKs; RRSIGs valid
    ``validity`` seconds from each block) served by every Knot; their ZSKs, in order."""
    providers = [provider(k) for k in knots]
    ksrs = [run(p.key_signing_request(ZONE_TEXT)) for p in providers]
    signed = keyset(combined_skr(ksrs, [owner], validity=validity))
    for p in providers:
        run(p.serve_signed_keyset(ZONE_TEXT, signed))
    return [own_zsk(p) for p in providers]


def serial(knot: KnotInstance) -> int:
    soa = served(knot, "SOA").rrset
    return int(soa[0].serial)  # type: ignore[attr-defined]


def ns_served(knot: KnotInstance) -> set[str]:
    return {rd.target.to_text().lower() for rd in served(knot, "NS").rrset}  # type: ignore[attr-defined]


def assert_signed_by_zsk(knot: KnotInstance, rdtype: str, zsk: Key, owner: OwnerKsk) -> None:
    """``rdtype`` at the apex is signed by Knot's own ZSK (only), and validates with the
    owner-signed DNSKEY RRset Knot serves (itself signed by the owner KSK only)."""
    dnskey = served(knot, "DNSKEY")
    assert dnskey.signer_tags == {owner.tag}
    assert validates(dnskey, dnskey.rrset)
    data = served(knot, rdtype)
    assert data.signer_tags == {zsk.key_tag}, (knot.name, rdtype)
    assert validates(data, dnskey.rrset), (knot.name, rdtype)


def nodata(knot: KnotInstance, rdtype: str) -> bool:
    """A signed NOERROR/NODATA for the apex ``rdtype``: the NSEC bitmap lacks it."""
    resp = dnsq.query(knot.address, knot.port, ZONE_TEXT, rdtype)
    if resp.rcode() != dns.rcode.NOERROR or not resp.flags & dns.flags.AA or resp.answer:
        return False
    nsec = resp.get_rrset(resp.authority, ZONE, dns.rdataclass.IN, dns.rdatatype.NSEC)
    if nsec is None:
        return False
    types = {t for window, bits in nsec[0].windows for t in _types(window, bits)}
    return dns.rdatatype.from_text(rdtype) not in types and dns.rdatatype.NS in types


def _types(window: int, bits: bytes) -> list[int]:
    return [
        window * 256 + i * 8 + j
        for i, byte in enumerate(bits)
        for j in range(8)
        if byte & (0x80 >> j)
    ]


# ------------------------------------------------------------------------------ tests


def test_capability() -> None:
    assert Capability.MANAGE_NS in KnotProvider.capabilities
    assert KnotProvider.capabilities & Capability.SIGN_EXTERNAL_DNSKEY_SET


def test_ns_and_csync_signed_by_the_zsk_and_kept_across_skr_imports(
    knots: tuple[KnotInstance, KnotInstance], owner: OwnerKsk
) -> None:
    k0, k1 = knots
    zsk0, zsk1 = import_skr(knots, owner)
    p = provider(k0)

    # ---- before: the zone file's NS RRset, no CSYNC
    state = run(p.read_zone(ZONE_TEXT))
    assert state.ns == {NS0} and state.csync == frozenset()
    assert {k.key for k in state.own_keys} == {zsk0}  # the keys are still read too
    first = serial(k0)

    # ---- NS := two names: served, signed by k0's ZSK, validating under the owner's set
    run(p.set_apex_rrset(ZONE_TEXT, "NS", [NS1, NS0], TTL))
    assert ns_served(k0) == {NS0, NS1}
    assert served(k0, "NS").rrset.ttl == TTL
    assert_signed_by_zsk(k0, "NS", zsk0, owner)
    assert serial(k0) > first
    assert run(p.read_zone(ZONE_TEXT)).ns == {NS0, NS1}
    assert ns_served(k1) == {NS1}  # the other Knot is a zone of its own

    # ---- idempotent: the same RRset again runs no transaction (no serial bump)
    after_ns = serial(k0)
    run(p.set_apex_rrset(ZONE_TEXT, "NS", ["NS1.K1.TEST.", NS0, NS0], TTL))
    assert serial(k0) == after_ns

    # ---- CSYNC 0 1 NS: served, signed by the ZSK; read_zone reports both
    run(p.set_apex_rrset(ZONE_TEXT, "CSYNC", [CSYNC_RECORD], TTL))
    (csync,) = served(k0, "CSYNC").rrset
    assert csync.to_text() == CSYNC_RECORD == "0 1 NS"
    assert_signed_by_zsk(k0, "CSYNC", zsk0, owner)
    state = run(p.read_zone(ZONE_TEXT))
    assert state.ns == {NS0, NS1} and state.csync == {CSYNC_RECORD}
    run(p.set_apex_rrset(ZONE_TEXT, "CSYNC", [CSYNC_RECORD], TTL))  # again: no-op

    # ---- a new SKR (import-skr + zone-keys-load) keeps both, still signed by the ZSK
    expiration = {int(s.expiration) for s in served(k0, "DNSKEY").sigs}  # type: ignore[attr-defined]
    assert import_skr(knots, owner, validity=VALIDITY - 3600) == [zsk0, zsk1]
    # the new SKR's RRSIGs (an hour shorter) are served now
    now = {int(s.expiration) for s in served(k0, "DNSKEY").sigs}  # type: ignore[attr-defined]
    assert len(now) == 1 and now != expiration
    assert ns_served(k0) == {NS0, NS1}
    assert served(k0, "CSYNC").rrset[0].to_text() == CSYNC_RECORD
    assert_signed_by_zsk(k0, "NS", zsk0, owner)
    assert_signed_by_zsk(k0, "CSYNC", zsk0, owner)
    state = run(p.read_zone(ZONE_TEXT))
    assert state.ns == {NS0, NS1} and state.csync == {CSYNC_RECORD}

    # ---- in the zone file (zonefile-sync 0 flushes it) and through zone-reload too
    text = (k0.dir / "zones" / f"{ZONE_TEXT}zone").read_text()
    assert f"\tNS\t{NS1}" in text and "\tCSYNC\t0 1 NS" in text
    k0.knotc("-b", "zone-reload", ZONE_TEXT)
    k0.knotc("-b", "zone-keys-load", ZONE_TEXT)
    assert ns_served(k0) == {NS0, NS1}
    assert_signed_by_zsk(k0, "CSYNC", zsk0, owner)

    # ---- CSYNC removed: gone (signed NODATA), read_zone agrees; NS stays
    run(p.set_apex_rrset(ZONE_TEXT, "CSYNC", [], TTL))
    assert nodata(k0, "CSYNC")
    state = run(p.read_zone(ZONE_TEXT))
    assert state.csync == frozenset() and state.ns == {NS0, NS1}
    removed = serial(k0)
    run(p.set_apex_rrset(ZONE_TEXT, "CSYNC", [], TTL))  # removing what is gone: no-op
    assert serial(k0) == removed

    # ---- NS back to one name, with another TTL (a TTL change alone is a change too)
    run(p.set_apex_rrset(ZONE_TEXT, "NS", [NS0], TTL + 1))
    assert ns_served(k0) == {NS0} and served(k0, "NS").rrset.ttl == TTL + 1
    run(p.set_apex_rrset(ZONE_TEXT, "NS", [NS0], TTL))
    assert served(k0, "NS").rrset.ttl == TTL
    assert_signed_by_zsk(k0, "NS", zsk0, owner)

    # ---- and a restart of knotd: the zone comes back with them (zone file + KASP)
    run(p.set_apex_rrset(ZONE_TEXT, "NS", [NS0, NS2], TTL))
    run(p.set_apex_rrset(ZONE_TEXT, "CSYNC", [CSYNC_RECORD], TTL))
    k0.stop()
    k0.start()
    assert ns_served(k0) == {NS0, NS2}
    assert_signed_by_zsk(k0, "NS", zsk0, owner)
    assert_signed_by_zsk(k0, "CSYNC", zsk0, owner)


def test_zone_not_loaded_is_refused_and_read_empty(
    knots: tuple[KnotInstance, KnotInstance],
) -> None:
    """Before its first SKR an offline-KSK zone is not loaded: a zone transaction would
    start from an empty zone. read_zone reports no NS/CSYNC; set_apex_rrset refuses."""
    k0, _ = knots
    p = provider(k0)
    state = run(p.read_zone(ZONE_TEXT))
    assert state.ns == state.csync == frozenset() and len(state.own_keys) == 1
    with pytest.raises(ProviderError, match="not loaded"):
        run(p.set_apex_rrset(ZONE_TEXT, "NS", [NS0, NS1], TTL))
    assert not run(p.zone_loaded(ZONE_TEXT))
    resp = dnsq.query(k0.address, k0.port, ZONE_TEXT, "NS")
    assert resp.rcode() == dns.rcode.SERVFAIL
    k0.knotc("zone-begin", ZONE_TEXT)  # no transaction was left open
    k0.knotc("zone-abort", ZONE_TEXT)


def test_refusals_change_nothing(
    knots: tuple[KnotInstance, KnotInstance], owner: OwnerKsk
) -> None:
    k0, _ = knots
    import_skr(knots, owner)
    p = provider(k0)
    before = serial(k0)
    cases: list[tuple[str, list[str], int, str]] = [
        ("NS", [], TTL, "refusing to remove the apex NS"),
        ("DNSKEY", [owner.key.text], TTL, "signing owns it"),
        ("CDS", [], TTL, "signing owns it"),
        ("SOA", [], TTL, "signing owns it"),
        ("CSYNC", ["not a csync"], TTL, "does not parse"),
        ("NS", [NS0], -1, "invalid TTL"),
    ]
    for rrtype, contents, ttl, why in cases:
        with pytest.raises(ProviderError, match=why):
            run(p.set_apex_rrset(ZONE_TEXT, rrtype, contents, ttl))
    assert serial(k0) == before and ns_served(k0) == {NS0}


def test_open_transaction_of_someone_else_is_left_alone(
    knots: tuple[KnotInstance, KnotInstance], owner: OwnerKsk
) -> None:
    k0, _ = knots
    import_skr(knots, owner)
    p = provider(k0)
    k0.knotc("zone-begin", ZONE_TEXT)
    k0.knotc("zone-set", ZONE_TEXT, "operator", str(TTL), "TXT", '"mine"')
    try:
        with pytest.raises(ProviderError, match=r"another zone transaction is open") as err:
            run(p.set_apex_rrset(ZONE_TEXT, "NS", [NS0, NS1], TTL))
        assert f"knotc zone-diff {ZONE_TEXT}" in str(err.value)
        assert "operator" in str(err.value)  # names what the other transaction changes
        # the operator's transaction is still open, with their change in it
        assert "operator" in k0.knotc("zone-diff", ZONE_TEXT)
        # nor do key loads abort it -- or wedge knotd on it (``knotc -b zone-keys-load``
        # with a transaction open blocks knotd's control socket for good)
        with pytest.raises(ProviderError, match=r"another zone transaction is open"):
            import_skr(knots, owner)
        assert "operator" in k0.knotc("zone-diff", ZONE_TEXT)
    finally:
        k0.knotc("zone-abort", ZONE_TEXT)
    run(p.set_apex_rrset(ZONE_TEXT, "NS", [NS0, NS1], TTL))  # works once it is closed
    assert ns_served(k0) == {NS0, NS1}


@pytest.mark.parametrize("left", ["begun", "ns-half-set"])
def test_transaction_a_killed_run_left_is_aborted(
    knots: tuple[KnotInstance, KnotInstance], owner: OwnerKsk, left: str
) -> None:
    """A controller killed between ``zone-begin`` and ``zone-commit`` leaves Knot's
    transaction open (it is server-side). One whose diff is empty or touches only the apex
    NS/CSYNC -- all this adapter changes in one -- is aborted by the next NS change and by
    the next key load (which would otherwise wedge knotd), and the change goes through."""
    k0, _ = knots
    import_skr(knots, owner)
    p = provider(k0)

    def leave_one() -> None:
        k0.knotc("zone-begin", ZONE_TEXT)
        if left == "ns-half-set":
            k0.knotc("zone-unset", ZONE_TEXT, "@", "NS")
            k0.knotc("zone-set", ZONE_TEXT, "@", str(TTL), "NS", NS2)
        assert "transaction: open" in k0.knotc("zone-status", ZONE_TEXT)

    leave_one()
    run(p.set_apex_rrset(ZONE_TEXT, "NS", [NS0, NS1], TTL))
    assert ns_served(k0) == {NS0, NS1}
    assert "transaction" not in k0.knotc("zone-status", ZONE_TEXT)
    leave_one()
    zsks = import_skr(knots, owner)  # blocking zone-keys-load: must not wedge knotd
    assert "transaction" not in k0.knotc("zone-status", ZONE_TEXT)
    assert ns_served(k0) == {NS0, NS1}  # the half-done change was dropped, not committed
    assert_signed_by_zsk(k0, "NS", zsks[0], owner)


def test_failure_inside_the_transaction_aborts_it(
    knots: tuple[KnotInstance, KnotInstance], owner: OwnerKsk, tmp_path: Path
) -> None:
    """A ``zone-set`` failing after the ``zone-unset``: ProviderError naming that command,
    the transaction aborted (the NS RRset as before, no transaction left open)."""
    k0, _ = knots
    import_skr(knots, owner)
    wrapper = tmp_path / "failing-zone-set"
    wrapper.write_text(
        "#!/bin/sh\n"
        'case "$*" in *zone-set*ns1.fail.test.*) echo "error: (injected)"; exit 1;; esac\n'
        'exec "$@"\n'
    )
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    assert os.access(wrapper, os.X_OK)
    p = provider(k0, command_prefix=[str(wrapper)])
    before = serial(k0)
    with pytest.raises(ProviderError, match="injected") as err:
        run(p.set_apex_rrset(ZONE_TEXT, "NS", [NS0, "ns1.fail.test."], TTL))
    assert "knotc zone-set example.test. @ 2 NS ns1.fail.test." in str(err.value)
    assert ns_served(k0) == {NS0} and serial(k0) == before
    k0.knotc("zone-begin", ZONE_TEXT)  # aborted: a new transaction can begin
    k0.knotc("zone-abort", ZONE_TEXT)
