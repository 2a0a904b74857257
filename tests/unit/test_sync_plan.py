"""decide.sync_plan: Model 2 steady state, interlocks and progress."""

from __future__ import annotations

from datetime import datetime, timedelta

import dns.dnssec
import pytest
from signing import (
    ED25519,
    NOW,
    ZONE,
    ZONE_TEXT,
    SigningKey,
    SimProvider,
    all_keys,
    api_keys,
    api_state,
    ds_texts,
    make_key,
    make_provider,
    model2_keys,
    parent_view,
    server_view,
    synced_servers,
)

from core.config import PolicyConfig
from core.keys import Digest, Key
from core.observation import ApiKey, ApiZoneState, ParentView, ServerView, ZoneView
from orchestrator.decide.sync_plan import (
    Action,
    PlanInput,
    Progress,
    SyncPlan,
    interlocks,
    parent_follows,
    parent_progress,
    plan_sync,
    served_progress,
    stale_after,
)

SIGNERS = ["p0", "p1", "p2"]


def keys(signing: list[SigningKey]) -> frozenset[Key]:
    return frozenset(k.key for k in signing)


def cds_of(providers: list[SimProvider]) -> frozenset[Digest]:
    return frozenset(p.ksk.ds() for p in providers)


def scratch_api(providers: list[SimProvider]) -> dict[str, ApiZoneState]:
    """Each provider signs with its own keys and knows nothing of the others."""
    return {p.name: api_state(p) for p in providers}


def synced_api(
    providers: list[SimProvider], *, import_ksks: bool = True
) -> dict[str, ApiZoneState]:
    ksks = [p.ksk for p in providers]
    return {
        p.name: api_state(
            p,
            foreign=[k for k in model2_keys(p, providers, import_ksks=import_ksks)
                     if k not in p.own],
            cds=cds_of(providers),
            cdnskey=keys(ksks),
        )
        for p in providers
    }


def scratch_view(providers: list[SimProvider]) -> ZoneView:
    return ZoneView(zone=ZONE, servers=tuple(server_view(p, dnskeys=p.own) for p in providers))


def synced_view(providers: list[SimProvider], *, import_ksks: bool = True) -> ZoneView:
    return ZoneView(zone=ZONE, servers=tuple(synced_servers(providers, import_ksks=import_ksks)),
                    parent=(parent_view(ds_texts(p.ksk for p in providers)),))


def plan_input(
    api: dict[str, ApiZoneState],
    view: ZoneView,
    *,
    policy: PolicyConfig | None = None,
    last_owned: dict[Key, datetime] | None = None,
    signers: list[str] | None = None,
) -> PlanInput:
    return PlanInput(zone=ZONE_TEXT, signers=signers or list(SIGNERS),
                     policy=policy or PolicyConfig(), api=api, view=view, now=NOW,
                     last_owned=last_owned or {})


def by_provider(actions: tuple[Action, ...]) -> dict[str, Action]:
    out = {a.provider: a for a in actions}
    assert len(out) == len(actions), "one action per provider and kind"
    return out


# --- plan_sync from scratch -----------------------------------------------------------------


def test_plan_from_scratch_imports_every_other_key(providers3: list[SimProvider]) -> None:
    plan = plan_sync(plan_input(scratch_api(providers3), scratch_view(providers3)))
    key_actions = by_provider(plan.key_actions)
    assert sorted(key_actions) == SIGNERS
    for p in providers3:
        others = keys([k for o in providers3 if o is not p for k in o.own])
        action = key_actions[p.name]
        assert action.kind == "set-dnskeys"
        assert set(action.dnskeys) == others
        assert list(action.dnskeys) == sorted(others)
        assert sorted(action.add) == sorted(k.short() for k in others)
        assert action.remove == ()
        assert action.ttl == 3600
        assert plan.served_target[p.name] == keys(all_keys(providers3))
    assert not plan.empty
    assert plan.actions == plan.key_actions + plan.cds_actions


