"""Per-zone leases: only one controller acts on a zone at a time (operator view:
docs/operator-guide.md, "Running several controllers").

A lease is a row (zone, holder, expires_at). Taking it is a serialized write transaction,
so two controllers racing for a free or expired lease cannot both win. A controller that
dies simply stops renewing; its lease expires and another may take over (sooner only when
its death is certain: state/holders.py).

Fencing: a lease alone does not stop a holder that was paused (SIGSTOP, a VM freeze, a
long GC or blocking call) past its expiry from writing when it resumes, after another
controller took the zone over. So a store given a holder (``fence``) checks, inside the
same serialized write transaction, that this holder still has the zone's unexpired lease
before every write that belongs to a zone's procedure, and refuses it (``LeaseLost``)
otherwise. Which writes are fenced, and why the others are not, is listed at
``FENCED_WRITES`` below.

Fencing tokens: every grant of a zone's lease (not a renewal) bumps the zone's counter in
``lease_grant``; each fenced write that makes a history entry records the lease it was made
under in the entry's evidence (``lease: {holder, token}``). Along a zone's history the
tokens never decrease, and a change of holder always comes with a higher token: the order
in which controllers held the zone can be audited from the history alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session

from core.errors import StateError
from state.canonical import now_utc, rfc3339, utc
from state.database import Database
from state.holders import holder_dead, holder_label
from state.info import LeaseInfo
from state.models import Lease, LeaseGrant

# Writes refused unless the writer holds the zone's unexpired lease (with a fence set):
# they move a procedure, so a controller that lost the zone must not make them.
FENCED_WRITES = (
    "start_process", "transition", "set_wait", "set_member", "append_history",
)
# Not fenced, on purpose:
# - record_observations/record_*: facts seen on the wire, written by read-only commands
#   (status, verify) that hold no lease; upserts of what was observed, from which no
#   step is taken without a fenced transition that re-reads the providers;
# - ensure_zone/ensure_provider/seed_members: the config mirrored into the database,
#   written by every command at start; seeding only writes where nothing exists yet;
# - seal_history: the audit trail of no zone in particular (``audit seal``);
# - the lease itself (acquire/release), which is what the fence checks.


def _grant(session: Session, zone: str) -> None:
    """Bump the zone's fencing token (inside the write transaction that grants it)."""
    grant = session.get(LeaseGrant, zone)
    if grant is None:
        session.add(LeaseGrant(zone=zone, token=1))
    else:
        grant.token += 1


class LeaseLost(StateError):
    """A fenced write by a controller that no longer holds the zone's lease."""


class LeaseHeld(StateError):
    """Another controller holds the zone's lease (the zone is not ours to act on now)."""


class LeaseMixin:
    """The lease half of StateStore."""

    _db: Database
    _fence_holder: str | None

    def fence(self, holder: str | None) -> None:
        """From now on, refuse zone writes (FENCED_WRITES) unless *holder* has the zone's
        unexpired lease; None switches the fence off (tools, tests)."""
        self._fence_holder = holder

    @property
    def fence_holder(self) -> str | None:
        return self._fence_holder

    def _check_fence(self, session: Session, zone: str, what: str) -> dict[str, Any] | None:
        """Inside a write transaction: refuse *what* on *zone* unless the fence holder has
        the zone's lease until after now (this host's clock, the one that took it). The
        lease the write is made under, for its history entry: ``{"holder": HOST:PID:NONCE,
        "token": N}`` (None without a fence)."""
        me = self._fence_holder
        if me is None:
            return None
        lease = session.get(Lease, zone)
        if lease is not None and lease.holder == me and utc(lease.expires_at) > now_utc():
            # the grant counter was bumped when this lease was granted and cannot have
            # moved since (a new grant would have replaced the holder)
            grant = session.get(LeaseGrant, zone)
            return {"holder": holder_label(me), "token": grant.token if grant else 0}
        if lease is None or utc(lease.expires_at) <= now_utc():
            now = "nobody holds it now" if lease is None else (
                f"it expired at {rfc3339(lease.expires_at)}")
        else:
            now = (f"zone {zone} is being handled by {holder_label(lease.holder)} until "
                   f"{rfc3339(lease.expires_at)}")
        raise LeaseLost(
            f"lease lost: {what} on zone {zone} refused, this controller "
            f"({holder_label(me)}) no longer holds the zone's lease ({now}); nothing was "
            "written, and the process resumes from its last recorded state under "
            "whichever controller holds the lease")

    def acquire_lease(self, zone: str, holder: str, ttl_seconds: float, now: datetime) -> bool:
        """Take or extend the zone's lease; False if another holder's lease is current.

        Free, expired, or already *holder*'s: the lease becomes *holder*'s until
        now + ttl_seconds. Long operations call this again to renew before expiry.
        """
        if ttl_seconds <= 0:
            raise StateError(
                f"lease on zone {zone}: ttl_seconds must be positive, not {ttl_seconds}"
            )
        at = utc(now, "lease time")
        with self._db.write() as session:
            lease = session.get(Lease, zone)
            if lease is None:
                session.add(
                    Lease(
                        zone=zone,
                        holder=holder,
                        acquired_at=at,
                        expires_at=at + timedelta(seconds=ttl_seconds),
                    )
                )
                _grant(session, zone)
                return True
            if lease.holder != holder and utc(lease.expires_at) > at and not holder_dead(
                lease.holder
            ):
                return False
            if lease.holder != holder or utc(lease.expires_at) <= at:
                _grant(session, zone)  # a new grant (not a renewal): the next token
            if lease.holder != holder:
                lease.holder = holder
                lease.acquired_at = at
            lease.expires_at = at + timedelta(seconds=ttl_seconds)
            return True

    def release_lease(self, zone: str, holder: str) -> bool:
        """Give the lease up if *holder* has it; True if it was released."""
        with self._db.write() as session:
            lease = session.get(Lease, zone)
            if lease is None or lease.holder != holder:
                return False
            session.delete(lease)
            return True

    def lease_info(self, zone: str) -> LeaseInfo | None:
        with self._db.read() as session:
            lease = session.get(Lease, zone)
            return LeaseInfo.from_row(lease) if lease is not None else None

    def lease_refusal(self, zone: str) -> LeaseHeld:
        """The error for a zone whose lease another controller holds."""
        current = self.lease_info(zone)
        other = holder_label(current.holder) if current else "another controller"
        until = rfc3339(current.expires_at) if current else "soon"
        return LeaseHeld(
            f"zone {zone} is being handled by {other} until {until}; wait or stop that "
            "controller (its lease expires by itself if it died)"
        )

    @contextmanager
    def lease(self, zone: str, holder: str, ttl_seconds: float) -> Iterator[LeaseInfo]:
        """Hold the zone's lease for the block; refuse if another controller holds it."""
        if not self.acquire_lease(zone, holder, ttl_seconds, now_utc()):
            raise self.lease_refusal(zone)
        info = self.lease_info(zone)
        assert info is not None  # ours and unexpired: nobody else may have taken it
        try:
            yield info
        finally:
            self.release_lease(zone, holder)

