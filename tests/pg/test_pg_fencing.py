"""Two controllers, separate OS processes, racing on one zone; one is paused (SIGSTOP) past
its lease, the other takes the zone over, then the first is resumed (SIGCONT). The pause
comes right before a provider call (the provider guard must stop it) or right before a
state write (the fence must refuse it): nothing else runs first when it resumes.

What must hold, on SQLite and on PostgreSQL: the paused controller was not judged dead
(it is alive, only stopped), so the other waited for the lease to expire; once resumed,
its next write is refused (fenced) and nothing it does reaches a provider; the taker
resumes the same process from its last recorded state; the history stays one chain.

The workers (fenceworker.py) use a fake provider that reports each call it receives in
the worker process: the guard under test sits in ``Runtime.provider``, in front of every
adapter, so a real server behind it would only add time.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from state import StateStore

ZONE = "example.test."
LEASE = 3.0  # seconds; renewed every second
CONFIG = """
[state]
url = "sqlite://"

[[providers]]
name = "p0"
type = "powerdns"
api_url = "http://127.0.0.1:9"
api_key = "x"
nameservers = ["127.0.0.1:9"]

[[zones]]
name = "example.test."
model = 2
signers = ["p0"]

[zones.parent]
type = "cds-scan"
nameservers = ["127.0.0.1:9"]
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'state.db'}"
    else:
        url = str(request.getfixturevalue("pg_url"))
    StateStore.open(url).close()  # migrated before the workers start
    return url


class Worker:
    """A fenceworker.py process and the events it printed so far."""

    def __init__(self, repo_root: Path, config: Path, url: str, name: str,
                 run: float, pause: str = "none") -> None:
        script = Path(__file__).with_name("fenceworker.py")
        env = {**os.environ, "PYTHONPATH": str(repo_root)}
        self.name = name
        self.events: list[dict[str, Any]] = []
        self._buffer = b""
        self.proc = subprocess.Popen(
            [sys.executable, str(script), str(config), url, name, str(LEASE), str(run), pause],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=repo_root, env=env)

    def wait_for(self, event: str, timeout: float) -> dict[str, Any]:
        """Read events until *event* (returned); fail after *timeout* seconds."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            found = next((e for e in self.events if e["event"] == event), None)
            if found is not None:
                return found
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.proc.stdout], [], [], max(0.0, left))
            if not ready:
                raise AssertionError(f"worker {self.name}: no {event!r} within {timeout}s; "
                                     f"events {self.events}")
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise AssertionError(f"worker {self.name} ended without {event!r}: "
                                     f"{self.events}\n{err}")
            self._buffer += chunk
            *lines, self._buffer = self._buffer.split(b"\n")
            self.events += [json.loads(line) for line in lines if line.strip()]

    def wait_stopped(self, timeout: float) -> None:
        stat = Path(f"/proc/{self.proc.pid}/stat")
        deadline = time.monotonic() + timeout
        while stat.read_text().rsplit(")", 1)[1].split()[0] != "T":
            assert time.monotonic() < deadline, f"worker {self.name} did not stop"
            time.sleep(0.01)

    def of(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == event]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)  # a stopped process ignores SIGKILL's wait
            self.proc.kill()
        self.proc.wait(timeout=30)


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for worker in started:
        worker.stop()


@pytest.mark.parametrize("pause", ["before-call", "before-write"])
def test_a_paused_controller_is_fenced_after_a_takeover(
        url: str, pause: str, repo_root: Path, tmp_path: Path, workers: list[Worker]) -> None:
    config = tmp_path / "ms.toml"
    config.write_text(CONFIG)
    a = Worker(repo_root, config, url, "a", run=120, pause=pause)
    workers.append(a)
    a.wait_for("held", 30)
    b = Worker(repo_root, config, url, "b", run=3)
    workers.append(b)
    b.wait_for("waiting", 30)  # refused: a holds the lease
    os.kill(a.proc.pid, signal.SIGUSR1)  # pause at the next provider call / outcome write
    pausing = a.wait_for("pausing", 30)
    stopped, step = pausing["t"], pausing["n"]
    a.wait_stopped(10)
    assert not b.of("held")
    held = b.wait_for("held", 3 * LEASE)["t"]
    # a is stopped, not dead: b had to wait for its lease to run out (renewed at most a
    # third of the lease before the stop)
    assert held - stopped >= LEASE * 2 / 3 - 0.2, held - stopped
    b.wait_for("call", 10)
    os.kill(a.proc.pid, signal.SIGCONT)

    end_a = a.wait_for("end", 30)
    end_b = b.wait_for("end", 30)
    assert b.proc.wait(timeout=30) == 0 and a.proc.wait(timeout=30) == 0
    assert end_b["result"] == "done"
    assert end_a["result"] == "lost", end_a
    if pause == "before-call":  # the provider guard stopped it, on its own clock
        assert "paused or blocked past the end of its lease" in end_a["message"], end_a
    else:  # the fence refused the outcome: b holds the zone
        assert re.search(rf"lease lost: moving sync \w+ to a-{step}:done on zone "
                         r"example.test. refused, .* is being handled by",
                         end_a["message"]), end_a
    # every step's call until the pause, the paused step's only if it paused after it
    last = step if pause == "before-write" else step - 1
    assert [c["what"] for c in a.of("call")] == [f"a-{n}" for n in range(last + 1)]
    # Nothing of a's reached the provider after b took over ...
    late_calls = [c for c in a.of("call") if c["t"] >= held]
    assert not late_calls, late_calls
    with StateStore(url) as store:
        entries = store.history(ZONE)
        # ... nor the database: a's last write precedes b's hold, b wrote only after it.
        by_a = [e for e in entries if e.actor == "a"]
        by_b = [e for e in entries if e.actor == "b"]
        assert by_a and by_b
        assert max(e.at.timestamp() for e in by_a) < held
        assert min(e.at.timestamp() for e in by_b) >= held
        assert entries.index(by_a[-1]) < entries.index(by_b[0])
        # a's step cut short is left at its recorded intent, and b resumed a's process
        # right there
        assert by_a[-1].to_state == f"a-{step}:act"
        [process] = store.processes(zone=ZONE)
        assert b.of("resumed")[0]["state"] == by_a[-1].to_state
        assert by_b[0].from_state == by_a[-1].to_state
        assert process.state.startswith("b-")
        assert store.verify_chain().ok
        assert store.lease_info(ZONE) is None  # b released it
