"""What the engine knows about one process while it works on it: the process at its
step (``ProcessAt``), and the step's target as last read from the providers (``StepTarget``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from core.config import ZoneConfig
from core.observation import ApiZoneState, ZoneView
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
    signers: tuple[str, ...]  # the zone's signers, read once per phase

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
    after: dict[str, ApiZoneState] | None = None  # the APIs once the target was applied


@dataclass(frozen=True)
class FreshView:
    """An observation made just before the process's ``state`` was entered: sync's
    preview, or the last poll of the step before (the APIs as its converge left them). The
    converge of ``state`` starts from it instead of observing everything again a moment
    later. ``at``: when the APIs were read."""

    state: str
    at: datetime
    view: ZoneView
    keys_only: bool


@dataclass
class Outcome:
    """Where a process stands after ``advance``."""

    process_id: str
    state: str
    finished: bool
    waiting_for: str | None = None
    next_check_at: datetime | None = None
    moved: list[str] = field(default_factory=list)


def single_pass(step: Step, data: ProcessData) -> bool:
    """A step with no keys, preconditions or hold (and no rolled key): its ``act`` has
    nothing to check or change and its ``hold`` nothing to wait for, so it is persisted as
    ``act -> observe -> (next step)``: converge runs in the act's turn, and the transition
    that records the observation enters the next step. Crash-safe: a crash before the
    converge's transition re-runs the act, which changes nothing (converge is idempotent);
    a crash after the observation's leaves the process in the next step."""
    return not (step.keys or step.precondition or step.hold) and data.rolled is None


def state_name(step: Step, phase: str, path: str) -> str:
    return f"{step.id}:{phase}" if path == "main" else f"abort:{step.id}:{phase}"
