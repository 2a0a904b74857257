"""Processes: multi-step procedures on a zone (sync, rollovers, signer add/remove).

A process row holds where a procedure stands (state), what it waits for and when to look
again (``next_check_at``, persisted so a restart neither forgets a wait nor restarts it).
Every change of state is written together with its history entry in one transaction, so
the audit trail can never disagree with the process table. At most one process runs per
zone: start_process refuses a second one (and a partial unique index backs that up).
With a fence set on the store (state/leases.py), every write here is also refused unless
this controller holds the zone's lease, checked in the write's own transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, func, select

from core.errors import StateError
from state.audit import append_entry
from state.canonical import dumps_dict, rfc3339, utc, utc_or_now
from state.database import Database
from state.history_key import HistoryKey
from state.info import ProcessInfo
from state.models import FINISHED_STATUSES, PROCESS_STATUSES, Process, ZoneSigner


class ProcessMixin:
    """The process half of StateStore."""

    _db: Database
    _history_key: HistoryKey | None
    _check_fence: Callable[[Session, str, str], dict[str, Any] | None]  # LeaseMixin's

    def start_process(
        self,
        zone: str,
        kind: str,
        *,
        signer: str | None,
        actor: str,
        reason: str,
        state: str,
        data: Mapping[str, Any] | None = None,
        evidence: Mapping[str, Any] | None = None,
        waiting_for: str | None = None,
        next_check_at: datetime | None = None,
        now: datetime | None = None,
        member: tuple[str, str | None] | None = None,
    ) -> ProcessInfo:
        """Start a process; refused while another one runs on the zone. ``member``
        (provider, state) changes the zone's membership in the same transaction."""
        at = utc_or_now(now)
        with self._db.write() as session:
            lease = self._check_fence(session, zone, f"starting a {kind} process")
            running = _running(session, zone)
            if running is not None:
                raise StateError(
                    f"zone {zone} already has a running {running.kind} process {running.id} "
                    f"(state {running.state}, started {rfc3339(running.started_at)}); "
                    "finish or abort it first"
                )
            process = Process(
                id=uuid.uuid4().hex,
                zone=zone,
                kind=kind,
                signer=signer,
                state=state,
                status="running",
                started_at=at,
                updated_at=at,
                next_check_at=_opt_utc(next_check_at),
                waiting_for=waiting_for,
                data=dumps_dict(data, "process data"),
                actor=actor,
            )
            session.add(process)
            if member is not None:
                _set_member(session, zone, member[0], member[1], at)
            append_entry(
                session,
                zone=zone,
                process_id=process.id,
                kind=kind,
                from_state=None,
                to_state=state,
                actor=actor,
                reason=reason,
                evidence=evidence,
                at=at,
                key=self._history_key,
                lease=lease,
            )
            return ProcessInfo.from_row(process)

    def transition(
        self,
        process_id: str,
        to_state: str,
        *,
        actor: str,
        reason: str,
        evidence: Mapping[str, Any] | None = None,
        waiting_for: str | None = None,
        next_check_at: datetime | None = None,
        data: Mapping[str, Any] | None = None,
        status: str | None = None,
        now: datetime | None = None,
        member: tuple[str, str | None] | None = None,
    ) -> ProcessInfo:
        """Move a running process to *to_state* and record it, in one transaction (with a
        membership change, when ``member`` is given).

        ``waiting_for`` and ``next_check_at`` describe the new state, so they are replaced
        (None clears them); ``data`` None keeps the current data; ``status`` None keeps
        "running", and "done"/"failed"/"aborted" finish the process.
        """
        if status is not None and status not in PROCESS_STATUSES:
            raise StateError(
                f"process {process_id}: status {status!r} is not one of "
                + ", ".join(PROCESS_STATUSES)
            )
        at = utc_or_now(now)
        with self._db.write() as session:
            process = session.get(Process, process_id)
            if process is None:
                raise StateError(
                    f"no process {process_id} in state database {self._db.url}; "
                    "list the processes with `multisigner status`"
                )
            if process.status != "running":
                raise StateError(
                    f"process {process_id} ({process.kind} on zone {process.zone}) is already "
                    f"{process.status}; start a new process instead"
                )
            lease = self._check_fence(session, process.zone,
                                      f"moving {process.kind} {process.id[:8]} to {to_state}")
            from_state = process.state
            process.state = to_state
            process.updated_at = at
            process.waiting_for = waiting_for
            process.next_check_at = _opt_utc(next_check_at)
            if data is not None:
                process.data = dumps_dict(data, "process data")
            if status is not None:
                process.status = status
            if member is not None:
                _set_member(session, process.zone, member[0], member[1], at)
            if process.status in FINISHED_STATUSES:
                process.finished_at = at
                process.next_check_at = None
                process.waiting_for = None
            append_entry(
                session,
                zone=process.zone,
                process_id=process.id,
                kind=process.kind,
                from_state=from_state,
                to_state=to_state,
                actor=actor,
                reason=reason,
                evidence=evidence,
                at=at,
                key=self._history_key,
                lease=lease,
            )
            return ProcessInfo.from_row(process)

    def set_wait(
        self, process_id: str, *, waiting_for: str | None, next_check_at: datetime | None
    ) -> None:
        """Update what a running process waits for, without a history entry: polling an
        unchanged condition is not a transition (the daemon would otherwise flood the
        history with identical rows)."""
        with self._db.write() as session:
            process = session.get(Process, process_id)
            if process is None or process.status != "running":
                raise StateError(f"process {process_id} is not running")
            self._check_fence(session, process.zone,
                              f"rescheduling {process.kind} {process.id[:8]}")
            process.waiting_for = waiting_for
            process.next_check_at = _opt_utc(next_check_at)

    def active_process(self, zone: str) -> ProcessInfo | None:
        with self._db.read() as session:
            process = _running(session, zone)
            return ProcessInfo.from_row(process) if process is not None else None

    def get_process(self, process_id: str) -> ProcessInfo | None:
        with self._db.read() as session:
            process = session.get(Process, process_id)
            return ProcessInfo.from_row(process) if process is not None else None

    def processes(self, zone: str | None = None, status: str | None = None) -> list[ProcessInfo]:
        statement = select(Process).order_by(col(Process.started_at), col(Process.id))
        if zone is not None:
            statement = statement.where(Process.zone == zone)
        if status is not None:
            statement = statement.where(Process.status == status)
        with self._db.read() as session:
            return [ProcessInfo.from_row(row) for row in session.exec(statement)]

    def due_processes(self, now: datetime) -> list[ProcessInfo]:
        """Running processes whose next check is due (or was never scheduled)."""
        statement = (
            select(Process)
            .where(Process.status == "running")
            .where(col(Process.next_check_at).is_(None) | (col(Process.next_check_at) <= utc(now)))
            .order_by(
                col(Process.next_check_at).is_not(None),  # unscheduled first
                col(Process.next_check_at),
                col(Process.started_at),
            )
        )
        with self._db.read() as session:
            return [ProcessInfo.from_row(row) for row in session.exec(statement)]

    def earliest_deadline(self) -> datetime | None:
        """The soonest next_check_at of any running process (for the scheduler's sleep)."""
        statement = select(func.min(col(Process.next_check_at))).where(Process.status == "running")
        with self._db.read() as session:
            value = session.exec(statement).one()
        return utc(value) if value is not None else None


def _opt_utc(value: datetime | None) -> datetime | None:
    return utc(value) if value is not None else None


def _running(session: Session, zone: str) -> Process | None:
    statement = select(Process).where(Process.zone == zone, Process.status == "running")
    return session.exec(statement).first()


def _set_member(session: Session, zone: str, provider: str, state: str | None,
                at: datetime) -> None:
    row = session.get(ZoneSigner, (zone, provider))
    if state is None:
        if row is not None:
            session.delete(row)
        return
    if row is None:
        last = session.exec(select(ZoneSigner).where(ZoneSigner.zone == zone)
                            .order_by(col(ZoneSigner.position).desc())).first()
        session.add(ZoneSigner(zone=zone, provider=provider, state=state,
                               position=(last.position + 1) if last else 0, updated_at=at))
    else:
        row.state = state
        row.updated_at = at
