"""``multisigner sync``: bring a Model 2 zone to its steady state, observed at every step.

Order (runbooks/sync-model2.toml): check everything first (APIs, every nameserver,
interlocks) → import keys at every provider → wait until every nameserver serves the
target DNSKEY RRsets → publish identical CDS/CDNSKEY everywhere → wait until served →
wait for the parent's DS to follow. Each phase is a persisted transition; a failure stops
the run, is recorded, and leaves a state the next run plans from (the plan is always
recomputed from observation, so re-running finishes the job).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import dns.rdatatype

from core.config import ZoneConfig
from core.errors import ProviderError, Refused
from core.keys import parent_follows
from core.observation import ZoneView
from orchestrator.decide.evidence import cache_settles_at, ceil_seconds, view_evidence
from orchestrator.decide.sync_plan import (
    Action,
    PlanInput,
    Progress,
    SyncPlan,
    interlocks,
    plan_sync,
    served_progress,
)
from orchestrator.engine.runtime import Runtime, holder_id
from orchestrator.engine.sync_process import LEASE_SECONDS, SyncProcess
from orchestrator.engine.waiting import Reporter
from orchestrator.observe.observer import last_owned, observe, observe_servers, record
from providers.base import Capability

Status = Literal["in-sync", "synced", "dry-run", "failed", "refused"]


@dataclass
class SyncResult:
    zone: str
    status: Status
    message: str
    plan: SyncPlan | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("in-sync", "synced", "dry-run")


def render_plan(plan: SyncPlan, parent_ok: bool) -> list[str]:
    lines = [f"{plan.zone}: plan ({len(plan.actions)} change{'s' * (len(plan.actions) != 1)})"]
    for action in plan.key_actions:
        lines.append(f"  1. {action.describe()}")
    for action in plan.cds_actions:
        lines.append(f"  2. {action.describe()}")
    for note in plan.notes:
        lines.append(f"  note: {note}")
    if plan.actions:
        lines.append("  then wait until every nameserver of every provider serves the result")
    if not parent_ok:
        lines.append("  then wait for the parent's DS RRset to match the CDS "
                     f"({', '.join(str(d.key_tag) for d in sorted(plan.cds_target))})")
    return lines


async def sync_zone(
    rt: Runtime,
    zone: ZoneConfig,
    *,
    dry_run: bool,
    report: Reporter,
    out: Reporter,
) -> SyncResult:
    if zone.model == 1:
        from orchestrator.engine.owner_sync import sync_model1

        status = await sync_model1(rt, zone, dry_run=dry_run, report=report, out=out)
        return SyncResult(zone.name, status, status)  # type: ignore[arg-type]
    running = rt.store.active_process(zone.name)
    if running is not None and running.kind != "sync":
        raise Refused(f"{zone.name} has a running {running.kind} process {running.id} "
                      f"(state {running.state}); sync would interfere. Let it finish "
                      "('multisigner step' / 'run') or abort it")
    for name in rt.signers(zone):
        provider = rt.provider(name)
        for cap in (Capability.IMPORT_FOREIGN_DNSKEY, Capability.PUBLISH_CDS):
            if not provider.can(cap):
                raise Refused(f"{zone.name}: provider {name} ({provider.type_name}) cannot "
                              f"{str(cap.name).lower().replace('_', ' ')}; it cannot be a Model 2 "
                              "signer")
    if dry_run:
        return await _plan_only(rt, zone, out)
    with rt.store.lease(zone.name, holder_id(), LEASE_SECONDS):
        return await _sync_locked(rt, zone, report, out)


async def _observe_and_plan(
    rt: Runtime, zone: ZoneConfig
) -> tuple[SyncPlan, ZoneView, bool, bool]:
    """(plan, view, steady, parent_ok): steady = nothing to change and the parent follows."""
    view, errors = await observe(rt, zone)
    if errors:
        raise Refused(f"{zone.name}: cannot sync, {len(errors)} provider(s) failed; nothing "
                      "was changed", [str(e) for e in errors.values()])
    data = PlanInput(zone=zone.name, signers=rt.signers(zone), policy=zone.policy,
                     api=view.api, view=view, now=datetime.now(UTC),
                     last_owned=last_owned(rt, zone.name))
    refusals = interlocks(data)
    if refusals:
        raise Refused(f"{zone.name}: refusing to sync; nothing was changed",
                      [f"[{r.code}] {r.message}" for r in refusals])
    plan = plan_sync(data)
    parent_ok = all(p.error is None and parent_follows(p.ds_set, plan.cdnskey_target, zone.name)
                    for p in view.parent)
    served_ok = served_progress(plan, view, cds=True).done
    return plan, view, parent_ok and served_ok, parent_ok


async def _plan_only(rt: Runtime, zone: ZoneConfig, out: Reporter) -> SyncResult:
    plan, _view, steady, parent_ok = await _observe_and_plan(rt, zone)
    if plan.empty and steady:
        out(f"{zone.name}: in sync; nothing to change")
        return SyncResult(zone.name, "in-sync", "in sync", plan)
    for line in render_plan(plan, parent_ok):
        out(line)
    out(f"{zone.name}: dry run; nothing was changed")
    return SyncResult(zone.name, "dry-run", "dry run", plan)


async def _sync_locked(rt: Runtime, zone: ZoneConfig, report: Reporter,
                       out: Reporter) -> SyncResult:
    plan, view, steady, parent_ok = await _observe_and_plan(rt, zone)
    if plan.empty and steady:
        out(f"{zone.name}: in sync; nothing to change")
        return SyncResult(zone.name, "in-sync", "in sync", plan)
    for line in render_plan(plan, parent_ok):
        out(line)
    async def served(cds: bool) -> Progress:
        wanted = (dns.rdatatype.DNSKEY, dns.rdatatype.CDS, dns.rdatatype.CDNSKEY)
        servers = await observe_servers(rt, zone, only=wanted if cds else wanted[:1])
        # Remember intermediate sets too: a resolver may cache any of them.
        record(rt, zone, servers, (), {}, datetime.now(UTC))
        return served_progress(plan, ZoneView(zone=view.zone, servers=servers), cds=cds)

    lagging = "a provider accepted the change but does not serve it"
    async with SyncProcess(rt, zone, report, reason="sync requested", data=plan.as_json(),
                           evidence={"observed": view_evidence(view)}) as run:
        evidence: dict[str, Any] = {}
        if plan.key_actions:
            run.move("importing-keys", "add/remove foreign DNSKEYs",
                     {"actions": [a.as_json() for a in plan.key_actions]})
            await apply_actions(rt, zone.name, plan.key_actions)
            run.move("keys-propagating", "changes accepted by the provider APIs",
                     waiting_for="every nameserver serves the target DNSKEY RRsets")
            waited = await run.wait("DNSKEY RRsets at every nameserver",
                                    lambda: served(False), hint=lagging)
            evidence["dnskey_propagation_s"] = round(waited.seconds, 3)
        if plan.cds_actions:
            run.move("publishing-cds", "publish identical CDS/CDNSKEY at every provider",
                     {"actions": [a.as_json() for a in plan.cds_actions], **evidence})
            await apply_actions(rt, zone.name, plan.cds_actions)
        run.move("cds-propagating", "providers have their keys and CDS", evidence,
                 waiting_for="every nameserver serves the target DNSKEY and CDS/CDNSKEY RRsets")
        waited = await run.wait("DNSKEY+CDS at every nameserver", lambda: served(True),
                                hint=lagging)
        run.move("waiting-parent", "DNSKEY and CDS/CDNSKEY served by every nameserver",
                 {"cds_propagation_s": round(waited.seconds, 3)},
                 waiting_for="the parent's DS RRset matches the CDS")
        waited = await run.wait_parent(plan.cdnskey_target)
        final, _ = await observe(rt, zone, api=False)
        settled = cache_settles_at(final)
        run.move("done", "steady state reached",
                 {"parent_ds_wait_s": round(waited.seconds, 3), "observed": view_evidence(final),
                  "old_rrsets_cached_until": settled.isoformat() if settled else None},
                 status="done")
    out(f"{zone.name}: synced")
    if settled is not None:
        out(f"{zone.name}: resolvers may hold pre-sync DNSKEY/DS RRsets until "
            f"{ceil_seconds(settled)}; verify reports them until then")
    return SyncResult(zone.name, "synced", "synced", plan)


async def apply_actions(rt: Runtime, zone: str, actions: Sequence[Action]) -> None:
    """Apply one phase at every provider concurrently. Every action in a phase only adds
    to (or safely trims) what is served, so their order does not matter; if any fails the
    phase is reported as failed after the others finished, and the next run replans."""

    async def one(action: Action) -> None:
        provider = rt.provider(action.provider)
        if action.kind == "set-dnskeys":
            await provider.set_foreign_dnskeys(zone, action.dnskeys, action.ttl)
        else:
            await provider.set_cds(zone, action.cds, action.cdnskey, action.ttl)

    results = await asyncio.gather(*(one(a) for a in actions), return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    for failure in failures:
        if not isinstance(failure, ProviderError):
            raise failure
    if failures:
        raise Refused(f"{zone}: {len(failures)} of {len(actions)} changes failed; the others "
                      "were applied (all are additive). Fix the cause and re-run sync",
                      [str(f) for f in failures])
