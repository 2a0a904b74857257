"""StateStore: the controller's memory.

A synchronous facade over the state database. Every change that matters for safety is
one transaction together with its history entry: a process never changes state without a
matching, hash-chained record of who moved it, why, and on what evidence. Callers write
their intent (a transition) before acting and the outcome after, so a crash in between
resumes from the recorded state.

SQLite (a file, or ``sqlite://`` in memory for tests) is the default; PostgreSQL works
through the same code. Nothing secret is ever stored: evidence and process data are
checked for credential-looking keys.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from types import TracebackType
from typing import Any, Self

from sqlmodel import col, select

from core.errors import ConfigError
from state.audit import ChainReport, HistoryInfo, append_entry, verify
from state.canonical import utc, utc_or_now
from state.checkpoint import Checkpoint, compare, make_checkpoint
from state.database import Database
from state.history_key import HistoryKey
from state.info import KeyInfo, RRsetInfo
from state.leases import LeaseMixin
from state.managed import ManagedRecordMixin
from state.models import (
    HistoryEntry,
    ObservedKey,
    ObservedRRset,
    Provider,
    Zone,
    ZoneSigner,
)
from state.observations import KeyRecord, RRsetRecord, upsert_observations
from state.processes import ProcessMixin, _set_member
from state.seal import SealResult, seal

__all__ = ["KeyRecord", "RRsetRecord", "StateStore"]


class StateStore(ProcessMixin, LeaseMixin, ManagedRecordMixin):
    """The state database: observations, processes, history, leases."""

    def __init__(self, url: str, *, busy_timeout: float = 30.0,
                 history_key: HistoryKey | None = None, fence: str | None = None) -> None:
        """Connect lazily to *url*; raises StateError for a bad URL or unwritable path.
        With *history_key*, every history entry written is authenticated with it. With
        *fence* (a holder id), zone writes need that holder's lease (state/leases.py)."""
        self._db = Database(url, busy_timeout=busy_timeout)
        self._history_key = history_key
        self._fence_holder = fence

    @classmethod
    def open(cls, url: str, *, busy_timeout: float = 30.0,
             history_key: HistoryKey | None = None, fence: str | None = None) -> Self:
        """Create the store and bring its schema to the newest revision."""
        store = cls(url, busy_timeout=busy_timeout, history_key=history_key, fence=fence)
        try:
            store.migrate()
        except BaseException:
            store.close()
            raise
        return store

    @property
    def url(self) -> str:
        """The database URL with any password masked."""
        return self._db.url

    def migrate(self, revision: str = "head") -> None:
        self._db.migrate(revision)

    def close(self) -> None:
        self._db.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- zones and providers ---------------------------------------------------------

    def ensure_zone(self, name: str, model: int, now: datetime | None = None) -> None:
        """Create the zone, or update its model to the configured one."""
        with self._db.write() as session:
            zone = session.get(Zone, name)
            if zone is None:
                session.add(Zone(name=name, model=model, created_at=utc_or_now(now)))
            elif zone.model != model:
                zone.model = model

    def ensure_provider(self, name: str, type: str) -> None:
        with self._db.write() as session:
            provider = session.get(Provider, name)
            if provider is None:
                session.add(Provider(name=name, type=type))
            elif provider.type != type:
                provider.type = type

    # -- observations ------------------------------------------------------------------

    def record_rrset(
        self,
        zone: str,
        source: str,
        server: str,
        *,
        rrtype: str,
        text: str,
        ttl: int,
        now: datetime,
    ) -> None:
        record = RRsetRecord(zone, source, server, rrtype, text, ttl)
        self.record_observations([record], [], now)

    def record_key(
        self,
        zone: str,
        source: str,
        server: str,
        *,
        key_tag: int,
        algorithm: int,
        flags: int,
        role: str,
        origin: str,
        dnskey: str,
        ttl: int,
        now: datetime,
    ) -> None:
        record = KeyRecord(
            zone, source, server, key_tag, algorithm, flags, role, origin, dnskey, ttl
        )
        self.record_observations([], [record], now)

    def record_observations(
        self, rrsets: Sequence[RRsetRecord], keys: Sequence[KeyRecord], now: datetime
    ) -> None:
        """Record a whole poll (any number of servers) in one transaction."""
        with self._db.write() as session:
            upsert_observations(session, rrsets, keys, now)

    def cached_rrsets(self, zone: str, rrtype: str, now: datetime) -> list[RRsetInfo]:
        """RRset contents a resolver may still hold at *now* (last_seen + TTL >= now)."""
        statement = (
            select(ObservedRRset)
            .where(ObservedRRset.zone == zone, ObservedRRset.rrtype == rrtype.upper())
            .where(col(ObservedRRset.cached_until) >= utc(now))
            .order_by(col(ObservedRRset.source), col(ObservedRRset.server), col(ObservedRRset.id))
        )
        with self._db.read() as session:
            return [RRsetInfo.from_row(row) for row in session.exec(statement)]

    def keys(self, zone: str) -> list[KeyInfo]:
        """Every key ever observed for the zone, cached or not."""
        statement = (
            select(ObservedKey)
            .where(ObservedKey.zone == zone)
            .order_by(col(ObservedKey.source), col(ObservedKey.server), col(ObservedKey.id))
        )
        with self._db.read() as session:
            return [KeyInfo.from_row(row) for row in session.exec(statement)]

    # -- history -----------------------------------------------------------------------

    def append_history(
        self,
        zone: str,
        *,
        process_id: str | None,
        kind: str,
        from_state: str | None,
        to_state: str,
        actor: str,
        reason: str,
        evidence: Mapping[str, Any] | None = None,
        at: datetime | None = None,
    ) -> HistoryInfo:
        """Record an event outside a process transition (e.g. a refused step)."""
        with self._db.write() as session:
            lease = self._check_fence(session, zone, f"recording {kind} {to_state}")
            return append_entry(
                session,
                zone=zone,
                process_id=process_id,
                kind=kind,
                from_state=from_state,
                to_state=to_state,
                actor=actor,
                reason=reason,
                evidence=evidence,
                at=utc_or_now(at),
                key=self._history_key,
                lease=lease,
            )

    def history(self, zone: str | None = None) -> list[HistoryInfo]:
        """The zone's entries (every zone's when None), oldest first."""
        statement = select(HistoryEntry).order_by(col(HistoryEntry.seq))
        if zone is not None:
            statement = statement.where(HistoryEntry.zone == zone)
        with self._db.read() as session:
            return [HistoryInfo.from_row(row) for row in session.exec(statement)]

    @property
    def history_key(self) -> HistoryKey | None:
        return self._history_key

    def verify_chain(self, checkpoint: Checkpoint | None = None) -> ChainReport:
        """Verify the chain (and the MACs, with a key); with an already authenticated
        *checkpoint*, also that the history still holds everything it saw, unchanged."""
        with self._db.read() as session:
            report = verify(session, self._history_key)
            if checkpoint is None or not report.ok:
                return report
            bad = compare(session, checkpoint, report.checked)
        if bad is None:
            return report
        return replace(report, ok=False, first_bad_seq=bad[0], problem=bad[1])

    def checkpoint(self, now: datetime | None = None) -> Checkpoint:
        """An authenticated checkpoint of the history head; refused (AuditError) unless
        the chain and its MACs verify."""
        key = self._require_key("audit checkpoint")
        with self._db.read() as session:
            report = verify(session, key)
        report.raise_if_bad()
        return make_checkpoint(report.checked, report.head_hash, utc_or_now(now), key)

    def seal_history(self, *, actor: str, reason: str,
                     now: datetime | None = None) -> SealResult | None:
        """Authenticate the entries written before the key was configured (state/seal.py)."""
        key = self._require_key("audit seal")
        with self._db.write() as session:
            return seal(session, key, actor=actor, reason=reason, at=utc_or_now(now))

    def _require_key(self, what: str) -> HistoryKey:
        if self._history_key is None:
            raise ConfigError(f"{what} needs a [history] key: set history.key or "
                              "history.key_file in the config")
        return self._history_key

    # -- zone membership --------------------------------------------------------------

    def members(self, zone: str) -> list[tuple[str, str]]:
        """(provider, state) of every signer of the zone, in configured order."""
        statement = (select(ZoneSigner).where(ZoneSigner.zone == zone)
                     .order_by(col(ZoneSigner.position), col(ZoneSigner.provider)))
        with self._db.read() as session:
            return [(row.provider, row.state) for row in session.exec(statement)]

    def seed_members(self, zone: str, providers: Sequence[str]) -> bool:
        """Record the configured signers if the zone has no membership yet."""
        now = utc_or_now(None)
        with self._db.write() as session:
            if session.exec(select(ZoneSigner).where(ZoneSigner.zone == zone)).first():
                return False
            for i, name in enumerate(providers):
                session.add(ZoneSigner(zone=zone, provider=name, state="active", position=i,
                                       updated_at=now))
            return True

    def set_member(self, zone: str, provider: str, state: str | None) -> None:
        """Add or change a signer's membership state; ``None`` removes it."""
        with self._db.write() as session:
            self._check_fence(session, zone, f"changing signer {provider}")
            _set_member(session, zone, provider, state, utc_or_now(None))
