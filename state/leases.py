"""Per-zone leases: only one controller acts on a zone at a time (design.md sec. 7).

A lease is a row (zone, holder, expires_at). Taking it is a serialized write transaction,
so two controllers racing for a free or expired lease cannot both win. A controller that
dies simply stops renewing; its lease expires and another may take over.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from core.errors import StateError
from state.canonical import now_utc, rfc3339, utc
from state.database import Database
from state.info import LeaseInfo
from state.models import Lease


class LeaseMixin:
    """The lease half of StateStore."""

    _db: Database

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
                return True
            if lease.holder != holder and lease.expires_at > at and not _holder_dead(
                lease.holder
            ):
                return False
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

    @contextmanager
    def lease(self, zone: str, holder: str, ttl_seconds: float) -> Iterator[LeaseInfo]:
        """Hold the zone's lease for the block; refuse if another controller holds it."""
        if not self.acquire_lease(zone, holder, ttl_seconds, now_utc()):
            current = self.lease_info(zone)
            other = current.holder if current else "another controller"
            until = rfc3339(current.expires_at) if current else "soon"
            raise StateError(
                f"zone {zone} is being handled by {other} until {until}; wait or stop that "
                "controller (its lease expires by itself if it died)"
            )
        info = self.lease_info(zone)
        assert info is not None  # ours and unexpired: nobody else may have taken it
        try:
            yield info
        finally:
            self.release_lease(zone, holder)


def _holder_dead(holder: str) -> bool:
    """A lease held by a process of *this* host that no longer exists (a controller killed
    with SIGKILL) is free: waiting for its expiry would stall the zone for nothing. Holders
    on other hosts are trusted until their lease expires."""
    host, _, pid = holder.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, owned by someone else
    return False
