"""Crash safety of the owner KSK rollover: the controller is killed with SIGKILL at random
points while it drives the rollover (first the foreground ``rollover --wait``, then the
daemon ``multisigner run --poll-interval 1s``, restarted after each kill). The rollover
still ends ``done`` with exactly its runbook's transitions, the key store holds exactly the
predecessor and one successor, and the watcher sees no breach.

Also the one crash window random kills rarely hit, reproduced exactly: the successor was
generated in the key store but the controller died before recording it. (What a daemon
killed in a re-sign leaves behind: test_m1roll_daemon.py.)"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import dns.dnssec
import pytest
from rollover.rollkit import cli, daemon, pid_alive

from model1roll.m1roll import (
    LAB,
    MULTISIGNER,
    REPO,
    Watched,
    apexes,
    check_chain,
    check_holds_lab,
    config_copy,
    dnskey,
    ds_of,
    durations,
    main_states,
    model1_lab,
    ok,
    process_entries,
    processes,
    rolled_data,
    step_until,
    stored_keys,
    sync,
    to_states,
    verify_ok,
    wait_until,
    when,
)
from multisigner_lab.model1 import Model1Lab

pytestmark = LAB

CRASH, ADOPT = "crash.test.", "adopt.test."
MIN_KILLS = 5  # of the daemon, while the rollover runs (the foreground CLI's comes on top)
MAX_KILLS = 10  # of the daemon; then the last one may finish (bounds the test's time)
PAUSE = 0.4  # a kill comes up to this long after the daemon made a transition, so in the
# middle of the next phase's work, and every daemon run makes progress
BUDGET = 120.0  # seconds for the whole kill/restart loop


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Model1Lab]:
    with model1_lab(tmp_path_factory, "m1crash", providers=2, zones=[CRASH, ADOPT],
                    store="pkcs11") as running:
        yield running


def _starts(log: Path) -> int:
    return log.read_text().count("daemon started") if log.exists() else 0


def _rollover(config: Path, zone: str) -> dict[str, object] | None:
    rows = [p for p in processes(config, zone) if p["kind"] == "ksk-rollover"]
    return rows[-1] if rows else None


def _check_finished(lab: Model1Lab, config: Path, zone: str, old_id: str,
                    old: object) -> tuple[str, object, list[dict[str, object]]]:
    """The rollover is done with exactly its runbook's transitions; the store holds the
    predecessor and exactly one successor, which alone signs the set the parent names."""
    pid, entries = process_entries(config, zone, "ksk-rollover")
    states = to_states(entries)
    assert states == main_states("ksk"), states
    assert len(set(states)) == len(states), "a transition was recorded twice"
    check_chain(entries)
    assert check_holds_lab(entries, "ksk", lab) == 3
    stored = stored_keys(config, zone)
    assert len(stored) == 2 and stored.get(old_id) == old, (
        f"the store holds {len(stored)} keys (duplicate successors?): {sorted(stored)}")
    ((new_id, new),) = [(i, k) for i, k in stored.items() if i != old_id]
    (row,) = [p for p in processes(config, zone) if p["id"] == pid]
    assert rolled_data(row)["new_id"] == new_id
    new_tag = dns.dnssec.key_id(new)
    for name, a in apexes(lab, zone).items():
        assert a.ksks == {new} and a.signers == {new_tag}, name
        assert a.validates(new) and a.cds == {ds_of(zone, new)}, name
    assert lab.parent_ds(zone) == [ds_of(zone, new)]
    return pid, new, entries


def test_daemon_killed_at_random_points_finishes_the_ksk_rollover(lab: Model1Lab) -> None:
    # the lab's own policy (owner signatures 60 s, re-signed by the daemon); this zone only
    config = config_copy(lab, "crash.toml", zones=[CRASH])
    sync(config, CRASH)
    ((old_id, old),) = stored_keys(config, CRASH).items()
    seed = int(os.environ.get("M1ROLL_CRASH_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    print(f"crash test seed {seed} (set M1ROLL_CRASH_SEED to replay)")
    log = lab.directory / "crash-daemon.log"
    kills: list[tuple[str, str]] = []  # (who, process state when killed)
    started = time.monotonic()
    with Watched(lab, CRASH) as watched:
        # 1. the foreground controller dies first, somewhere in its first step
        with (lab.directory / "crash-cli.log").open("ab") as out:
            fg = subprocess.Popen([str(MULTISIGNER), "--config", str(config), "rollover",
                                   CRASH, "--key", "ksk", "--wait"],
                                  stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
        try:
            wait_until(lambda: _rollover(config, CRASH) is not None or fg.poll() is not None,
                       30, "the rollover is recorded", interval=0.02)
            time.sleep(rng.uniform(0.0, 0.4))
            row = _rollover(config, CRASH)
            assert row is not None and fg.poll() is None, "the CLI ended by itself"
            fg.send_signal(signal.SIGKILL)
            kills.append(("cli", str(row["state"])))
        finally:
            if fg.poll() is None:
                fg.kill()
            fg.wait(timeout=10)
        # 2. the daemon, killed at a random point of its work each time, restarted
        while True:
            row = _rollover(config, CRASH)
            assert row is not None
            if row["status"] != "running":
                assert row["status"] == "done", row
                break
            assert time.monotonic() - started < BUDGET, f"not done after {len(kills)} kills: {row}"
            starts = _starts(log)
            with daemon(config, log, "--poll-interval", "1s") as proc:
                wait_until(lambda n=starts: _starts(log) > n or proc.poll() is not None, 30,
                           "the daemon starts", interval=0.02)
                # a random point of its work: in a hold (a restart must neither forget a
                # wait nor restart it), or up to PAUSE after it made a transition, i.e. in
                # the middle of the next phase (act: keys; converge: sign + SKR imports)
                row = _rollover(config, CRASH)
                assert row is not None
                state = row["state"]
                due = when(str(row["next_check_at"])) if row["next_check_at"] else None
                wait = max(0.0, (due - datetime.now(UTC)).total_seconds() if due else 0.0)
                need = MIN_KILLS - sum(w == "daemon" for w, _ in kills)
                in_hold = str(state).endswith(":hold") and wait > 0.8
                if in_hold and (need > 0 or rng.random() < 0.5):
                    time.sleep(rng.uniform(0.0, wait))
                else:
                    wait_until(lambda s=state: (_rollover(config, CRASH) or {}).get("state")
                               != s, 60, f"the daemon moves on from {state}", interval=0.01)
                    time.sleep(rng.uniform(0.0, PAUSE))
                assert proc.poll() is None, f"the daemon exited by itself: {log.read_text()}"
                if sum(w == "daemon" for w, _ in kills) >= MAX_KILLS:  # this one finishes
                    wait_until(lambda: (_rollover(config, CRASH) or {}).get("status")
                               != "running", 60, "the last daemon finishes", interval=0.1)
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(timeout=20)
                    continue
                row = _rollover(config, CRASH)
                assert row is not None
                proc.send_signal(signal.SIGKILL)
                if row["status"] == "running":
                    kills.append(("daemon", str(row["state"])))
            assert not pid_alive(proc.pid)
        time.sleep(max(lab.ttl, lab.ds_ttl))
        verify_ok(config, CRASH)
    watched.assert_clean()
    took = time.monotonic() - started
    print(f"{len(kills)} kills in {took:.1f} s: " + ", ".join(f"{w}@{s}" for w, s in kills))
    daemon_kills = [k for k in kills if k[0] == "daemon"]
    assert len(daemon_kills) >= MIN_KILLS, kills

    _, new, entries = _check_finished(lab, config, CRASH, old_id, old)
    adopted = [e for e in entries if any("adopted" in op for op in
                                         e["evidence"].get("key_ops", []))]
    print(f"successor {dns.dnssec.key_id(new)}; adopted after a crash: {len(adopted)}; "
          f"{durations(entries)}")
    res = ok(cli(config, "audit", "verify"))
    assert "history chain OK" in res.out


# The dead attempt: record the process exactly as `rollover` does (publish:act, nothing
# advanced), then generate the successor in the store as if the controller had died right
# after `generate()` returned. A child process: the PKCS#11 store is process-global.
_DEAD_ATTEMPT = """
import asyncio, json, sys
from pathlib import Path
from core.config import load_config
from orchestrator.engine.runner import Engine
from providers.kskstore import make_store
from orchestrator.runtime import Runtime
from state.store import StateStore

