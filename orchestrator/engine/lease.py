"""A zone's lease held across async work: renewed in the background, the work cancelled
the moment it is lost.

``async with zone_lease(store, zone, seconds):`` takes the lease (or refuses, naming the
holder), renews it every third of its length while the block runs, and releases it at
the end. Three lines of defence keep a controller that lost the zone from acting on it:

1. The renewer: a renewal that finds another holder (or that comes too late, after a
   pause past the lease's end) cancels the block. The engine writes its intent before
   acting and the outcome after, so a step cut short resumes from the recorded state.
2. The provider guard: ``check_lease`` (called by ``Runtime.provider``) refuses any
   provider access once the lease may have lapsed by this process's monotonic clock,
   which keeps counting while the process is stopped. A controller resumed after a pause
   therefore reaches no provider, whatever callback the event loop happens to run first.
3. The fence (state/leases.py): every state write of the zone's procedure is refused, in
   its own transaction, unless this controller still holds the lease.

What no lease can exclude: a request already on its way to a provider when the pause
began, or one issued in the instant between the guard and the socket. Provider APIs take
no fencing token; the next holder re-reads every provider before it acts.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar

from core import events
from state.canonical import now_utc
from state.holders import holder_label, process_holder
from state.leases import LeaseLost
from state.store import StateStore


class HeldLease:
    """One held lease and what this process knows about it."""

    def __init__(self, store: StateStore, zone: str, holder: str, seconds: float) -> None:
        self.store = store
        self.zone = zone
        self.holder = holder
        self.seconds = seconds
        self.valid_until = 0.0  # time.monotonic() until which the lease is surely ours
        self.lost: str | None = None  # why, once lost
        self.cancelled_work = False  # the renewer cancelled the block

    def renew(self) -> bool:
        """Take or extend the lease; False if another holder has it."""
        started = time.monotonic()  # before the request: the lease may end sooner, never later
        if not self.store.acquire_lease(self.zone, self.holder, self.seconds, now_utc()):
            return False
        self.valid_until = started + self.seconds
        events.emit_if(lambda: events.LeaseChanged(self.zone, "renewed", self.seconds))
        return True

    def check(self) -> None:
        """Raise LeaseLost unless the lease is surely still this process's."""
        if self.lost is None and time.monotonic() >= self.valid_until:
            late = time.monotonic() - self.valid_until
            self.lost = (f"lease lost: zone {self.zone}: this controller "
                         f"({holder_label(self.holder)}) was paused or blocked past the end "
                         f"of its lease (by {late:.1f}s); it stops here, acting on no "
                         "provider, and the process resumes from its last recorded state")
        if self.lost is not None:
            raise LeaseLost(self.lost)


_HELD: ContextVar[HeldLease | None] = ContextVar("multisigner_zone_lease", default=None)


def current_lease() -> HeldLease | None:
    return _HELD.get()


def check_lease() -> None:
    """Inside a zone lease: raise LeaseLost once it may have lapsed. Outside: nothing (the
    read-only commands hold no lease)."""
    held = _HELD.get()
    if held is not None:
        held.check()


@asynccontextmanager
async def zone_lease(store: StateStore, zone: str, seconds: float, *,
                     holder: str | None = None) -> AsyncIterator[HeldLease]:
    """Hold *zone*'s lease for the block, renewed in the background (module docstring).
    Raises StateError if another controller holds it, LeaseLost if it is lost meanwhile."""
    outer = _HELD.get()
    if outer is not None and outer.zone == zone:
        outer.check()
        yield outer  # already held by this task (re-entered): the outer block releases it
        return
    held = HeldLease(store, zone, holder or process_holder(), seconds)
    if not held.renew():
        raise store.lease_refusal(zone)
    work = asyncio.current_task()
    assert work is not None, "zone_lease runs inside a task"
    token = _HELD.set(held)
    keeper = asyncio.create_task(_keep(held, work), name=f"lease {zone}")
    try:
        yield held
    except BaseException as exc:
        if held.lost is None:
            raise
        _undo_cancel(work, held)
        if work.cancelling():
            raise  # also cancelled from outside (SIGINT): that wins
        raise LeaseLost(held.lost) from exc
    else:
        if held.lost is not None:
            _undo_cancel(work, held)
            raise LeaseLost(held.lost)
    finally:
        # The renewer only ever waits in its sleep: once cancelled it cannot renew again,
        # so the lease is released before waiting for it (a second interrupt arriving
        # during that wait must not leave the lease behind).
        keeper.cancel()
        _HELD.reset(token)
        with contextlib.suppress(Exception):  # unreleased, it simply expires
            store.release_lease(zone, held.holder)
        events.emit_if(lambda: events.LeaseChanged(zone, "released", seconds))
        await asyncio.gather(keeper, return_exceptions=True)


def _undo_cancel(work: asyncio.Task[object], held: HeldLease) -> None:
    """Take back the cancellation the renewer sent (it becomes LeaseLost)."""
    if held.cancelled_work and work.cancelling():
        work.uncancel()


async def _keep(held: HeldLease, work: asyncio.Task[object]) -> None:
    """Renew every third of the lease; on loss, cancel the work. A database error is
    retried at the next turn while the lease has more than a turn left."""
    interval = held.seconds / 3
    while True:
        await asyncio.sleep(interval)
        try:
            held.check()  # a pause past the end: too late to renew, someone may have it
            if held.renew():
                continue
            lease = held.store.lease_info(held.zone)
            other = holder_label(lease.holder) if lease is not None else "another controller"
            held.lost = (f"lease lost: zone {held.zone} is being handled by {other}; this "
                         f"controller ({holder_label(held.holder)}) stops here and the "
                         "process resumes from its last recorded state")
        except LeaseLost:
            pass
        except Exception as exc:
            if held.valid_until - time.monotonic() > interval:
                continue
            held.lost = (f"lease lost: zone {held.zone}: could not renew the lease "
                         f"({exc}); this controller stops before it expires")
        events.emit_if(lambda: events.LeaseChanged(held.zone, "lost", held.seconds))
        held.cancelled_work = True
        work.cancel()
        return
