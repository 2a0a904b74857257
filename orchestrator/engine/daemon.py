"""The daemon (``multisigner run``): APScheduler wakes at the earliest persisted deadline
and the due processes are advanced; beside that, every poll interval, a scan of every zone
starts rollovers that policy says are due and keeps Model 1 signatures fresh.
SIGTERM/SIGINT stop it between steps: a pass in progress finishes its current
advance, so nothing is left between an intent and its outcome that a restart would not
also resume.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from core import events
from core.config import ZoneConfig
from core.errors import MultisignerError
from core.keys import Key, Role, tag_label
from core.observation import ApiZoneState
from orchestrator import logs
from orchestrator.engine.follow import Follower, self_rolling
from orchestrator.engine.runner import Engine
from orchestrator.engine.sync import sync_zone
from orchestrator.observe.observer import read_apis, record
from orchestrator.runtime import Runtime, holder_id
from providers.base import Capability
from state.info import KeyInfo

MAX_ZONES_AT_ONCE = 32
STUCK_RETRY = timedelta(seconds=1)


@dataclass(frozen=True)
class DueRollover:
    signer: str
    role: Role
    key: Key
    age: timedelta
    label: str  # the key's tag, with its fingerprint if another key of the zone shares it


def due_rollovers(zone: ZoneConfig, signers: list[str], states: dict[str, ApiZoneState],
                  seen: Iterable[KeyInfo], now: datetime) -> list[DueRollover]:
    """Pure: which active keys have outlived their policy lifetime, oldest first. A key's
    age counts from when the controller first saw it (providers do not report creation
    time), which errs on the side of rolling later, never earlier."""
    first: dict[str, datetime] = {}  # by key digest: keys sharing a tag age apart
    for row in seen:
        known = first.get(row.key_digest)
        if row.server == "api" and row.origin and (known is None or row.first_seen < known):
            first[row.key_digest] = row.first_seen
    out: list[DueRollover] = []
    every = [k.key for state in states.values() for k in state.own_keys]
    for name in signers:
        state = states.get(name)
        if state is None:
            continue
        for key in state.own_keys:
            if not key.active or key.key.digest not in first:
                continue
            lifetime = zone.policy.zsk_lifetime if key.role == "zsk" else zone.policy.ksk_lifetime
            age = now - first[key.key.digest]
            if age >= lifetime:
                out.append(DueRollover(name, key.role, key.key, age,
                                       tag_label(key.key, every)))
    return sorted(out, key=lambda d: -d.age)


class Daemon:
    def __init__(self, rt: Runtime, *, poll_interval: float = 60.0) -> None:
        self.rt = rt
        self.poll_interval = poll_interval
        self.engine = Engine(rt, logs.progress)
        self.follower = Follower(self.engine)
        self.stopping = asyncio.Event()
        self.next_scan = datetime.now(UTC)
        # One zone is worked on by one pass at a time: the scan and the due-process
        # passes run concurrently (run()), and both may reach a zone with a process.
        self._zone_locks: dict[str, asyncio.Lock] = {}
        self._gates = {True: asyncio.Semaphore(MAX_ZONES_AT_ONCE),
                       False: asyncio.Semaphore(MAX_ZONES_AT_ONCE)}
        # Zones whose last pass failed or was refused: `run --once` exits 1 if any, so a
        # cron job sees it; the daemon only logs (and looks again on the next pass).
        self.failed: set[str] = set()

    async def tick(self, *, scan: bool) -> None:
        """One pass. A due pass (``scan=False``) advances the processes whose next check
        is due; a scan (``scan=True``) also looks at every idle zone (key ages, Model 1
        re-signing) and sets ``next_scan``. ``run`` keeps the two apart, so a process's
        deadline is never late by a scan of every zone; ``run --once`` does one scan."""
        start = datetime.now(UTC)
        if scan:
            zones = list(self.rt.config.zones)
        else:
            due = {p.zone for p in self.rt.store.due_processes(start)}
            zones = [z for z in self.rt.config.zones if z.name in due]
        gate = self._gates[scan]
        if events.wanted():
            events.emit(events.DaemonPassStarted(scan, len(zones), start))

        async def one(zone: ZoneConfig) -> None:
            async with gate:
                if self.stopping.is_set():
                    return
                lock = self._zone_locks.setdefault(zone.name, asyncio.Lock())
                if scan and lock.locked():
                    return  # a due pass is on it right now; the next scan looks again
                async with lock:
                    try:
                        await self._zone(zone, scan=scan)
                    except MultisignerError as exc:
                        self.failed.add(zone.name)
                        events.emit(events.ZonePassed(zone.name, str(exc)))  # failures only: rare
                        logs.LOGGER.error(f"{zone.name}: {exc}", extra={"zone": zone.name})
                    else:
                        self.failed.discard(zone.name)
                        events.emit_if(lambda: events.ZonePassed(zone.name, None))

        await asyncio.gather(*(one(z) for z in zones))
        if events.wanted():
            events.emit(events.DaemonPass(scan, len(zones), start, datetime.now(UTC)))
        if scan:
            self.next_scan = start + self.scan_interval

    @property
    def scan_interval(self) -> timedelta:
        """The poll interval, shortened where a zone's signers roll their own keys with a
        pre-publication window that a slower poll could miss (``decide.follow``)."""
        configured = timedelta(seconds=self.poll_interval)
        follow = self.follower.interval
        return configured if follow is None else min(configured, follow)

    async def _zone(self, zone: ZoneConfig, *, scan: bool = True) -> None:
        store = self.rt.store
        now = datetime.now(UTC)
        proc = store.active_process(zone.name)
        if proc is not None and proc.kind == "sync":
            # A foreground sync owns the zone while it holds the lease; a sync whose
            # controller died leaves a running record and a free lease: supersede it (sync
            # replans from observation), or the zone would never be looked after again.
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
            if scan:
                await self.engine.refresh(zone, proc.id)
            return
        if not scan:
            return
        if self.engine.converger(zone).resigns:
            # An owner-signed set must be re-signed before it expires and follow the
            # providers' ZSKs: a sync is a no-op ("in sync") unless something is due.
            await sync_zone(self.rt, zone, dry_run=False,
                            report=lambda line: logs.progress(line, zone.name),
                            out=lambda line: logs.progress(line, zone.name),
                            reason="scheduler: re-sign / keep the combined set current")
            return
        if self_rolling(self.rt, zone):
            # A signer rolls its own keys: follow it (a follow process when its key set
            # changed), else go on to the policy rollovers of the others.
            started, states = await self.follower.look(zone)  # observed and recorded
            if started is not None:
                await self.engine.advance(zone, started.id)
                return
        else:
            states, errors = await read_apis(self.rt, zone, keys_only=True)
            if errors:
                return
            record(self.rt, zone, (), (), states, now)  # key ages count from first sight
        # A signer that rolls its own keys (no key API) is never rolled by policy: its due
        # key would be refused on every pass and block the rollovers queued behind it.
        rollable = [s for s in self.rt.signers(zone)
                    if self.rt.provider(s).can(Capability.GENERATE_KEYS)]
        due = due_rollovers(zone, rollable, states, store.keys(zone.name), now)
        if due:
            first = due[0]
            proc = await self.engine.start_rollover(
                zone, first.role, first.signer,
                reason=f"policy: {first.role.upper()} {first.label} at {first.signer} is "
                f"{first.age.days}d {first.age.seconds // 3600}h old")
            await self.engine.advance(zone, proc.id)

    async def run(self, once: bool) -> None:
        if once:
            await self.tick(scan=True)
            return
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop)
        # APScheduler owns the clock (one date job per wake-up, at the earliest persisted
        # deadline); the passes run here, outside the job, so a long pass can never collide
        # with the job that schedules the next one. The scan of every zone runs beside
        # them in its own task: with many zones a scan takes seconds, and a hold deadline
        # falling inside it would otherwise wait for its end.
        scheduler = AsyncIOScheduler(timezone=UTC)
        scheduler.start()
        wake = asyncio.Event()

        async def ring() -> None:
            wake.set()

        async def scans() -> None:
            while not self.stopping.is_set():
                await self.tick(scan=True)
                wake.set()  # it may have started processes or moved deadlines
                delay = (self.next_scan - datetime.now(UTC)).total_seconds()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), max(0.0, delay))

        logs.progress(f"daemon started: {len(self.rt.config.zones)} zone(s), poll interval "
                      f"{self.poll_interval:g}s")
        scanning = asyncio.create_task(scans())
        last_due = datetime.min.replace(tzinfo=UTC)
        try:
            while not self.stopping.is_set():
                earliest = self.rt.store.earliest_deadline()
                # also wake with each scan (above), which picks up processes that other
                # controllers (a CLI 'rollover' without --wait) started meanwhile
                nxt = max(datetime.now(UTC), earliest or self.next_scan)
                if earliest is not None and earliest <= last_due:
                    # the last due pass saw this deadline and could not move it (an error,
                    # a zone no longer in the config): retry, but do not spin
                    nxt = max(nxt, last_due + STUCK_RETRY)
                scheduler.add_job(ring, "date", run_date=nxt, id="wake", replace_existing=True,
                                  misfire_grace_time=None)
                stop = asyncio.ensure_future(self.stopping.wait())
                rung = asyncio.ensure_future(wake.wait())
                await asyncio.wait({stop, rung}, return_when=asyncio.FIRST_COMPLETED)
                for task in (stop, rung):
                    task.cancel()
                wake.clear()
                if self.stopping.is_set():
                    break
                last_due = datetime.now(UTC)
                await self.tick(scan=False)
        finally:
            self.stopping.set()
            # a scan in progress finishes the zone it is on (tick checks stopping between
            # zones): nothing is left between an intent and its outcome
            await asyncio.gather(scanning, return_exceptions=True)
            scheduler.shutdown(wait=False)
            logs.progress("daemon stopped")

    def _stop(self) -> None:
        logs.progress("stop requested; finishing the current step")
        self.stopping.set()
