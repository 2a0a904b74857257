"""What the engine knows about one process while it works on it: the process at its
step (``ProcessAt``), and the step's target as last read from the providers (``StepTarget``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from core.config import ZoneConfig
from core.observation import ApiZoneState
from orchestrator.decide.goals import Goal
from orchestrator.decide.intent import StepIntent
from orchestrator.decide.process_data import ProcessData
from runbooks import Runbook, Step
from state.info import ProcessInfo


@dataclass(frozen=True)
class ProcessAt:
    """One process at one step, as ``_one`` found it."""

    zone: ZoneConfig
    proc: ProcessInfo
    book: Runbook
    step: Step
    data: ProcessData

    def next_state(self, phase: str) -> str:
        return self.proc.state.rsplit(":", 1)[0] + ":" + phase


@dataclass(frozen=True)
class StepTarget:
    """A step's target as last read from the providers' APIs (per process)."""

    state: str
    at: datetime
    api: dict[str, ApiZoneState]
    intent: StepIntent
    goal: Goal
