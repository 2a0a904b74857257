"""Converging a zone whose owner holds the only KSK (RFC 8901 Model 1): the owner signs
the combined DNSKEY RRset (owner KSKs + every provider's ZSKs) and CDS/CDNSKEY, and every
provider is handed that signed set to serve; re-signed before the signatures run out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import TypeVar

from core.config import ZoneConfig
from core.errors import Refused, UsageError
from core.keys import Key, Role, parent_follows
from core.observation import ZoneView
from orchestrator.decide.goals import Goal, OwnerSignedGoal
from orchestrator.decide.intent import StepIntent
from orchestrator.decide.invariant import check_zone
from orchestrator.decide.owner_keys import (
    choose_owner_keys,
    first_key_problems,
    step_target,
    store_problems,
)
from orchestrator.decide.owner_signing import (
    Model1Target,
    resign_due,
    served_progress,
    zone_problems,
)
from orchestrator.decide.process_data import ProcessData
from orchestrator.decide.rollover import OWNER, Rolled, pick_old
from orchestrator.engine.converge import Applied, KeyHolder, SyncPreview
from orchestrator.engine.key_holders import OwnerStoreKeys, ProviderKeys, off_loop, open_store
from orchestrator.engine.keyset_delivery import deliver
from orchestrator.runtime import Reporter, Runtime
from providers.base import Capability
from providers.kskstore import KskStore, StoredKey
from runbooks import Step

T = TypeVar("T")
PLACEHOLDER = Key("256 3 13 AA==")  # a Rolled for a refused start (never persisted)


def _listed(stored: list[StoredKey]) -> list[tuple[Key, datetime | None, str]]:
    return [(s.dnskey, s.created, s.key_id) for s in stored]


class OwnerSigned:
    kind = "owner-signed"
    resigns = True  # the daemon re-syncs it on every scan (signatures expire)
    own_keys_suffice = True  # the target needs only each signer's own keys from its API
    capability = Capability.SIGN_EXTERNAL_DNSKEY_SET

    def __init__(self, rt: Runtime, zone: ZoneConfig, report: Reporter) -> None:
        self.rt = rt
        self.zone = zone
        self.report = report

    async def _store(self, what: str, work: Callable[[KskStore], T]) -> T:
        """``work`` with the owner's key store open, in a worker thread with a timeout:
        opening a PKCS#11 token or calling KMS blocks, and must not stall the event loop
        (the zone lease is renewed there)."""
        def in_store() -> T:
            with open_store(self.zone) as store:
                return work(store)

        return await off_loop(f"{self.zone.name}: {what}", in_store)

    def _steady(self, view: ZoneView, store: KskStore) -> frozenset[Key]:
        """The owner KSKs of the steady state; refused (nothing changed) unless the store
        holds what the zone serves and what the parent's DS names (decide/owner_keys.py).
        An empty store is never a reason to make a key here: only sync's first-key path
        (:meth:`sync_preview`), ``ksk init`` and a KSK rollover make one."""
        stored = store.list_keys()
        problems = store_problems(view, frozenset(s.dnskey for s in stored), store.name)
        if problems:
            raise Refused(f"{self.zone.name}: refusing to sign; nothing was changed", problems)
        if not stored:
            raise Refused(f"{self.zone.name}: the owner KSK store {store.name} holds no key; "
                          f"run 'multisigner ksk init {self.zone.name}' (or 'sync') to make "
                          "the first one")
        return choose_owner_keys(view, _listed(stored))

    def _steady_if_any(self, view: ZoneView, store: KskStore,
                       stored: list[StoredKey]) -> frozenset[Key]:
        """:meth:`_steady`, or nothing for an empty store that may still get its first
        key (the caller then reports the zone as not in sync)."""
        if not stored and not store_problems(view, frozenset(), store.name):
            return frozenset()
        return self._steady(view, store)

    async def goal(self, step: Step | None, intent: StepIntent, data: ProcessData,
                   view: ZoneView) -> Goal:
        steady = await self._store("list the owner KSKs", lambda store: self._steady(view, store))
        target = step_target(self.zone.name, step, data.rolled, view, steady,
                             intent.key_signers)
        return OwnerSignedGoal(target, fresh_until=data.delivered_until)

    def _due(self, goal: OwnerSignedGoal, view: ZoneView) -> list[str]:
        mine = replace(view, servers=tuple(s for s in view.servers
                                           if s.provider in goal.target.zsks))
        return resign_due(mine, goal.target.signing, datetime.now(UTC),
                          self.zone.policy.signature_refresh)

    async def _deliver(self, target: Model1Target, view: ZoneView) -> Applied:
        with open_store(self.zone) as store:
            until, done = await deliver(self.rt, self.zone, store, target, view)
        return Applied(done, until)

    async def apply(self, goal: Goal, view: ZoneView) -> Applied:
        assert isinstance(goal, OwnerSignedGoal)
        if not goal.lagging(view) and not self._due(goal, view):
            # served everywhere, signatures fresh: nothing to deliver, the APIs unchanged
            return Applied(api=dict(view.api))
        return await self._deliver(goal.target, view)

    async def keep(self, goal: Goal, view: ZoneView) -> Applied:
        # Waiting for the parent can outlast the signatures: keep them fresh.
        assert isinstance(goal, OwnerSignedGoal)
        if not self._due(goal, view):
            return Applied()
        return await self._deliver(goal.target, view)

    def key_holder(self, signer: str) -> KeyHolder:
        if signer == OWNER:
            return OwnerStoreKeys(self.zone)
        return ProviderKeys(self.rt.provider(signer), self.zone)

    def _in_sync_problems(self, view: ZoneView, owner: frozenset[Key],
                          signers: list[str]) -> list[str]:
        zone = self.zone
        target = Model1Target(zone.name, owner, owner, owner,
                              {n: frozenset(k.key for k in view.api[n].own_keys
                                            if k.published and not k.key.sep)
                               for n in signers})
        out: list[str] = []
        if not owner or not served_progress(target, view).done:
            out.append(f"{zone.name} is not in sync; run 'multisigner sync {zone.name}' first")
        out += [f"[{f.code}] {f.message}" for f in check_zone(
            view, datetime.now(UTC), refresh=zone.policy.signature_refresh)
            if f.severity == "breach"]
        return out

    async def rollover_start(self, role: Role, signer: str | None,
                             view: ZoneView) -> tuple[Rolled, list[str]]:
        zone = self.zone
        signers = self.rt.signers(zone)
        if role == "csk":
            raise UsageError(f"{zone.name} is a model 1 zone: CSKs are impossible there "
                             "(RFC 8901 sec. 7); roll the owner KSK (--key ksk) or a "
                             "provider's ZSK (--key zsk --signer NAME)")
        if role == "ksk" and signer not in (None, OWNER):
            raise UsageError(f"{zone.name} is a model 1 zone: the KSK is the owner's; "
                             "roll it without --signer")
        if role == "zsk" and (signer is None or signer not in signers):
            raise UsageError(f"--signer must name a signer of {zone.name} "
                             f"(signers: {', '.join(signers)})")
        if role == "zsk" and signer is not None and \
                not self.rt.provider(signer).can(Capability.GENERATE_KEYS):
            raise Refused(f"{signer} cannot generate keys on request")
        problems = zone_problems(view, zone.policy.algorithm_number, signers)
        def listed(store: KskStore) -> tuple[list[StoredKey], frozenset[Key]]:
            stored = store.list_keys()
            return stored, self._steady_if_any(view, store, stored)

        stored, owner = await self._store("list the owner KSKs", listed)
        problems += self._in_sync_problems(view, owner, signers)
        if owner and not all(p.error is None and parent_follows(p.ds_set, owner, zone.name)
                             for p in view.parent):
            problems.append("the parent's DS does not name the owner KSK yet; run "
                            f"'multisigner sync {zone.name}' and let it finish")
        if role == "ksk":
            if len(owner) != 1:
                problems.append(f"the zone serves {len(owner)} owner KSKs; a rollover needs "
                                "exactly one")
                return Rolled(OWNER, "ksk", PLACEHOLDER, ""), problems
            (old,) = owner
            by_key = {s.dnskey: s.key_id for s in stored}
            return Rolled(OWNER, "ksk", old, by_key[old],
                          existing_ids=tuple(by_key.values())), problems
        assert signer is not None
        old_key, why = pick_old(view.api[signer], "zsk")
        if why or old_key is None:
            return Rolled(signer, "zsk", PLACEHOLDER, ""), [*problems, why or "no ZSK"]
        return Rolled(signer, "zsk", old_key.key, old_key.key_id,
                      existing_ids=tuple(k.key_id for k in view.api[signer].own_keys)), problems

    async def member_start_problems(self, view: ZoneView, provider: str, direction: str,
                                    members: list[str]) -> list[str]:
        """The current signers in their steady state; a joining provider with the zone
        configured, an active ZSK of the zone's algorithm and no KSK of its own (it cannot
        serve before it gets the owner-signed set)."""
        everyone = [*members, *([provider] if direction == "add" else [])]
        out = zone_problems(view, self.zone.policy.algorithm_number, everyone)
        current = replace(view, servers=tuple(s for s in view.servers if s.provider in members))
        owner = await self._store("list the owner KSKs", lambda store: self._steady_if_any(
            current, store, store.list_keys()))
        return out + self._in_sync_problems(current, owner, members)

    async def sync_preview(self, view: ZoneView, *, dry_run: bool) -> SyncPreview:
        zone = self.zone
        signers = self.rt.signers(zone)
        problems = zone_problems(view, zone.policy.algorithm_number, signers)
        if problems:
            raise Refused(f"{zone.name}: refusing to sync; nothing was changed", problems)
        evidence: dict[str, object] = {}
        def prepare(store: KskStore) -> SyncPreview | frozenset[Key]:
            if not store.list_keys():
                # A first key only where nothing can break; an empty store is otherwise
                # a wrong [zones.owner_ksk] (another directory, label, prefix or alias).
                if first_key_problems(view):
                    raise Refused(f"{zone.name}: refusing to sign; nothing was changed",
                                  store_problems(view, frozenset(), store.name)
                                  or first_key_problems(view))
                if dry_run:
                    return SyncPreview(False, [
                        f"{zone.name}: would generate the owner KSK in {store.name}"])
                made = store.generate()
                evidence["generated_owner_ksk"] = made.key_tag
                self.report(f"{zone.name}: generated owner KSK {made.key_tag} in "
                            f"{store.name}")
            return self._steady(view, store)

        prepared = await self._store("read the owner KSK store", prepare)
        if isinstance(prepared, SyncPreview):
            return prepared
        owner = prepared
        target = step_target(zone.name, None, None, view, owner, signers)
        stale = served_progress(target, view)
        due = resign_due(view, target.signing, datetime.now(UTC), zone.policy.signature_refresh)
        parent_ok = all(p.error is None and parent_follows(p.ds_set, target.cds, zone.name)
                        for p in view.parent)
        why = []
        if not stale.done:
            why.append(f"the combined DNSKEY RRset ({len(target.dnskeys)} keys) is not served "
                       f"at {', '.join(stale.lagging)}")
        if due:
            why.append(f"signatures expire within {zone.policy.signature_refresh} at "
                       + ", ".join(due))
        lines = [f"{zone.name}: plan (model 1)"]
        if why:
            lines.append(f"  1. sign the combined DNSKEY/CDS/CDNSKEY RRsets with owner KSK "
                         f"{', '.join(str(k.key_tag) for k in sorted(target.signing))} and "
                         f"import them at {', '.join(signers)} ({'; '.join(why)})")
        if not parent_ok:
            lines.append("  then wait for the parent's DS RRset to name the owner KSK")
        evidence["target"] = target.as_json()
        return SyncPreview(not why and parent_ok and not evidence.get("generated_owner_ksk"),
                           lines, evidence)
