"""The event side of the metrics: a subscriber of ``core/events.py`` that turns what the
engine, the daemon and the provider adapters report into Prometheus metrics, and keeps
what the health checks and the scrape-time gauges (``scrape.py``) need.

It runs inline in the emitting event loop (docs/hooks.md): every handler is a few dict
updates and metric increments, never I/O. The HTTP server's thread reads the same state
under ``lock``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from core import events

# Step lengths run from seconds (the lab, TTL 2 s) to days (a KSK rollover with a
# one-day DS TTL at the parent): buckets on a roughly x3 scale over that range.
LONG_BUCKETS = (1, 3, 10, 30, 60, 180, 600, 1800, 3600, 3 * 3600, 10 * 3600, 86400,
                3 * 86400, 7 * 86400, float("inf"))
# API calls and one phase's work: milliseconds to a minute.
SHORT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
                 float("inf"))
FINISHED = ("done", "aborted", "failed", "superseded")


def step_of(state: str) -> str:
    """``publish:act`` -> ``publish``; ``abort:discard-new:hold`` -> ``abort:discard-new``."""
    return state.rsplit(":", 1)[0] if ":" in state else state


@dataclass
class _StepClock:
    """The step a process is in, since when (monotonic), and whether this process saw the
    step begin (a step already under way when the daemon started has no known length)."""

    step: str
    since: float
    whole: bool
    minimum: float | None = None


@dataclass(frozen=True)
class Wait:
    zone: str
    kind: str
    step: str
    on: str  # "parent" or "nameservers"
    since: datetime
    stalled: bool


class Collector:
    """Subscribe it with ``events.subscribe(collector)``; its metrics live in ``registry``."""

    def __init__(self, registry: CollectorRegistry,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.lock = threading.Lock()
        self._now = monotonic
        self._steps: dict[str, _StepClock] = {}
        self.waits: dict[str, Wait] = {}  # process id -> what it waits for now
        self.leases: dict[str, tuple[float, float]] = {}  # zone -> (renewed at, seconds)
        self.last_pass: dict[bool, float] = {}  # scan? -> monotonic end of the last pass
        self.verdicts: dict[str, str] = {}
        self.expiry: dict[str, datetime] = {}
        self._define(registry)

    def _define(self, r: CollectorRegistry) -> None:
        self.step_seconds = Histogram(
            "multisigner_step_duration_seconds", "Wall time of one process step, from its "
            "act phase to the end of its hold (steps seen from their start)",
            ["kind", "step"], buckets=LONG_BUCKETS, registry=r)
        self.step_minimum = Histogram(
            "multisigner_step_rfc7583_minimum_seconds", "The RFC 7583 hold the step had to "
            "wait once its change was observed (its minimum length)", ["kind", "step"],
            buckets=LONG_BUCKETS, registry=r)
        self.step_last = Gauge(
            "multisigner_step_last_duration_seconds", "Length of the last finished step",
            ["kind", "step"], registry=r)
        self.step_last_minimum = Gauge(
            "multisigner_step_last_rfc7583_minimum_seconds", "RFC 7583 minimum (hold) of "
            "the last finished step", ["kind", "step"], registry=r)
        self.phase_work = Histogram(
            "multisigner_phase_work_seconds", "Work of one run of a phase (API calls, DNS "
            "queries, state writes; not the waits)", ["kind", "phase"],
            buckets=SHORT_BUCKETS, registry=r)
        self.phase_errors = Counter(
            "multisigner_phase_errors_total", "Runs of a phase that raised (retried later)",
            ["kind", "phase"], registry=r)
        self.transitions = Counter(
            "multisigner_process_transitions_total", "Persisted moves of a process to a new "
            "state", ["kind", "step"], registry=r)
        self.finished = Counter(
            "multisigner_processes_finished_total", "Processes that ended", ["kind", "status"],
            registry=r)
        self._define_io(r)

    def _define_io(self, r: CollectorRegistry) -> None:
        self.api_seconds = Histogram(
            "multisigner_provider_request_seconds", "Latency of one provider API call or "
            "Knot command", ["provider", "operation"], buckets=SHORT_BUCKETS, registry=r)
        self.api_calls = Counter(
            "multisigner_provider_requests_total", "Provider API calls by outcome",
            ["provider", "status"], registry=r)
        self.api_errors = Counter(
            "multisigner_provider_errors_total", "Failed provider API calls (status: the "
            "HTTP status, or the error class)", ["provider", "status"], registry=r)
        self.dns_lag = Histogram(
            "multisigner_dns_observation_lag_seconds", "From a step's changes applied at "
            "the providers to every nameserver serving them", ["kind"],
            buckets=LONG_BUCKETS, registry=r)
        self.parent_wait = Histogram(
            "multisigner_parent_wait_seconds", "From a step's changes applied to the parent "
            "(and every nameserver) showing them, for steps that wait for the parent's DS",
            ["kind"], buckets=LONG_BUCKETS, registry=r)
        self.pass_seconds = Histogram(
            "multisigner_daemon_pass_seconds", "Length of one daemon pass", ["pass"],
            buckets=SHORT_BUCKETS, registry=r)
        self.pass_end = Gauge(
            "multisigner_daemon_last_pass_timestamp_seconds", "Unix time the last daemon "
            "pass of this kind ended", ["pass"], registry=r)
        self.zone_ok = Gauge(
            "multisigner_zone_last_success_timestamp_seconds", "Unix time of the last daemon "
            "pass over the zone that succeeded", ["zone"], registry=r)
        self.zone_failures = Counter(
            "multisigner_zone_pass_failures_total", "Daemon passes over a zone that failed "
            "or were refused", ["zone"], registry=r)
        self.leases_lost = Counter(
            "multisigner_leases_lost_total", "Zone leases this controller lost while working",
            registry=r)

    # -- events ---------------------------------------------------------------------------

    def __call__(self, event: events.Event) -> None:
        handler = _HANDLERS.get(type(event))
        if handler is not None:
            with self.lock:
                handler(self, event)

    def _step_timed(self, e: events.StepTimed) -> None:
        self.phase_work.labels(e.kind, e.phase).observe(e.seconds)
        if not e.ok:
            self.phase_errors.labels(e.kind, e.phase).inc()

    def _step_started(self, e: events.StepStarted) -> None:
        if e.process_id not in self._steps:
            # the first phase of a new process has no PhaseEntered: its act starts the step
            self._steps[e.process_id] = _StepClock(step_of(e.state), self._now(),
                                                   e.state.endswith(":act"))

    def _entered(self, e: events.PhaseEntered) -> None:
        self.waits.pop(e.process_id, None)
        clock = self._steps.get(e.process_id)
        step = step_of(e.state)
        if clock is not None and clock.step != step:
            self._step_over(e.kind, clock)
        if e.state in FINISHED:
            self._steps.pop(e.process_id, None)
            self.finished.labels(e.kind, e.state).inc()
            return
        self.transitions.labels(e.kind, step).inc()
        if clock is None or clock.step != step:
            self._steps[e.process_id] = _StepClock(step, self._now(), e.state.endswith(":act"))

    def _step_over(self, kind: str, clock: _StepClock) -> None:
        if not clock.whole:
            return
        took = self._now() - clock.since
        self.step_seconds.labels(kind, clock.step).observe(took)
        self.step_last.labels(kind, clock.step).set(took)
        if clock.minimum is not None:
            self.step_minimum.labels(kind, clock.step).observe(clock.minimum)
            self.step_last_minimum.labels(kind, clock.step).set(clock.minimum)

    def _observed(self, e: events.StepObserved) -> None:
        self.waits.pop(e.process_id, None)
        (self.parent_wait if e.parent else self.dns_lag).labels(e.kind).observe(e.lag_seconds)
        clock = self._steps.get(e.process_id)
        if clock is not None and clock.step == step_of(e.state):
            clock.minimum = e.hold_seconds

    def _waiting(self, e: events.Waiting) -> None:
        self.waits[e.process_id] = Wait(e.zone, e.kind, step_of(e.state),
                                        "parent" if e.parent else "nameservers", e.since,
                                        e.stalled)

    def _provider(self, e: events.ProviderCall) -> None:
        self.api_seconds.labels(e.provider, e.operation).observe(e.seconds)
        self.api_calls.labels(e.provider, e.status).inc()
        if not e.ok:
            self.api_errors.labels(e.provider, e.status).inc()

    def _pass(self, e: events.DaemonPass) -> None:
        kind = "scan" if e.scan else "due"
        self.pass_seconds.labels(kind).observe((e.ended - e.started).total_seconds())
        self.pass_end.labels(kind).set(e.ended.timestamp())
        self.last_pass[e.scan] = self._now()

    def _zone_passed(self, e: events.ZonePassed) -> None:
        if e.error is not None:
            self.zone_failures.labels(e.zone).inc()
            self.verdicts[e.zone] = "failed"
            return
        self.zone_ok.labels(e.zone).set_to_current_time()
        previous = self.verdicts.get(e.zone)
        if previous == "out_of_sync":
            self.verdicts[e.zone] = "in_sync"  # the pass re-synced it without an error
        elif previous in (None, "failed"):
            self.verdicts[e.zone] = "unobserved"

    def _checked(self, e: events.ZoneChecked) -> None:
        self.verdicts[e.zone] = "in_sync" if e.in_sync else "out_of_sync"
        if e.signatures_expire is not None:
            self.expiry[e.zone] = e.signatures_expire

    def _lease(self, e: events.LeaseChanged) -> None:
        if e.what == "renewed":
            self.leases[e.zone] = (self._now(), e.seconds)
            return
        self.leases.pop(e.zone, None)
        if e.what == "lost":
            self.leases_lost.inc()

    def forget_others(self, running: set[str]) -> None:
        """Drop what is kept about processes no longer running: one finished, aborted or
        superseded by another controller emits nothing here."""
        with self.lock:
            for gone in set(self._steps) - running:
                del self._steps[gone]
            for gone in set(self.waits) - running:
                del self.waits[gone]

    # -- what the health checks read ----------------------------------------------------------

    def overdue_leases(self) -> list[str]:
        """Held leases not renewed within their length: the renewal loop has stopped (or
        the event loop is blocked), so another controller may take the zone."""
        now = self._now()
        with self.lock:
            return sorted(z for z, (at, seconds) in self.leases.items() if now - at >= seconds)

    def seconds_since_pass(self, scan: bool) -> float | None:
        with self.lock:
            at = self.last_pass.get(scan)
        return None if at is None else self._now() - at


_HANDLERS: dict[type, Callable[[Collector, events.Event], None]] = {
    events.StepTimed: Collector._step_timed,  # type: ignore[dict-item]
    events.StepStarted: Collector._step_started,  # type: ignore[dict-item]
    events.PhaseEntered: Collector._entered,  # type: ignore[dict-item]
    events.StepObserved: Collector._observed,  # type: ignore[dict-item]
    events.Waiting: Collector._waiting,  # type: ignore[dict-item]
    events.ProviderCall: Collector._provider,  # type: ignore[dict-item]
    events.DaemonPass: Collector._pass,  # type: ignore[dict-item]
    events.ZonePassed: Collector._zone_passed,  # type: ignore[dict-item]
    events.ZoneChecked: Collector._checked,  # type: ignore[dict-item]
    events.LeaseChanged: Collector._lease,  # type: ignore[dict-item]
}
