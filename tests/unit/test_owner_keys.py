"""The owner-KSK store safety rule (orchestrator/decide/owner_keys.py), pure: a Model 1
zone is signed only with a store that holds every KSK served and, for every DS RRset a
resolver may use, a key it names; a first KSK only where nothing can break.

The observations are real: DNSKEY RRsets signed with dnspython, DS records computed from
the keys (see tests/unit/signing.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from signing import (
    ZONE,
    SigningKey,
    SimProvider,
    api_state,
    cached,
    dnskey_rrset,
    ds_rrset,
    ds_texts,
    make_key,
    make_provider,
    parent_view,
    server_view,
)

from core.keys import Key
from core.observation import ApiKey, ParentView, ServerView, ZoneView
from orchestrator.decide.owner_keys import (
    choose_owner_keys,
    ds_tags,
    first_key_problems,
    may_create_first_key,
    provider_claimed,
    served_owner_ksks,
    store_problems,
)

STORE = "file /keys/example.test"


@pytest.fixture
def knots() -> list[SimProvider]:
    return [make_provider(0), make_provider(1)]


@pytest.fixture
def ksk() -> SigningKey:
    return make_key(ksk=True)


def owner_signed(p: SimProvider, owner: list[SigningKey], zsks: list[SigningKey]) -> ServerView:
    """What a Model 1 provider serves: the owner KSKs and every ZSK, signed by the owner."""
    return server_view(p, dnskeys=[*owner, *zsks], dnskey_signers=owner, soa_signers=[p.zsk])


def served_view(knots: list[SimProvider], owner: list[SigningKey],
                parent: tuple[ParentView, ...] | None = None, **kw: object) -> ZoneView:
    zsks = [p.zsk for p in knots]
    if parent is None:
        parent = (parent_view(ds_texts(owner)),)
    return ZoneView(zone=ZONE, servers=tuple(owner_signed(p, owner, zsks) for p in knots),
                    parent=parent, **kw)  # type: ignore[arg-type]


def servfail(p: SimProvider) -> ServerView:
    """A Knot before its first SKR: no usable answer."""
    return ServerView(provider=p.name, server=p.server, at=datetime.now(UTC),
                      error=f"{p.server} answered SERVFAIL")


def keys(*signing: SigningKey) -> frozenset[Key]:
    return frozenset(k.key for k in signing)


def text(problems: list[str]) -> str:
    return "\n".join(problems)


# ---------------------------------------------------------------- served_owner_ksks


def test_served_owner_ksks_are_the_sep_keys_of_answering_servers(
        knots: list[SimProvider], ksk: SigningKey) -> None:
    view = served_view(knots, [ksk])
    assert served_owner_ksks(view) == keys(ksk)  # the ZSKs are not in it
    down = ZoneView(zone=ZONE, servers=(servfail(knots[0]), servfail(knots[1])))
    assert served_owner_ksks(down) == frozenset()


def test_a_provider_serving_its_own_ksk_counts_as_served(
        knots: list[SimProvider], ksk: SigningKey) -> None:
    """A misbehaving provider's KSK is still a served KSK (never dropped: an adapter that
    listed the imported owner KSK as the provider's own would otherwise hide it), and
    the refusal names the provider."""
    zsks = [p.zsk for p in knots]
    rogue = server_view(knots[1], dnskeys=[ksk, knots[1].ksk, *zsks],
                        dnskey_signers=[ksk, knots[1].ksk])
    view = ZoneView(zone=ZONE, servers=(owner_signed(knots[0], [ksk], zsks), rogue),
                    parent=(parent_view(ds_texts([ksk])),),
                    api={p.name: api_state(p, own=(ApiKey(p.zsk.key, "zsk", True, True, "z"),))
                         for p in knots[:1]} | {knots[1].name: api_state(knots[1])})
    assert served_owner_ksks(view) == keys(ksk, knots[1].ksk)
    assert provider_claimed(view) == {knots[1].ksk.key: "p1"}
    problems = store_problems(view, keys(ksk), STORE)
    assert problems, "a store that lacks a served KSK must not pass"
    assert f"KSK {knots[1].ksk.tag} is served, and p1 reports it as its own" in text(problems)
    assert "which the store does not hold" not in text(problems)


# ---------------------------------------------------------------- store_problems


def test_the_store_holding_the_served_and_ds_named_key_passes(
        knots: list[SimProvider], ksk: SigningKey) -> None:
    view = served_view(knots, [ksk])
    assert store_problems(view, keys(ksk), STORE) == []
    assert store_problems(view, keys(ksk, make_key(ksk=True)), STORE) == []  # extra: fine


def test_a_wrong_store_is_refused_naming_every_tag(
        knots: list[SimProvider], ksk: SigningKey) -> None:
    other = make_key(ksk=True)
    view = served_view(knots, [ksk])
    problems = store_problems(view, keys(other), STORE)
    assert problems[0] == (f"the owner KSK store {STORE} holds key tag(s) {other.tag}; the "
                           f"zone serves owner KSK tag(s) {ksk.tag}; the parent's DS names "
                           f"key tag(s) {ksk.tag}")
    assert f"the zone serves owner KSK {ksk.tag}, which the store does not hold" in problems
    assert f"names key tag(s) {ksk.tag}, none of them in the store" in text(problems)
    assert "point [zones.owner_ksk] at the store" in problems[-1]


def test_an_empty_store_is_refused(knots: list[SimProvider], ksk: SigningKey) -> None:
    problems = store_problems(served_view(knots, [ksk]), frozenset(), STORE)
    assert f"holds key tag(s) none; the zone serves owner KSK tag(s) {ksk.tag}" in problems[0]


def test_nothing_served_yet_the_ds_decides(knots: list[SimProvider], ksk: SigningKey) -> None:
    """The lab's first sync: every Knot SERVFAILs until its first SKR; the parent's DS
    names the owner's key."""
    view = ZoneView(zone=ZONE, servers=tuple(servfail(p) for p in knots),
                    parent=(parent_view(ds_texts([ksk])),))
    assert store_problems(view, keys(ksk), STORE) == []
    wrong = store_problems(view, keys(make_key(ksk=True)), STORE)
    assert f"names key tag(s) {ksk.tag}, none of them in the store" in text(wrong)
    assert "zone serves owner KSK tag(s) none" in wrong[0]


