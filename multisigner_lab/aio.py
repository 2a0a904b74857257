"""One background event loop for the lab's calls into the product's async code.

The product's PowerDNS adapter and DNS queries are coroutines; the lab is synchronous
(tests call it directly, from threads, and from inside their own event loops). Every lab
call runs its coroutine on this one loop, in its own daemon thread: an ``httpx.AsyncClient``
is bound to the loop it first ran on, so an adapter made here stays usable for as long as
the lab keeps it, whichever thread asks.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_loops: list[asyncio.AbstractEventLoop] = []  # the one loop, once started


def _background_loop() -> asyncio.AbstractEventLoop:
    with _lock:
        if not _loops:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="lab-aio", daemon=True).start()
            _loops.append(loop)
        return _loops[0]


def run(coro: Coroutine[Any, Any, T]) -> T:
    """``coro``'s result (or exception), run on the lab's loop; blocks the caller."""
    loop = _background_loop()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:  # pragma: no cover - a lab coroutine calling back into run()
        coro.close()
        raise RuntimeError("multisigner_lab.aio.run called from the lab's own loop")
    return asyncio.run_coroutine_threadsafe(coro, loop).result()