def test_plan_from_scratch_zsk_only_when_import_ksks_off(providers3: list[SimProvider]) -> None:
    policy = PolicyConfig(import_ksks=False)
    plan = plan_sync(plan_input(scratch_api(providers3), scratch_view(providers3),
                                policy=policy))
    key_actions = by_provider(plan.key_actions)
    for p in providers3:
        other_zsks = keys([o.zsk for o in providers3 if o is not p])
        assert set(key_actions[p.name].dnskeys) == other_zsks
        assert all(not k.sep for k in key_actions[p.name].dnskeys)
        assert plan.served_target[p.name] == other_zsks | keys(list(p.own))


def test_cds_target_is_sha256_ds_of_every_active_ksk(providers3: list[SimProvider]) -> None:
    plan = plan_sync(plan_input(scratch_api(providers3), scratch_view(providers3)))
    expected = frozenset(
        Digest.from_rdata(dns.dnssec.make_ds(ZONE, p.ksk.dnskey, "SHA256")) for p in providers3
    )
    assert plan.cds_target == expected
    assert {d.digest_type for d in plan.cds_target} == {2}
    assert plan.cdnskey_target == keys([p.ksk for p in providers3])
    cds_actions = by_provider(plan.cds_actions)
    assert sorted(cds_actions) == SIGNERS
    for action in cds_actions.values():
        assert action.kind == "set-cds"
        assert action.cds == tuple(sorted(expected))
        assert action.cdnskey == tuple(sorted(plan.cdnskey_target))
        assert sorted(action.add) == sorted(f"DS {p.ksk.tag}" for p in providers3)
        assert action.remove == ()


def test_cds_target_same_with_import_ksks_off(providers3: list[SimProvider]) -> None:
    plan = plan_sync(plan_input(scratch_api(providers3), scratch_view(providers3),
                                policy=PolicyConfig(import_ksks=False)))
    assert plan.cds_target == cds_of(providers3)


def test_action_ttl_follows_the_served_dnskey_ttl(providers3: list[SimProvider]) -> None:
    p0, p1, _ = providers3
    view = ZoneView(zone=ZONE, servers=(
        server_view(p0, dnskeys=p0.own, dnskey_ttl=300),
        server_view(p1, dnskeys=p1.own, dnskey_ttl=7200),
    ))
    plan = plan_sync(plan_input(scratch_api(providers3), view))
    ttls = {a.provider: a.ttl for a in plan.key_actions}
    # p2 has no observed server: the largest observed DNSKEY TTL is used
    assert ttls == {"p0": 300, "p1": 7200, "p2": 7200}
    assert {a.provider: a.ttl for a in plan.cds_actions} == ttls


def test_action_ttl_default_without_observation(providers3: list[SimProvider]) -> None:
    plan = plan_sync(plan_input(scratch_api(providers3), ZoneView(zone=ZONE, servers=())))
    assert {a.ttl for a in plan.actions} == {3600}


# --- steady state --------------------------------------------------------------------------


@pytest.mark.parametrize("import_ksks", [True, False])
def test_synced_input_gives_empty_plan(providers3: list[SimProvider], import_ksks: bool) -> None:
    data = plan_input(synced_api(providers3, import_ksks=import_ksks),
                      synced_view(providers3, import_ksks=import_ksks),
                      policy=PolicyConfig(import_ksks=import_ksks))
    plan = plan_sync(data)
    assert plan.empty
    assert plan.actions == ()
    assert plan.notes == ()
    assert interlocks(data) == []
    assert served_progress(plan, data.view, cds=True) == Progress(3, 3, ())
    assert parent_progress(plan, data.view).done


def test_only_the_drifted_provider_gets_an_action(providers3: list[SimProvider]) -> None:
    p0, p1, _ = providers3
    api = synced_api(providers3)
    api["p1"] = api_state(p1, foreign=[k for k in model2_keys(p1, providers3)
                                       if k not in p1.own and k is not p0.zsk],
                          cds=cds_of(providers3), cdnskey=keys([p.ksk for p in providers3]))
    plan = plan_sync(plan_input(api, synced_view(providers3)))
    assert plan.cds_actions == ()
    (action,) = plan.key_actions
    assert (action.provider, action.add, action.remove) == ("p1", (p0.zsk.key.short(),), ())
    assert p0.zsk.key in action.dnskeys  # the complete foreign set is sent, not a delta


