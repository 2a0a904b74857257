"""Converging a zone whose signers each hold their own keys (RFC 8901 Model 2): every
provider imports the others' keys into its DNSKEY RRset and publishes the identical
CDS/CDNSKEY RRsets (one record per signer KSK), so the parent holds one DS per signer."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime

from core.config import ZoneConfig
from core.errors import Refused, UsageError
from core.keys import Key, Role, parent_follows
from core.observation import ZoneView
from orchestrator.decide.checks import CheckContext, precondition_problems
from orchestrator.decide.goals import CrossImportGoal, Goal
from orchestrator.decide.intent import StepIntent
from orchestrator.decide.invariant import check_zone
from orchestrator.decide.membership import Member
from orchestrator.decide.process_data import ProcessData
from orchestrator.decide.rollover import Rolled, pick_old, start_problems
from orchestrator.decide.sync_plan import (
    Action,
    PlanInput,
    SyncPlan,
    interlocks,
    plan_sync,
    served_progress,
)
from orchestrator.engine.converge import Applied, KeyHolder, SyncPreview
from orchestrator.engine.fanout import at_every_provider
from orchestrator.engine.key_holders import ProviderKeys
from orchestrator.observe.observer import last_owned
from orchestrator.reports import content_findings
from orchestrator.runtime import Reporter, Runtime
from providers.base import Capability
from runbooks import runbook


def render_plan(plan: SyncPlan, parent_ok: bool) -> list[str]:
    lines = [f"{plan.zone}: plan ({len(plan.actions)} change{'s' * (len(plan.actions) != 1)})"]
    lines += [f"  1. {a.describe()}" for a in plan.key_actions]
    lines += [f"  2. {a.describe()}" for a in plan.cds_actions]
    lines += [f"  note: {note}" for note in plan.notes]
    if plan.actions:
        lines.append("  then wait until every nameserver of every provider serves the result")
    if not parent_ok:
        lines.append("  then wait for the parent's DS RRset to match the CDS "
                     f"({', '.join(str(d.key_tag) for d in sorted(plan.cds_target))})")
    return lines


async def apply_actions(rt: Runtime, zone: str, actions: Sequence[Action]) -> None:
    """Apply one phase at every provider concurrently; the next attempt replans."""

    async def one(action: Action) -> None:
        provider = rt.provider(action.provider)
        if action.kind == "set-dnskeys":
            await provider.set_foreign_dnskeys(zone, action.dnskeys, action.ttl)
        else:
            await provider.set_cds(zone, action.cds, action.cdnskey, action.ttl)

    await at_every_provider([one(a) for a in actions],
                            failed=f"{zone}: {{failed}} of {{total}} changes failed; the others "
                            "were applied (all are additive). Fix the cause and run again")


class CrossImport:
    kind = "cross-import"
    resigns = False  # the daemon re-syncs it on every scan (signatures expire)
    own_keys_suffice = False  # the target needs only each signer's own keys from its API
    capability = Capability.IMPORT_FOREIGN_DNSKEY | Capability.PUBLISH_CDS

    def __init__(self, rt: Runtime, zone: ZoneConfig, report: Reporter) -> None:
        self.rt = rt
        self.zone = zone
        self.report = report

    def _input(self, view: ZoneView, intent: StepIntent) -> PlanInput:
        return PlanInput(zone=self.zone.name, signers=list(intent.key_signers),
                         policy=self.zone.policy, api=view.api, view=view,
                         now=datetime.now(UTC), last_owned=last_owned(self.rt, self.zone.name),
                         cds_exclude=intent.cds_exclude, force_remove=intent.force_remove)

    async def goal(self, step: object, intent: StepIntent, data: ProcessData,
                   view: ZoneView) -> Goal:
        return CrossImportGoal(plan_sync(self._input(view, intent)), cds=intent.cds)

    async def apply(self, goal: Goal, view: ZoneView) -> Applied:
        assert isinstance(goal, CrossImportGoal)
        actions = goal.plan.actions if goal.cds else goal.plan.key_actions
        await apply_actions(self.rt, self.zone.name, actions)
        after = dict(view.api)
        for a in actions:  # each action replaces the provider's whole foreign/CDS set
            after[a.provider] = (
                dataclasses.replace(after[a.provider], foreign_dnskeys=frozenset(a.dnskeys))
                if a.kind == "set-dnskeys" else
                dataclasses.replace(after[a.provider], cds=frozenset(a.cds),
                                    cdnskey=frozenset(a.cdnskey)))
        return Applied([a.describe() for a in actions], api=after)

    async def keep(self, goal: Goal, view: ZoneView) -> Applied:
        # The API no longer shows what converge set (someone edited it, or the provider
        # dropped it): apply again; observation decides whether it is live.
        return await self.apply(goal, view)

    def key_holder(self, signer: str) -> KeyHolder:
        return ProviderKeys(self.rt.provider(signer), self.zone)

    async def rollover_start(self, role: Role, signer: str | None,
                             view: ZoneView) -> tuple[Rolled, list[str]]:
        members = self.rt.signers(self.zone)
        if signer is None:
            raise UsageError(f"{self.zone.name} is a model 2 zone: --signer NAME is required "
                             f"(signers: {', '.join(members)})")
        if signer not in members:
            raise UsageError(f"{signer!r} is not a signer of {self.zone.name} "
                             f"(signers: {', '.join(members)})")
        if not self.rt.provider(signer).can(Capability.GENERATE_KEYS):
            raise Refused(f"{signer} cannot generate keys on request; it must roll its own keys")
        data = self._input(view, StepIntent(tuple(members)))
        problems = start_problems(data, check_zone(
            view, datetime.now(UTC), expect_identical=self.zone.policy.import_ksks))
        old, why = pick_old(view.api[signer], role)
        if why or old is None:
            problems.append(why or "no key to replace")
            return Rolled(signer, role, Key("256 3 13 AA=="), ""), problems
        return Rolled(signer=signer, role=role, old=old.key, old_id=old.key_id,
                      existing_ids=tuple(k.key_id for k in view.api[signer].own_keys)), problems

    async def member_start_problems(self, view: ZoneView, provider: str, direction: str,
                                    members: list[str]) -> list[str]:
        now = datetime.now(UTC)
        findings = check_zone(view, now, expect_identical=self.zone.policy.import_ksks)
        if direction != "add":
            data = self._input(view, StepIntent(tuple(members)))
            step = runbook("signer-remove", self.zone.model).steps[0]
            ctx = CheckContext(step, view, CrossImportGoal(plan_sync(data)),
                               Member(provider, "remove"), tuple(members))
            return start_problems(data, findings) + precondition_problems(ctx)
        # The joining signer is not in sync yet by definition; check the others, and the
        # joiner against the interlocks (serves the zone, signed, same algorithm).
        current = dataclasses.replace(view, servers=tuple(
            s for s in view.servers if s.provider != provider))
        data = self._input(current, StepIntent(tuple(members)))
        data.api = {k: v for k, v in view.api.items() if k != provider}
        if provider in view.reachable():
            findings = [f for f in findings if f.provider != provider]
        steady = start_problems(data, findings)
        joined = self._input(view, StepIntent((*members, provider)))
        steady += [f"[{r.code}] {r.message}" for r in interlocks(joined)
                   if r.code != "DNSKEY_NOT_VALIDATABLE" or provider in r.message]
        steady += [f"[{f.code}] {f.message}: bring {provider}'s zone data in line first"
                   for f in await content_findings(self.rt, self.zone, [*members, provider])]
        return steady

    async def sync_preview(self, view: ZoneView, *, dry_run: bool) -> SyncPreview:
        data = self._input(view, StepIntent(tuple(self.rt.signers(self.zone))))
        refusals = interlocks(data)
        if refusals:
            raise Refused(f"{self.zone.name}: refusing to sync; nothing was changed",
                          [f"[{r.code}] {r.message}" for r in refusals])
        plan = plan_sync(data)
        parent_ok = all(p.error is None
                        and parent_follows(p.ds_set, plan.cdnskey_target, self.zone.name)
                        for p in view.parent)
        served_ok = served_progress(plan, view, cds=True).done
        return SyncPreview(plan.empty and served_ok and parent_ok,
                           render_plan(plan, parent_ok), {"plan": plan.as_json()})
