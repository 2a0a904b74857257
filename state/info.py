"""Read-only snapshots handed out by the store.

The store returns these frozen dataclasses rather than ORM rows so callers never hold a
row bound to a closed session, and cannot change the database by mutating an object.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from state.canonical import loads_dict, rfc3339
from state.models import Lease, ObservedKey, ObservedRRset, Process


def _ts(value: datetime | None) -> str | None:
    return rfc3339(value) if value is not None else None


@dataclass(frozen=True)
class RRsetInfo:
    """An RRset content seen at one server; a resolver may cache it until ``cached_until``."""

    zone: str
    source: str
    server: str
    rrtype: str
    digest: str
    text: str
    ttl: int
    first_seen: datetime
    last_seen: datetime
    cached_until: datetime

    @property
    def records(self) -> list[str]:
        return [line for line in self.text.splitlines() if line.strip()]

    @classmethod
    def from_row(cls, row: ObservedRRset) -> RRsetInfo:
        return cls(
            zone=row.zone,
            source=row.source,
            server=row.server,
            rrtype=row.rrtype,
            digest=row.digest,
            text=row.text,
            ttl=row.ttl,
            first_seen=row.first_seen,
            last_seen=row.last_seen,
            cached_until=row.cached_until,
        )


@dataclass(frozen=True)
class KeyInfo:
    """A DNSKEY seen at one server, with the provider believed to own it."""

    zone: str
    source: str
    server: str
    key_tag: int
    algorithm: int
    flags: int
    role: str
    origin: str
    dnskey: str  # canonical rdata text: ``core.keys.Key(dnskey)`` is the key
    key_digest: str  # the key's identity (SHA-256 of ``dnskey``); the tag is not one
    ttl: int
    first_seen: datetime
    last_seen: datetime
    cached_until: datetime

    @classmethod
    def from_row(cls, row: ObservedKey) -> KeyInfo:
        return cls(
            zone=row.zone,
            source=row.source,
            server=row.server,
            key_tag=row.key_tag,
            algorithm=row.algorithm,
            flags=row.flags,
            role=row.role,
            origin=row.origin,
            dnskey=row.dnskey,
            key_digest=row.key_digest,
            ttl=row.ttl,
            first_seen=row.first_seen,
            last_seen=row.last_seen,
            cached_until=row.cached_until,
        )


@dataclass(frozen=True)
class ProcessInfo:
    id: str
    zone: str
    kind: str
    signer: str | None
    state: str
    status: str
    started_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    next_check_at: datetime | None
    waiting_for: str | None
    data: dict[str, Any]
    actor: str

    @property
    def running(self) -> bool:
        return self.status == "running"

    def as_json(self) -> dict[str, Any]:
        """The ``process`` object of ``status --json`` (plus bookkeeping fields)."""
        return {
            "id": self.id,
            "zone": self.zone,
            "kind": self.kind,
            "signer": self.signer,
            "state": self.state,
            "status": self.status,
            "waiting_for": self.waiting_for,
            "next_check_at": _ts(self.next_check_at),
            "started_at": _ts(self.started_at),
            "updated_at": _ts(self.updated_at),
            "finished_at": _ts(self.finished_at),
            "actor": self.actor,
            "data": self.data,
        }

    @classmethod
    def from_row(cls, row: Process) -> ProcessInfo:
        return cls(
            id=row.id,
            zone=row.zone,
            kind=row.kind,
            signer=row.signer,
            state=row.state,
            status=row.status,
            started_at=row.started_at,
            updated_at=row.updated_at,
            finished_at=row.finished_at,
            next_check_at=row.next_check_at,
            waiting_for=row.waiting_for,
            data=loads_dict(row.data),
            actor=row.actor,
        )


@dataclass(frozen=True)
class LeaseInfo:
    zone: str
    holder: str
    acquired_at: datetime
    expires_at: datetime

    @classmethod
    def from_row(cls, row: Lease) -> LeaseInfo:
        return cls(
            zone=row.zone,
            holder=row.holder,
            acquired_at=row.acquired_at,
            expires_at=row.expires_at,
        )