def test_cds_drift_is_corrected_with_add_and_remove(providers3: list[SimProvider]) -> None:
    p2 = providers3[2]
    old = make_key(ksk=True)
    api = synced_api(providers3)
    api["p2"] = api_state(p2, foreign=api["p2"].foreign_dnskeys,
                          cds=frozenset({providers3[0].ksk.ds(), old.ds()}),
                          cdnskey=keys([p.ksk for p in providers3]))
    plan = plan_sync(plan_input(api, synced_view(providers3)))
    assert plan.key_actions == ()
    (action,) = plan.cds_actions
    assert action.provider == "p2"
    assert sorted(action.add) == sorted(f"DS {p.ksk.tag}" for p in providers3[1:])
    assert action.remove == (f"DS {old.tag}",)


# --- stale foreign keys --------------------------------------------------------------------


def _with_stale(providers: list[SimProvider], stale: SigningKey) -> dict[str, ApiZoneState]:
    api = synced_api(providers)
    p0 = providers[0]
    api["p0"] = api_state(p0, foreign=api["p0"].foreign_dnskeys | {stale.key},
                          cds=api["p0"].cds, cdnskey=api["p0"].cdnskey)
    return api


def test_stale_after_is_longest_ttl_plus_propagation_and_margin(policy: PolicyConfig) -> None:
    assert stale_after(policy, 3600, 7200) == timedelta(hours=3, minutes=5)
    assert stale_after(policy, 86400, 0) == timedelta(days=1, hours=1, minutes=5)
    tight = PolicyConfig(propagation_delay="10s", safety_margin="1m")
    assert stale_after(tight, 60, 30) == timedelta(seconds=130)


def test_recently_owned_foreign_key_is_kept_with_note(providers3: list[SimProvider]) -> None:
    retired = make_key(ksk=False)  # p1's previous ZSK, withdrawn at p1 an hour ago
    last = NOW - timedelta(hours=1)
    plan = plan_sync(plan_input(_with_stale(providers3, retired), synced_view(providers3),
                                last_owned={retired.key: last}))
    assert plan.empty  # nothing to change: the key stays at p0
    until = last + timedelta(hours=2, minutes=5)  # DNSKEY TTL 1h + 5m + 1h
    assert plan.notes == (f"p0: keeping retired key {retired.key.short()} until "
                          f"{until.isoformat(timespec='seconds')} (cached signatures)",)
    assert retired.key in plan.served_target["p0"]


def test_foreign_key_owned_long_ago_is_removed(providers3: list[SimProvider]) -> None:
    retired = make_key(ksk=False)
    plan = plan_sync(plan_input(_with_stale(providers3, retired), synced_view(providers3),
                                last_owned={retired.key: NOW - timedelta(hours=2, minutes=6)}))
    assert plan.notes == ()
    (action,) = plan.key_actions
    assert (action.provider, action.add, action.remove) == ("p0", (), (retired.key.short(),))
    assert retired.key not in action.dnskeys
    assert set(action.dnskeys) == keys([k for p in providers3[1:] for k in p.own])
    assert retired.key not in plan.served_target["p0"]


def test_grace_grows_with_the_largest_signed_ttl(providers3: list[SimProvider]) -> None:
    retired = make_key(ksk=False)
    api = _with_stale(providers3, retired)
    api["p1"] = api_state(providers3[1], foreign=api["p1"].foreign_dnskeys, cds=api["p1"].cds,
                          cdnskey=api["p1"].cdnskey, max_ttl=86400)
    plan = plan_sync(plan_input(api, synced_view(providers3),
                                last_owned={retired.key: NOW - timedelta(hours=3)}))
    assert plan.empty
    assert len(plan.notes) == 1


def test_never_seen_stray_foreign_key_is_kept_one_grace_period(
    providers3: list[SimProvider],
) -> None:
    # Nothing is known about when it stopped signing: count from now, not from "never".
    stray = make_key(ksk=True)
    plan = plan_sync(plan_input(_with_stale(providers3, stray), synced_view(providers3)))
    assert plan.key_actions == ()
    assert len(plan.notes) == 1 and stray.key.short() in plan.notes[0]


def test_stray_foreign_key_unowned_for_long_is_removed(providers3: list[SimProvider]) -> None:
    stray = make_key(ksk=True)
    plan = plan_sync(plan_input(_with_stale(providers3, stray), synced_view(providers3),
                                last_owned={stray.key: NOW - timedelta(days=2)}))
    (action,) = plan.key_actions
    assert (action.provider, action.add, action.remove) == ("p0", (), (stray.key.short(),))
    assert plan.notes == ()


