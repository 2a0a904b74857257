"""Two keys with one key tag (16 bits: among ~300 keys two collide more often than not).
Nothing may identify a key by its tag alone: plans, CDS/DS matching, withdrawals,
rollover checks, the invariant's diagnosis, ``status`` and the rfc2136 adapter's own/foreign
split must all keep colliding keys apart."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace
from typing import cast

import dns.dnssec
import dns.name
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from rich.console import Console
from signing import (
    ECDSA,
    NOW,
    ZONE,
    ZONE_TEXT,
    SigningKey,
    SimProvider,
    api_state,
    dnskey_rrset,
    ds_texts,
    make_key,
    parent_view,
    server_view,
    sign,
    soa_rrset,
)

from core.config import PolicyConfig, ZoneConfig
from core.keys import Digest, Key, parent_follows, signers, tag_labels
from core.observation import ApiKey, ApiZoneState, ZoneView
from orchestrator.decide import checks
from orchestrator.decide.checks import CheckContext
from orchestrator.decide.invariant import check_zone
from orchestrator.decide.rollover import Rolled
from orchestrator.decide.sync_plan import PlanInput, plan_sync
from orchestrator.engine.daemon import due_rollovers
from orchestrator.observe.observer import last_owned, record
from orchestrator.runtime import Runtime
from orchestrator.status_view import render_status
from providers.rfc2136.served import Served
from runbooks import Step
from state import StateStore

MAX_KEYS = 20000  # P(no collision among this many 16-bit tags) is astronomically small


def colliding_pair(flags: int) -> tuple[SigningKey, SigningKey]:
    """Two freshly generated ECDSA keys whose DNSKEYs (with ``flags``) share a key tag."""
    seen: dict[int, SigningKey] = {}
    for _ in range(MAX_KEYS):
        private = ec.generate_private_key(ec.SECP256R1())
        key = SigningKey(private, dns.dnssec.make_dnskey(private.public_key(), ECDSA, flags))
        if key.tag in seen:
            return seen[key.tag], key
        seen[key.tag] = key
    raise AssertionError("no key-tag collision")  # pragma: no cover


@pytest.fixture(scope="module")
def ksks() -> tuple[SigningKey, SigningKey]:
    return colliding_pair(257)


@pytest.fixture(scope="module")
def zsks() -> tuple[SigningKey, SigningKey]:
    return colliding_pair(256)


def provider(index: int, ksk: SigningKey, zsk: SigningKey) -> SimProvider:
    return SimProvider(f"p{index}", f"192.0.2.{index + 1}:53", ksk, zsk)


@pytest.fixture(scope="module")
def pair(ksks: tuple[SigningKey, SigningKey],
         zsks: tuple[SigningKey, SigningKey]) -> list[SimProvider]:
    """p0 and p1 whose KSKs collide and whose ZSKs collide."""
    return [provider(0, ksks[0], zsks[0]), provider(1, ksks[1], zsks[1])]


def test_colliding_keys_are_distinct(ksks: tuple[SigningKey, SigningKey]) -> None:
    a, b = (k.key for k in ksks)
    assert a.key_tag == b.key_tag and a != b
    assert a.fingerprint != b.fingerprint
    assert a.ds(ZONE) != b.ds(ZONE) and a.ds(ZONE).key_tag == b.ds(ZONE).key_tag
    assert a.ds(ZONE).matches(a, ZONE) and not a.ds(ZONE).matches(b, ZONE)
    labels = tag_labels([a, b])
    assert len(set(labels)) == 2 and all(lab.startswith(f"{a.key_tag}~") for lab in labels)
    assert tag_labels([a]) == [str(a.key_tag)]


def test_parent_ds_of_one_colliding_ksk_does_not_cover_the_other(
        ksks: tuple[SigningKey, SigningKey]) -> None:
    a, b = (k.key for k in ksks)
    only_a = frozenset({a.ds(ZONE)})
    assert parent_follows(only_a, frozenset({a}), ZONE_TEXT)
    assert not parent_follows(only_a, frozenset({a, b}), ZONE_TEXT)
    assert not parent_follows(only_a, frozenset({b}), ZONE_TEXT)


def plan_input(providers: list[SimProvider], **kwargs: object) -> PlanInput:
    api = {p.name: api_state(p) for p in providers}
    view = ZoneView(zone=ZONE, servers=tuple(server_view(p, dnskeys=p.own) for p in providers),
                    parent=(parent_view(ds_texts([providers[0].ksk])),))
    return PlanInput(zone=ZONE_TEXT, signers=[p.name for p in providers],
                     policy=PolicyConfig(), api=api, view=view, now=NOW, **kwargs)  # type: ignore[arg-type]


def test_plan_imports_both_colliding_keys_and_names_them_apart(pair: list[SimProvider]) -> None:
    plan = plan_sync(plan_input(pair))
    p0, p1 = pair
    actions = {a.provider: a for a in plan.key_actions}
    assert set(actions["p0"].dnskeys) == {p1.ksk.key, p1.zsk.key}
    assert set(actions["p1"].dnskeys) == {p0.ksk.key, p0.zsk.key}
    # p0's plan line for p1's KSK must not read like p0's own KSK: fingerprints tell.
    assert actions["p0"].add != actions["p1"].add
    assert all("~" in label for label in actions["p0"].add)
    assert plan.cds_target == {p0.ksk.ds(), p1.ksk.ds()}
    cds = {a.provider: a for a in plan.cds_actions}
    assert len(set(cds["p0"].add)) == 2  # two DS with one tag, two distinct labels
    assert len(set(plan.as_json()["served_dnskey_ids"]["p0"])) == 4


def test_withdrawing_one_colliding_ksk_keeps_the_other(pair: list[SimProvider]) -> None:
    p0, p1 = pair
    api = {p0.name: api_state(p0, foreign=p1.own, cds={p0.ksk.ds(), p1.ksk.ds()},
                              cdnskey={p0.ksk.key, p1.ksk.key}),
           p1.name: api_state(p1, foreign=p0.own, cds={p0.ksk.ds(), p1.ksk.ds()},
                              cdnskey={p0.ksk.key, p1.ksk.key})}
    data = plan_input(pair, force_remove=frozenset({p1.ksk.key}))
    data.api = api
    plan = plan_sync(data)
    assert plan.cds_target == {p0.ksk.ds()}
    assert plan.cdnskey_target == {p0.ksk.key}
    at_p0 = next(a for a in plan.key_actions if a.provider == "p0")
    assert set(at_p0.dnskeys) == {p1.zsk.key}  # p1's KSK withdrawn, nothing else
    assert plan.served_target["p0"] >= {p0.ksk.key, p0.zsk.key}
    assert p0.ksk.key in plan.served_target["p1"]


def rollover_ctx(old: SigningKey, new: SigningKey, soa_by: list[SigningKey],
                 step_keys: dict[str, str]) -> CheckContext:
    """A ZSK rollover at p0 from ``old`` to ``new`` (same tag), p0 signing data with
    ``soa_by``."""
    ksk = colliding_pair(257)[0]
    p0 = SimProvider("p0", "192.0.2.1:53", ksk, old)
    server = server_view(p0, dnskeys=[ksk, old, new], soa_signers=soa_by)
    rolled = Rolled(signer="p0", role="zsk", old=old.key, old_id="1", new=new.key, new_id="2")
    step = Step(id="s", title="s", keys=step_keys)  # type: ignore[arg-type]
    return CheckContext(step=step, view=ZoneView(zone=ZONE, servers=(server,)), goal=None,
                        payload=rolled)


def test_zsk_rollover_between_colliding_keys(zsks: tuple[SigningKey, SigningKey]) -> None:
    old, new = zsks
    # Only the successor signs: the predecessor is unused, though its tag still appears.
    done = rollover_ctx(old, new, [new], {"new": "active", "old": "published"})
    assert checks.old_unused(done) == []
    assert checks.data_signers(done) == []
    # Only the predecessor signs: the step that wants the successor active is not there.
    before = rollover_ctx(old, new, [old], {"new": "active", "old": "published"})
    assert checks.old_unused(before) != []
    assert checks.data_signers(before) != []


def test_signers_by_signature_not_tag(zsks: tuple[SigningKey, SigningKey]) -> None:
    a, b = zsks
    soa = soa_rrset()
    sigs = sign(soa, [a])
    assert signers([a.key, b.key], soa, sigs) == {a.key}
    assert signers([b.key], soa, sigs) == frozenset()


def test_invariant_names_the_missing_key_not_its_twin(
        pair: list[SimProvider], ksks: tuple[SigningKey, SigningKey]) -> None:
    """p1 signs with its ZSK; p0 serves p0's ZSK (same tag) but not p1's: a ZSK_MISSING
    for p1's ZSK, which a tag comparison would have missed."""
    p0, p1 = pair
    s0 = server_view(p0, dnskeys=[p0.ksk, p1.ksk, p0.zsk])
    s1 = server_view(p1, dnskeys=[p0.ksk, p1.ksk, p0.zsk, p1.zsk])
    view = ZoneView(zone=ZONE, servers=(s0, s1),
                    parent=(parent_view(ds_texts([p0.ksk, p1.ksk])),))
    missing = [f for f in check_zone(view, NOW) if f.code == "ZSK_MISSING"]
    assert missing, check_zone(view, NOW)
    assert any(f.provider == "p1" and p1.zsk.key.fingerprint in f.message for f in missing)
    differ = next(f for f in check_zone(view, NOW) if f.code == "DNSKEY_SETS_DIFFER")
    assert p0.zsk.key.fingerprint in differ.message and p1.zsk.key.fingerprint in differ.message


