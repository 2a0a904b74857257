"""Negative and positive controls of the invariant watcher (tests/rollover/watcher.py), fed
recorded answers instead of servers: a simulated zone serves, phase after phase, a DS
RRset at the parent and a signed DNSKEY and SOA RRset at each provider; the watcher polls
it every ``POLL`` simulated seconds and checks every combination a resolver may hold.

The TTLs differ per RRset type (DNSKEY 3 s, data 7 s, DS 5 s) so that a wait computed from
the wrong TTL shows. The rollovers' waits come from the product's RFC 7583 hold
computation (``orchestrator.decide.timing.hold_seconds``) with propagation delay and
safety margin zero: the simulated servers serve a change at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import dns.rrset
import pytest
from rollover.cachemodel import stamp
from rollover.watcher import Breach, Watcher
from signing import (
    EXPIRED,
    NOW,
    ZONE_TEXT,
    SigningKey,
    dnskey_rrset,
    ds_rrset,
    ds_texts,
    make_key,
    sign,
    soa_rrset,
)

from orchestrator.decide.timing import Ttls, hold_seconds

TTL_KEY, TTL_DATA, TTL_DS = 3, 7, 5
TTLS = Ttls(key=TTL_KEY, sig=TTL_DATA, ds=TTL_DS)
POLL = 0.25  # exact in binary: tick times add up without rounding
T0 = NOW.timestamp()  # the signatures of signing.py are valid around NOW
PARENT = ("parent", "192.0.2.100:53")
START = 10.0  # the first change; before it the steady state is served (and cached)


def wait(term: str) -> float:
    return float(hold_seconds([term], "sum", TTLS))


@dataclass(frozen=True)
class Phase:
    """What one provider serves from ``since`` (seconds after T0) on."""

    since: float
    ds: Sequence[SigningKey]
    dnskeys: Sequence[SigningKey]
    key_signers: Sequence[SigningKey]
    data_signers: Sequence[SigningKey]
    provider: str = "p0"
    window: tuple[object, object] | None = None  # RRSIG validity of the DNSKEY RRset


@dataclass(frozen=True)
class _Answers:
    ds: dns.rrset.RRset
    keys: dns.rrset.RRset
    key_sigs: dns.rrset.RRset
    soa: dns.rrset.RRset
    soa_sigs: dns.rrset.RRset


def _answers(phase: Phase) -> _Answers:
    keys = dnskey_rrset(phase.dnskeys, TTL_KEY)
    soa = soa_rrset(ttl=TTL_DATA)
    key_sigs = (sign(keys, phase.key_signers) if phase.window is None
                else sign(keys, phase.key_signers, phase.window))  # type: ignore[arg-type]
    return _Answers(ds_rrset(ds_texts(phase.ds), TTL_DS), keys, key_sigs, soa,
                    sign(soa, phase.data_signers))


def simulate(phases: Sequence[Phase], until: float) -> tuple[Watcher, list[Breach]]:
    """Poll the phases every POLL seconds from 0 to ``until``; the watcher and its breaches.
    Phases of different providers may overlap; the parent serves the latest phase's DS."""
    w = Watcher(ZONE_TEXT, {}, [])
    answers = [_answers(p) for p in phases]
    for tick in range(int(until / POLL) + 1):
        t = tick * POLL
        now = [(p, a) for p, a in zip(phases, answers, strict=True) if p.since <= t]
        latest = {p.provider: (p, a) for p, a in now}
        w.observe(PARENT, T0 + t, now[-1][1].ds, None, tick)
        for provider, (_, a) in sorted(latest.items()):
            source = (provider, f"192.0.2.{1 + int(provider[1:])}:53")
            w.observe(source, T0 + t, a.keys, a.key_sigs, tick)
            w.observe(source, T0 + t, a.soa, a.soa_sigs, tick)
        w.check(T0 + t, tick)
    return w, w.breaches


def offset(b: Breach) -> float:
    return b.at - T0


# --------------------------------------------------------------------------- ZSK rollover