def test_foreign_ksk_removed_when_import_ksks_turned_off(providers3: list[SimProvider]) -> None:
    # Synced with KSKs imported; policy now says ZSKs only: the foreign KSKs go, at once
    # (they are still some signer's own key, so no cache grace is needed for them).
    plan = plan_sync(plan_input(synced_api(providers3), synced_view(providers3),
                                policy=PolicyConfig(import_ksks=False)))
    actions = by_provider(plan.key_actions)
    assert sorted(actions) == SIGNERS
    for p in providers3:
        other_ksks = sorted(o.ksk.key.short() for o in providers3 if o is not p)
        assert sorted(actions[p.name].remove) == other_ksks
        assert actions[p.name].add == ()
    assert plan.cds_actions == ()


# --- pre-published and unpublished keys ----------------------------------------------------


def test_published_inactive_zsk_is_imported(providers3: list[SimProvider]) -> None:
    p1 = providers3[1]
    new_zsk = make_key(ksk=False)
    api = synced_api(providers3)
    api["p1"] = api_state(p1, foreign=api["p1"].foreign_dnskeys, cds=api["p1"].cds,
                          cdnskey=api["p1"].cdnskey,
                          extra=[ApiKey(new_zsk.key, "zsk", active=False, published=True,
                                        key_id="p1-new")])
    for import_ksks in (True, False):
        plan = plan_sync(plan_input(api, synced_view(providers3),
                                    policy=PolicyConfig(import_ksks=import_ksks)))
        if import_ksks:
            actions = by_provider(plan.key_actions)
            assert sorted(actions) == ["p0", "p2"]
            for action in actions.values():
                assert action.add == (new_zsk.key.short(),)
                assert action.remove == ()
            assert plan.cds_actions == ()
        assert all(new_zsk.key in plan.served_target[n] for n in SIGNERS)


def test_unpublished_key_is_not_imported(providers3: list[SimProvider]) -> None:
    p1 = providers3[1]
    hidden = make_key(ksk=False)
    api = synced_api(providers3)
    api["p1"] = api_state(p1, foreign=api["p1"].foreign_dnskeys, cds=api["p1"].cds,
                          cdnskey=api["p1"].cdnskey,
                          extra=[ApiKey(hidden.key, "zsk", active=False, published=False,
                                        key_id="p1-hidden")])
    assert plan_sync(plan_input(api, synced_view(providers3))).empty


def test_prepublished_ksk_is_imported_but_not_in_cds(providers3: list[SimProvider]) -> None:
    p1 = providers3[1]
    new_ksk = make_key(ksk=True)
    api = synced_api(providers3)
    api["p1"] = api_state(p1, foreign=api["p1"].foreign_dnskeys, cds=api["p1"].cds,
                          cdnskey=api["p1"].cdnskey,
                          extra=[ApiKey(new_ksk.key, "ksk", active=False, published=True,
                                        key_id="p1-newksk")])
    plan = plan_sync(plan_input(api, synced_view(providers3)))
    assert sorted(a.provider for a in plan.key_actions) == ["p0", "p2"]
    assert plan.cds_actions == ()
    assert plan.cds_target == cds_of(providers3)


def test_csk_is_imported_with_ksks_off_and_in_cds(providers3: list[SimProvider]) -> None:
    p0, p1 = providers3[:2]
    csk = make_provider(9).ksk  # a SEP key that also signs zone data
    c_state = ApiZoneState(
        provider="c", foreign_dnskeys=frozenset(), cds=frozenset(), cdnskey=frozenset(),
        own_keys=(ApiKey(csk.key, "csk", active=True, published=True, key_id="c-csk"),),
    )
    api = {"p0": api_state(p0), "p1": api_state(p1), "c": c_state}
    plan = plan_sync(plan_input(api, ZoneView(zone=ZONE, servers=()),
                                policy=PolicyConfig(import_ksks=False),
                                signers=["p0", "p1", "c"]))
    actions = by_provider(plan.key_actions)
    assert csk.key in actions["p0"].dnskeys
    assert set(actions["c"].dnskeys) == keys([p0.zsk, p1.zsk])
    assert csk.ds() in plan.cds_target
    assert plan.cdnskey_target == keys([p0.ksk, p1.ksk, csk])


