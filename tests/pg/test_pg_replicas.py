"""Three daemons (``multisigner run``, separate OS processes) share one PostgreSQL state
database and drive ZSK rollovers on three zones of a lab (real PowerDNS providers, the
lab's CDS-scanning parent, a validating Unbound). While the rollovers run, the daemon
holding a zone's lease mid-process is killed with SIGKILL.

What must hold: another daemon takes the zone over well within the lease time (the dead
holder's lease is reclaimed at once: same host, its PID gone, state/holders.py), every
rollover finishes with exactly its runbook's transitions (none lost, none repeated, each
starting where the previous one ended), the killed daemon writes nothing after its death,
each provider ends with exactly one new ZSK (an ``act`` run twice would leave two), the
history chain verifies, and the invariant watcher and the validating resolver see no
breach. Who wrote each transition is in the history: the daemon's actor is
``scheduler:HOST:PID:NONCE``, the label of its lease holder id, and every entry's
evidence names the lease it was written under with its fencing token (state/leases.py):
one holder per token, tokens never decreasing along a zone's history, a higher token
after the take-over.

The wall time stays modest: TTL 2 s, the policy's safety margin 0 s, 1 s polls.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pgserver import PgServer
from rollover.rollkit import (
    FAST,
    LAB,
    Observed,
    cli,
    daemon,
    entries_of,
    exit_within,
    main_states,
    ok,
    pid_alive,
    running_lab,
    sync_zones,
    to_states,
    verify_ok,
    wait_until,
    when,
    write_config,
)

from multisigner_lab import Lab
from orchestrator.runtime import LEASE_SECONDS

pytestmark = LAB

ZONES = ("ha1.test.", "ha2.test.", "ha3.test.")
SIGNER = {"ha1.test.": "p0", "ha2.test.": "p1", "ha3.test.": "p2"}  # whose ZSK rolls
REPLICAS = 3
ZSK = 256
MAIN = main_states("zsk")


@dataclass(frozen=True)
class Kill:
    zone: str
    pid: int
    label: str  # HOST:PID:NONCE, as the history's actor names the replica
    state: str  # the zone's process state when its lease holder was killed
    at: datetime


@pytest.fixture
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with running_lab(tmp_path_factory, "replicas", providers=3, zones=list(ZONES)) as running:
        sync_zones(running, list(ZONES))
        yield running


def _kill_a_holder_mid_process(pg: PgServer, db: str, replicas: dict[int, Any],
                               timeout: float) -> Kill:
    """Watch the lease table (every 10 ms) until a replica holds a zone whose rollover is
    past its first step's act, then SIGKILL that replica at once."""
    deadline = time.monotonic() + timeout
    with pg.connect(db) as conn:
        while time.monotonic() < deadline:
            rows = conn.execute(
                "SELECT l.zone, l.holder, p.state FROM lease l JOIN process p "
                "ON p.zone = l.zone AND p.status = 'running' "
                "WHERE l.expires_at > now()").fetchall()
            for zone, holder, state in rows:
                pid = int(holder.split(":")[1])  # HOST:PID:NONCE:PROOF
                if pid in replicas and state in MAIN[2:-1]:
                    replicas[pid].send_signal(signal.SIGKILL)
                    at = datetime.now(UTC)
                    replicas[pid].wait(timeout=10)
                    return Kill(zone, pid, ":".join(holder.split(":")[:3]), state, at)
            time.sleep(0.01)
    raise AssertionError(f"no replica was seen holding a zone mid-rollover in {timeout} s")


def _rollover(pg: PgServer, db: str, zone: str) -> dict[str, Any]:
    """The zone's newest ZSK rollover process row (rollkit's ``latest`` reads SQLite)."""
    with pg.connect(db) as conn:
        cur = conn.execute("SELECT * FROM process WHERE zone = %s AND kind = 'zsk-rollover' "
                           "ORDER BY started_at DESC LIMIT 1", (zone,))
        row = cur.fetchone()
        assert row is not None, f"no ZSK rollover for {zone}"
        return dict(zip([c.name for c in cur.description or ()], row, strict=True))


