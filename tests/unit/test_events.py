"""core.events: the in-process event bus, and the events the engine and providers emit."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core import events
from core.config import load_config
from orchestrator.decide.process_data import ProcessData
from orchestrator.engine.lease import zone_lease
from orchestrator.engine.runner import Engine, Outcome
from orchestrator.runtime import LEASE_SECONDS, Runtime
from state import StateStore

CONFIG = """\
[state]
url = "sqlite://"

[[providers]]
name = "p0"
type = "powerdns"
api_url = "http://127.0.0.1:9"
api_key = "k0"
nameservers = ["127.0.0.1:9"]

[[providers]]
name = "p1"
type = "powerdns"
api_url = "http://127.0.0.1:9"
api_key = "k1"
nameservers = ["127.0.0.1:9"]

[[zones]]
name = "example.test"
model = 2
signers = ["p0", "p1"]

[zones.parent]
type = "cds-scan"
nameservers = ["127.0.0.1:9"]
"""


@pytest.fixture
def store() -> Iterator[StateStore]:
    with StateStore.open("sqlite://") as opened:
        yield opened


def test_subscribe_emit_unsubscribe() -> None:
    got: list[events.Event] = []
    assert not events.wanted()
    unsubscribe = events.subscribe(got.append)
    assert events.wanted()
    event = events.ProviderCall("p0", "GET /zones/{zone}", 0.5, True)
    events.emit(event)
    unsubscribe()
    events.emit(events.ProviderCall("p0", "after", 0.1, True))
    assert got == [event]
    assert not events.wanted()


def test_a_failing_subscriber_is_dropped_and_kept_without_stopping_the_others() -> None:
    def broken(_event: events.Event) -> None:
        raise ValueError("subscriber bug")

    unsubscribe = events.subscribe(broken)
    try:
        with events.recording() as got:
            for n in range(3):
                events.emit(events.ProviderCall("p0", f"op{n}", 0.0, True))
    finally:
        unsubscribe()
    assert [e.operation for e in got if isinstance(e, events.ProviderCall)] == \
        ["op0", "op1", "op2"]
    failed = [(callback, str(exc)) for callback, exc in events.failures()
              if callback is broken]
    assert failed == [(broken, "subscriber bug")]  # once: dropped after its first failure
    assert not events.wanted()


def test_step_times_the_work_and_reports_a_failure() -> None:
    with events.recording() as got:
        with events.step("z.", "p1", "sync", "import-keys:act"):
            pass
        with pytest.raises(RuntimeError), events.step("z.", "p1", "sync", "import-keys:converge"):
            raise RuntimeError("provider down")
    kinds = [type(e).__name__ for e in got]
    assert kinds == ["StepStarted", "StepTimed", "StepStarted", "StepTimed"]
    first, second = got[1], got[3]
    assert isinstance(first, events.StepTimed) and isinstance(second, events.StepTimed)
    assert first.ok and not second.ok
    assert (second.step, second.phase) == ("import-keys", "converge")
    assert first.seconds >= 0


def test_timed_emits_a_provider_call_only_when_someone_listens() -> None:
    asked: list[str] = []

    def operation() -> str:
        asked.append("asked")
        return "keymgr list"

    async def work(fail: bool) -> int:
        if fail:
            raise OSError("no keymgr")
        return 7

    assert asyncio.run(events.timed("k0", operation, work(False))) == 7
    assert asked == []  # nobody listened: the operation's name was not even built
    with events.recording() as got:
        assert asyncio.run(events.timed("k0", operation, work(False))) == 7
        with pytest.raises(OSError):
            asyncio.run(events.timed("k0", operation, work(True)))
    assert [(e.provider, e.operation, e.ok) for e in got if isinstance(e, events.ProviderCall)] \
        == [("k0", "keymgr list", True), ("k0", "keymgr list", False)]


def test_an_engine_transition_emits_phase_entered(tmp_path: Path, store: StateStore) -> None:
    """A sync process whose first hold is over moves to the next step's act phase: the
    engine reports the phase it worked in and the state it entered (no I/O needed)."""
    path = tmp_path / "multisigner.toml"
    path.write_text(CONFIG)
    path.chmod(0o600)
    config = load_config(path)
    zone = config.zones[0]
    past = datetime.now(UTC) - timedelta(seconds=5)
    proc = store.start_process(
        zone.name, "sync", signer=None, actor="test", reason="test", state="import-keys:hold",
        data=ProcessData(deadline=past, observed_at=past).as_json(), next_check_at=past)
    engine = Engine(Runtime(config, store), lambda _line: None)
    async def one_phase() -> Outcome:
        async with zone_lease(store, zone.name, LEASE_SECONDS):  # state writes are fenced
            return await engine._one(zone, proc.id)

    with events.recording() as got:
        outcome = asyncio.run(one_phase())
    assert outcome.state == "publish-cds:act"
    # the lease taken around the phase reports itself too; the phase's own events, in order:
    started, entered, timed = [e for e in got if isinstance(
        e, events.StepStarted | events.PhaseEntered | events.StepTimed)]
    assert started == events.StepStarted(zone.name, proc.id, "sync", "import-keys:hold")
    assert isinstance(entered, events.PhaseEntered)
    assert (entered.zone, entered.process_id, entered.kind, entered.state) == \
        (zone.name, proc.id, "sync", "publish-cds:act")
    assert isinstance(timed, events.StepTimed) and timed.ok and timed.phase == "hold"
    stored = store.get_process(proc.id)
    assert stored is not None and stored.state == "publish-cds:act"
