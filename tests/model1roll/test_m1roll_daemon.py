"""What a daemon (``multisigner run``) killed while it re-signs a Model 1 zone leaves
behind for the next rollover. The daemon re-signs Model 1 zones as ``sync`` processes; one
killed mid-way stays ``running``. Regression tests: before the scheduler superseded such a
sync (its zone lease free), the restarted daemon never re-signed that zone again (owner
RRSIGs ran out, rollovers were refused), and one killed while it waited for the
nameservers made the restarted daemon spin on its past next_check_at."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from rollover.rollkit import daemon

from model1roll.m1roll import (
    LAB,
    LONG,
    Watched,
    config_copy,
    model1_lab,
    ms,
    ok,
    processes,
    sync,
    wait_until,
    when,
)
from multisigner_lab.model1 import Model1Lab

pytestmark = LAB

RESIGN, SPIN, OTHER = "resign.test.", "spin.test.", "other.test."


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Model1Lab]:
    with model1_lab(tmp_path_factory, "m1daemon", providers=2, zones=[RESIGN, SPIN, OTHER],
                    store="pkcs11") as running:
        yield running


def _starts(log: Path) -> int:
    return log.read_text().count("daemon started") if log.exists() else 0


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_daemon_killed_in_a_resign_resigns_after_restart(lab: Model1Lab) -> None:
    """Not a rollover, but what a killed daemon leaves behind for the next rollover: the
    daemon re-signs Model 1 zones as a ``sync`` process. Killed during one, restarted, it
    must re-sign again (the policy here makes a re-sign due at every pass)."""
    config = config_copy(lab, "resign.toml", zones=[RESIGN],
                         policy={"signature_validity": "1h", "signature_refresh": "3590s"})
    sync(config, RESIGN)
    # Synced: from here on the zone is valid, and the daemon's re-signs, its death in
    # one, the restarted daemon's re-sign and the rollover started and aborted after it
    # must keep every combination a resolver may hold valid.
    with Watched(lab, RESIGN) as watched:
        _kill_in_resign_then_restart(lab, config)
    watched.assert_clean()


def _kill_in_resign_then_restart(lab: Model1Lab, config: Path) -> None:
    log = lab.directory / "resign-daemon.log"

    def running_sync() -> dict[str, object] | None:
        return next((p for p in processes(config, RESIGN)
                     if p["kind"] == "sync" and p["status"] == "running"), None)

    with daemon(config, log, "--poll-interval", "1s") as proc:
        wait_until(running_sync, 30, "the daemon re-signs", interval=0.005)
        proc.send_signal(signal.SIGKILL)
    stale = running_sync()
    assert stale is not None, "the re-sign ended before the kill"
    print(f"daemon killed in re-sign {stale['id']} ({stale['state']})")
    restarted = datetime.now(UTC)

    def resigned() -> list[dict[str, object]]:
        return [p for p in processes(config, RESIGN) if p["kind"] == "sync"
                and p["status"] == "done" and when(str(p["started_at"])) > restarted]

    with daemon(config, log, "--poll-interval", "1s"):
        wait_until(lambda: _starts(log) >= 2, 30, "the daemon restarts", interval=0.05)
        wait_until(resigned, 15, f"a re-sign after the restart (the killed one, "
                   f"{stale['state']}, must not block the zone)", interval=0.2)
    (old,) = [p for p in processes(config, RESIGN) if p["id"] == stale["id"]]
    assert old["status"] != "running", old
    # and a rollover may start again (a config whose policy does not make a re-sign due)
    roll = config_copy(lab, "resign-roll.toml", zones=[RESIGN], policy=LONG)
    started = ms(roll, "rollover", RESIGN, "--key", "ksk")
    assert started.rc == 0, started.text
    ok(ms(roll, "rollover", RESIGN, "--abort"))
    assert processes(config, RESIGN)[-1]["status"] == "aborted"


def test_daemon_does_not_spin_on_a_killed_sync(lab: Model1Lab) -> None:
    """The same stale sync as above, killed one state later: exactly what
    orchestrator/engine/owner_sync.py:_run_sync has written when its controller dies while it
    waits for the nameservers (start_process, 'delivering', 'propagating' with a
    next check). Written here through the state API, as the controller writes it."""
    from core.config import load_config
    from state.store import StateStore

    config = config_copy(lab, "spin.toml", zones=[SPIN, OTHER], policy=LONG)
    sync(config, OTHER)
    store = StateStore.open(load_config(config).state.url)
    try:
        dead = store.start_process(SPIN, "sync", signer=None, actor="cli:dead",
                                   reason="sync requested", state="planned",
                                   data={"model": 1})
        store.transition(dead.id, "delivering", actor="cli:dead",
                         reason="sign and import the combined DNSKEY RRset")
        store.transition(dead.id, "propagating", actor="cli:dead", reason="SKR imported",
                         waiting_for="every nameserver serves the owner-signed RRsets",
                         next_check_at=datetime.now(UTC))
    finally:
        store.close()
    log = lab.directory / "spin-daemon.log"
    poll, window = 60.0, 6.0  # one pass at the start, the next one a minute later
    # OTHER, synced, stays valid under the daemon (SPIN was never synced: Knot cannot
    # load it without an owner SKR and answers SERVFAIL, so there is nothing to watch)
    with Watched(lab, OTHER) as watched, daemon(config, log, "--poll-interval",
                                                 f"{poll:g}s") as proc:
        wait_until(lambda: f"{OTHER}: in sync" in log.read_text(), 30,
                   "the daemon's first pass", interval=0.05)
        time.sleep(0.5)
        cpu = _cpu_seconds(proc.pid)
        time.sleep(window)
        cpu = _cpu_seconds(proc.pid) - cpu
    watched.assert_clean()
    passes = log.read_text().count(f"{OTHER}: in sync")
    print(f"daemon with --poll-interval {poll:g}s, between passes: {cpu:.2f} s CPU in "
          f"{window:g} s; {passes} passes over {OTHER}")
    assert cpu < 1.0 and passes == 1, (
        f"the daemon, with nothing to do for a minute, used {cpu:.2f} s CPU in {window:g} s "
        f"({passes} passes over {OTHER}): it spins on the dead sync's past next_check_at")
