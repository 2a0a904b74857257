"""PostgreSQL with several controllers at once: separate OS processes, each with its own
StateStore, writing the same database at the same moment (the reason to use PostgreSQL).

Every write is serialized by the advisory lock, so the history must stay one unbroken
chain with every entry exactly once, and a zone's lease or running process can only ever
have one owner.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from pgworker import SHARED_ZONE, T0

from state import StateStore

WORKERS = 4
TIMEOUT = 120


def _run_workers(repo_root: Path, mode: str, url: str, count: int,
                 workers: int = WORKERS) -> list[dict[str, Any]]:
    """Start the workers, release them together once all are ready, collect their JSON."""
    script = Path(__file__).with_name("pgworker.py")
    env = {**os.environ, "PYTHONPATH": str(repo_root)}
    procs = [
        subprocess.Popen([sys.executable, str(script), mode, url, f"w{i}", str(count)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, cwd=repo_root, env=env)
        for i in range(workers)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if line.strip() != "ready":
                _, err = proc.communicate(timeout=TIMEOUT)
                raise AssertionError(f"worker did not get ready: {line!r}\n{err}")
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=TIMEOUT)
            assert proc.returncode == 0, f"worker failed ({proc.returncode}):\n{err}"
            results.append(json.loads(out.strip().splitlines()[-1]))
        return results
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_concurrent_writers_keep_one_chain(store: StateStore, pg_url: str,
                                           repo_root: Path) -> None:
    count = 40
    _run_workers(repo_root, "chain", pg_url, count)

    report = store.verify_chain()
    entries = store.history()
    assert (report.ok, report.problem) == (True, None)
    assert report.checked == len(entries) == WORKERS * count * 2
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
    # Nothing lost, nothing written twice: every worker's steps, each once, in its order.
    for i in range(WORKERS):
        name = f"w{i}"
        mine = [e for e in entries if e.actor == name]
        assert {e.zone for e in mine} == {f"{name}.test."}
        notes = [e.evidence["n"] for e in mine if e.kind == "note"]
        steps = [(e.evidence["n"], e.to_state) for e in mine if e.kind == "sync"]
        assert notes == list(range(count))
        expected = ["s0", "s1", "s2", "s3", "done"]
        assert steps == [(n, expected[n % 5]) for n in range(count)]
        processes = store.processes(zone=f"{name}.test.")
        assert [p.status for p in processes] == ["done"] * (count // 5)
    # The shared observation rows were upserted by everyone: one row per content.
    rows = store.cached_rrsets(SHARED_ZONE, "SOA", T0)
    texts = Counter(r.text for r in rows)
    assert texts["same"] == 1
    assert len(texts) == 1 + WORKERS * len(range(0, count, 3))
    [same] = [r for r in rows if r.text == "same"]
    assert same.last_seen == max(r.last_seen for r in rows)


def test_competing_controllers_never_share_a_lease(store: StateStore, pg_url: str,
                                                   repo_root: Path) -> None:
    count = 15
    results = _run_workers(repo_root, "lease", pg_url, count)

    assert [r["held"] for r in results] == [count] * WORKERS
    # Four processes hammering one lease: some attempts must have been turned away, or
    # this test did not test anything.
    assert sum(r["refused"] for r in results) > 0
    entries = store.history(SHARED_ZONE)
    assert len(entries) == WORKERS * count * 2
    # Holds never overlap: every "enter" is directly followed by the same holder's "exit".
    for enter, leave in zip(entries[::2], entries[1::2], strict=True):
        assert (enter.to_state, leave.to_state) == ("enter", "exit")
        assert enter.actor == leave.actor
    assert Counter(e.actor for e in entries[::2]) == {r["holder"]: count for r in results}
    assert store.lease_info(SHARED_ZONE) is None  # the last holder released it
    assert store.verify_chain().ok


def test_one_winner_per_lease_and_per_process_race(store: StateStore, pg_url: str,
                                                   repo_root: Path) -> None:
    rounds = 25
    results = _run_workers(repo_root, "race", pg_url, rounds)

    for r in range(rounds):
        lease_winners = [f"w{i}" for i, res in enumerate(results) if res["leases"][r]]
        start_winners = [f"w{i}" for i, res in enumerate(results) if res["starts"][r]]
        assert len(lease_winners) == 1, (r, lease_winners)
        assert len(start_winners) == 1, (r, start_winners)
        lease = store.lease_info(f"race-{r}.test.")
        assert lease is not None and lease.holder == lease_winners[0]
        [process] = store.processes(zone=f"start-{r}.test.")
        assert process.actor == start_winners[0]
        assert [e.actor for e in store.history(f"start-{r}.test.")] == start_winners
    assert store.verify_chain().ok


def test_concurrent_first_open_migrates_once(pg_url: str, repo_root: Path) -> None:
    """Controllers started together on an empty database: one migrates, the others wait
    for it and find the schema in place."""
    count = 10
    _run_workers(repo_root, "migrate", pg_url, count)

    with StateStore.open(pg_url) as store:
        entries = store.history(SHARED_ZONE)
        assert len(entries) == WORKERS * count
        assert Counter(e.actor for e in entries) == {f"w{i}": count for i in range(WORKERS)}
        assert store.verify_chain().ok