# --- interlocks ------------------------------------------------------------------------------


def refusal_codes(data: PlanInput) -> list[str]:
    return sorted(r.code for r in interlocks(data))


def test_interlocks_pass_on_a_healthy_zone_from_scratch(providers3: list[SimProvider]) -> None:
    assert interlocks(plan_input(scratch_api(providers3), scratch_view(providers3))) == []


def test_no_active_ksk_is_not_signed(providers3: list[SimProvider]) -> None:
    p1 = providers3[1]
    api = scratch_api(providers3)
    ksk, zsk = api_keys(p1)
    api["p1"] = api_state(p1, own=(ApiKey(ksk.key, "ksk", active=False, published=True,
                                          key_id="k"), zsk))
    refusals = interlocks(plan_input(api, scratch_view(providers3)))
    assert [(r.code, r.message) for r in refusals] == [
        ("NOT_SIGNED", f"p1 has no active KSK/CSK for {ZONE_TEXT}: enable DNSSEC for the zone "
                       "at that provider first"),
    ]


def test_no_active_zsk_is_not_signed(providers3: list[SimProvider]) -> None:
    p2 = providers3[2]
    api = scratch_api(providers3)
    ksk, zsk = api_keys(p2)
    api["p2"] = api_state(p2, own=(ksk, ApiKey(zsk.key, "zsk", active=False, published=True,
                                               key_id="z")))
    refusals = interlocks(plan_input(api, scratch_view(providers3)))
    assert [(r.code, r.message) for r in refusals] == [
        ("NOT_SIGNED", f"p2 has no active ZSK/CSK for {ZONE_TEXT}"),
    ]


def test_server_with_unsigned_dnskey_is_not_signed(providers3: list[SimProvider]) -> None:
    p1 = providers3[1]
    servers = list(scratch_view(providers3).servers)
    servers[1] = server_view(p1, dnskeys=p1.own, dnskey_signers=[])
    refusals = interlocks(plan_input(scratch_api(providers3),
                                     ZoneView(zone=ZONE, servers=tuple(servers))))
    assert [(r.code, r.message) for r in refusals] == [
        ("NOT_SIGNED", f"{p1.label} serves {ZONE_TEXT} without a signed DNSKEY RRset"),
    ]


def test_signer_with_other_algorithm_is_refused() -> None:
    providers = [make_provider(0), make_provider(1), make_provider(2, algorithm=ED25519)]
    refusals = interlocks(plan_input(scratch_api(providers), scratch_view(providers)))
    assert [r.code for r in refusals] == ["ALGORITHM_MISMATCH"]
    message = refusals[0].message
    assert message.startswith(f"signers of {ZONE_TEXT} must all use ECDSAP256SHA256")
    assert "p0: ECDSAP256SHA256; p1: ECDSAP256SHA256; p2: ED25519" in message


def test_signers_agreeing_on_an_algorithm_other_than_policy_are_refused() -> None:
    providers = [make_provider(i, algorithm=ED25519) for i in range(3)]
    data = plan_input(scratch_api(providers), scratch_view(providers))
    refusals = interlocks(data)
    assert [r.code for r in refusals] == ["ALGORITHM_MISMATCH"]
    assert "must all use ECDSAP256SHA256" in refusals[0].message
    assert "p0: ED25519" in refusals[0].message
    data.policy = PolicyConfig(algorithm="ED25519")
    assert interlocks(data) == []


def test_unreachable_server_is_refused(providers3: list[SimProvider]) -> None:
    p2 = providers3[2]
    servers = list(scratch_view(providers3).servers)
    servers[2] = ServerView(provider="p2", server=p2.server, at=NOW, error="connection refused")
    refusals = interlocks(plan_input(scratch_api(providers3),
                                     ZoneView(zone=ZONE, servers=tuple(servers))))
    assert [(r.code, r.message) for r in refusals] == [
        ("UNOBSERVABLE", f"{p2.label}: connection refused"),
    ]