def test_status_shows_colliding_keys_apart(ksks: tuple[SigningKey, SigningKey]) -> None:
    a, b = (k.key for k in ksks)
    item = {"name": ZONE_TEXT, "model": 2, "consistent": True, "parent": {"ds": []},
            "signers": [
                {"name": n, "servers": [], "cds": [a.ds(ZONE).text],
                 "dnskeys": [{"key_tag": k.key_tag, "flags": 257, "algorithm": 13,
                              "role": "ksk", "origin": n, "fingerprint": k.fingerprint,
                              "in_cds": k == a}]}
                for n, k in (("p0", a), ("p1", b))]}
    console = Console(record=True, width=200)
    render_status([item], console)
    text = console.export_text()
    assert f"{a.key_tag}~{a.fingerprint}" in text and f"{b.key_tag}~{b.fingerprint}" in text
    rows = {line.split()[0]: line for line in text.splitlines() if line.startswith("p")}
    assert rows["p0"].rstrip().endswith("yes") and not rows["p1"].rstrip().endswith("yes")


def test_rfc2136_own_keys_by_signature(ksks: tuple[SigningKey, SigningKey],
                                       zsks: tuple[SigningKey, SigningKey]) -> None:
    """The server signs with its KSK a and ZSK c; b and d are foreign keys the controller
    added whose tags collide with a's and c's: they stay foreign."""
    (a, b), (c, d) = ksks, zsks
    served = Served(dns.name.from_text(ZONE_TEXT))
    keyset = dnskey_rrset([a, b, c, d])
    served.rrsets["DNSKEY"], served.rrsigs["DNSKEY"] = keyset, sign(keyset, [a])
    soa = soa_rrset()
    served.rrsets["SOA"], served.rrsigs["SOA"] = soa, sign(soa, [c])
    own = {k.key: k.role for k in served.own_keys()}
    assert own == {a.key: "ksk", c.key: "zsk"}
    assert served.foreign_keys() == {b.key, d.key}
    assert len({k.key_id for k in served.own_keys()}) == 2


