"""One controller of the fencing test:
``python fenceworker.py CONFIG URL NAME LEASE RUN PAUSE``.

It takes the zone's lease the way the engine does (``zone_lease``: renewed in the
background), through a ``Runtime`` (so its store is fenced with this process's holder id),
and runs steps in the engine's order: intent written, a provider called, outcome written,
for RUN seconds. Waiting for the lease, it retries every 50 ms. PAUSE ("before-call",
"before-write" or "none"): once the test sends SIGUSR1, the worker stops itself
(SIGSTOP) at its next provider call, or its next outcome write, right before it, and goes
on when the test sends SIGCONT. Stopping itself there, rather than being stopped at a
random moment, puts the pause outside any database transaction: a controller stopped
*inside* one holds the database's write lock and blocks every other controller until it
is resumed (SQLite) or the lock timeout ends their wait (PostgreSQL), which is a matter of
liveness, not of the fencing tested here.

The provider is a fake that prints each call it receives, in this process: the guard under
test sits in ``Runtime.provider``, before any adapter, so a real adapter (and a server
behind it) would add nothing but time. Every event is one JSON line on stdout:
``waiting``, ``held``, ``resumed`` (the process state found), ``call``, and a final ``end``
with ``result`` "done" or "lost" and the error message.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, cast

from core.config import load_config
from core.errors import StateError
from orchestrator.engine.lease import zone_lease
from orchestrator.runtime import Runtime
from providers import Provider
from state import StateStore
from state.leases import LeaseLost

ZONE = "example.test."
GAP = 0.1  # between intent, provider call and outcome: where a pause usually lands


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, "t": time.time(), **fields}), flush=True)


class CountingProvider:
    """Stands in for a provider adapter: records that a call reached it."""

    def __init__(self) -> None:
        self.calls = 0

    async def write(self, what: str) -> None:
        self.calls += 1
        emit("call", what=what, n=self.calls)


ASKED: list[int] = []  # SIGUSR1 received


def pause(point: str, wanted: str, n: int) -> None:
    if point == wanted and ASKED:
        ASKED.clear()
        emit("pausing", before=point, n=n)
        os.kill(os.getpid(), signal.SIGSTOP)  # returns once the test sends SIGCONT


async def work(rt: Runtime, name: str, seconds: float, run: float, point: str) -> str:
    store = rt.store
    fake = CountingProvider()
    rt._providers["p0"] = cast(Provider, fake)
    deadline = time.monotonic() + 60
    while True:
        try:
            async with zone_lease(store, ZONE, seconds):
                emit("held")
                proc = store.active_process(ZONE) or store.start_process(
                    ZONE, "sync", signer=None, actor=name, reason="start", state="start")
                emit("resumed", state=proc.state)
                end, n = time.monotonic() + run, 0
                while time.monotonic() < end:
                    store.transition(proc.id, f"{name}-{n}:act", actor=name, reason="intent")
                    await asyncio.sleep(GAP)
                    pause(point, "before-call", n)
                    await cast(CountingProvider, rt.provider("p0")).write(f"{name}-{n}")
                    await asyncio.sleep(GAP)
                    pause(point, "before-write", n)
                    store.transition(proc.id, f"{name}-{n}:done", actor=name, reason="outcome")
                    n += 1
                return "done"
        except LeaseLost:
            raise
        except StateError as exc:
            if "is being handled by" not in str(exc) or time.monotonic() > deadline:
                raise
            emit("waiting")
            await asyncio.sleep(0.05)


def main() -> int:
    config, url, name, seconds, run, point = sys.argv[1:7]
    signal.signal(signal.SIGUSR1, lambda *_: ASKED.append(1))
    store = StateStore(url)
    rt = Runtime(config=load_config(Path(config)), store=store, actor=name)
    try:
        result = asyncio.run(work(rt, name, float(seconds), float(run), point))
        emit("end", result=result)
    except LeaseLost as exc:
        emit("end", result="lost", message=str(exc))
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
