"""Model 2 steady state: what every provider must publish, and the changes to get there.

Pure: provider API states, the current observation and policy in; interlock refusals
and an ordered plan out. The plan only *adds* keys a provider does not yet serve and
removes a foreign key only once no signer has owned it for long enough that no signature
made with it can still be cached (see ``stale_after``); so applying it never removes
something a resolver may still need.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import dns.dnssec
import dns.name
from dns.exception import DeniedByPolicy, ValidationFailure

from core.config import PolicyConfig
from core.keys import Digest, Key, ds_label, parent_follows, short_among
from core.observation import ApiZoneState, ZoneView
from orchestrator.decide.evidence import ceil_seconds
from orchestrator.decide.timing import measure

ActionKind = Literal["set-dnskeys", "set-cds"]


@dataclass(frozen=True)
class Action:
    provider: str
    kind: ActionKind
    add: tuple[str, ...]
    remove: tuple[str, ...]
    dnskeys: tuple[Key, ...] = ()  # set-dnskeys: the complete foreign set to PATCH
    cds: tuple[Digest, ...] = ()  # set-cds: the complete CDS set
    cdnskey: tuple[Key, ...] = ()
    ttl: int = 0

    def describe(self) -> str:
        what = "foreign DNSKEYs" if self.kind == "set-dnskeys" else "CDS/CDNSKEY"
        parts = []
        if self.add:
            parts.append("add " + ", ".join(self.add))
        if self.remove:
            parts.append("remove " + ", ".join(self.remove))
        return f"{self.provider}: {what}: {'; '.join(parts)}"

    def as_json(self) -> dict[str, Any]:
        return {"provider": self.provider, "kind": self.kind,
                "add": list(self.add), "remove": list(self.remove)}


@dataclass(frozen=True)
class SyncPlan:
    zone: str
    key_actions: tuple[Action, ...]
    cds_actions: tuple[Action, ...]
    served_target: dict[str, frozenset[Key]]  # DNSKEY set each provider must serve
    cds_target: frozenset[Digest]
    cdnskey_target: frozenset[Key]
    notes: tuple[str, ...] = ()

    @property
    def actions(self) -> tuple[Action, ...]:
        return self.key_actions + self.cds_actions

    @property
    def empty(self) -> bool:
        return not self.actions

    def as_json(self) -> dict[str, Any]:
        return {
            "zone": self.zone,
            "actions": [a.as_json() for a in self.actions],
            "served_dnskeys": {p: sorted(k.key_tag for k in ks)
                               for p, ks in sorted(self.served_target.items())},
            # tags are not identities (two keys can share one): tag~fingerprint per key
            "served_dnskey_ids": {p: sorted(f"{k.key_tag}~{k.fingerprint}" for k in ks)
                                  for p, ks in sorted(self.served_target.items())},
            "cds": sorted(d.text for d in self.cds_target),
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class Refusal:
    code: str
    message: str


@dataclass
class PlanInput:
    zone: str
    signers: list[str]
    policy: PolicyConfig
    api: dict[str, ApiZoneState]
    view: ZoneView
    now: datetime
    # when each key was last seen as some signer's *own* key (from the state DB)
    last_owned: dict[Key, datetime] = field(default_factory=dict)
    # A running process overrides the steady state: KSKs the CDS must not name yet (or any
    # more), and keys it withdraws whose timing it has already waited out.
    cds_exclude: frozenset[Key] = frozenset()
    force_remove: frozenset[Key] = frozenset()


def interlocks(data: PlanInput) -> list[Refusal]:
    """Everything that must hold before the first change (docs/design-notes.md, "Safety
    interlocks")."""
    out: list[Refusal] = []
    wanted = data.policy.algorithm_number
    algos: dict[str, frozenset[int]] = {}
    for name in data.signers:
        state = data.api[name]
        if not state.signing_ksks:
            out.append(Refusal("NOT_SIGNED", f"{name} has no active KSK/CSK for {data.zone}: "
                               "enable DNSSEC for the zone at that provider first"))
        if not any(k.active and k.role in ("zsk", "csk") for k in state.own_keys):
            out.append(Refusal("NOT_SIGNED", f"{name} has no active ZSK/CSK for {data.zone}"))
        algos[name] = state.algorithms
    if len(set(algos.values())) > 1 or any(a and a != {int(wanted)} for a in algos.values()):
        detail = "; ".join(f"{p}: {', '.join(dns.dnssec.algorithm_to_text(a) for a in sorted(v))}"
                           for p, v in sorted(algos.items()))
        out.append(Refusal("ALGORITHM_MISMATCH",
                           f"signers of {data.zone} must all use {data.policy.algorithm} "
                           f"(RFC 8901 sec. 4); they use {detail}. Re-key the odd signer or "
                           "change policy.algorithm"))
    for server in data.view.servers:
        if not server.ok:
            out.append(Refusal("UNOBSERVABLE", f"{server.label}: {server.error}"))
            continue
        if server.dnskey is None or server.dnskey.rrsigs is None:
            out.append(Refusal("NOT_SIGNED", f"{server.label} serves {data.zone} without a "
                               "signed DNSKEY RRset"))
            continue
        own = data.api[server.provider].signing_ksks
        if not _self_signed(server.dnskey, data.view.zone, data.now):
            out.append(Refusal("DNSKEY_NOT_VALIDATABLE",
                               f"{server.label}: its DNSKEY RRset does not validate under its "
                               f"own keys (RRSIGs by {sorted(server.dnskey.signer_tags)}; API "
                               f"KSKs {sorted(k.key_tag for k in own)}); fix the provider's "
                               "signing before syncing"))
    return out


def _self_signed(signed: Any, zone: dns.name.Name, now: datetime) -> bool:
    try:
        dns.dnssec.validate(signed.rrset, signed.rrsigs, {zone: signed.rrset},
                            now=now.timestamp())
    except (ValidationFailure, DeniedByPolicy):
        return False
    return True


def stale_after(policy: PolicyConfig, ttl_key: int, ttl_sig: int) -> timedelta:
    """How long after a key stopped being anyone's own key it may still validate cached
    data: the longest cached signature or DNSKEY set, plus propagation and margin."""
    return (timedelta(seconds=max(ttl_key, ttl_sig)) + policy.propagation_delay
            + policy.safety_margin)


def _imported(state: ApiZoneState, import_ksks: bool) -> frozenset[Key]:
    return frozenset(
        k.key for k in state.own_keys
        if k.published and (import_ksks or k.role in ("zsk", "csk"))
    )


def plan_sync(data: PlanInput) -> SyncPlan:
    zone = data.zone
    owned: dict[Key, str] = {}
    for name in data.signers:
        for key in data.api[name].published:
            owned[key] = name
    exports = {n: _imported(data.api[n], data.policy.import_ksks) for n in data.signers}
    ttl_key = max((s.dnskey.ttl for s in data.view.servers if s.dnskey), default=0)
    # TTLsig as every process measures it: the API's largest TTL where it tells, else (a
    # signer read by DNS only) the served SOA, negative-caching TTL and CDS/CDNSKEY, and
    # never less than TTLkey; cached DNSKEY RRsets count too. A withdrawal must outlast
    # every signature made with the key that a resolver may still hold.
    ttls = measure(data.view)
    grace = stale_after(data.policy, max(ttl_key, ttls.key),
                        max(ttls.sig, *(st.max_ttl or 0 for st in data.api.values())))
    notes: list[str] = []
    key_actions: list[Action] = []
    served: dict[str, frozenset[Key]] = {}
    # Every key in play, so that labels in the plan tell apart keys whose tags collide.
    every = frozenset(owned).union(*(data.api[n].foreign_dnskeys for n in data.signers))
    for name in data.signers:
        state = data.api[name]
        want = set().union(*(exports[o] for o in data.signers if o != name)) - state.published
        want -= data.force_remove
        for stale in state.foreign_dnskeys - want:
            if stale in owned or stale in data.force_remove:
                continue  # one of its own now, or a KSK left over with import_ksks off
            # Never seen at all: count from now (keep it one grace period, then remove).
            last = data.last_owned.get(stale, data.now)
            if data.now < last + grace:
                want.add(stale)
                notes.append(f"{name}: keeping retired key {stale.short()} until "
                             f"{ceil_seconds(last + grace)} (cached signatures)")
        served[name] = frozenset(want) | state.published
        if frozenset(want) != state.foreign_dnskeys:
            ttl = next((s.dnskey.ttl for s in data.view.of(name) if s.dnskey), ttl_key) or 3600
            key_actions.append(Action(
                provider=name, kind="set-dnskeys",
                add=tuple(short_among(k, every) for k in sorted(want - state.foreign_dnskeys)),
                remove=tuple(short_among(k, every)
                             for k in sorted(state.foreign_dnskeys - want)),
                dnskeys=tuple(sorted(want)), ttl=ttl,
            ))
    ksks = frozenset().union(*(data.api[n].signing_ksks for n in data.signers))
    ksks -= data.cds_exclude | data.force_remove
    cds_target = frozenset(k.ds(zone) for k in ksks)
    cdnskey_target = frozenset(ksks)
    cds_actions: list[Action] = []
    for name in data.signers:
        state = data.api[name]
        if state.cds == cds_target and state.cdnskey == cdnskey_target:
            continue
        ttl = next((s.dnskey.ttl for s in data.view.of(name) if s.dnskey), ttl_key) or 3600
        cds_actions.append(Action(
            provider=name, kind="set-cds",
            add=tuple(ds_label(d, cds_target | state.cds)
                      for d in sorted(cds_target - state.cds)),
            remove=tuple(ds_label(d, cds_target | state.cds)
                         for d in sorted(state.cds - cds_target)),
            cds=tuple(sorted(cds_target)), cdnskey=tuple(sorted(cdnskey_target)), ttl=ttl,
        ))
    return SyncPlan(zone, tuple(key_actions), tuple(cds_actions), served, cds_target,
                    cdnskey_target, tuple(notes))


@dataclass(frozen=True)
class Progress:
    ready: int
    total: int
    lagging: tuple[str, ...]

    @property
    def done(self) -> bool:
        return self.ready == self.total


def served_progress(plan: SyncPlan, view: ZoneView, *, cds: bool) -> Progress:
    """How many nameservers already serve the plan's target (DNSKEY, and CDS if asked)."""
    lagging: list[str] = []
    servers = [s for s in view.servers if s.provider in plan.served_target]
    for server in servers:
        ok = server.ok and server.keys == plan.served_target.get(server.provider)
        if ok and cds:
            ok = server.cds_set == plan.cds_target and server.cdnskey_set == plan.cdnskey_target
        if not ok:
            lagging.append(server.label)
    return Progress(len(servers) - len(lagging), len(servers), tuple(lagging))


def parent_progress(plan: SyncPlan, view: ZoneView) -> Progress:
    lagging = [
        p.server for p in view.parent
        if p.error is not None or not parent_follows(p.ds_set, plan.cdnskey_target, plan.zone)
    ]
    return Progress(len(view.parent) - len(lagging), len(view.parent), tuple(lagging))