def zsk_rollover(ipub: float, iret: float) -> tuple[list[Phase], float, float, float]:
    """Pre-publish ZSK rollover (RFC 7583 sec. 3.2): publish Z2, wait ``ipub``, sign with
    Z2, wait ``iret``, withdraw Z1. The phases and the three change times."""
    k, z1, z2 = make_key(ksk=True), make_key(ksk=False), make_key(ksk=False)
    publish, switch = START, START + ipub
    withdraw = switch + iret
    phases = [
        Phase(0, [k], [k, z1], [k], [z1]),
        Phase(publish, [k], [k, z1, z2], [k], [z1]),
        Phase(switch, [k], [k, z1, z2], [k], [z2]),
        Phase(withdraw, [k], [k, z2], [k], [z2]),
    ]
    return phases, publish, switch, withdraw


def test_correct_zsk_rollover_is_clean() -> None:
    phases, *_, withdraw = zsk_rollover(wait("TTLkey"), wait("TTLsig"))
    w, breaches = simulate(phases, withdraw + 10)
    assert breaches == [], "\n".join(map(str, breaches))
    assert len(w.dnskey_sets) == 3 and len(w.data_sets) == 2  # it did see every phase


def test_zsk_used_one_second_before_every_cache_has_it() -> None:
    phases, publish, switch, _ = zsk_rollover(wait("TTLkey") - 1, wait("TTLsig"))
    _, breaches = simulate(phases, switch + 20)
    assert breaches
    assert {b.kind for b in breaches} == {"signature"}
    # data signed by the new ZSK against the DNSKEY RRset served before it was published,
    # last seen one poll before ``publish``: from ``switch`` until that RRset expires
    assert all(switch <= offset(b) < publish - POLL + TTL_KEY for b in breaches)
    z2 = phases[2].data_signers[0]
    assert all(b.tags == (z2.tag,) and z2.tag not in b.cached_tags for b in breaches)


def test_zsk_withdrawn_one_second_before_its_signatures_expire_from_caches() -> None:
    phases, _, switch, withdraw = zsk_rollover(wait("TTLkey"), wait("TTLsig") - 1)
    _, breaches = simulate(phases, withdraw + 20)
    assert breaches
    assert {b.kind for b in breaches} == {"signature"}
    assert all(withdraw <= offset(b) < switch - POLL + TTL_DATA for b in breaches)


def test_zsk_withdrawn_while_data_signed_only_by_it_is_cached() -> None:
    """(a) Re-sign with Z2 and withdraw Z1 at the same instant: today's SOA (by Z2)
    validates under every DNSKEY RRset served, and every DNSKEY RRset chains to the DS;
    only an SOA signed by Z1, still in caches, fails under today's DNSKEY RRset."""
    k, z1, z2 = make_key(ksk=True), make_key(ksk=False), make_key(ksk=False)
    phases = [Phase(0, [k], [k, z1, z2], [k], [z1]),
              Phase(START, [k], [k, z2], [k], [z2])]
    _, breaches = simulate(phases, START + 15)
    assert breaches
    assert {b.kind for b in breaches} == {"signature"}
    assert all(START <= offset(b) < START - POLL + TTL_DATA for b in breaches)
    first = breaches[0]
    assert offset(first) == START
    assert first.tags == (z1.tag,) and first.cached_tags == tuple(sorted((k.tag, z2.tag)))
    assert first.provider == "p0" and "served by p0 192.0.2.1:53" in first.cached_from
    # the failing SOA is one no server serves any more: only the cache model sees it
    assert f"SOA RRset signed by [{z1.tag}]" in first.combination
    data = first.combination.split("| data:")[1]
    assert f"{stamp(T0)}..{stamp(T0 + START - POLL)};" in data, data


# --------------------------------------------------------------------------- KSK rollover