def test_dnskey_not_validatable_under_own_keys_is_refused(
    providers3: list[SimProvider],
) -> None:
    p1 = providers3[1]
    rogue = make_key(ksk=True)
    servers = list(scratch_view(providers3).servers)
    servers[1] = server_view(p1, dnskeys=p1.own, dnskey_signers=[rogue])
    refusals = interlocks(plan_input(scratch_api(providers3),
                                     ZoneView(zone=ZONE, servers=tuple(servers))))
    assert [r.code for r in refusals] == ["DNSKEY_NOT_VALIDATABLE"]
    message = refusals[0].message
    assert message.startswith(f"{p1.label}: its DNSKEY RRset does not validate")
    assert f"RRSIGs by [{rogue.tag}]" in message
    assert f"API KSKs [{p1.ksk.tag}]" in message


def test_expired_dnskey_signature_is_refused(providers3: list[SimProvider]) -> None:
    data = plan_input(scratch_api(providers3), scratch_view(providers3))
    data.now = NOW + timedelta(days=30)
    assert refusal_codes(data) == ["DNSKEY_NOT_VALIDATABLE"] * 3


def test_every_refusal_is_reported_at_once(providers3: list[SimProvider]) -> None:
    p0, p1, p2 = providers3
    api = scratch_api(providers3)
    ksk, zsk = api_keys(p0)
    api["p0"] = api_state(p0, own=(ApiKey(ksk.key, "ksk", active=False, published=True,
                                          key_id="k"), zsk))
    servers = (
        server_view(p0, dnskeys=p0.own),
        server_view(p1, dnskeys=p1.own, dnskey_signers=[make_key(ksk=True)]),
        ServerView(provider="p2", server=p2.server, at=NOW, error="timeout"),
    )
    assert refusal_codes(plan_input(api, ZoneView(zone=ZONE, servers=servers))) == [
        "DNSKEY_NOT_VALIDATABLE", "NOT_SIGNED", "UNOBSERVABLE"]


# --- progress ---------------------------------------------------------------------------------


def _target_plan(providers: list[SimProvider]) -> SyncPlan:
    return plan_sync(plan_input(scratch_api(providers), scratch_view(providers)))


def test_served_progress_from_scratch_and_when_done(providers3: list[SimProvider]) -> None:
    plan = _target_plan(providers3)
    before = served_progress(plan, scratch_view(providers3), cds=False)
    assert before == Progress(0, 3, tuple(p.label for p in providers3))
    assert not before.done
    after = served_progress(plan, synced_view(providers3), cds=True)
    assert after == Progress(3, 3, ())
    assert after.done


def test_served_progress_names_the_lagging_server(providers3: list[SimProvider]) -> None:
    p0, p1, _ = providers3
    plan = _target_plan(providers3)
    servers = synced_servers(providers3)
    servers[1] = server_view(p1, dnskeys=[k for k in model2_keys(p1, providers3)
                                          if k is not p0.zsk],
                             cds_keys=[p.ksk for p in providers3])
    progress = served_progress(plan, ZoneView(zone=ZONE, servers=tuple(servers)), cds=False)
    assert progress == Progress(2, 3, (p1.label,))


def test_served_progress_checks_cds_only_when_asked(providers3: list[SimProvider]) -> None:
    p2 = providers3[2]
    plan = _target_plan(providers3)
    servers = synced_servers(providers3)
    servers[2] = server_view(p2, dnskeys=model2_keys(p2, providers3))  # keys yes, CDS none
    view = ZoneView(zone=ZONE, servers=tuple(servers))
    assert served_progress(plan, view, cds=False).done
    assert served_progress(plan, view, cds=True) == Progress(2, 3, (p2.label,))


def test_served_progress_counts_unreachable_server_as_lagging(
    providers3: list[SimProvider],
) -> None:
    p0 = providers3[0]
    plan = _target_plan(providers3)
    servers = [*synced_servers(providers3),
               ServerView(provider="p0", server="198.51.100.9:53", at=NOW, error="timeout")]
    progress = served_progress(plan, ZoneView(zone=ZONE, servers=tuple(servers)), cds=True)
    assert progress == Progress(3, 4, (f"{p0.name} (198.51.100.9:53)",))