def _check_rollover(config: Path, proc: dict[str, Any], kill: Kill) -> list[dict[str, Any]]:
    zone = proc["zone"]
    assert (proc["state"], proc["status"]) == ("done", "done"), proc
    entries = entries_of(config, zone, proc["id"])
    # every step exactly once, in order, each transition starting where the last ended:
    # two replicas acting on one zone would fork or repeat the sequence
    assert to_states(entries) == MAIN, to_states(entries)
    assert entries[0]["from_state"] is None
    assert [e["from_state"] for e in entries[1:]] == to_states(entries)[:-1]
    # `rollover` (no --wait) started it and ran it to its first hold; from then on only
    # the replicas: a CLI leading part, then daemons to the end
    actors = [e["actor"] for e in entries]
    led = next(i for i, a in enumerate(actors) if not a.startswith("cli:"))
    assert led >= 1 and all(a.startswith("scheduler:") for a in actors[led:]), [
        (e["to_state"], e["actor"]) for e in entries]
    # fencing tokens: each entry was written under one lease grant; one holder per
    # token, tokens never go down, and a change of holder always comes with a new token
    leases = [e["evidence"]["lease"] for e in entries]
    assert all(e["actor"] == f"scheduler:{lease['holder']}"
               for e, lease in zip(entries[led:], leases[led:], strict=True)), leases
    holders: dict[int, set[str]] = {}
    for lease in leases:
        holders.setdefault(lease["token"], set()).add(lease["holder"])
    assert all(len(h) == 1 for h in holders.values()), holders
    tokens = [lease["token"] for lease in leases]
    assert tokens == sorted(tokens), tokens
    dead = f"scheduler:{kill.label}"
    late = [e for e in entries if e["actor"] == dead and when(e["at"]) > kill.at]
    assert not late, f"the killed replica wrote after its death: {late}"
    return entries


def test_a_killed_replica_hands_its_zone_over_mid_rollover(
        lab: Lab, pg_server: PgServer, pg_db: str, pg_url: str) -> None:
    def on_pg(data: dict[str, Any]) -> None:
        data["state"]["url"] = pg_url

    config = write_config(lab, "replicas.toml", policy=FAST, mutate=on_pg)
    before = {z: [k for k in lab.keys(SIGNER[z], z) if k.flags == ZSK] for z in ZONES}
    assert all(len(keys) == 1 for keys in before.values()), before
    logs = [lab.directory / f"replica{i}.log" for i in range(REPLICAS)]
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        watched = [stack.enter_context(Observed(lab, z)) for z in ZONES]
        replicas = {p.pid: p for p in (
            stack.enter_context(daemon(config, log, "--poll-interval", "1s"))
            for log in logs)}
        for zone in ZONES:  # started by the CLI; the replicas pick them up from the database
            ok(cli(config, "rollover", zone, "--key", "zsk", "--signer", SIGNER[zone]))
        kill = _kill_a_holder_mid_process(pg_server, pg_db, replicas, timeout=60)
        assert not pid_alive(kill.pid)
        print(f"killed replica {kill.label} holding {kill.zone} in {kill.state}")
        wait_until(lambda: all(_rollover(pg_server, pg_db, z)["status"] != "running"
                               for z in ZONES), 120, "every rollover finishes", interval=0.5)
        for zone in ZONES:
            verify_ok(config, zone)
        survivors = [p for pid, p in replicas.items() if pid != kill.pid]
        for proc in survivors:  # a graceful stop: the daemon finishes its step and exits 0
            proc.send_signal(signal.SIGTERM)
        for proc in survivors:
            exit_within(proc, 30)
            assert proc.returncode == 0, proc.returncode
    took = time.monotonic() - started
    for obs in watched:
        obs.assert_clean()

    histories = {zone: _check_rollover(config, _rollover(pg_server, pg_db, zone), kill)
                 for zone in ZONES}
    after_kill = [e for e in histories[kill.zone] if when(e["at"]) > kill.at]
    assert after_kill, f"{kill.zone}: nothing happened after its holder was killed"
    takeover = (when(after_kill[0]["at"]) - kill.at).total_seconds()
    assert after_kill[0]["actor"] != f"scheduler:{kill.label}"
    assert takeover < LEASE_SECONDS, f"taken over after {takeover:.1f} s"
    before_kill = [e for e in histories[kill.zone] if when(e["at"]) <= kill.at]
    assert (after_kill[0]["evidence"]["lease"]["token"]
            > before_kill[-1]["evidence"]["lease"]["token"])
    replicas_seen = {e["actor"] for h in histories.values() for e in h
                     if e["actor"].startswith("scheduler:")}
    print(f"{kill.zone} taken over {takeover:.1f} s after the kill by {after_kill[0]['actor']}; "
          f"{len(replicas_seen)} replicas wrote transitions; {took:.1f} s in all; "
          f"{kill.zone}: " + ", ".join(
              f"{e['to_state']} by {e['actor']} (token {e['evidence']['lease']['token']})"
              for e in histories[kill.zone]))

    for zone in ZONES:  # on the providers: the old ZSK gone, exactly one new one, active
        keys = [k for k in lab.keys(SIGNER[zone], zone) if k.flags == ZSK]
        assert len(keys) == 1 and keys[0].active, keys
        assert keys[0].id != before[zone][0].id
    assert ok(cli(config, "audit", "verify")).rc == 0
    for log in logs:
        text = log.read_text()
        assert "Traceback" not in text, text[-3000:]
    assert all(p.poll() is not None for p in replicas.values())  # all reaped
