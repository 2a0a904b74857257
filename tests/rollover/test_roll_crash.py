"""Crash safety: the daemon (``multisigner run``) is killed with SIGKILL at random points
while it drives rollovers, and restarted each time. Every process still ends ``done``
with exactly its runbook's transitions, the history chain verifies, and the invariant
watcher sees no breach. Also: a killed controller's zone lease (a bug, xfail)."""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import signal
import subprocess
import time
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.config import load_config
from multisigner_lab import Lab
from orchestrator.engine.runner import Engine
from orchestrator.runtime import Runtime
from rollover.fakes import BlackholeApi
from rollover.rollkit import (
    FAST,
    LAB,
    MULTISIGNER,
    REPO,
    Observed,
    bug_unless,
    check_holds,
    cli,
    daemon,
    entries_of,
    latest,
    main_states,
    ok,
    pid_alive,
    reclaim_dead_leases,
    running_lab,
    select,
    step_until,
    sync_zones,
    to_states,
    verify_ok,
    wait_until,
    when,
    with_api_url,
    write_config,
)
from state.store import StateStore

pytestmark = LAB

CRASH, LEASE, ADOPT = "crash.test.", "lease.test.", "adopt.test."
MIN_KILLS = 12
MIN_ROLLOVERS = 2  # a KSK and a ZSK rollover at least
BUDGET = 80.0  # seconds for the whole kill/restart loop


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with running_lab(tmp_path_factory, "crash", providers=2,
                     zones=[CRASH, LEASE, ADOPT]) as running:
        sync_zones(running, [CRASH, LEASE, ADOPT])
        yield running


def _starts(log: Path) -> int:
    return log.read_text().count("daemon started") if log.exists() else 0