def ksk_rollover(ipub: float, iret: float) -> tuple[list[Phase], float, float, float]:
    """Double-signature KSK rollover (RFC 7583 sec. 3.3.2): publish K2 and sign the
    DNSKEY RRset with both KSKs, wait ``ipub``, swap the DS to K2, wait ``iret``,
    withdraw K1. The phases and the three change times."""
    k1, k2, z = make_key(ksk=True), make_key(ksk=True), make_key(ksk=False)
    publish, swap = START, START + ipub
    withdraw = swap + iret
    phases = [
        Phase(0, [k1], [k1, z], [k1], [z]),
        Phase(publish, [k1], [k1, k2, z], [k1, k2], [z]),
        Phase(swap, [k2], [k1, k2, z], [k1, k2], [z]),
        Phase(withdraw, [k2], [k2, z], [k2], [z]),
    ]
    return phases, publish, swap, withdraw


def test_correct_ksk_rollover_is_clean() -> None:
    phases, *_, withdraw = ksk_rollover(wait("TTLkey"), wait("TTLds"))
    w, breaches = simulate(phases, withdraw + 10)
    assert breaches == [], "\n".join(map(str, breaches))
    assert len(w.ds_sets) == 2 and len(w.dnskey_sets) == 3


def test_ds_swapped_while_a_dnskey_set_without_the_new_ksk_is_cached() -> None:
    """(b) The DS goes to K2 as soon as K2 is published: today's DNSKEY RRset (both KSKs,
    signed by both) chains to every DS RRset served, but the DNSKEY RRset served before,
    without K2, is still in caches and does not chain to the new DS."""
    phases, publish, swap, _ = ksk_rollover(0, wait("TTLds"))
    _, breaches = simulate(phases, START + 15)
    assert breaches
    assert {b.kind for b in breaches} == {"ds"}
    assert all(swap <= offset(b) < publish - POLL + TTL_KEY for b in breaches)
    k1, k2 = phases[0].ds[0], phases[2].ds[0]
    first = breaches[0]
    assert first.tags == (k1.tag,) and first.cached_tags == (k2.tag,)
    assert first.cached_from.startswith("DS RRset")
    assert "served by parent 192.0.2.100:53" in first.cached_from
    assert f"DNSKEY: DNSKEY RRset {sorted([k1.tag, phases[0].dnskeys[1].tag])}" in \
        first.combination


def test_ds_swapped_one_second_too_early() -> None:
    phases, publish, swap, _ = ksk_rollover(wait("TTLkey") - 1, wait("TTLds"))
    _, breaches = simulate(phases, swap + 20)
    assert breaches and {b.kind for b in breaches} == {"ds"}
    assert all(swap <= offset(b) < publish - POLL + TTL_KEY for b in breaches)


def test_old_ksk_withdrawn_one_second_before_the_old_ds_expires_from_caches() -> None:
    phases, _, swap, withdraw = ksk_rollover(wait("TTLkey"), wait("TTLds") - 1)
    _, breaches = simulate(phases, withdraw + 20)
    assert breaches and {b.kind for b in breaches} == {"ds"}
    assert all(withdraw <= offset(b) < swap - POLL + TTL_DS for b in breaches)
    k1 = phases[0].ds[0]
    assert all(b.cached_tags == (k1.tag,) for b in breaches)


# --------------------------------------------------------------------------- wrong term
# A hold that uses the wrong TTL term: with one TTL for everything it lasts exactly as
# long as the right one, so only TTLs that differ (as here, and in the real-server tests
# tests/rollover/test_roll_ttls.py and tests/model1roll/test_m1roll_ttls.py) show it.


def test_zsk_activate_held_for_ttlkey_instead_of_ttlsig() -> None:
    """The predecessor ZSK withdrawn TTLkey (3 s) after the successor signs, not TTLsig
    (7 s): an SOA signed by the predecessor is still cached with the DNSKEY RRset that no
    longer has it."""
    phases, _, switch, withdraw = zsk_rollover(wait("TTLkey"), wait("TTLkey"))
    _, breaches = simulate(phases, withdraw + 20)
    assert breaches and {b.kind for b in breaches} == {"signature"}
    assert all(withdraw <= offset(b) < switch - POLL + TTL_DATA for b in breaches)
    z1 = phases[0].data_signers[0]
    assert all(b.tags == (z1.tag,) for b in breaches)


