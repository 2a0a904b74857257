"""The persisted "sync" process both models share: start (superseding an interrupted
sync), move between phases with evidence, wait with lease renewal, wait for the parent's
DS, and record a failure — so Model 1 and Model 2 sync differ only in what they apply.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self

from core.config import ZoneConfig
from core.errors import MultisignerError
from core.keys import Key, parent_follows
from orchestrator.decide.sync_plan import Progress
from orchestrator.engine.runtime import Runtime, holder_id
from orchestrator.engine.waiting import Reporter, Waited, wait_for
from orchestrator.observe.observer import observe_parents, record

LEASE_SECONDS = 120


class SyncProcess:
    """One sync run as a process in the state DB. Use as an async context manager: an
    exception (or cancellation) inside records the run as failed in its current phase."""

    def __init__(self, rt: Runtime, zone: ZoneConfig, report: Reporter, *, reason: str,
                 data: dict[str, Any], evidence: dict[str, Any]) -> None:
        self.rt = rt
        self.zone = zone
        self._report = report
        store = rt.store
        stale = store.active_process(zone.name)
        if stale is not None:  # a sync interrupted earlier: this run re-plans from observation
            store.transition(stale.id, "superseded", actor=rt.actor,
                             reason="an interrupted sync; a new sync run replans from "
                             "observation", status="aborted")
        self.proc = store.start_process(zone.name, "sync", signer=None, actor=rt.actor,
                                        reason=reason, state="planned", data=data,
                                        evidence=evidence)
        self.state = "planned"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if exc is None or not isinstance(exc, MultisignerError | asyncio.CancelledError):
            return
        why = str(exc) if isinstance(exc, MultisignerError) else "interrupted"
        self.rt.store.transition(self.proc.id, "failed", actor=self.rt.actor,
                                 reason=f"failed in {self.state}: {why}", status="failed")

    def move(self, to: str, reason: str, evidence: dict[str, Any] | None = None,
             waiting_for: str | None = None, status: str | None = None) -> None:
        self.rt.store.transition(self.proc.id, to, actor=self.rt.actor, reason=reason,
                                 evidence=evidence, waiting_for=waiting_for, status=status,
                                 next_check_at=datetime.now(UTC) if waiting_for else None)
        self.state = to

    def _renew(self, waiting: str, delay: float) -> None:
        now = datetime.now(UTC)
        self.rt.store.acquire_lease(self.zone.name, holder_id(), LEASE_SECONDS, now)
        self.rt.store.set_wait(self.proc.id, waiting_for=waiting,
                               next_check_at=now + timedelta(seconds=delay))

    def _zone_report(self, line: str) -> None:
        self._report(f"{self.zone.name}: {line}")

    async def wait(self, what: str, check: Callable[[], Awaitable[Progress]], *,
                   hint: str) -> Waited:
        """Until every nameserver serves what ``check`` looks for."""
        return await wait_for(what, check,
                              timeout=self.zone.policy.propagation_timeout.total_seconds(),
                              report=self._zone_report, on_round=self._renew, hint=hint)

    async def wait_parent(self, ksks: frozenset[Key]) -> Waited:
        """Until every parent server's DS RRset names exactly ``ksks``."""
        zone = self.zone

        async def parent() -> Progress:
            parents = await observe_parents(zone, ns=False)
            record(self.rt, zone, (), parents, {}, datetime.now(UTC))
            lag = [p.server for p in parents
                   if p.error is not None or not parent_follows(p.ds_set, ksks, zone.name)]
            return Progress(len(parents) - len(lag), len(parents), tuple(lag))

        return await wait_for("parent DS", parent,
                              timeout=zone.policy.parent_timeout.total_seconds(),
                              report=self._zone_report, cap=5.0, on_round=self._renew,
                              hint="the parent has not followed the CDS; check the registry's "
                              "CDS scanning, then re-run sync")