def test_digest_parse_keeps_colliding_digests(ksks: tuple[SigningKey, SigningKey]) -> None:
    a, b = (k.key for k in ksks)
    texts = {Digest.parse(a.ds(ZONE).text), Digest.parse(b.ds(ZONE).text)}
    assert len(texts) == 2


def owning(index: int, ksk: SigningKey) -> ApiZoneState:
    """p<index>'s API reporting ``ksk`` as its only key."""
    own = (ApiKey(ksk.key, "ksk", active=True, published=True, key_id=f"k{index}"),)
    return api_state(provider(index, ksk, ksk), own=own)


def test_key_ages_and_ownership_of_a_provider_s_colliding_keys(
        ksks: tuple[SigningKey, SigningKey]) -> None:
    """p0 rolled its KSK from ``a`` to ``b``, which has ``a``'s tag. The observation rows
    (identified by key, not tag) keep ``a``'s and ``b``'s sightings apart: ``b`` is not
    aged from ``a``'s first sighting (a new key rolled at once by policy), and ``a``'s
    last ownership stays known for its withdrawal."""
    a, b = ksks
    zone = ZoneConfig(name=ZONE_TEXT, model=2, signers=["p0", "p1"])
    rolled = NOW + timedelta(days=400)

    def owns(key: SigningKey) -> dict[str, ApiZoneState]:
        return {"p0": owning(0, key)}

    with StateStore.open("sqlite://") as store:
        rt = cast(Runtime, SimpleNamespace(store=store))
        record(rt, zone, (), (), owns(a), NOW)
        record(rt, zone, (), (), owns(b), rolled)
        assert {Key(r.dnskey): r.first_seen for r in store.keys(ZONE_TEXT)} == {
            a.key: NOW, b.key: rolled}
        assert due_rollovers(zone, ["p0"], owns(b), store.keys(ZONE_TEXT), rolled) == []
        [due] = due_rollovers(zone, ["p0"], owns(a), store.keys(ZONE_TEXT), rolled)
        assert (due.key, due.age) == (a.key, timedelta(days=400))
        assert last_owned(rt, ZONE_TEXT) == {a.key: NOW, b.key: rolled}


