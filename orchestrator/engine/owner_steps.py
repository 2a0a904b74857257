"""Model 1 rollovers on the process engine: what differs from Model 2.

- A provider ZSK rollover changes the provider's own keys exactly as in Model 2 (through
  its key API, e.g. keymgr), but "converge" means: the owner signs the new combined DNSKEY
  RRset and every provider imports it (an SKR), instead of foreign-key imports.
- An owner KSK rollover changes keys in the owner's KSK store (signer ``"owner"``): a
  successor is generated there; "removed" just leaves it out of the combined set.

Pure helpers first (target and observations per step), then the I/O the engine calls.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from core.config import ZoneConfig
from core.errors import Refused, UsageError
from core.keys import Key, Role, parent_follows
from core.observation import ZoneView
from orchestrator.decide import membership
from orchestrator.decide.invariant import check_zone
from orchestrator.decide.membership import Member
from orchestrator.decide.owner_signing import Model1Target, served_progress, zone_problems
from orchestrator.decide.rollover import Rolled, pick_old
from orchestrator.decide.rollover import unmet as model2_unmet
from orchestrator.decide.sync_plan import SyncPlan
from orchestrator.engine.owner_sync import choose_owner_keys, deliver, open_store, zsks_of
from orchestrator.engine.runtime import Runtime
from providers.kskstore import KskStore, StoredKey
from runbooks import Step

OWNER = "owner"


def _state_of(step: Step, which: str) -> str:
    """A key the step does not mention keeps signing (it was made active earlier)."""
    return step.keys.get(which, "active")  # type: ignore[call-overload,no-any-return]


def step_target(zone: ZoneConfig, step: Step, rolled: Rolled, view: ZoneView,
                steady_owner: frozenset[Key], signers: list[str]) -> Model1Target:
    """The combined set the owner signs in this step."""
    zsks = zsks_of(view, signers)
    if rolled.signer != OWNER:
        return Model1Target(zone.name, steady_owner, steady_owner, steady_owner, zsks)
    keys = {"old": rolled.old, "new": rolled.new}
    owner = {k for w, k in keys.items() if k is not None and _state_of(step, w) != "removed"}
    signing = {k for w, k in keys.items() if k is not None and _state_of(step, w) == "active"}
    named = rolled.new if step.cds == "new" else rolled.old
    cds = {named} if named is not None and named in owner else set(owner)
    return Model1Target(zone.name, frozenset(owner), frozenset(signing), frozenset(cds), zsks)


def unmet(step: Step, rolled: Rolled | None, target: Model1Target,
          view: ZoneView) -> list[str]:
    out: list[str] = []
    for name in step.observe:
        if name == "served":
            # only the providers the set is delivered to (a leaving one keeps its old set)
            mine = replace(view, servers=tuple(s for s in view.servers
                                               if s.provider in target.zsks))
            progress = served_progress(target, mine)
            if not progress.done:
                out.append("the owner-signed combined set at " + ", ".join(progress.lagging))
        elif name == "parent":
            lag = [p.server for p in view.parent if p.error is not None
                   or not parent_follows(p.ds_set, target.cds, target.zone)]
            if lag:
                tags = ", ".join(str(k.key_tag) for k in sorted(target.cds))
                out.append(f"parent DS = {tags} at {', '.join(lag)}")
        elif name == "dnskey-signers":
            want = frozenset(k.key_tag for k in target.signing)
            lag = [s.label for s in view.servers
                   if s.dnskey is None or not want <= s.dnskey.signer_tags]
            if lag:
                out.append(f"DNSKEY RRset signed by {sorted(want)} at {', '.join(lag)}")
        elif name == "data-signers" and rolled is not None and rolled.signer != OWNER:
            empty = SyncPlan(target.zone, (), (), {}, frozenset(), frozenset())
            out += model2_unmet(step.model_copy(update={"observe": ["data-signers"]}), rolled,
                                empty, view)
    return out


# -- I/O ----------------------------------------------------------------------------------

class Model1Steps:
    """What the engine does differently for a model 1 zone."""

    def __init__(self, rt: Runtime, zone: ZoneConfig) -> None:
        self.rt = rt
        self.zone = zone

    def _stored(self, store: KskStore) -> list[StoredKey]:
        return store.list_keys()

    async def start(self, key_role: Role, signer: str | None,
                    view: ZoneView) -> tuple[Rolled, list[str]]:
        """The rollover's keys and why it may not start (empty list: it may)."""
        from dns.dnssectypes import Algorithm

        zone = self.zone
        signers = self.rt.signers(zone)
        if key_role == "csk":
            raise UsageError(f"{zone.name} is a model 1 zone: CSKs are impossible there "
                             "(RFC 8901 sec. 7); roll the owner KSK (--key ksk) or a "
                             "provider's ZSK (--key zsk --signer NAME)")
        problems = zone_problems(view, int(Algorithm.from_text(zone.policy.algorithm)), signers)
        store = open_store(zone)
        try:
            stored = self._stored(store)
            owner = choose_owner_keys(view, stored) if stored else frozenset()
            target = Model1Target(zone.name, owner, owner, owner, zsks_of(view, signers))
            progress = served_progress(target, view)
            if not stored or not progress.done:
                problems.append(f"{zone.name} is not in sync; run 'multisigner sync "
                                f"{zone.name}' first")
            elif not all(p.error is None and parent_follows(p.ds_set, owner, zone.name)
                         for p in view.parent):
                problems.append("the parent's DS does not name the owner KSK yet; run "
                                f"'multisigner sync {zone.name}' and let it finish")
            problems += [f"[{f.code}] {f.message}" for f in check_zone(
                view, datetime.now(UTC), refresh=zone.policy.signature_refresh)
                if f.severity == "breach"]
            if key_role == "ksk":
                if signer not in (None, OWNER):
                    raise UsageError(f"{zone.name} is a model 1 zone: the KSK is the owner's; "
                                     "roll it without --signer")
                if len(owner) != 1:
                    problems.append(f"the zone serves {len(owner)} owner KSKs; a rollover "
                                    "needs exactly one")
                    return Rolled(OWNER, "ksk", Key("257 3 13 AA=="), ""), problems
                (old,) = owner
                by_key = {s.dnskey: s.key_id for s in stored}
                return Rolled(OWNER, "ksk", old, by_key[old],
                              existing_ids=tuple(by_key.values())), problems
        finally:
            store.close()
        if signer is None or signer not in signers:
            raise UsageError(f"--signer must name a signer of {zone.name} "
                             f"(signers: {', '.join(signers)})")
        old_key, why = pick_old(view.api[signer], "zsk")
        if why or old_key is None:
            return Rolled(signer, "zsk", Key("256 3 13 AA=="), ""), [*problems, why or "?"]
        return Rolled(signer, "zsk", old_key.key, old_key.key_id,
                      existing_ids=tuple(k.key_id for k in view.api[signer].own_keys)), problems

    def owner_act(self, step: Step, rolled: Rolled) -> tuple[Rolled, list[str]]:
        """Owner KSK operations: only creation touches the store (a withdrawn KSK simply
        leaves the signed set; the key itself is kept, the owner archives it)."""
        if step.keys.get("new") not in ("active", "published") or rolled.new is not None:
            return rolled, []
        store = open_store(self.zone)
        try:
            fresh = [s for s in self._stored(store) if s.key_id not in rolled.existing_ids]
            if fresh:  # created by an interrupted attempt: adopt it
                made, verb = fresh[0], "adopted"
            else:
                made, verb = store.generate(), "generated"
        finally:
            store.close()
        rolled = Rolled(rolled.signer, rolled.role, rolled.old, rolled.old_id, made.dnskey,
                        made.key_id, rolled.existing_ids)
        return rolled, [f"{verb} owner KSK {made.key_tag} in the key store"]

    async def converge(self, step: Step, rolled: Rolled,
                       view: ZoneView) -> tuple[list[str], Model1Target]:
        return await self._deliver(lambda store: self.target(step, rolled, view, store), view)

    async def _deliver(self, make: Callable[[KskStore], Model1Target],
                       view: ZoneView) -> tuple[list[str], Model1Target]:
        """Build the target with the owner's key store open, deliver it, close the store."""
        store = open_store(self.zone)
        try:
            target = make(store)
            _, done = await deliver(self.rt, self.zone, store, target, view)
        finally:
            store.close()
        return done, target

    def target_for(self, step: Step, data: dict[str, Any], view: ZoneView,
                   store: KskStore | None = None) -> Model1Target:
        """The step's combined set, for a rollover (``rolled``) or a signer change
        (``member``: whose ZSKs are in it depends on the step)."""
        if "rolled" in data:
            return self.target(step, Rolled.from_data(data["rolled"]), view, store)
        member = Member.from_data(data["member"])
        signers = membership.key_signers(step, member, self.rt.signers(self.zone))
        own = store or open_store(self.zone)
        try:
            steady = choose_owner_keys(view, self._stored(own))
        finally:
            if store is None:
                own.close()
        return Model1Target(self.zone.name, steady, steady, steady, zsks_of(view, signers))

    async def converge_for(self, step: Step, data: dict[str, Any],
                           view: ZoneView) -> tuple[list[str], Model1Target]:
        return await self._deliver(lambda store: self.target_for(step, data, view, store),
                                   view)

    def member_start_problems(self, view: ZoneView, provider: str, direction: str,
                              members: list[str]) -> list[str]:
        """Before a model 1 signer change: the current signers in their steady state; a
        joining provider with the zone configured, an active ZSK of the zone's algorithm
        and no KSK of its own (it cannot serve before it gets the owner-signed set)."""
        from dns.dnssectypes import Algorithm

        zone = self.zone
        out = zone_problems(view, int(Algorithm.from_text(zone.policy.algorithm)),
                            [*members, *([provider] if direction == "add" else [])])
        current = replace(view, servers=tuple(s for s in view.servers if s.provider in members))
        store = open_store(zone)
        try:
            stored = self._stored(store)
            owner = choose_owner_keys(current, stored) if stored else frozenset()
        finally:
            store.close()
        target = Model1Target(zone.name, owner, owner, owner, zsks_of(current, members))
        progress = served_progress(target, current)
        if not owner or not progress.done:
            out.append(f"{zone.name} is not in sync; run 'multisigner sync {zone.name}' first")
        out += [f"[{f.code}] {f.message}" for f in check_zone(
            current, datetime.now(UTC), refresh=zone.policy.signature_refresh)
            if f.severity == "breach"]
        return out

    def target(self, step: Step, rolled: Rolled, view: ZoneView,
               store: KskStore | None = None) -> Model1Target:
        own = store or open_store(self.zone)
        try:
            steady = choose_owner_keys(view, self._stored(own))
        finally:
            if store is None:
                own.close()
        return step_target(self.zone, step, rolled, view, steady, self.rt.signers(self.zone))



def refuse(zone: ZoneConfig, kind: str, problems: list[str]) -> Refused:
    return Refused(f"{zone.name}: refusing to start a {kind}; nothing was changed", problems)
