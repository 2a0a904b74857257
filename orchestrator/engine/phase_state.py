"""What the engine knows about one process while it works on it: the process at its
step (``ProcessAt``), and the step's target as last read from the providers (``StepTarget``)."""

from __future__ import annotations

from dataclasses import dataclass, field
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


@dataclass
class Outcome:
    """Where a process stands after ``advance``."""

    process_id: str
    state: str
    finished: bool
    waiting_for: str | None = None
    next_check_at: datetime | None = None
    moved: list[str] = field(default_factory=list)


def state_name(step: Step, phase: str, path: str) -> str:
    return f"{step.id}:{phase}" if path == "main" else f"abort:{step.id}:{phase}"
