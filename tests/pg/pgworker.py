"""One controller process of the concurrency tests: ``python pgworker.py MODE URL NAME N``.

It opens its own StateStore (its own engine and connections), prints ``ready``, waits for
a line on stdin so that every worker starts at the same moment, does its part, and prints
one JSON line with what it saw. Run as a separate OS process, not a thread: separate
controllers sharing PostgreSQL is the case the database's locking has to get right.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from core.errors import StateError
from state import RRsetRecord, StateStore

T0 = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
SHARED_ZONE = "shared.test."


def chain(store: StateStore, name: str, count: int) -> dict[str, Any]:
    """Processes on the worker's own zone, notes, and upserts of rows every worker shares:
    two history entries per iteration."""
    zone = f"{name}.test."
    pid = ""
    for n in range(count):
        step = n % 5
        evidence = {"worker": name, "n": n}
        if step == 0:
            pid = store.start_process(zone, "sync", signer=None, actor=name, reason="start",
                                      state="s0", evidence=evidence).id
        elif step < 4:
            store.transition(pid, f"s{step}", actor=name, reason="step", evidence=evidence,
                             next_check_at=T0 + timedelta(seconds=n))
        else:
            store.transition(pid, "done", actor=name, reason="end", evidence=evidence,
                             status="done")
        store.append_history(zone, process_id=None, kind="note", from_state=None,
                             to_state="noted", actor=name, reason="note", evidence=evidence)
        if n % 3 == 0:
            seen = T0 + timedelta(seconds=n)
            store.record_observations(
                [RRsetRecord(SHARED_ZONE, "p0", "a:53", "SOA", "same", 60),
                 RRsetRecord(SHARED_ZONE, "p0", "a:53", "SOA", f"{name}-{n}", 60)], [], seen)
    return {}


def lease(store: StateStore, name: str, count: int) -> dict[str, Any]:
    """Hold the shared zone's lease *count* times, logging entry and exit in the history
    while holding it; the test checks that no two holds ever overlap."""
    holder = f"{socket.gethostname()}:{os.getpid()}"
    held = refused = 0
    while held < count:
        try:
            with store.lease(SHARED_ZONE, holder, ttl_seconds=30):
                store.append_history(SHARED_ZONE, process_id=None, kind="lease",
                                     from_state=None, to_state="enter", actor=holder,
                                     reason=name)
                time.sleep(0.005)  # widen the window a second holder would have to hit
                store.append_history(SHARED_ZONE, process_id=None, kind="lease",
                                     from_state="enter", to_state="exit", actor=holder,
                                     reason=name)
            held += 1
        except StateError as exc:
            if "is being handled by" not in str(exc):
                raise
            refused += 1
            time.sleep(0.001)
    return {"holder": holder, "held": held, "refused": refused}


def race(store: StateStore, name: str, count: int) -> dict[str, Any]:
    """Round r: every worker tries, at the same pinned instant, to take the lease of zone
    race-r and to start a process on zone start-r; the test expects one winner of each."""
    leases, starts = [], []
    for r in range(count):
        leases.append(store.acquire_lease(f"race-{r}.test.", name, 3600, T0))
        try:
            store.start_process(f"start-{r}.test.", "sync", signer=None, actor=name,
                                reason="race", state="s0")
            starts.append(True)
        except StateError as exc:
            if "already has a running" not in str(exc):
                raise
            starts.append(False)
    return {"leases": leases, "starts": starts}


def migrate(store: StateStore, name: str, count: int) -> dict[str, Any]:
    """Open (and so migrate) a fresh database concurrently with the other workers."""
    with StateStore.open(store.raw_url) as opened:
        for n in range(count):
            opened.append_history(SHARED_ZONE, process_id=None, kind="note", from_state=None,
                                  to_state="noted", actor=name, reason="note",
                                  evidence={"worker": name, "n": n})
    return {}


MODES = {"chain": chain, "lease": lease, "race": race, "migrate": migrate}


class _Lazy(StateStore):
    """A store not yet migrated (mode ``migrate`` opens its own after the go signal)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.raw_url = url


def main() -> int:
    mode, url, name, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    store = _Lazy(url)
    with store:
        if mode != "migrate":
            store.lease_info(SHARED_ZONE)  # connect now, so that "go" starts everyone at once
        print("ready", flush=True)
        if sys.stdin.readline().strip() != "go":
            return 3
        result = MODES[mode](store, name, count)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
