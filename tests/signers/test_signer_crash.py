"""Crash safety of signer add/remove: the process is started without --wait, the daemon
(``multisigner run --poll-interval 1s``) advances it and is killed with SIGKILL at random
points and restarted, until the process is done; first a join (p2), then a leave (p1).
Every transition is recorded exactly once, the history chain verifies, the holds keep
their TTL terms, and the watcher (reachable providers only) and Unbound see no breach."""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from rollover.rollkit import (
    FAST,
    LAB,
    cli,
    daemon,
    entries_of,
    latest,
    ok,
    processes,
    running_lab,
    sync_zones,
    verify_ok,
    wait_until,
    write_config,
)

from multisigner_lab import Lab
from signers.signerkit import (
    Observed,
    add_states,
    apex,
    audit_ok,
    check_chain,
    check_holds,
    ksk_ds,
    lab_ttls,
    ns_of,
    own_keys,
    remove_states,
    signers,
)

pytestmark = LAB

ZONE = "crash.test."
IDLE = "idle.test."  # in the daemon's config too, with nothing to do
MIN_KILLS = 4  # per process
BUDGET = 60.0  # seconds for each kill/restart loop


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with running_lab(tmp_path_factory, "sig-crash", providers=3, zones=[ZONE, IDLE],
                     delegated=["p0", "p1"]) as running:
        sync_zones(running, [ZONE, IDLE])
        yield running


def _starts(log: Path) -> int:
    return log.read_text().count("daemon started") if log.exists() else 0


def kill_until_done(config: Path, log: Path, rng: random.Random) -> tuple[int, int]:
    """Restart the daemon and SIGKILL it 0.1-1.5 s into its work until the zone's process
    is no longer running; at least MIN_KILLS times (later kills hit a finished process's
    zone, harmless). Returns (kills, kills while the process was running)."""
    kills = busy = 0
    started = time.monotonic()
    while True:
        running = latest(config, ZONE)["status"] == "running"
        if not running and kills >= MIN_KILLS:
            return kills, busy
        assert time.monotonic() - started < BUDGET, (
            f"not done after {kills} kills: {latest(config, ZONE)}")
        starts = _starts(log)
        with daemon(config, log, "--poll-interval", "1s") as proc:
            wait_until(lambda n=starts: _starts(log) > n or proc.poll() is not None, 15,
                       "the daemon starts", interval=0.02)
            time.sleep(rng.uniform(0.1, 1.5))
            assert proc.poll() is None, "the daemon exited by itself"
            proc.send_signal(signal.SIGKILL)
        kills += 1
        busy += running


def test_daemon_killed_during_join_and_leave(lab: Lab) -> None:
    config = write_config(lab, "crash.toml", zones=[ZONE, IDLE], policy=FAST)
    idle_before = (lab.parent_ns(IDLE), lab.parent_ds(IDLE), processes(config, IDLE))
    log = lab.directory / "daemon.log"
    seed = int(os.environ.get("SIGNER_CRASH_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    print(f"signer crash test seed {seed} (set SIGNER_CRASH_SEED to replay)")
    p1_keys = own_keys(lab, "p1", ZONE)
    started = time.monotonic()
    with Observed(lab, ZONE) as obs:
        res = ok(cli(config, "signer", "add", ZONE, "p2"))
        assert "started signer-add" in res.out, res.out
        assert latest(config, ZONE)["status"] == "running"
        add_kills = kill_until_done(config, log, rng)
        add = latest(config, ZONE, "signer-add")
        assert add["status"] == "done", add
        verify_ok(config, ZONE)

        ok(cli(config, "signer", "remove", ZONE, "p1"))
        remove_kills = kill_until_done(config, log, rng)
        remove = latest(config, ZONE, "signer-remove")
        assert remove["status"] == "done", remove
        verify_ok(config, ZONE)
        time.sleep(lab_ttls(lab)["TTLns"])
    obs.assert_clean()
    print(f"join: {add_kills[0]} kills ({add_kills[1]} while running), leave: "
          f"{remove_kills[0]} kills ({remove_kills[1]} while running), "
          f"{time.monotonic() - started:.1f} s")
    assert add_kills[1] >= 2 and remove_kills[1] >= 2, "too few kills hit a running process"
    assert "p2" in obs.watcher.ever_watched()
    assert obs.watcher.watched[-1][1] == ("p0", "p2")

    ttls = lab_ttls(lab)
    entries = entries_of(config, ZONE, add["id"])
    check_chain(entries, add_states())
    assert check_holds(entries, ttls) == ["import-keys", "add-ds"]
    entries = entries_of(config, ZONE, remove["id"])
    check_chain(entries, remove_states())
    assert check_holds(entries, ttls) == ["drain", "remove-ds"]
    audit_ok(config)

    stay = ["p0", "p2"]
    assert lab.parent_ns(ZONE) == ns_of(lab, stay)
    assert lab.parent_ds(ZONE) == ksk_ds(lab, ZONE, stay)
    assert signers(config, ZONE) == stay
    keys = own_keys(lab, "p0", ZONE) | own_keys(lab, "p2", ZONE)
    for name, a in apex(lab, ZONE, stay).items():
        assert a.keys == keys and not a.keys & p1_keys, name
        assert a.cds == set(ksk_ds(lab, ZONE, stay)), name
        assert a.ns == set(ns_of(lab, stay)) and a.csync == (), name
    # each provider still has exactly one KSK and one ZSK of its own (no duplicate acts)
    for p in ("p0", "p1", "p2"):
        assert sorted(k.flags for k in lab.keys(p, ZONE)) == [256, 257], p
    # the idle zone was left alone by every daemon run
    assert (lab.parent_ns(IDLE), lab.parent_ds(IDLE), processes(config, IDLE)) == idle_before
