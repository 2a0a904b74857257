"""Records the controller manages at arbitrary names of a zone (``ManagedRecord``): the
dns-persist-01 records ``acme persist`` writes, which ``verify`` checks every signer
still serves."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import col, select

from state.canonical import utc_or_now
from state.database import Database
from state.models import ManagedRecord


@dataclass(frozen=True)
class ManagedRecordInfo:
    zone: str
    name: str
    rrtype: str
    key: str
    value: str
    purpose: str
    actor: str
    updated_at: datetime


class ManagedRecordMixin:
    """The managed-record half of StateStore."""

    _db: Database

    def set_managed_record(self, zone: str, name: str, rrtype: str, key: str, *, value: str,
                           purpose: str, actor: str, now: datetime | None = None) -> None:
        """Create or replace the record ``key`` of (zone, name, rrtype)."""
        with self._db.write() as session:
            row = session.get(ManagedRecord, (zone, name, rrtype, key))
            if row is None:
                row = ManagedRecord(zone=zone, name=name, rrtype=rrtype, key=key, value=value,
                                    purpose=purpose, actor=actor, updated_at=utc_or_now(now))
            else:
                row.value, row.purpose, row.actor = value, purpose, actor
                row.updated_at = utc_or_now(now)
            session.add(row)

    def remove_managed_record(self, zone: str, name: str, rrtype: str, key: str) -> bool:
        with self._db.write() as session:
            row = session.get(ManagedRecord, (zone, name, rrtype, key))
            if row is None:
                return False
            session.delete(row)
            return True

    def managed_records(self, zone: str) -> list[ManagedRecordInfo]:
        statement = (select(ManagedRecord).where(ManagedRecord.zone == zone)
                     .order_by(col(ManagedRecord.name), col(ManagedRecord.key)))
        with self._db.read() as session:
            return [ManagedRecordInfo(r.zone, r.name, r.rrtype, r.key, r.value, r.purpose,
                                      r.actor, r.updated_at) for r in session.exec(statement)]