def test_due_rollover_names_a_colliding_key_by_fingerprint(
        ksks: tuple[SigningKey, SigningKey]) -> None:
    a, b = ksks
    zone = ZoneConfig(name=ZONE_TEXT, model=2, signers=["p0", "p1"])
    states = {"p0": owning(0, a), "p1": owning(1, b)}
    later = NOW + timedelta(days=200)
    with StateStore.open("sqlite://") as store:
        rt = cast(Runtime, SimpleNamespace(store=store))
        record(rt, zone, (), (), {"p0": states["p0"]}, NOW)
        record(rt, zone, (), (), states, later)
        [due] = due_rollovers(zone, ["p0", "p1"], states, store.keys(ZONE_TEXT),
                              NOW + timedelta(days=365))
    assert (due.signer, due.key) == ("p0", a.key)
    assert due.label == f"{a.key.key_tag}~{a.key.fingerprint}"


def test_parent_wait_names_signers_outside_the_ds_chain() -> None:
    """A signer whose DNSKEY RRset no key of the parent's DS signs cannot get its CDS past
    a strict parent: the parent wait says so instead of waiting silently. Keys that merely
    share a tag with a DS-named key do not count as named."""
    from orchestrator.decide.goals import CrossImportGoal

    p0_ksk, p1_ksk = colliding_pair(257)  # p1's KSK shares the tag of the DS-named one
    p0 = SimProvider("p0", "192.0.2.1:53", p0_ksk, make_key(ksk=False))
    p1 = SimProvider("p1", "192.0.2.2:53", p1_ksk, make_key(ksk=False))
    keys = [p0.ksk, p0.zsk, p1.ksk, p1.zsk]
    servers = (server_view(p0, dnskeys=keys), server_view(p1, dnskeys=keys))
    step = Step(id="parent", title="parent", observe=["parent"])  # type: ignore[arg-type]
    goal = SimpleNamespace(zone=ZONE_TEXT, ds_keys=frozenset({p0.ksk.key, p1.ksk.key}))

    def missing(ds: list[SigningKey]) -> list[str]:
        view = ZoneView(zone=ZONE, servers=servers, parent=(parent_view(ds_texts(ds)),))
        ctx = CheckContext(step=step, view=view, goal=cast(CrossImportGoal, goal),
                           payload=None)
        return checks.parent_ds(ctx)

    hint = [m for m in missing([p0.ksk]) if "signed by no key the parent's DS names" in m]
    assert len(hint) == 1 and "p1" in hint[0] and "p0" not in hint[0].split("at ")[1]
    both = missing([p0.ksk, p1.ksk])
    assert both == []  # the DS names both: nothing lags
    unsigned = missing([])
    assert unsigned and not any("signed by no key" in m for m in unsigned)