def test_a_stale_extra_ds_does_not_stop_re_signing(
        knots: list[SimProvider], ksk: SigningKey) -> None:
    """One DS RRset naming the served key and a long-gone one validates; refusing would
    let the served signatures run out."""
    gone = make_key(ksk=True)
    view = served_view(knots, [ksk], parent=(parent_view(ds_texts([ksk, gone])),))
    assert store_problems(view, keys(ksk), STORE) == []
    assert ds_tags(view) == sorted({ksk.tag, gone.tag})


def test_a_ds_for_the_other_of_two_keys_is_enough(knots: list[SimProvider]) -> None:
    """Mid rollover the parent may name both keys; nothing served (all SERVFAIL): the
    store needs one of them."""
    a, b = make_key(ksk=True), make_key(ksk=True)
    view = ZoneView(zone=ZONE, servers=tuple(servfail(p) for p in knots),
                    parent=(parent_view(ds_texts([a, b])),))
    assert store_problems(view, keys(b), STORE) == []


def test_every_parent_server_counts(knots: list[SimProvider]) -> None:
    """Parent servers that disagree (a DS change propagating): each DS RRset must name a
    stored key, not just their union."""
    a, b = make_key(ksk=True), make_key(ksk=True)
    view = ZoneView(zone=ZONE, servers=tuple(servfail(p) for p in knots),
                    parent=(parent_view(ds_texts([a]), "192.0.2.100:53"),
                            parent_view(ds_texts([b]), "192.0.2.101:53")))
    problems = store_problems(view, keys(b), STORE)
    assert f"served by the parent (192.0.2.100:53) names key tag(s) {a.tag}" in text(problems)
    assert store_problems(view, keys(a, b), STORE) == []


def test_a_cached_ds_counts(knots: list[SimProvider], ksk: SigningKey) -> None:
    """Resolvers may still hold the DS RRset seen before: it too must name a stored key."""
    old = make_key(ksk=True)
    view = served_view(knots, [ksk], cached_ds=(
        cached(ds_rrset(ds_texts([old])), source="parent", server="192.0.2.100:53"),))
    problems = store_problems(view, keys(ksk), STORE)
    assert f"cached from the parent (192.0.2.100:53) names key tag(s) {old.tag}" in text(
        problems)
    assert store_problems(view, keys(ksk, old), STORE) == []


def test_ds_of_another_digest_type_matches(knots: list[SimProvider], ksk: SigningKey) -> None:
    view = served_view(knots, [ksk], parent=(parent_view(ds_texts([ksk], 4)),))
    assert store_problems(view, keys(ksk), STORE) == []


def test_parent_unreachable_and_nothing_served_is_refused(
        knots: list[SimProvider], ksk: SigningKey) -> None:
    down = ParentView(server="192.0.2.100:53", at=datetime.now(UTC), error="timeout")
    view = ZoneView(zone=ZONE, servers=tuple(servfail(p) for p in knots), parent=(down,))
    assert "the parent did not answer" in text(store_problems(view, keys(ksk), STORE))
    # with the served KSK in the store, the parent being down does not matter
    assert store_problems(served_view(knots, [ksk], parent=(down,)), keys(ksk), STORE) == []


