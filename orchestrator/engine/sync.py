"""``multisigner sync``: bring a zone to its model's steady state.

Checks first (every API and nameserver, the interlocks, the owner's key store); prints the
plan; then runs the zone's sync runbook (``runbooks/sync-model{1,2}.toml``) on the process
engine in the foreground, holding the zone's lease, until every nameserver serves the
target and the parent's DS follows. A failure or a wait past its timeout ends the run with
the process recorded as failed; the next run replans from observation.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from core import events
from core.config import ZoneConfig
from core.durations import format_duration
from core.errors import MultisignerError, Refused
from orchestrator.decide.evidence import cache_settles_at, ceil_seconds
from orchestrator.engine.lease import zone_lease
from orchestrator.engine.runner import Engine
from orchestrator.metrics.facts import signatures_expire
from orchestrator.observe.observer import observe
from orchestrator.runtime import LEASE_SECONDS, Reporter, Runtime
from state.info import ProcessInfo

Status = Literal["in-sync", "synced", "dry-run", "failed", "refused"]


@dataclass
class SyncResult:
    zone: str
    status: Status
    message: str

    @property
    def ok(self) -> bool:
        return self.status in ("in-sync", "synced", "dry-run")


async def sync_zone(rt: Runtime, zone: ZoneConfig, *, dry_run: bool, report: Reporter,
                    out: Reporter, reason: str = "sync requested") -> SyncResult:
    running = rt.store.active_process(zone.name)
    if running is not None and running.kind != "sync":
        raise Refused(f"{zone.name} has a running {running.kind} process {running.id} "
                      f"(state {running.state}); sync would interfere. Let it finish "
                      "('multisigner step' / 'run') or abort it")
    engine = Engine(rt, report)
    conv = engine.converger(zone)
    if dry_run:
        return await _preview(engine, zone, out, dry_run=True)
    async with zone_lease(rt.store, zone.name, LEASE_SECONDS):
        return await _preview(engine, zone, out, dry_run=False, reason=reason,
                              kind=conv.kind)


async def _preview(engine: Engine, zone: ZoneConfig, out: Reporter, *, dry_run: bool,
                   reason: str = "", kind: str = "") -> SyncResult:
    rt = engine.rt
    keys_only = engine.converger(zone).own_keys_suffice
    view, errors = await observe(rt, zone, keys_only=keys_only)
    if errors:
        raise Refused(f"{zone.name}: cannot sync, {len(errors)} provider(s) failed; nothing "
                      "was changed", [str(e) for e in errors.values()])
    preview = await engine.converger(zone).sync_preview(view, dry_run=dry_run)
    events.emit_if(lambda: events.ZoneChecked(zone.name, preview.in_sync, signatures_expire(view)))
    if preview.in_sync:
        out(f"{zone.name}: in sync; nothing to change")
        return SyncResult(zone.name, "in-sync", "in sync")
    for line in preview.lines:
        out(line)
    if dry_run:
        out(f"{zone.name}: dry run; nothing was changed")
        return SyncResult(zone.name, "dry-run", "dry run")
    proc = engine.start_sync(zone, view, dict(preview.evidence), reason)
    engine.seed(proc, view, keys_only)  # its first converge need not read it all again
    await _run_to_end(engine, zone, proc)
    final, _ = await observe(rt, zone, api=False)
    settled = cache_settles_at(final)
    out(f"{zone.name}: synced")
    if settled is not None:
        out(f"{zone.name}: resolvers may hold pre-sync DNSKEY/DS RRsets until "
            f"{ceil_seconds(settled)}; verify reports them until then")
    return SyncResult(zone.name, "synced", "synced")


async def _run_to_end(engine: Engine, zone: ZoneConfig, proc: ProcessInfo) -> None:
    """Advance until done, renewing the lease while waiting; a stall (a wait past its
    timeout) or a failure ends the run and records the sync as failed."""
    store, rt = engine.rt.store, engine.rt
    state = proc.state
    try:
        while True:
            outcome = await engine.advance(zone, proc.id, leased=True)
            state = outcome.state
            if outcome.finished:
                return
            if outcome.waiting_for and outcome.waiting_for.startswith("STALLED"):
                what = outcome.waiting_for.removeprefix("STALLED: ")
                if what.startswith("parent"):
                    limit, hint = zone.policy.parent_timeout, (
                        "the registry has not published the DS the registrar holds; check "
                        "the domain at Route 53 Domains, then re-run sync"
                        if zone.parent.type == "route53domains" else
                        "the parent has not followed the CDS; check the registry's CDS "
                        "scanning, then re-run sync")
                else:
                    limit, hint = zone.policy.propagation_timeout, (
                        "a provider accepted the change but does not serve it")
                raise Refused(f"{zone.name}: gave up waiting for "
                              f"{'parent DS' if what.startswith('parent') else 'nameservers'}"
                              f" after {format_duration(limit)} ({what}); {hint}")
            now = datetime.now(UTC)
            wake = outcome.next_check_at or now
            await asyncio.sleep(max(0.0, (wake - now).total_seconds()))
    except (MultisignerError, asyncio.CancelledError) as exc:
        why = str(exc) if isinstance(exc, MultisignerError) else "interrupted"
        why = why.removeprefix(f"{zone.name}: ")
        current = store.get_process(proc.id)
        if current is not None and current.status == "running":
            store.transition(proc.id, "failed", actor=rt.actor,
                             reason=f"failed in {current.state or state}: {why}",
                             status="failed")
        raise