config = load_config(Path(sys.argv[1]))
zone = config.zone(sys.argv[2])
store = StateStore.open(config.state.url)
store.seed_members(zone.name, zone.signers)
rt = Runtime(config=config, store=store)

async def start():
    try:
        return await Engine(rt, lambda _: None).start_rollover(zone, "ksk", None)
    finally:
        await rt.aclose()

proc = asyncio.run(start())
with make_store(zone.owner_ksk) as keys:
    made = keys.generate()
store.close()
print(json.dumps({"process": proc.id, "state": proc.state, "key_id": made.key_id,
                  "dnskey": made.dnskey.text}))
"""


def test_successor_generated_before_a_crash_is_adopted(lab: Model1Lab) -> None:
    config = config_copy(lab, "adopt.toml", zones=[ADOPT])
    sync(config, ADOPT)
    ((old_id, old),) = stored_keys(config, ADOPT).items()
    done = subprocess.run([sys.executable, "-c", _DEAD_ATTEMPT, str(config), ADOPT],
                          capture_output=True, text=True, timeout=60, check=False, cwd=REPO)
    assert done.returncode == 0, done.stderr
    orphan = json.loads(done.stdout)
    assert orphan["state"] == "publish:act"
    assert len(stored_keys(config, ADOPT)) == 2
    with Watched(lab, ADOPT) as watched:
        step_until(config, ADOPT, lambda s: s == "done", timeout=60)
        time.sleep(max(lab.ttl, lab.ds_ttl))
        verify_ok(config, ADOPT)
    watched.assert_clean()
    pid, new, entries = _check_finished(lab, config, ADOPT, old_id, old)
    assert pid == orphan["process"]
    assert new == dnskey(orphan["dnskey"]), "the orphan was not adopted as the successor"
    ops = entries[1]["evidence"]["key_ops"]
    assert ops == [f"adopted KSK {dns.dnssec.key_id(new)} at owner: created by an interrupted "
                   "attempt"], ops

