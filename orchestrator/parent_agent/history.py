"""Every request the agent accepts, refuses or ignores, in the tamper-evident history
(the same hash chain as the controller's process transitions; the entries' zone is the
parent zone, so ``multisigner history PARENT`` lists them).

Entry shape: ``kind`` is what was asked ("update", "notify", "scan-cds", "scan-csync",
"bootstrap", "keystate"), ``to_state`` the outcome ("accepted", "refused", "ignored"),
``actor`` the requester ("udp:192.0.2.1:5353", "tcp:...", or "scan"), ``reason`` why, and
``evidence`` the child, the key (algorithm/key tag, when signed), the change and the
servers a refusal is about.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any, Literal

from state.store import StateStore

log = logging.getLogger(__name__)

Outcome = Literal["accepted", "refused", "ignored"]


class Recorder:
    def __init__(self, store: StateStore, zone: str) -> None:
        self._store = store
        self._zone = zone
        # Scheduled scans record a refusal once until its reason changes, and nothing
        # when there is nothing to do: a scan every hour must not flood the history.
        self._last_scan: dict[tuple[str, str], str] = {}
        self._lock = asyncio.Lock()

    async def record(self, kind: str, outcome: Outcome, *, actor: str, reason: str,
                     evidence: Mapping[str, Any]) -> None:
        log.info("parent agent: %s %s by %s: %s %s", kind, outcome, actor, reason,
                 dict(evidence))
        async with self._lock:  # one writer at a time keeps the chain's order simple
            await asyncio.to_thread(
                self._store.append_history, self._zone, process_id=None, kind=kind,
                from_state=None, to_state=outcome, actor=actor, reason=reason,
                evidence=dict(evidence))

    async def record_scan(self, kind: str, outcome: Outcome, *, actor: str, reason: str,
                          evidence: Mapping[str, Any]) -> None:
        """As :meth:`record`, but a scheduled scan's repeated outcome is recorded once."""
        child = str(evidence.get("child", ""))
        if actor == "scan":
            if outcome == "ignored":
                self._last_scan.pop((kind, child), None)
                return
            summary = f"{outcome} {reason} {sorted(dict(evidence).items())}"
            if self._last_scan.get((kind, child)) == summary:
                return
            self._last_scan[(kind, child)] = summary
        await self.record(kind, outcome, actor=actor, reason=reason, evidence=evidence)
