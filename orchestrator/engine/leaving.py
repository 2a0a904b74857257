"""Moving a process on: to its next phase, to its hold once a step's observations are
met, on to the next step (or finishing the process) when the hold is over, and waiting
for what a step observes -- mixed into ``Engine``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from core import events
from core.observation import ZoneView
from orchestrator.decide.evidence import cache_settles_at, ceil_seconds, view_evidence
from orchestrator.decide.membership import Member
from orchestrator.decide.process_data import ProcessData
from orchestrator.decide.timing import deadline, measure, poll_delay
from orchestrator.engine.phase_state import Outcome, ProcessAt, single_pass, state_name
from orchestrator.runtime import Reporter, Runtime


def _now() -> datetime:
    return datetime.now(UTC)


class StepExits:
    """The waiting and leaving half of the engine."""

    rt: Runtime
    report: Reporter

    def _move(self, here: ProcessAt, phase: str, reason: str, *, data: ProcessData,
              evidence: dict[str, object], waiting_for: str,
              next_check_at: datetime | None = None) -> Outcome:
        new_state = here.next_state(phase)
        self.rt.store.transition(here.proc.id, new_state, actor=self.rt.actor, reason=reason,
                                 evidence=evidence, data=data.as_json(),
                                 next_check_at=next_check_at or _now(), waiting_for=waiting_for)
        events.entered(here.zone.name, here.proc.id, here.proc.kind, new_state)
        return Outcome(here.proc.id, new_state, False, moved=[new_state])

    def _observed(self, here: ProcessAt, view: ZoneView) -> Outcome:
        step, zone = here.step, here.zone
        now = _now()
        ttls = measure(view)
        until = deadline(now, list(step.hold), step.hold_combine, ttls, zone.policy)
        since = here.data.observe_since or now
        evidence: dict[str, object] = {}
        if view.servers:  # when resolvers hold no older DNSKEY/DS RRset than is served now
            settled = cache_settles_at(view)
            evidence["old_rrsets_cached_until"] = settled.isoformat() if settled else None
        events.observed(zone.name, here.proc, now - since, until - now, "parent" in step.observe)
        joined = (" + " if step.hold_combine == "sum" else ", ").join(step.hold)
        terms = "" if not step.hold else (
            f" {joined}" if step.hold_combine == "sum" else f" max({joined})")
        data = here.data.but(observed_at=now, deadline=until, stalled=None)
        evidence = {"observed": view_evidence(view), "ttls": ttls.as_json(),
                    "hold": list(step.hold), "hold_combine": step.hold_combine,
                    "propagation_delay_s": zone.policy.propagation_delay.total_seconds(),
                    "safety_margin_s": zone.policy.safety_margin.total_seconds(),
                    "observed_at": now.isoformat(), "deadline": until.isoformat(),
                    "observed_after_s": round((now - since).total_seconds(), 3), **evidence}
        if single_pass(step, here.data):  # nothing to hold: straight to the next step
            return self._leave(here, data, "observed on every nameserver",
                               "observed on every nameserver; complete", evidence)
        return self._move(here, "hold", f"{step.title}: observed on every nameserver",
                          data=data, evidence=evidence, next_check_at=until,
                          waiting_for=f"hold{terms} until {ceil_seconds(until)}")

    def _hold(self, here: ProcessAt) -> Outcome:
        proc, data = here.proc, here.data
        until = data.deadline or _now()
        now = _now()
        if now < until:
            return Outcome(proc.id, proc.state, False, proc.waiting_for, until)
        return self._leave(here, data, "hold over", "complete",
                           {"late_s": round((now - until).total_seconds(), 3)})

    def _leave(self, here: ProcessAt, data: ProcessData, why: str, last: str,
               evidence: dict[str, object]) -> Outcome:
        """Enter the next step's ``act`` (``<title>: <why>; next: <title>``), or finish the
        process after its last step (``<title>: <last>``), in one transition."""
        proc = here.proc
        ids = data.step_ids([s.id for s in here.book.steps])
        index = data.index + 1
        if index >= len(ids):
            final = "done" if data.path == "main" else "aborted"
            change: tuple[str, str | None] | None = None
            if isinstance(data.payload, Member):
                keep = (final == "done") == (data.payload.direction == "add")
                change = (data.payload.provider, "active" if keep else None)
            self.rt.store.transition(proc.id, final, actor=self.rt.actor,
                                     reason=f"{here.step.title}: {last}", status=final,
                                     evidence=evidence, member=change)
            events.entered(here.zone.name, proc.id, proc.kind, final)
            self.report(f"{here.zone.name}: {proc.kind} {proc.id[:8]} {final}")
            return Outcome(proc.id, final, True, moved=[final])
        nxt = here.book.step(ids[index])
        new_state = state_name(nxt, "act", data.path)
        self.rt.store.transition(proc.id, new_state, actor=self.rt.actor,
                                 reason=f"{here.step.title}: {why}; next: {nxt.title}",
                                 data=data.but(index=index).as_json(), evidence=evidence,
                                 next_check_at=_now(), waiting_for=nxt.title)
        events.entered(here.zone.name, proc.id, proc.kind, new_state)
        return Outcome(proc.id, new_state, False, moved=[new_state])

    def _wait(self, here: ProcessAt, what: str, *, parent: bool = False,
              parent_only: bool = False, data: ProcessData | None = None) -> Outcome:
        proc, zone = here.proc, here.zone
        data = data or here.data
        now = _now()
        since = data.observe_since or now
        limit = zone.policy.parent_timeout if parent else zone.policy.propagation_timeout
        nxt = now + timedelta(seconds=poll_delay(since, now, parent=parent_only))
        if now - since > limit and data.stalled is None:
            # Loud, once: the history shows the stall; the process keeps waiting, never
            # advancing on state it could not observe.
            data = data.but(stalled=now)
            self.rt.store.transition(
                proc.id, proc.state, actor=self.rt.actor,
                reason=f"STALLED after {limit}: still waiting for {what}",
                data=data.as_json(), next_check_at=nxt, waiting_for=f"STALLED: {what}")
            self.report(f"{zone.name}: STALLED: {proc.kind} {proc.id[:8]} in {proc.state} "
                        f"still waiting for {what}; investigate, or abort with 'multisigner "
                        f"rollover {zone.name} --abort'")
        elif data != here.data:
            self.rt.store.transition(proc.id, proc.state, actor=self.rt.actor,
                                     reason=f"waiting for {what}", data=data.as_json(),
                                     next_check_at=nxt, waiting_for=what)
        else:
            self.rt.store.set_wait(proc.id, waiting_for=("STALLED: " if data.stalled
                                                         else "") + what, next_check_at=nxt)
        shown = f"STALLED: {what}" if data.stalled else what
        events.waiting(zone.name, proc, what, since, parent, stalled=bool(data.stalled))
        return Outcome(proc.id, proc.state, False, shown, nxt)
