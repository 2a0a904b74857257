"""How a zone's providers are brought to a step's target: the one model-specific part of
the engine, chosen once per zone (``converger_for``).

- cross-import (Model 2): every provider keeps its own keys; the others' are imported into
  its DNSKEY RRset and every provider publishes identical CDS/CDNSKEY.
- owner-signed (Model 1): the owner's KSK signs the combined set; every provider is handed
  that signed DNSKEY/CDS/CDNSKEY set to serve.

Everything else (phases, checks, timing, persistence, starting and aborting) is the same
engine for every process and both models."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from core.config import ZoneConfig
from core.keys import Role
from core.observation import ApiKey, ApiZoneState, ZoneView
from orchestrator.decide.goals import Goal
from orchestrator.decide.intent import StepIntent
from orchestrator.decide.process_data import ProcessData
from orchestrator.decide.rollover import Rolled
from orchestrator.runtime import Reporter, Runtime
from providers.base import Capability
from runbooks import Step


@dataclass
class Applied:
    """What a converge (or a keep-alive while waiting) changed."""

    changes: list[str] = field(default_factory=list)
    fresh_until: datetime | None = None  # owner-signed: the new signatures' expiry
    # The providers' API state after the changes, when the converger knows it (what a
    # provider accepted is what its API shows): the next step can plan from it instead of
    # reading every API again a moment later. None: unknown, read it.
    api: dict[str, ApiZoneState] | None = None


@dataclass
class SyncPreview:
    """What ``sync`` would do, before it does anything."""

    in_sync: bool
    lines: list[str]
    evidence: dict[str, object] = field(default_factory=dict)


class KeyHolder(Protocol):
    """Where a rolled key lives: a provider's key API, or the owner's KSK store."""

    async def own_keys(self, view: ZoneView) -> tuple[ApiKey, ...]: ...

    async def create(self, role: Role, active: bool) -> ApiKey: ...

    async def set_state(self, key_id: str, active: bool) -> None: ...

    async def delete(self, key_id: str) -> str | None:
        """Delete the key; returns a note when the holder keeps it instead."""


class Converger(Protocol):
    kind: str
    capability: Capability  # what every signer of the zone must offer
    resigns: bool  # its signed key set expires: the daemon syncs the zone on every scan
    own_keys_suffice: bool  # its target needs only each signer's own keys from the API

    async def goal(self, step: Step | None, intent: StepIntent, data: ProcessData,
                   view: ZoneView) -> Goal:
        """The target of ``step`` (None: the steady state), from the current observation."""

    async def apply(self, goal: Goal, view: ZoneView) -> Applied:
        """Make every provider serve ``goal`` (read before write: no-op when it does)."""

    async def keep(self, goal: Goal, view: ZoneView) -> Applied:
        """While a step waits: re-apply what an API lost, re-sign what is due."""

    def key_holder(self, signer: str) -> KeyHolder: ...

    async def rollover_start(self, role: Role, signer: str | None,
                             view: ZoneView) -> tuple[Rolled, list[str]]:
        """The rollover's keys, and why it may not start (empty: it may)."""

    async def member_start_problems(self, view: ZoneView, provider: str, direction: str,
                                    members: list[str]) -> list[str]: ...

    async def sync_preview(self, view: ZoneView, *, dry_run: bool) -> SyncPreview:
        """Whether the zone is in its steady state and, if not, the plan to get there.
        Not a dry run: also prepares what the sync needs first (a first owner KSK)."""


def converger_for(rt: Runtime, zone: ZoneConfig, report: Reporter) -> Converger:
    """The one place the zone's model is looked at."""
    if zone.model == 1:
        from orchestrator.engine.owner_signed import OwnerSigned

        return OwnerSigned(rt, zone, report)
    from orchestrator.engine.cross_import import CrossImport

    return CrossImport(rt, zone, report)
