"""The persisted state of one process, typed: where it stands in its runbook, the timing
facts the engine recorded, and what the process is about (its payload).

Stored as JSON in the process row; the keys are stable, so a process written by an older
version still loads (unknown keys are ignored)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from orchestrator.decide.membership import Member
from orchestrator.decide.rollover import Rolled
from orchestrator.decide.sig0_roll import Sig0Roll

Path = Literal["main", "abort"]
# rollover, signer add/remove, SIG(0) key roll, or sync (about nothing)
Payload = Rolled | Member | Sig0Roll | None


def _when(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


@dataclass(frozen=True)
class ProcessData:
    path: Path = "main"
    index: int = 0
    abort_ids: tuple[str, ...] = ()
    payload: Payload = None
    observe_since: datetime | None = None  # when the observe phase started (Dprp counts from it)
    observed_at: datetime | None = None  # when every observation held
    deadline: datetime | None = None  # end of the hold
    stalled: datetime | None = None  # when the stall was reported (once)
    delivered_until: datetime | None = None  # owner-signed set: expiry of the newest signatures
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rolled(self) -> Rolled | None:
        return self.payload if isinstance(self.payload, Rolled) else None

    @property
    def member(self) -> Member | None:
        return self.payload if isinstance(self.payload, Member) else None

    def step_ids(self, main: list[str]) -> list[str]:
        return main if self.path == "main" else list(self.abort_ids)

    def but(self, **changes: Any) -> ProcessData:
        return replace(self, **changes)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "index": self.index}
        if self.abort_ids:
            out["abort_ids"] = list(self.abort_ids)
        if isinstance(self.payload, Rolled):
            out["rolled"] = self.payload.as_data()
        elif isinstance(self.payload, Member):
            out["member"] = self.payload.as_data()
        elif isinstance(self.payload, Sig0Roll):
            out["sig0"] = self.payload.as_data()
        for name in ("observe_since", "observed_at", "deadline", "stalled", "delivered_until"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value.isoformat()
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ProcessData:
        payload: Payload = None
        if data.get("rolled"):
            payload = Rolled.from_data(data["rolled"])
        elif data.get("member"):
            payload = Member.from_data(data["member"])
        elif data.get("sig0"):
            payload = Sig0Roll.from_data(data["sig0"])
        return cls(path=data.get("path", "main"), index=int(data.get("index", 0)),
                   abort_ids=tuple(data.get("abort_ids", ())), payload=payload,
                   observe_since=_when(data.get("observe_since")),
                   observed_at=_when(data.get("observed_at")),
                   deadline=_when(data.get("deadline")), stalled=_when(data.get("stalled")),
                   delivered_until=_when(data.get("delivered_until")))
