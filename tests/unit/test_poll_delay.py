"""The engine's polling cadence while it waits for an observation (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from orchestrator.decide.timing import PARENT_POLL_CAP
from orchestrator.decide.timing import poll_delay as _poll_delay

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_child_waits_poll_fast_then_every_two_seconds() -> None:
    assert _poll_delay(T0, at(0)) == 0.1
    assert abs(_poll_delay(T0, at(5)) - 0.6) < 1e-9
    assert _poll_delay(T0, at(60)) == 2.0
    assert _poll_delay(T0, at(7200)) == 2.0  # a nameserver that lags is polled closely


def test_parent_waits_back_off_to_a_tenth_of_the_wait_capped() -> None:
    # at first exactly as fast as a child wait (the lab's registry follows in ~1 s) ...
    for s in (0, 1, 5, 19):
        assert _poll_delay(T0, at(s), parent=True) == _poll_delay(T0, at(s))
    # ... then a tenth of the time waited, so the DS is seen at most ~10 % late ...
    assert abs(_poll_delay(T0, at(300), parent=True) - 30.0) < 1e-9
    # ... and never more than a minute apart
    assert _poll_delay(T0, at(3600), parent=True) == PARENT_POLL_CAP == 60.0
    # a registry taking 4 h costs ~4 * 60 + log polls, not 7,200
    t, polls = 0.0, 0
    while t < 4 * 3600:
        t += _poll_delay(T0, at(t), parent=True)
        polls += 1
    assert polls < 400, polls
