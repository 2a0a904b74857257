"""A sync as a running process, seen from outside: ``status`` shows it, a second
controller is kept out by the zone lease, a parent that does not follow makes it give up
cleanly, Ctrl-C interrupts it cleanly. The lab runs *without* the CDS scanner, so the
parent never follows by itself and a sync waits in "parent:observe"."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from itkit import (
    MULTISIGNER,
    NEEDS_SERVERS,
    REPO,
    Run,
    api_snapshot,
    history,
    running_lab,
    served,
    write_config,
    zone_entry,
)
from rollover.rollkit import exit_within
from watchkit import Watching

from multisigner_lab import Lab

pytestmark = [pytest.mark.lab, NEEDS_SERVERS]

WAIT = "wait.test."
INTR = "interrupt.test."
UNTIL = "until.test."
PARENT_TIMEOUT = 4


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with running_lab(tmp_path_factory, "lifecycle", providers=2, zones=[WAIT, INTR, UNTIL],
                     scanner=False, unbound=False) as lab:
        yield lab


@pytest.fixture(scope="module")
def cfg(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Path:
    def short_parent_wait(data: dict[str, Any]) -> None:
        for zone in (WAIT, UNTIL):
            zone_entry(data, zone)["policy"]["parent_timeout"] = f"{PARENT_TIMEOUT}s"

    return write_config(lab, tmp_path_factory.mktemp("cfg") / "ms.toml", short_parent_wait)


def start_sync(cfg: Path, zone: str) -> subprocess.Popen[str]:
    return subprocess.Popen([str(MULTISIGNER), "--config", str(cfg), "sync", zone],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=REPO)


def wait_state(ms: Run, cfg: Path, zone: str, state: str, child: subprocess.Popen[str],
               timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(r["to_state"] == state for r in history(ms, cfg, zone)):
            return
        if child.poll() is not None:
            raise AssertionError(f"sync ended (rc {child.returncode}) before {state}: "
                                 f"{child.communicate()}")
        time.sleep(0.05)
    child.kill()
    raise AssertionError(f"{zone} never reached {state}")


def publish_ds_by_hand(lab: Lab, zone: str) -> None:
    """Play the registry: the parent's DS := the CDS every provider publishes."""
    cds = {t for _, s in served(lab, zone) for t in s.cds_texts}
    assert len(cds) == len(lab.providers)
    with lab.pdns_api("parent") as api:
        resp = api.patch("/zones/test.", json={"rrsets": [{
            "name": zone, "type": "DS", "ttl": lab.ds_ttl, "changetype": "REPLACE",
            "records": [{"content": c, "disabled": False} for c in sorted(cds)]}]})
        assert resp.status_code == 204, resp.text
    assert sorted(lab.parent_ds(zone)) == sorted(cds)


def test_running_sync_is_visible_locked_and_gives_up(lab: Lab, cfg: Path, ms: Run) -> None:
    # From the lab's starting state (only p0 valid: p1 serves keys no DS names) through
    # the sync, its giving up, the registry following by hand and the re-run, p0 is
    # watched: nothing of it a resolver may hold, with whichever DS, may stop validating.
    with Watching(lab, WAIT, ["p0"]) as watching:
        _gives_up_then_registry_follows(lab, cfg, ms)
    watching.assert_clean()


def _gives_up_then_registry_follows(lab: Lab, cfg: Path, ms: Run) -> None:
    child = start_sync(cfg, WAIT)
    try:
        wait_state(ms, cfg, WAIT, "parent:observe", child)
        res = ms(cfg, "status", WAIT, "--json")
        assert res.rc == 0, res
        process = res.json()["zones"][0]["process"]
        assert process is not None, res.out
        assert process["kind"] == "sync" and process["state"] == "parent:observe"
        assert process["signer"] is None
        assert process["id"] == history(ms, cfg, WAIT)[0]["process_id"]
        assert "parent" in process["waiting_for"]
        # a second controller is kept out, and changes nothing
        before = api_snapshot(lab, WAIT)
        res = ms(cfg, "sync", WAIT)
        assert res.rc == 1, res
        assert f"zone {WAIT} is being handled by " in res.err, res.err
        assert f":{child.pid}:" in res.err and " until " in res.err  # HOST:PID:NONCE
        assert api_snapshot(lab, WAIT) == before
        out, err = child.communicate(timeout=PARENT_TIMEOUT + 30)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == 1, (out, err)
    assert "gave up waiting for parent DS after" in err
    assert "the parent has not followed the CDS" in err
    rows = history(ms, cfg, WAIT)
    assert rows[-1]["to_state"] == "failed"
    assert rows[-1]["reason"].startswith("failed in parent:observe: gave up waiting")
    assert ms(cfg, "status", WAIT, "--json").json()["zones"][0]["process"] is None
    # the registry follows late; a plain re-run finds the steady state
    publish_ds_by_hand(lab, WAIT)
    res = ms(cfg, "sync", WAIT)
    assert res.rc == 0, res
    assert res.out.strip() == f"{WAIT}: in sync; nothing to change"
    time.sleep(lab.ttl + 1)
    res = ms(cfg, "verify", WAIT)
    assert res.rc == 0, res


def test_running_sync_says_until_when(lab: Lab, cfg: Path, ms: Run) -> None:
    child = start_sync(cfg, UNTIL)
    try:
        wait_state(ms, cfg, UNTIL, "parent:observe", child)
        process = ms(cfg, "status", UNTIL, "--json").json()["zones"][0]["process"]
        plain = ms(cfg, "status", UNTIL).out
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGINT)
        child.communicate(timeout=15)
    assert process is not None and process["state"] == "parent:observe"
    assert "process: sync" in plain and "waiting for" in plain
    assert process["next_check_at"] is not None, process
    assert datetime.fromisoformat(process["next_check_at"])
    assert " until " in plain.split("process: sync", 1)[1].splitlines()[0]


def test_ctrl_c_interrupts_cleanly(lab: Lab, cfg: Path, ms: Run) -> None:
    with Watching(lab, INTR, ["p0"]) as watching:  # p0: valid from the start, as above
        _interrupted_then_rerun(cfg, lab, ms)
    watching.assert_clean()


def _interrupted_then_rerun(cfg: Path, lab: Lab, ms: Run) -> None:
    child = start_sync(cfg, INTR)
    try:
        wait_state(ms, cfg, INTR, "parent:observe", child)
        child.send_signal(signal.SIGINT)
        out, err = exit_within(child, 15)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == 1, (out, err)
    assert "interrupted" in err
    assert "Traceback" not in err
    rows = history(ms, cfg, INTR)
    assert rows[-1]["to_state"] == "failed"
    assert rows[-1]["reason"] == "failed in parent:observe: interrupted"
    # the lease was given back: another run may go on at once
    publish_ds_by_hand(lab, INTR)
    res = ms(cfg, "sync", INTR)
    assert res.rc == 0, res
    assert "being handled by" not in res.err
