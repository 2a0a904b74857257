"""The daemon (``multisigner run``): APScheduler wakes at the earliest persisted deadline
(or the poll interval), advances every due process, and starts rollovers that policy says
are due. SIGTERM/SIGINT stop it between steps: a tick in progress finishes its current
advance, so nothing is left between an intent and its outcome that a restart would not
also resume.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from orchestrator import logs
from orchestrator.config import ZoneConfig
from orchestrator.engine import Engine
from orchestrator.errors import MultisignerError
from orchestrator.keys import Role
from orchestrator.observation import ApiZoneState
from orchestrator.observer import read_apis, record
from orchestrator.runtime import Runtime, holder_id
from state.info import KeyInfo

MAX_ZONES_AT_ONCE = 32


@dataclass(frozen=True)
class DueRollover:
    signer: str
    role: Role
    key_tag: int
    age: timedelta


def due_rollovers(zone: ZoneConfig, signers: list[str], states: dict[str, ApiZoneState],
                  seen: Iterable[KeyInfo], now: datetime) -> list[DueRollover]:
    """Pure: which active keys have outlived their policy lifetime, oldest first. A key's
    age counts from when the controller first saw it (providers do not report creation
    time), which errs on the side of rolling later, never earlier."""
    first: dict[str, datetime] = {}
    for row in seen:
        known = first.get(row.dnskey)
        if row.server == "api" and row.origin and (known is None or row.first_seen < known):
            first[row.dnskey] = row.first_seen
    out: list[DueRollover] = []
    for name in signers:
        state = states.get(name)
        if state is None:
            continue
        for key in state.own_keys:
            if not key.active or key.key.text not in first:
                continue
            lifetime = zone.policy.zsk_lifetime if key.role == "zsk" else zone.policy.ksk_lifetime
            age = now - first[key.key.text]
            if age >= lifetime:
                out.append(DueRollover(name, key.role, key.key.key_tag, age))
    return sorted(out, key=lambda d: -d.age)


class Daemon:
    def __init__(self, rt: Runtime, *, poll_interval: float = 60.0) -> None:
        self.rt = rt
        self.poll_interval = poll_interval
        self.engine = Engine(rt, logs.progress)
        self.stopping = asyncio.Event()
        self.next_scan = datetime.now(UTC)

    async def tick(self) -> datetime:
        """One pass; returns when to wake next. Due processes are advanced on every wake;
        the policy scan (key ages, Model 1 re-signing) runs only every poll interval, so a
        rollover polling its nameservers every second does not drag every idle zone along."""
        gate = asyncio.Semaphore(MAX_ZONES_AT_ONCE)
        start = datetime.now(UTC)
        scan = start >= self.next_scan
        if scan:
            zones = list(self.rt.config.zones)
        else:
            due = {p.zone for p in self.rt.store.due_processes(start)}
            zones = [z for z in self.rt.config.zones if z.name in due]

        async def one(zone: ZoneConfig) -> None:
            async with gate:
                if self.stopping.is_set():
                    return
                try:
                    await self._zone(zone, scan=scan)
                except MultisignerError as exc:
                    logs.LOGGER.error(f"{zone.name}: {exc}", extra={"zone": zone.name})

        await asyncio.gather(*(one(z) for z in zones))
        now = datetime.now(UTC)
        if scan:
            self.next_scan = start + timedelta(seconds=self.poll_interval)
        wake = self.next_scan
        earliest = self.rt.store.earliest_deadline()
        if earliest is not None:
            wake = min(wake, earliest)
        return max(now, wake)

    async def _zone(self, zone: ZoneConfig, *, scan: bool = True) -> None:
        store = self.rt.store
        now = datetime.now(UTC)
        proc = store.active_process(zone.name)
        if proc is not None and proc.kind == "sync":
            # A foreground sync owns the zone while it holds the lease; a sync whose
            # controller died leaves a running record and a free lease: supersede it, or
            # the zone would never be looked after again.
            if not store.acquire_lease(zone.name, holder_id(), 60, now):
                return
            store.transition(proc.id, "superseded", actor=self.rt.actor,
                             reason="its controller is gone (zone lease free); the scheduler "
                             "takes over", status="aborted")
            store.release_lease(zone.name, holder_id())
            proc = None
        if proc is not None:
            if proc.next_check_at is None or proc.next_check_at <= now:
                outcome = await self.engine.advance(zone, proc.id)
                if outcome.waiting_for:
                    logs.progress(f"{zone.name}: {proc.kind} {proc.id[:8]} {outcome.state}: "
                                  f"waiting for {outcome.waiting_for}", zone.name)
            if scan and zone.model == 1:
                await self.engine.refresh_model1(zone, proc.id)
            return
        if not scan:
            return
        if zone.model == 1:
            # Model 1: keep the owner's signatures fresh and the combined set current;
            # a no-op ("in sync") unless something is due.
            from orchestrator.model1_sync import sync_model1

            await sync_model1(self.rt, zone, dry_run=False,
                              report=lambda line: logs.progress(line, zone.name),
                              out=lambda line: logs.progress(line, zone.name),
                              reason="scheduler: re-sign / keep the combined set current")
            return
        states, errors = await read_apis(self.rt, zone, keys_only=True)
        if errors:
            return
        record(self.rt, zone, (), (), states, now)  # key ages count from first sight
        due = due_rollovers(zone, self.rt.signers(zone), states, store.keys(zone.name), now)
        if due:
            first = due[0]
            proc = await self.engine.start_rollover(
                zone, first.role, first.signer,
                reason=f"policy: {first.role.upper()} {first.key_tag} at {first.signer} is "
                f"{first.age.days}d {first.age.seconds // 3600}h old")
            await self.engine.advance(zone, proc.id)

    async def run(self, once: bool) -> None:
        if once:
            await self.tick()
            return
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop)
        # APScheduler owns the clock (one date job per wake-up, at the earliest persisted
        # deadline or the poll interval); the passes themselves run here, outside the job,
        # so a long pass can never collide with the job that schedules the next one.
        scheduler = AsyncIOScheduler(timezone=UTC)
        scheduler.start()
        wake = asyncio.Event()

        async def ring() -> None:
            wake.set()

        logs.progress(f"daemon started: {len(self.rt.config.zones)} zone(s), poll interval "
                      f"{self.poll_interval:g}s")
        try:
            nxt = datetime.now(UTC)
            while not self.stopping.is_set():
                wake.clear()
                scheduler.add_job(ring, "date", run_date=nxt, id="wake", replace_existing=True,
                                  misfire_grace_time=None)
                stop = asyncio.ensure_future(self.stopping.wait())
                rung = asyncio.ensure_future(wake.wait())
                await asyncio.wait({stop, rung}, return_when=asyncio.FIRST_COMPLETED)
                for task in (stop, rung):
                    task.cancel()
                if self.stopping.is_set():
                    break
                nxt = await self.tick()
        finally:
            scheduler.shutdown(wait=False)
            logs.progress("daemon stopped")

    def _stop(self) -> None:
        logs.progress("stop requested; finishing the current step")
        self.stopping.set()
