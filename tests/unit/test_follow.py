"""decide.follow: a self-rolling signer's pre-published successor told apart from foreign
keys, and the poll interval derived from the providers' pre-publication windows."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import dns.rrset
from signing import NOW, ZONE, make_key, make_provider, synced_servers
from test_sync_plan import synced_api

from core.config import PolicyConfig
from core.keys import Key
from core.observation import ApiZoneState, ZoneView
from orchestrator.decide.follow import MIN_POLL, claim_successors, poll_interval
from orchestrator.decide.sync_plan import PlanInput, plan_sync

NOW_PROVIDERS = [make_provider(0), make_provider(1)]
VIEW = ZoneView(zone=ZONE, servers=tuple(synced_servers(NOW_PROVIDERS)))


def _successor_state() -> tuple[dict[str, ApiZoneState], Key]:
    api = synced_api(NOW_PROVIDERS)
    new = make_key(ksk=False).key
    p1 = api["p1"]
    api["p1"] = type(p1)(provider=p1.provider, own_keys=p1.own_keys,
                         foreign_dnskeys=p1.foreign_dnskeys | {new}, cds=p1.cds,
                         cdnskey=p1.cdnskey)
    return api, new


def test_unsigned_key_nobody_else_holds_is_the_signers_successor() -> None:
    api, new = _successor_state()
    claimed = claim_successors(api, {"p1"}, {})
    state = claimed["p1"]
    assert new not in state.foreign_dnskeys
    (succ,) = [k for k in state.own_keys if k.key == new]
    assert succ.published and not succ.active and succ.role == "zsk"
    # ...so the plan imports it at p0 before p1 signs with it
    plan = plan_sync(PlanInput("example.test.", ["p0", "p1"], PolicyConfig(), claimed,
                               VIEW, NOW))
    (action,) = plan.key_actions
    assert action.provider == "p0" and new in action.dnskeys and not action.remove


def test_without_the_claim_the_successor_is_not_imported() -> None:
    api, new = _successor_state()
    plan = plan_sync(PlanInput("example.test.", ["p0", "p1"], PolicyConfig(), api,
                               VIEW, NOW))
    assert all(new not in a.dnskeys for a in plan.key_actions if a.provider == "p0")


def test_a_key_another_signer_holds_or_held_stays_foreign() -> None:
    api, new = _successor_state()
    # p0 once held it (its retired key, still imported at p1): not p1's
    claimed = claim_successors(api, {"p1"}, {new: {"p0"}})
    assert new in claimed["p1"].foreign_dnskeys
    # p0's current keys imported at p1 are never claimed
    plain = synced_api(NOW_PROVIDERS)
    claimed = claim_successors(plain, {"p1"}, {})
    assert claimed["p1"].foreign_dnskeys == plain["p1"].foreign_dnskeys
    # a signer whose API lists its keys (not in by_signature) claims nothing
    claimed = claim_successors(api, set(), {})
    assert new in claimed["p1"].foreign_dnskeys
    # the signer's own retired key (only it ever held it) stays its own
    claimed = claim_successors(api, {"p1"}, {new: {"p1"}})
    assert new not in claimed["p1"].foreign_dnskeys
    # once imported elsewhere, the successor the database saw p1 hold stays p1's ...
    p0 = api["p0"]
    api["p0"] = ApiZoneState(provider="p0", own_keys=p0.own_keys,
                             foreign_dnskeys=p0.foreign_dnskeys | {new}, cds=p0.cds,
                             cdnskey=p0.cdnskey)
    claimed = claim_successors(api, {"p1"}, {new: {"p1"}})
    assert new not in claimed["p1"].foreign_dnskeys
    # ... but a key served elsewhere too that nobody was ever seen holding is a left-over
    # foreign key (a fresh state database), not a successor
    claimed = claim_successors(api, {"p1"}, {})
    assert new in claimed["p1"].foreign_dnskeys


def test_poll_interval_fits_the_window() -> None:
    s = timedelta(seconds=1)
    # window 10 s, DNSKEY TTL 2 s, import 0 s: half of the 8 s left
    assert poll_interval([10 * s], 2 * s, 0 * s) == 4 * s
    # the tightest provider decides
    assert poll_interval([3600 * s, 10 * s], 2 * s, 0 * s) == 4 * s
    assert poll_interval([], 2 * s, 0 * s) is None
    # a window too short for the TTL still polls, at the floor
    assert poll_interval([2 * s], 5 * s, 1 * s) == MIN_POLL


def test_a_retired_key_outlasts_the_signatures_a_dns_read_signer_made_with_it() -> None:
    """Withdrawal waits for TTLsig even when no API tells the zone's largest TTL (a signer
    read by DNS): the served SOA's TTL (3600 s) counts, not only the DNSKEY TTL (60 s)."""
    providers = NOW_PROVIDERS
    retired = make_key(ksk=False).key
    api = synced_api(providers)
    p0 = api["p0"]
    api["p0"] = ApiZoneState(provider="p0", own_keys=p0.own_keys,
                             foreign_dnskeys=p0.foreign_dnskeys | {retired}, cds=p0.cds,
                             cdnskey=p0.cdnskey)
    servers = tuple(synced_servers(providers))
    view = ZoneView(zone=ZONE, servers=tuple(
        dataclasses.replace(s, dnskey=dataclasses.replace(
            s.dnskey, rrset=_with_ttl(s.dnskey.rrset, 60))) if s.dnskey else s
        for s in servers))
    policy = PolicyConfig(propagation_delay=timedelta(0), safety_margin=timedelta(0))

    def plan_at(age: int) -> list[Key]:
        data = PlanInput("example.test.", ["p0", "p1"], policy, api, view, NOW,
                         last_owned={retired: NOW - timedelta(seconds=age)})
        return [k for a in plan_sync(data).key_actions for k in
                (set(p0.foreign_dnskeys | {retired}) - set(a.dnskeys))]

    assert retired not in plan_at(120)  # DNSKEY TTL long past, SOA signatures still cached
    assert retired in plan_at(3601)


def _with_ttl(rrset: dns.rrset.RRset, ttl: int) -> dns.rrset.RRset:
    out = rrset.copy()
    out.ttl = ttl
    return out
