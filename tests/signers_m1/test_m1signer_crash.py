"""Crash safety of a Model 1 signer add: the controller is killed with SIGKILL at random
points while k2 joins -- first the foreground ``signer add --wait``, then the daemon
(``multisigner run --poll-interval 1s``), restarted after each kill; once right after it
committed an NS/CSYNC change at a Knot -- and the add still
ends ``done`` with exactly its runbook's transitions, every hold kept, k2 a full member,
no key made twice, under the reachable-only watcher and the Unbound AD probe.

The random kill points skip the moments a knotc zone transaction (NS/CSYNC at a Knot) is
open: a kill there is the last test of this module, deterministic (the transaction a
killed run leaves open at Knot must be reclaimed, or the next ``knotc -b zone-keys-load``
wedges knotd).
The owner KSK is in a SoftHSM2 token: every controller is a real process."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from model1roll.m1roll import lab_processes
from rollover.rollkit import daemon, provider_entry, write_config

from multisigner_lab.model1 import Model1Lab
from signers_m1.m1kit import (
    LAB,
    LONG,
    MULTISIGNER,
    REPO,
    Watched,
    add_states,
    audit_ok,
    check_chain,
    check_holds,
    check_members,
    children,
    config_copy,
    entries_of,
    kill_outside_transaction,
    knot_keys,
    lab_ttls,
    latest,
    m1_lab,
    ms,
    ok,
    open_transactions,
    processes,
    signers,
    stored_keys,
    sync,
    verify_ok,
    wait_until,
    when,
)

pytestmark = LAB

CRASH = "crash.test."
TX = "tx.test."  # the kill inside a Knot zone transaction (last test)
MIN_KILLS = 3  # of the daemon while the add runs (the foreground CLI's comes on top); the
# engine persists a one-pass step in two transitions, so an add has fewer kill points than
# it had, and a daemon may finish a short stretch before the kill lands
MAX_KILLS = 6  # then the last daemon may finish (bounds the test's time)
PAUSE = 0.4  # a kill comes up to this long after the daemon made a transition
BUDGET = 90.0  # seconds for the whole kill/restart loop
# the states from which a Knot zone transaction (NS, CSYNC publish or removal) is ahead
TX_AHEAD = {f"{s}:{p}" for s in ("add-ns", "parent-ns")
            for p in ("act", "converge", "observe", "hold")} | {"cleanup:act"}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Model1Lab]:
    with m1_lab(tmp_path_factory, "m1sig-crash", providers=3, zones=[CRASH, TX], ttl=2,
                ds_ttl=3, store="pkcs11", delegated=["k0", "k1"]) as running:
        config = config_copy(running, "sync.toml", zones=[CRASH, TX], policy=LONG)
        for zone in (CRASH, TX):
            sync(config, zone)
        time.sleep(running.ttl + 1)  # nothing from before the first SKR is cached any more
        yield running


def _starts(log: Path) -> int:
    return log.read_text().count("daemon started") if log.exists() else 0


def _add(config: Path, zone: str) -> dict[str, Any] | None:
    rows = [p for p in processes(config, zone) if p["kind"] == "signer-add"]
    return rows[-1] if rows else None


def test_controller_killed_at_random_points_of_an_add(lab: Model1Lab) -> None:
    config = config_copy(lab, "crash.toml", zones=[CRASH], policy=LONG)
    check_members(lab, CRASH, ["k0", "k1"])
    keys_before = {k.name: knot_keys(k, CRASH) for k in lab.providers}
    stored_before = stored_keys(config, CRASH)
    seed = int(os.environ.get("M1SIGNER_CRASH_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    print(f"m1 signer crash test seed {seed} (set M1SIGNER_CRASH_SEED to replay)")
    log = lab.directory / "crash-daemon.log"
    kills: list[tuple[str, str, float]] = []  # (who, state it left, kill deferred by s)
    started = time.monotonic()
    with Watched(lab, CRASH) as watched:
        # 1. the foreground controller dies first, somewhere in its first step
        with (lab.directory / "crash-cli.log").open("ab") as out:
            fg = subprocess.Popen([str(MULTISIGNER), "--config", str(config), "signer", "add",
                                   CRASH, "k2", "--wait"], stdout=out,
                                  stderr=subprocess.STDOUT, cwd=REPO)
        try:
            wait_until(lambda: _add(config, CRASH) is not None or fg.poll() is not None, 30,
                       "the add is recorded", interval=0.01)
            time.sleep(rng.uniform(0.0, 0.4))
            assert fg.poll() is None, "the CLI ended by itself"
            deferred = kill_outside_transaction(fg, lab, CRASH)
            row = _add(config, CRASH)
            assert row is not None
            kills.append(("cli", str(row["state"]), deferred))
        finally:
            if fg.poll() is None:
                fg.kill()
            fg.wait(timeout=10)
        # 2. the daemon, killed at a random point of its work each time, restarted
        while True:
            row = _add(config, CRASH)
            assert row is not None
            if row["status"] != "running":
                assert row["status"] == "done", row
                break
            assert time.monotonic() - started < BUDGET, f"not done after {kills}: {row}"
            starts = _starts(log)
            with daemon(config, log, "--poll-interval", "1s") as proc:
                wait_until(lambda n=starts: _starts(log) > n or proc.poll() is not None, 30,
                           "the daemon starts", interval=0.01)
                row = _add(config, CRASH)
                assert row is not None
                state = row["state"]
                due = when(str(row["next_check_at"])) if row["next_check_at"] else None
                wait = max(0.0, (due - datetime.now(UTC)).total_seconds() if due else 0.0)
                daemon_kills = sum(who == "daemon" for who, _, _ in kills)
                # once: right when a Knot zone transaction runs (the kill comes as soon as
                # it is committed); else in a hold (a restart must neither forget the wait
                # nor restart it), or up to PAUSE after a transition: mid-phase
                near = str(state) in TX_AHEAD and not any(d for _, _, d in kills)
                if near:
                    wait_until(lambda: proc.poll() is not None or any(
                        st != "Z" and "knotc" in cmd and (" zone-set " in cmd
                                                          or " zone-unset " in cmd)
                        for _, st, cmd in children(proc.pid)), 30,
                        "the daemon changes an apex RRset", interval=0.002)
                elif str(state).endswith(":hold") and wait > 0.8 and (
                        daemon_kills < MIN_KILLS or rng.random() < 0.5):
                    time.sleep(rng.uniform(0.0, wait))
                else:
                    wait_until(lambda s=state: (_add(config, CRASH) or {}).get("state") != s,
                               30, f"the daemon moves on from {state}", interval=0.01)
                    time.sleep(rng.uniform(0.0, PAUSE))
                assert proc.poll() is None, f"the daemon exited by itself: {log.read_text()}"
                if daemon_kills >= MAX_KILLS and not near:  # this one finishes
                    wait_until(lambda: (_add(config, CRASH) or {}).get("status") != "running",
                               60, "the last daemon finishes", interval=0.1)
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(timeout=20)
                    continue
                deferred = kill_outside_transaction(proc, lab, CRASH)
                row = _add(config, CRASH)
                assert row is not None
                if row["status"] == "running":
                    kills.append(("daemon", str(row["state"]), deferred))
        time.sleep(lab.ttl)
        verify_ok(config, CRASH)
    watched.assert_clean()
    took = time.monotonic() - started
    print(f"{len(kills)} kills in {took:.1f} s: " + ", ".join(
        f"{who}@{state}" + (f" (deferred {d:.2f} s)" if d else "") for who, state, d in kills))
    assert sum(who == "daemon" for who, _, _ in kills) >= MIN_KILLS, kills
    assert any(who == "daemon" and not state.startswith("import-keys:")
               for who, state, _ in kills), f"no kill once the NS RRsets change: {kills}"
    assert any(d for _, _, d in kills), f"no kill was deferred past a transaction: {kills}"
    assert "k2" in watched.watcher.ever_watched()

    add = latest(config, CRASH, "signer-add")
    assert (add["state"], add["status"], add["signer"]) == ("done", "done", "k2")
    entries = entries_of(config, CRASH, add["id"])
    check_chain(entries, add_states())
    assert check_holds(entries, lab_ttls(lab)) == ["import-keys"]
    audit_ok(config)
    check_members(lab, CRASH, ["k0", "k1", "k2"])
    assert signers(config, CRASH) == ["k0", "k1", "k2"]
    # no key made twice (or at all): Knot's key databases and the owner's store unchanged
    assert {k.name: knot_keys(k, CRASH) for k in lab.providers} == keys_before
    assert stored_keys(config, CRASH) == stored_before
    assert open_transactions(lab, CRASH) == []


def test_controller_killed_inside_a_knot_zone_transaction(lab: Model1Lab) -> None:
    """Deterministic: the daemon is SIGKILLed the moment it runs ``knotc zone-set`` for the
    NS RRset of add-ns (the transaction is open: zone-begin and zone-unset done, no
    commit), then restarted. The add must still finish. RUNS LAST IN THIS MODULE."""
    # k0's knotc/keymgr run through a wrapper that, the first time it is asked to run
    # `knotc ... zone-set` (the transaction is open: zone-begin and zone-unset done), kills
    # the controller that called it -- exactly there, however fast or loaded the box is.
    marker = lab.directory / "tx-killed"
    wrapper = lab.directory / "tx-kill.sh"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'case " $* " in *" zone-set "*) if [ ! -e "{marker}" ]; then\n'
        f'  echo "$*" > "{marker}"; kill -9 "$PPID"; sleep 2; exit 1; fi;; esac\n'
        'exec "$@"\n')
    wrapper.chmod(0o755)
    config = write_config(lab, "tx.toml", zones=[TX], policy=LONG,  # type: ignore[arg-type]
                          mutate=lambda d: provider_entry(d, "k0").update(
                              command_prefix=[str(wrapper)]))
    res = ok(ms(config, "signer", "add", TX, "k2"))
    assert "import-keys:hold" in res.out, res.text  # waits; the daemon takes over
    log = lab.directory / "tx-daemon.log"
    hit: list[str] = []
    with daemon(config, log, "--poll-interval", "1s") as proc:
        wait_until(lambda: proc.poll() is not None, 60, "the daemon runs knotc zone-set",
                   interval=0.05)
        if marker.exists():
            hit.append(marker.read_text().strip())
    assert hit, f"the daemon ended before its NS transaction: {log.read_text()}"
    knotc = [line for line in lab_processes(lab.directory) if "knotc" in line]
    wait_until(lambda: not [c for c in lab_processes(lab.directory) if "knotc" in c], 15,
               f"the orphaned knotc ends: {knotc}", interval=0.05)
    stuck = open_transactions(lab, TX)
    row = latest(config, TX, "signer-add")
    print(f"killed during {hit[0]}; process in {row['state']}; open transactions at {stuck}")
    assert stuck and row["state"] == "add-ns:converge", (stuck, row)  # the crash window

    # not finished in time: the check below says why
    with daemon(config, lab.directory / "tx-daemon2.log", "--poll-interval", "1s"), \
            contextlib.suppress(AssertionError):
        wait_until(lambda: latest(config, TX)["status"] != "running", 30,
                   "the restarted daemon finishes the add", interval=0.2)
    row = latest(config, TX, "signer-add")
    wedged = stuck[0]
    server_log = (lab.provider(wedged).dir / "server.log").read_text().splitlines()
    control = subprocess.run(["knotc", "-c", str(lab.provider(wedged).conf_path), "-t", "1",
                              "status"], capture_output=True, text=True, timeout=20,
                             check=False)
    daemon_log = (lab.directory / "tx-daemon2.log").read_text().splitlines()
    assert row["status"] == "done", (
        f"the add is stuck in {row['state']} ({row['waiting_for']}) 30 s after the restart; "
        f"{wedged}'s log: {[ln for ln in server_log if 'blocked' in ln][-1:]}; "
        f"`knotc status` at {wedged}: exit {control.returncode} "
        f"{(control.stdout + control.stderr).strip()!r}; daemon: "
        f"{[ln for ln in daemon_log if 'error' in ln.lower() or 'k0' in ln][-3:]}")
    assert control.returncode == 0, control  # knotd's control socket still answers
    assert any("aborted an open zone transaction" in ln for ln in daemon_log), daemon_log
    for k in lab.providers:  # nothing left open anywhere
        status = subprocess.run(["knotc", "-c", str(k.conf_path), "-t", "2", "zone-status",
                                 TX], capture_output=True, text=True, timeout=20, check=True)
        assert "transaction" not in status.stdout, (k.name, status.stdout)
    check_members(lab, TX, ["k0", "k1", "k2"])
    audit_ok(config)
