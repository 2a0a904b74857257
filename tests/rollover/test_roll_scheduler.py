"""Rollovers the scheduler starts by itself from policy (``zsk_lifetime``), with
``run --once`` passes and with the daemon; and the daemon that stops ticking (a bug,
xfail)."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from multisigner_lab import Lab
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
    exit_within,
    latest,
    main_states,
    ok,
    processes,
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

pytestmark = LAB

SCHED, BUSY1, BUSY2 = "sched.test.", "busy1.test.", "busy2.test."
LIFETIME = 5  # seconds: zsk_lifetime of SCHED


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with running_lab(tmp_path_factory, "sched", providers=2,
                     zones=[SCHED, BUSY1, BUSY2]) as running:
        sync_zones(running, [SCHED, BUSY1, BUSY2])
        yield running


def finish(config: Path, zone: str) -> None:
    """Leave no running process behind: abort it, or (in withdraw) let it finish."""
    procs = [p for p in processes(config, zone) if p["status"] == "running"]
    if not procs:
        return
    cli(config, "rollover", zone, "--abort")  # refused in withdraw: then only forward
    step_until(config, zone, lambda s: s in ("done", "aborted"), timeout=30)


def _rollovers(config: Path) -> list[dict[str, object]]:
    return [p for p in processes(config, SCHED) if p["kind"] == "zsk-rollover"]


def test_policy_starts_zsk_rollovers(lab: Lab) -> None:
    config = write_config(lab, "sched.toml", zones=[SCHED],
                          policy={**FAST, "zsk_lifetime": f"{LIFETIME}s"})
    sync = latest(config, SCHED, "sync")
    age = (datetime.now(UTC) - when(sync["started_at"])).total_seconds()
    time.sleep(max(0.0, LIFETIME - age) + 0.5)  # every ZSK is now older than its lifetime
    ttls = {"TTLkey": lab.ttl, "TTLsig": lab.ttl, "TTLds": lab.ds_ttl}
    try:
        with Observed(lab, SCHED) as obs:
            # cron style: ``run --once`` passes until the rollover it started is done
            deadline = time.monotonic() + 30
            while not (_rollovers(config) and _rollovers(config)[0]["status"] == "done"):
                assert time.monotonic() < deadline, _rollovers(config)
                ok(cli(config, "run", "--once"))
                time.sleep(0.3)
            first = _rollovers(config)[0]
            assert len(_rollovers(config)) == 1
            # the daemon: it starts the next due ZSK (the other signer's) and finishes it
            log = lab.directory / "sched-daemon.log"
            with daemon(config, log, "--poll-interval", "1s"):
                wait_until(lambda: len(_rollovers(config)) >= 2
                           and _rollovers(config)[1]["status"] == "done", 30,
                           "the daemon's rollover done", interval=0.2)
            second = _rollovers(config)[1]
            finish(config, SCHED)  # the daemon may have started a third one already
            verify_ok(config, SCHED)
        obs.assert_clean()
    finally:
        finish(config, SCHED)
    assert {first["signer"], second["signer"]} == {"p0", "p1"}
    for proc in (first, second):
        entries = entries_of(config, SCHED, str(proc["id"]))
        assert to_states(entries) == main_states("zsk")
        assert all(e["actor"].startswith("scheduler:") for e in entries), entries
        assert proc["actor"].startswith("scheduler:")
        reason = entries[0]["reason"]
        assert reason.startswith("policy: ZSK ") and f"at {proc['signer']}" in reason, reason
        check_holds(entries, "zsk", ttls)
    assert not [p for p in processes(config, SCHED) if p["kind"] == "ksk-rollover"]


def test_daemon_keeps_ticking_after_a_zone_it_could_not_advance(lab: Lab) -> None:
    config = write_config(lab, "busy.toml", zones=[BUSY1, BUSY2], policy=FAST)
    log = lab.directory / "busy-daemon.log"
    # both zones under the watcher from before their rollovers start until they are done
    # (or aborted by ``finish``): the daemon, the operator's hanging step and the lease
    # handover must never break either zone
    watched = [Observed(lab, zone, resolver=False) for zone in (BUSY1, BUSY2)]
    with contextlib.ExitStack() as stack:
        for obs in watched:
            stack.enter_context(obs)
        try:
            progressed, stuck = _busy_daemon(lab, config, log)
        finally:
            for zone in (BUSY1, BUSY2):
                finish(config, zone)
    for obs in watched:
        obs.assert_clean()
    bug_unless(progressed, f"the daemon stopped ticking; states then: {stuck}")


def _busy_daemon(lab: Lab, config: Path, log: Path) -> tuple[bool, list[tuple[str, str]]]:
    """Two rollovers the daemon must finish while an operator's step holds one zone's
    lease at its start; whether it did, and the states if not."""
    for zone in (BUSY1, BUSY2):
        ok(cli(config, "rollover", zone, "--key", "zsk", "--signer", "p0"))
    due = max(when(str(latest(config, z)["next_check_at"])) for z in (BUSY1, BUSY2))
    time.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()) + 0.1)
    with BlackholeApi() as hole:
        slow = with_api_url(lab, "busy-slow.toml", "p1", hole.url, timeout="3s")
        # an operator's 'step' on BUSY2 holds its lease (its provider API hangs) ...
        operator = subprocess.Popen(
            [str(MULTISIGNER), "--config", str(slow), "step", BUSY2],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO)
        try:
            wait_until(lambda: select(config, "SELECT holder FROM lease WHERE zone = ?",
                                      (BUSY2,)), 10, "the operator holds the lease")
            # ... while the daemon starts: its first tick cannot advance BUSY2
            with daemon(config, log, "--poll-interval", "1s"):
                wait_until(lambda: "is being handled by" in log.read_text(), 15,
                           "the daemon met the lease")
                operator.send_signal(signal.SIGINT)  # the operator gives up: lease freed
                exit_within(operator, 10)
                wait_until(lambda: not select(config, "SELECT holder FROM lease WHERE "
                                              "zone = ?", (BUSY2,)), 10, "lease free")
                try:
                    wait_until(lambda: all(latest(config, z)["status"] == "done"
                                           for z in (BUSY1, BUSY2)), 15,
                               "the daemon finishes both rollovers", interval=0.3)
                    progressed = True
                except AssertionError:
                    progressed = False
                stuck = [(z, latest(config, z)["state"]) for z in (BUSY1, BUSY2)]
        finally:
            if operator.poll() is None:
                operator.kill()
            operator.wait(timeout=10)
    print(log.read_text()[-2000:])
    return progressed, stuck