def test_daemon_killed_at_random_points_finishes_every_rollover(lab: Lab) -> None:
    config = write_config(lab, "crash.toml", zones=[CRASH], policy=FAST)
    log = lab.directory / "daemon.log"
    seed = int(os.environ.get("ROLLOVER_CRASH_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    print(f"crash test seed {seed} (set ROLLOVER_CRASH_SEED to replay)")
    plan = itertools.cycle([("ksk", "p0"), ("zsk", "p1"), ("zsk", "p0"), ("ksk", "p1")])
    rolled: list[tuple[str, str]] = []  # (process id, key)
    kills = 0
    reclaimed: list[str] = []
    pauses: list[float] = []

    def start_next() -> None:
        key, signer = next(plan)
        ok(cli(config, "rollover", CRASH, "--key", key, "--signer", signer))
        rolled.append((latest(config, CRASH)["id"], key))

    started = time.monotonic()
    with Observed(lab, CRASH) as obs:
        start_next()
        while True:
            current = latest(config, CRASH)
            if current["status"] != "running":
                assert current["status"] == "done", current
                if kills >= MIN_KILLS and len(rolled) >= MIN_ROLLOVERS:
                    break
                start_next()
            assert time.monotonic() - started < BUDGET, (
                f"not done after {kills} kills: {latest(config, CRASH)}")
            # workaround for the lease bug (test_lease_of_a_killed_controller_is_reclaimed)
            reclaimed += reclaim_dead_leases(config)
            starts = _starts(log)
            with daemon(config, log, "--poll-interval", "1s") as proc:
                # a random point 0.2-2 s into the daemon's work (counted from its start
                # line, so no kill is wasted on the interpreter loading)
                wait_until(lambda n=starts: _starts(log) > n or proc.poll() is not None, 15,
                           "the daemon starts", interval=0.02)
                pause = rng.uniform(0.2, 2.0)
                pauses.append(pause)
                time.sleep(pause)
                assert proc.poll() is None, "the daemon exited by itself"
                proc.send_signal(signal.SIGKILL)
            kills += 1
        verify_ok(config, CRASH)
    obs.assert_clean()
    took = time.monotonic() - started
    wedged = log.read_text().count("maximum number of running instances reached")
    print(f"{kills} kills in {took:.1f} s over {len(rolled)} rollovers; "
          f"leases reclaimed from killed daemons: {len(reclaimed)}; daemon wedges: {wedged}")

    assert kills >= MIN_KILLS
    ttls = {"TTLkey": lab.ttl, "TTLsig": lab.ttl, "TTLds": lab.ds_ttl}
    for pid, key in rolled:
        entries = entries_of(config, CRASH, pid)
        states = to_states(entries)
        assert states == main_states(key), f"{pid} ({key}): {states}"
        assert len(set(states)) == len(states), "a transition was recorded twice"
        assert [e["from_state"] for e in entries[1:]] == states[:-1], "a gap in the history"
        check_holds(entries, key, ttls)
    res = ok(cli(config, "audit", "verify"))
    assert "history chain OK" in res.out
    # one key of each role per provider, as before the rollovers
    for p in lab.providers:
        roles = sorted(k.flags for k in lab.keys(p.name, CRASH))
        assert roles == [256, 257], (p.name, roles)


def test_successor_created_before_a_crash_is_adopted(lab: Lab) -> None:
    """The one crash window the random kills rarely hit: the successor key was created at
    the provider but the controller died before recording it. Reproduced exactly: the
    process is recorded (publish:act) by the engine in-process without advancing it, and the
    successor is then created at the provider 'by the dead attempt'."""
    fast = write_config(lab, "adopt.toml", zones=[ADOPT], policy=FAST)
    url = tomllib.loads(fast.read_text())["state"]["url"]
    config = load_config(fast)
    store = StateStore.open(url)
    try:
        store.seed_members(ADOPT, config.zone(ADOPT).signers)
        rt = Runtime(config=config, store=store)

        async def start() -> None:
            try:
                await Engine(rt, lambda _: None).start_rollover(config.zone(ADOPT), "zsk", "p0")
            finally:
                await rt.aclose()

        asyncio.run(start())
        proc = latest(fast, ADOPT, "zsk-rollover")
        assert (proc["state"], proc["status"]) == ("publish:act", "running")
        with lab.pdns_api("p0") as api:
            made = api.post(f"/zones/{ADOPT}/cryptokeys", json={
                "keytype": "zsk", "active": False, "published": True,
                "algorithm": "ECDSAP256SHA256"})
            made.raise_for_status()
        orphan = made.json()["dnskey"]
    finally:
        store.close()
    with Observed(lab, ADOPT) as obs:
        res = ok(cli(fast, "step", ADOPT))
        assert "adopting successor" in res.err, res.err
        step_until(fast, ADOPT, lambda s: s == "done")
        verify_ok(fast, ADOPT)
    obs.assert_clean()
    zsks = [k for k in lab.keys("p0", ADOPT) if k.flags == 256]
    assert [k.dnskey for k in zsks] == [orphan], "the orphan was not adopted as successor"
    assert zsks[0].active
    assert to_states(entries_of(fast, ADOPT, proc["id"])) == main_states("zsk")


def test_lease_of_a_killed_controller_is_reclaimed(lab: Lab) -> None:
    fast = write_config(lab, "lease.toml", zones=[LEASE], policy=FAST)
    ok(cli(fast, "rollover", LEASE, "--key", "zsk", "--signer", "p0"))
    answer = ok(cli(fast, "step", LEASE, "--json")).json()
    time.sleep(max(0.0, (when(answer["next_check_at"]) - datetime.now(UTC)).total_seconds())
               + 0.1)  # the hold is over: the next step acts (and calls the APIs)
    try:
        with BlackholeApi() as hole:
            slow = with_api_url(lab, "lease-slow.toml", "p1", hole.url, timeout="3s")
            # a controller that takes the zone lease and then hangs on a provider API
            stuck = subprocess.Popen([str(MULTISIGNER), "--config", str(slow), "step", LEASE],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     cwd=REPO)
            try:
                holder = wait_until(lambda: select(fast, "SELECT holder FROM lease WHERE "
                                                   "zone = ?", (LEASE,)), 10, "lease taken")
                assert holder[0]["holder"].split(":")[1] == str(stuck.pid)  # HOST:PID:...
                stuck.kill()
            finally:
                stuck.wait(timeout=10)
        assert not pid_alive(stuck.pid)
        res = cli(fast, "step", LEASE)
        blocked = res.rc
        print(res.err)
    finally:
        reclaim_dead_leases(fast)
        step_until(fast, LEASE, lambda s: s == "done")
    bug_unless(blocked == 0, "a dead controller's lease still blocks the zone")
