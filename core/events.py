"""In-process events: what the engine, the daemon and the provider adapters report while
they work, for whoever subscribes (the benchmarks in ``bench/``, the daemon's Prometheus
metrics in ``orchestrator/metrics/``).

A process-wide bus: ``subscribe(callback)`` returns an unsubscribe function; the product
calls ``emit(event)`` at a few documented points (docs/hooks.md). With no subscriber an
emit is one truth test of a tuple, and the timing helpers (``step``, ``timed``) measure
nothing, so the hooks cost nothing in normal operation.

Subscribers run inline, in the emitting thread and event loop, in subscription order:
they must be fast and must not block or await. A subscriber that raises is dropped and
its exception kept (``failures()``): what the controller does never depends on who
watches it. The events are not part of the stable CLI/JSON contract.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class StepStarted:
    """The engine starts the work of one phase of a process (``state`` is
    ``<step>:<phase>`` or ``abort:<step>:<phase>``). Every ``StepStarted`` is followed by
    a ``StepTimed`` for the same process, also when the work raises."""

    zone: str
    process_id: str
    kind: str
    state: str


@dataclass(frozen=True)
class StepTimed:
    """The work of one phase is over: ``seconds`` of wall time (API reads and writes, DNS
    queries, state DB writes; the waits between polls are not in it). ``ok`` is False if
    it raised (the process stays where it was and is retried)."""

    zone: str
    process_id: str
    kind: str
    state: str
    seconds: float
    ok: bool

    @property
    def phase(self) -> str:
        return self.state.rsplit(":", 1)[-1]

    @property
    def step(self) -> str:
        return self.state.rsplit(":", 1)[0]


@dataclass(frozen=True)
class PhaseEntered:
    """A process's persisted state changed to ``state`` (written to the store before this
    is emitted); ``done`` / ``aborted`` when it finished."""

    zone: str
    process_id: str
    kind: str
    state: str
    at: datetime


@dataclass(frozen=True)
class DaemonPassStarted:
    """The daemon starts a pass over ``zones`` zones: a scan of every zone (``scan``) or a
    pass over the zones whose process is due."""

    scan: bool
    zones: int
    at: datetime


@dataclass(frozen=True)
class DaemonPass:
    """A daemon pass is over (a pass that raises ends the daemon and emits nothing)."""

    scan: bool
    zones: int
    started: datetime
    ended: datetime


@dataclass(frozen=True)
class ProviderCall:
    """One call to a provider: a PowerDNS API request (``operation`` like
    ``GET /zones/{zone}/cryptokeys``; each retry is a call) or one Knot command
    (``keymgr generate-ksr``, ``knotc zone-status``)."""

    provider: str
    operation: str
    seconds: float
    ok: bool
    # "ok", the HTTP status of a failed API call ("503"), else the error's class name
    # ("Transient" for a connection that could not be made, "Ambiguous" for a timeout)
    status: str = "ok"


@dataclass(frozen=True)
class StepObserved:
    """A step's change is served by every nameserver (and the parent, where the step
    waits for it): ``lag_seconds`` after its changes were applied; the RFC 7583 hold that
    follows lasts ``hold_seconds`` (the step's minimum length from here on)."""

    zone: str
    process_id: str
    kind: str
    state: str
    lag_seconds: float
    hold_seconds: float
    parent: bool  # the step waited for the parent's DS as well


@dataclass(frozen=True)
class Waiting:
    """A process polled and must wait (``what`` it waits for), ``since`` it started
    waiting for this step's change; ``parent``: it waits for the parent; ``stalled``: past
    the policy's propagation or parent timeout."""

    zone: str
    process_id: str
    kind: str
    state: str
    what: str
    since: datetime
    parent: bool
    stalled: bool


@dataclass(frozen=True)
class ZoneChecked:
    """The daemon compared a zone with its model's steady state (Model 1 scans):
    ``in_sync`` or not, and when the served DNSKEY RRset's earliest signature expires
    (None if no server showed one)."""

    zone: str
    in_sync: bool
    signatures_expire: datetime | None


@dataclass(frozen=True)
class ZonePassed:
    """The daemon's pass over one zone is over; ``error`` says why it failed or was
    refused (None: it succeeded)."""

    zone: str
    error: str | None


@dataclass(frozen=True)
class LeaseChanged:
    """This process took or renewed (``renewed``), released (``released``) or lost
    (``lost``) a zone's lease, which lasts ``seconds`` from a renewal."""

    zone: str
    what: str
    seconds: float


Event = (StepStarted | StepTimed | PhaseEntered | DaemonPassStarted | DaemonPass | ProviderCall
         | StepObserved | Waiting | ZoneChecked | ZonePassed | LeaseChanged)
Subscriber = Callable[[Event], None]

class _Bus:
    """The subscribers (a tuple, replaced whole: emitting never sees a half-made list)."""

    def __init__(self) -> None:
        self.subscribers: tuple[Subscriber, ...] = ()
        self.failures: list[tuple[Subscriber, Exception]] = []


_BUS = _Bus()


def subscribe(callback: Subscriber) -> Callable[[], None]:
    """Call ``callback`` with every event from now on; returns the unsubscribe function."""
    _BUS.subscribers = (*_BUS.subscribers, callback)

    def unsubscribe() -> None:
        _BUS.subscribers = tuple(s for s in _BUS.subscribers if s is not callback)

    return unsubscribe


def wanted() -> bool:
    """Whether anyone listens (to skip building an event nobody receives)."""
    return bool(_BUS.subscribers)


def failures() -> list[tuple[Subscriber, Exception]]:
    """The subscribers that raised, each with its first exception (they were dropped)."""
    return list(_BUS.failures)


def emit(event: Event) -> None:
    for callback in _BUS.subscribers:
        try:
            callback(event)
        except Exception as exc:
            # An observer's bug must not change what the controller does: the subscriber
            # is dropped and its exception kept for it to find (``failures()``). No
            # logging here: core/ stays free of I/O.
            _BUS.subscribers = tuple(s for s in _BUS.subscribers if s is not callback)
            _BUS.failures.append((callback, exc))


class step:  # noqa: N801 (used as a function: ``with events.step(...)``)
    """Around the work of one engine phase: ``StepStarted``, then ``StepTimed`` (``ok``
    False if the block raised); nothing at all when nobody listens."""

    def __init__(self, zone: str, process_id: str, kind: str, state: str) -> None:
        self._what = (zone, process_id, kind, state)
        self._started: float | None = None

    def __enter__(self) -> None:
        if _BUS.subscribers:
            emit(StepStarted(*self._what))
            self._started = time.perf_counter()

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if self._started is not None:
            emit(StepTimed(*self._what, time.perf_counter() - self._started, kind is None))


async def timed(provider: str, operation: Callable[[], str], call: Awaitable[T]) -> T:
    """Await ``call``, emitting a ``ProviderCall`` (``operation()`` is only evaluated when
    someone listens)."""
    if not _BUS.subscribers:
        return await call
    started = time.perf_counter()
    status = "cancelled"
    try:
        result = await call
        status = "ok"
        return result
    except Exception as exc:
        status = _status_of(exc)
        raise
    finally:
        emit(ProviderCall(provider, operation(), time.perf_counter() - started, status == "ok",
                          status))


_HTTP_STATUS = re.compile(r"\bHTTP (\d{3})\b")


def _status_of(exc: Exception) -> str:
    """A failed call's status: the HTTP status the adapters put in their messages
    ("HTTP 503: ..."), else the exception's class name."""
    found = _HTTP_STATUS.search(str(exc))
    return found.group(1) if found else type(exc).__name__


def entered(zone: str, process_id: str, kind: str, state: str) -> None:
    """Emit ``PhaseEntered`` (now) if anyone listens."""
    if _BUS.subscribers:
        emit(PhaseEntered(zone, process_id, kind, state, datetime.now(UTC)))


class Process(Protocol):
    """What the helpers below read of a process (state/info.py's ProcessInfo)."""

    @property
    def id(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def state(self) -> str: ...


def observed(zone: str, proc: Process, lag: timedelta, hold: timedelta, parent: bool) -> None:
    """Emit ``StepObserved`` if anyone listens."""
    if _BUS.subscribers:
        emit(StepObserved(zone, proc.id, proc.kind, proc.state, lag.total_seconds(),
                          hold.total_seconds(), parent))


def waiting(zone: str, proc: Process, what: str, since: datetime, parent: bool, *,
            stalled: bool) -> None:
    """Emit ``Waiting`` if anyone listens."""
    if _BUS.subscribers:
        emit(Waiting(zone, proc.id, proc.kind, proc.state, what, since, parent, stalled))


def emit_if(make: Callable[[], Event]) -> None:
    """Emit ``make()`` if anyone listens (one line at an emit point, nothing built when
    nobody does)."""
    if _BUS.subscribers:
        emit(make())


class recording:  # noqa: N801 (used as a function: ``with events.recording() as got``)
    """Collect every event emitted inside the block (tests, one-off measurements)."""

    def __init__(self) -> None:
        self._got: list[Event] = []
        self._unsubscribe: Callable[[], None] | None = None

    def __enter__(self) -> list[Event]:
        self._unsubscribe = subscribe(self._got.append)
        return self._got

    def __exit__(self, *_: object) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()


__all__ = ["DaemonPass", "DaemonPassStarted", "Event", "LeaseChanged", "PhaseEntered",
           "ProviderCall", "StepObserved", "StepStarted", "StepTimed", "Subscriber", "Waiting",
           "ZoneChecked", "ZonePassed", "emit", "emit_if", "entered", "failures", "observed",
           "recording", "step", "subscribe", "timed", "waiting", "wanted"]
