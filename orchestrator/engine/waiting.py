"""Poll an observation until a condition holds, with progress lines and a deadline.

Polling starts fast (changes at a healthy provider are live in well under a second) and
backs off to ``cap`` so a slow parent is not hammered; the zone lease is renewed on every
round so another controller never takes over a zone mid-wait.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from core.durations import format_duration
from core.errors import MultisignerError
from orchestrator.decide.sync_plan import Progress

Reporter = Callable[[str], None]


class WaitTimeout(MultisignerError):
    """A wait condition did not hold before its deadline."""


@dataclass(frozen=True)
class Waited:
    seconds: float
    polls: int


async def wait_for(
    what: str,
    check: Callable[[], Awaitable[Progress]],
    *,
    timeout: float,
    report: Reporter,
    first: float = 0.1,
    cap: float = 2.0,
    on_round: Callable[[str, float], None] | None = None,
    hint: str = "",
) -> Waited:
    start = time.monotonic()
    delay = first
    polls = 0
    last_line = ""
    last_report = start
    while True:
        polls += 1
        progress = await check()
        elapsed = time.monotonic() - start
        if progress.done:
            report(f"{what}: done after {format_duration_s(elapsed)} ({polls} polls)")
            return Waited(elapsed, polls)
        remaining = timeout - elapsed
        if remaining <= 0:
            raise WaitTimeout(
                f"gave up waiting for {what} after {format_duration_s(elapsed)}: still waiting"
                f" for {', '.join(progress.lagging)}" + (f". {hint}" if hint else "")
            )
        line = (f"{what}: {progress.ready}/{progress.total} ready; waiting for "
                f"{', '.join(progress.lagging[:4])}{' ...' if len(progress.lagging) > 4 else ''}")
        now = time.monotonic()
        if line != last_line or now - last_report > 10:
            report(f"{line} (gives up in {format_duration_s(remaining)})")
            last_line, last_report = line, now
        sleep = min(delay, max(remaining, 0.01))
        if on_round is not None:
            on_round(line, sleep)
        await asyncio.sleep(sleep)
        delay = min(delay * 1.5, cap)


def format_duration_s(seconds: float) -> str:
    from datetime import timedelta

    return format_duration(timedelta(seconds=round(seconds, 1)))