def test_parent_progress(providers3: list[SimProvider]) -> None:
    plan = _target_plan(providers3)
    ksks = [p.ksk for p in providers3]
    view = ZoneView(zone=ZONE, servers=(), parent=(
        parent_view(ds_texts(ksks), server="192.0.2.100:53"),
        parent_view(ds_texts(ksks[:2]), server="192.0.2.101:53"),
        parent_view(ds_texts(ksks, digest_type=4), server="192.0.2.102:53"),
    ))
    assert parent_progress(plan, view) == Progress(2, 3, ("192.0.2.101:53",))


def test_parent_progress_counts_an_error_as_lagging(providers3: list[SimProvider]) -> None:
    plan = _target_plan(providers3)
    view = ZoneView(zone=ZONE, servers=(), parent=(
        ParentView(server="192.0.2.100:53", at=NOW, error="SERVFAIL"),
    ))
    assert parent_progress(plan, view) == Progress(0, 1, ("192.0.2.100:53",))


# --- parent_follows ---------------------------------------------------------------------------


def _ds(keys_: list[SigningKey], digest_type: int = 2) -> frozenset[Digest]:
    return frozenset(k.ds(digest_type) for k in keys_)


def test_parent_follows_exact_set(providers3: list[SimProvider]) -> None:
    ksks = [p.ksk for p in providers3]
    assert parent_follows(_ds(ksks), keys(ksks), ZONE_TEXT)


def test_parent_follows_with_extra_sha384_for_same_key(providers3: list[SimProvider]) -> None:
    ksks = [p.ksk for p in providers3]
    assert parent_follows(_ds(ksks) | _ds(ksks[:1], 4), keys(ksks), ZONE_TEXT)
    assert parent_follows(_ds(ksks, 4), keys(ksks), ZONE_TEXT)  # only SHA-384 is fine too


def test_parent_does_not_follow_with_ds_for_unknown_key(providers3: list[SimProvider]) -> None:
    ksks = [p.ksk for p in providers3]
    assert not parent_follows(_ds([*ksks, make_key(ksk=True)]), keys(ksks), ZONE_TEXT)


def test_parent_does_not_follow_when_a_ksk_is_missing(providers3: list[SimProvider]) -> None:
    ksks = [p.ksk for p in providers3]
    assert not parent_follows(_ds(ksks[:2]), keys(ksks), ZONE_TEXT)


def test_parent_follows_empty_cases(providers3: list[SimProvider]) -> None:
    ksks = [p.ksk for p in providers3]
    assert parent_follows(frozenset(), frozenset(), ZONE_TEXT)
    assert not parent_follows(frozenset(), keys(ksks), ZONE_TEXT)
    assert not parent_follows(_ds(ksks), frozenset(), ZONE_TEXT)


def test_parent_follows_with_extra_sha1_for_same_key(providers3: list[SimProvider]) -> None:
    ksks = [p.ksk for p in providers3]
    sha1 = frozenset(Digest.from_rdata(dns.dnssec.make_ds(ZONE, k.dnskey, "SHA1",
                                                          validating=True)) for k in ksks)
    assert parent_follows(_ds(ksks) | sha1, keys(ksks), ZONE_TEXT)
    assert parent_follows(sha1, keys(ksks), ZONE_TEXT)
    assert not parent_follows(sha1, keys([*ksks, make_key(ksk=True)]), ZONE_TEXT)


# --- rendering ------------------------------------------------------------------------------


def test_plan_json_and_describe(providers3: list[SimProvider]) -> None:
    plan = _target_plan(providers3)
    doc = plan.as_json()
    assert doc["zone"] == ZONE_TEXT
    assert len(doc["actions"]) == 6
    assert doc["actions"][0] == {"provider": "p0", "kind": "set-dnskeys",
                                 "add": list(plan.key_actions[0].add), "remove": []}
    assert doc["served_dnskeys"]["p1"] == sorted(k.tag for k in all_keys(providers3))
    assert doc["cds"] == sorted(d.text for d in plan.cds_target)
    action = plan.key_actions[0]
    assert action.describe() == f"p0: foreign DNSKEYs: add {', '.join(action.add)}"
    cds = plan.cds_actions[0]
    assert cds.describe().startswith("p0: CDS/CDNSKEY: add DS ")
    remove_only = Action("p1", "set-dnskeys", add=(), remove=("1/ECDSAP256SHA256/ZSK",))
    assert remove_only.describe() == "p1: foreign DNSKEYs: remove 1/ECDSAP256SHA256/ZSK"
