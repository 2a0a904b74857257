"""A Model 1 ZSK rollover at Knot k0, driven step by step through KnotProvider:
pre-publish the new ZSK in the owner-signed combined DNSKEY RRset at every provider,
switch signing, withdraw the old ZSK.

After every step the RFC 8901 invariant is checked on what the servers serve: each
provider's signatures validate under every DNSKEY RRset a resolver may still hold (those
served in this step and, as the waits of a real rollover allow for, the previous one).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import dns.rrset
import pytest
from knotkit import (
    NEEDS_KNOT,
    ZONE_TEXT,
    OwnerKsk,
    keyset,
    now_block,
    provider,
    served,
    validates,
)

from core.errors import ProviderError, Refused
from core.keys import Key
from core.keyset import lacking_keys
from multisigner_lab.knot import KnotInstance
from providers.knot.adapter import KnotProvider

pytestmark = [pytest.mark.lab, NEEDS_KNOT]

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def push(providers: list[KnotProvider], owner: OwnerKsk, zsks: set[Key]) -> None:
    """What the controller does at every step: one owner-signed block with the whole
    current picture, checked, then imported at every provider."""
    blocks = now_block([owner], zsks)
    assert lacking_keys(keyset(blocks).blocks, zsks) == []
    for p in providers:
        run(p.serve_signed_keyset(ZONE_TEXT, keyset(blocks)))


def check_invariant(
    knots: tuple[KnotInstance, ...], cached: list[dns.rrset.RRset]
) -> list[dns.rrset.RRset]:
    """Every server's SOA and www A validate under every DNSKEY RRset in ``cached`` and
    every one served now; returns the ones served now."""
    now = [served(k, "DNSKEY").rrset for k in knots]
    for knot in knots:
        for data in (served(knot, "SOA"), served(knot, "A", f"www.{ZONE_TEXT}")):
            for dnskey in cached + now:
                assert validates(data, dnskey), (knot.name, sorted(dnskey.to_text().split("\n")))
    return now


def soa_signer(knot: KnotInstance) -> set[int]:
    return set(served(knot, "SOA").signer_tags)


def test_zsk_rollover_step_by_step(
    knots: tuple[KnotInstance, KnotInstance], owner: OwnerKsk
) -> None:
    k0, k1 = knots
    p0, p1 = provider(k0), provider(k1)
    providers = [p0, p1]
    (old,) = run(p0.read_zone(ZONE_TEXT)).own_keys
    (zsk1,) = run(p1.read_zone(ZONE_TEXT)).own_keys

    # 0. steady state: owner KSK + both ZSKs everywhere
    push(providers, owner, {old.key, zsk1.key})
    cached = check_invariant(knots, [])
    assert soa_signer(k0) == {old.key.key_tag}

    # 1. new ZSK at k0: published (in the KSR), not signing
    new = run(p0.create_key(ZONE_TEXT, "zsk", "ECDSAP256SHA256", active=False, published=True))
    assert (new.role, new.active, new.published) == ("zsk", False, True)
    state = {k.key_id: k for k in run(p0.read_zone(ZONE_TEXT)).own_keys}
    assert state[new.key_id].published and not state[new.key_id].active
    assert state[old.key_id].active
    ksr = run(p0.key_signing_request(ZONE_TEXT, algorithm="ECDSAP256SHA256"))
    assert set(ksr[0].keys) == {old.key, new.key}
    push(providers, owner, {old.key, new.key, zsk1.key})
    assert all(served(k, "DNSKEY").keys == {owner.key, old.key, new.key, zsk1.key} for k in knots)
    assert soa_signer(k0) == {old.key.key_tag}  # still the old one
    cached = check_invariant(knots, cached)

    # (wait Dprp + TTLkey: every cache holds the set with the new ZSK)

    # 2. switch signing at k0
    run(p0.set_key_state(ZONE_TEXT, new.key_id, active=True, published=True))
    run(p0.set_key_state(ZONE_TEXT, old.key_id, active=False, published=True))
    assert soa_signer(k0) == {new.key.key_tag}
    state = {k.key_id: k for k in run(p0.read_zone(ZONE_TEXT)).own_keys}
    assert state[new.key_id].active and not state[old.key_id].active
    assert state[old.key_id].published
    # idempotent: the same call again changes nothing (no timer, no re-sign)
    listing = k0.keymgr(ZONE_TEXT, "list")
    serial = served(k0, "SOA").rrset[0].serial  # type: ignore[attr-defined]
    run(p0.set_key_state(ZONE_TEXT, new.key_id, active=True, published=True))
    run(p0.set_key_state(ZONE_TEXT, old.key_id, active=False, published=True))
    assert k0.keymgr(ZONE_TEXT, "list") == listing
    assert served(k0, "SOA").rrset[0].serial == serial  # type: ignore[attr-defined]
    # an SKR without the now-signing ZSK is refused before Knot sees it
    with pytest.raises(Refused, match=str(new.key.key_tag)):
        run(p0.serve_signed_keyset(ZONE_TEXT, keyset(now_block([owner], {old.key, zsk1.key}))))
    cached = check_invariant(knots, cached)

    # (wait Dsgn + Dprp + TTLsig: no cache holds a signature by the old ZSK)

    # 3. withdraw the old ZSK everywhere, then delete it at k0
    run(p0.set_key_state(ZONE_TEXT, old.key_id, active=False, published=False))
    ksr = run(p0.key_signing_request(ZONE_TEXT))
    assert set(ksr[0].keys) == {new.key}
    push(providers, owner, {new.key, zsk1.key})
    assert all(served(k, "DNSKEY").keys == {owner.key, new.key, zsk1.key} for k in knots)
    run(p0.delete_key(ZONE_TEXT, old.key_id))
    run(p0.delete_key(ZONE_TEXT, old.key_id))  # already gone: nothing to do
    check_invariant(knots, cached)
    (only,) = run(p0.read_zone(ZONE_TEXT)).own_keys
    assert only.key == new.key and only.active and only.published
    assert soa_signer(k0) == {new.key.key_tag}
    assert soa_signer(k1) == {zsk1.key.key_tag}


def test_key_state_edges(knots: tuple[KnotInstance, KnotInstance]) -> None:
    k0, _ = knots
    p0 = provider(k0)
    with pytest.raises(ProviderError, match="unpublished"):
        run(p0.create_key(ZONE_TEXT, "zsk", "ECDSAP256SHA256", active=True, published=False))
    dormant = run(p0.create_key(ZONE_TEXT, "zsk", "ECDSAP256SHA256", active=False, published=False))
    state = {k.key_id: k for k in run(p0.read_zone(ZONE_TEXT)).own_keys}
    assert not state[dormant.key_id].published and not state[dormant.key_id].active
    # a dormant key is not in the KSR
    ksr = run(p0.key_signing_request(ZONE_TEXT))
    assert dormant.key not in ksr[0].keys
    with pytest.raises(ProviderError, match="no key with id"):
        run(p0.set_key_state(ZONE_TEXT, "0" * 40, active=False, published=True))
    with pytest.raises(ProviderError, match="unpublished"):
        run(p0.set_key_state(ZONE_TEXT, dormant.key_id, active=True, published=False))
    run(p0.set_key_state(ZONE_TEXT, dormant.key_id, active=False, published=True))
    state = {k.key_id: k for k in run(p0.read_zone(ZONE_TEXT)).own_keys}
    assert state[dormant.key_id].published and not state[dormant.key_id].active
    assert dormant.key in run(p0.key_signing_request(ZONE_TEXT))[0].keys
    run(p0.delete_key(ZONE_TEXT, dormant.key_id))
    assert dormant.key_id not in {k.key_id for k in run(p0.read_zone(ZONE_TEXT)).own_keys}


def test_state_walk_against_keymgr(knots: tuple[KnotInstance, KnotInstance]) -> None:
    """Every (active, published) transition passes keymgr's timer-order check, shows in
    read_zone, and a repeat changes nothing."""
    k0, _ = knots
    p0 = provider(k0)
    key = run(p0.create_key(ZONE_TEXT, "zsk", "ECDSAP256SHA256", active=False, published=False))
    walk = [
        (False, False),
        (False, True),
        (False, False),  # never signed: unpublished again
        (True, True),
        (False, True),  # retired, still published
        (False, False),  # removed
        (False, True),  # back (remove unset)
        (True, True),  # signing again
        (False, False),  # retired and removed at once
    ]
    for active, published in walk:
        run(p0.set_key_state(ZONE_TEXT, key.key_id, active=active, published=published))
        state = {k.key_id: k for k in run(p0.read_zone(ZONE_TEXT)).own_keys}[key.key_id]
        assert (state.active, state.published) == (active, published)
        listing = k0.keymgr(ZONE_TEXT, "list")
        run(p0.set_key_state(ZONE_TEXT, key.key_id, active=active, published=published))
        assert k0.keymgr(ZONE_TEXT, "list") == listing