def test_no_ds_and_nothing_served_passes(knots: list[SimProvider], ksk: SigningKey) -> None:
    """After ``ksk init`` on a zone without DS: its first sync signs with the new key."""
    view = ZoneView(zone=ZONE, servers=tuple(servfail(p) for p in knots),
                    parent=(parent_view([]),))
    assert store_problems(view, keys(ksk), STORE) == []


# ---------------------------------------------------------------- first key


def undelegated(knots: list[SimProvider], **kw: object) -> ZoneView:
    return ZoneView(zone=ZONE, servers=tuple(servfail(p) for p in knots),
                    parent=(parent_view([]),), **kw)  # type: ignore[arg-type]


def test_a_first_key_for_an_unsigned_zone_without_ds(knots: list[SimProvider]) -> None:
    assert first_key_problems(undelegated(knots)) == []
    assert may_create_first_key(undelegated(knots))


def test_no_first_key_where_a_ksk_is_served(knots: list[SimProvider], ksk: SigningKey) -> None:
    view = served_view(knots, [ksk], parent=(parent_view([]),))
    assert first_key_problems(view) == [f"the zone serves KSK(s) {ksk.tag}"]
    assert not may_create_first_key(view)


def test_no_first_key_where_the_parent_has_a_ds(knots: list[SimProvider],
                                                 ksk: SigningKey) -> None:
    view = undelegated(knots)
    view = ZoneView(zone=ZONE, servers=view.servers, parent=(parent_view(ds_texts([ksk])),))
    assert first_key_problems(view) == [f"the parent's DS names key tag(s) {ksk.tag}"]


def test_no_first_key_while_a_ds_or_ksk_may_be_cached(knots: list[SimProvider],
                                                      ksk: SigningKey) -> None:
    ds = cached(ds_rrset(ds_texts([ksk])), source="parent", server="192.0.2.100:53")
    assert first_key_problems(undelegated(knots, cached_ds=(ds,))) == [
        f"the parent's DS names key tag(s) {ksk.tag}"]
    dnskeys = cached(dnskey_rrset([ksk, knots[0].zsk]), source="p0", server="192.0.2.1:53",
                     age=timedelta(seconds=1))
    (why,) = first_key_problems(undelegated(knots, cached_dnskeys=(dnskeys,)))
    assert why.startswith(f"KSK(s) {ksk.tag} were served within their TTL")


def test_no_first_key_without_an_answer_from_every_parent_server(
        knots: list[SimProvider]) -> None:
    down = ParentView(server="192.0.2.101:53", at=datetime.now(UTC), error="timeout")
    view = ZoneView(zone=ZONE, servers=undelegated(knots).servers,
                    parent=(parent_view([]), down))
    assert first_key_problems(view) == [
        "the parent server 192.0.2.101:53 did not answer (timeout), so it cannot be told "
        "that it has no DS"]
    assert first_key_problems(ZoneView(zone=ZONE, servers=view.servers)) == [
        "the parent was not looked at"]


# ---------------------------------------------------------------- choose_owner_keys


def listed(*signing: tuple[SigningKey, int]) -> list[tuple[Key, datetime | None, str]]:
    base = datetime(2025, 1, 1, tzinfo=UTC)
    return [(k.key, base + timedelta(days=d), f"id-{d}") for k, d in signing]


def test_choose_the_served_stored_keys(knots: list[SimProvider], ksk: SigningKey) -> None:
    newer = make_key(ksk=True)
    assert choose_owner_keys(served_view(knots, [ksk]), listed((ksk, 1), (newer, 2))) == keys(
        ksk)


def test_nothing_served_choose_the_ds_named_key_not_the_newest(
        knots: list[SimProvider], ksk: SigningKey) -> None:
    """A leftover key (a discarded rollover successor) is newer, but the parent's DS names
    the older one: signing with the newest alone would make the zone bogus."""
    leftover = make_key(ksk=True)
    view = ZoneView(zone=ZONE, servers=tuple(servfail(p) for p in knots),
                    parent=(parent_view(ds_texts([ksk])),))
    assert choose_owner_keys(view, listed((ksk, 1), (leftover, 2))) == keys(ksk)
    assert choose_owner_keys(undelegated(knots), listed((ksk, 1), (leftover, 2))) == keys(
        leftover)
    assert choose_owner_keys(view, []) == frozenset()