def test_ds_swap_held_for_ttlkey_instead_of_ttlds() -> None:
    """The old KSK withdrawn TTLkey (3 s) after the DS swap, not TTLds (5 s): the old DS
    is still cached with the DNSKEY RRset that no longer has the old KSK."""
    phases, _, swap, withdraw = ksk_rollover(wait("TTLkey"), wait("TTLkey"))
    _, breaches = simulate(phases, withdraw + 20)
    assert breaches and {b.kind for b in breaches} == {"ds"}
    assert all(withdraw <= offset(b) < swap - POLL + TTL_DS for b in breaches)


def test_zsk_publish_held_for_ttlsig_instead_of_ttlkey_is_safe_but_long() -> None:
    """A hold on a longer wrong term breaks nothing, so the watcher cannot see it; the
    exact hold check of the real-server tests does (tests/unit/test_hold_terms.py)."""
    phases, *_, withdraw = zsk_rollover(wait("TTLsig"), wait("TTLsig"))
    _, breaches = simulate(phases, withdraw + 10)
    assert breaches == []


# --------------------------------------------------------------------------- other checks


def test_model2_provider_dropping_anothers_zsk() -> None:
    """Two providers, each signing with its own keys: p1 stops serving p0's ZSK while
    p0's data (signed by that ZSK) is served and cached."""
    k0, z0, k1, z1 = (make_key(ksk=True), make_key(ksk=False), make_key(ksk=True),
                      make_key(ksk=False))
    both = [k0, z0, k1, z1]
    phases = [Phase(0, [k0, k1], both, [k0], [z0], provider="p0"),
              Phase(0, [k0, k1], both, [k1], [z1], provider="p1"),
              Phase(START, [k0, k1], [k0, k1, z1], [k1], [z1], provider="p1")]
    w, breaches = simulate(phases, START + 3)
    assert breaches and {(b.kind, b.provider) for b in breaches} == {("signature", "p0")}
    assert all("served by p1 192.0.2.2:53" in b.cached_from for b in breaches)
    assert len({s.content for s in w.dnskey_sets.values()}) == 2  # 3 signed DNSKEY RRsets


def test_expired_dnskey_signature_is_a_breach() -> None:
    k, z = make_key(ksk=True), make_key(ksk=False)
    phases = [Phase(0, [k], [k, z], [k], [z], window=EXPIRED)]
    w, breaches = simulate(phases, 1)
    # an RRset whose every signature expired cannot be cached (RFC 4035 sec. 5.3.3) ...
    assert breaches == [] and len(w.dnskey_sets) == 1
    # ... but while it is being served, a resolver gets it and fails to validate it
    served = next(iter(w.dnskey_sets.values()))
    ds = next(iter(w.ds_sets.values()))
    assert "validity period" in w.model.chain_failure(ds, served, T0)


def test_unsigned_answer_is_a_breach() -> None:
    w = Watcher(ZONE_TEXT, {}, [])
    w.observe(("p0", "192.0.2.1:53"), T0, soa_rrset(ttl=TTL_DATA), None, 1)
    w.observe(PARENT, T0, None, None, 1)  # no DS yet: nothing to report
    assert [(b.kind, b.provider, b.detail) for b in w.breaches] == [
        ("unsigned", "p0", "no signed SOA RRset in the answer")]


@pytest.mark.parametrize("late", [0.0, POLL])
def test_an_rrset_stops_counting_at_last_seen_plus_ttl(late: float) -> None:
    """Exactly: cacheable while now < last_seen + TTL."""
    k, z1, z2 = make_key(ksk=True), make_key(ksk=False), make_key(ksk=False)
    w = Watcher(ZONE_TEXT, {}, [])
    src = ("p0", "192.0.2.1:53")
    old = dnskey_rrset([k, z1], TTL_KEY)
    w.observe(src, T0, old, sign(old, [k]))
    soa = soa_rrset(ttl=TTL_DATA)
    w.observe(src, T0 + TTL_KEY - POLL + late, soa, sign(soa, [z2]))
    found = w.check(T0 + TTL_KEY - POLL + late)
    assert bool(found) == (late == 0.0)
