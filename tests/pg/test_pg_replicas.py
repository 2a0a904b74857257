"""Three daemons (``multisigner run``, separate OS processes) share one PostgreSQL state
database and drive ZSK rollovers on three zones of a lab (real PowerDNS providers, the
lab's CDS-scanning parent, a validating Unbound). While the rollovers run, the daemon
holding a zone's lease mid-process is hit: killed with SIGKILL, or (second test) stopped
with SIGSTOP past its lease and resumed with SIGCONT.

What must hold: a killed holder's zone is taken over at once (same host, its PID gone:
state/holders.py), a paused one's only after its lease ran out (it is alive); every
rollover finishes with exactly its runbook's transitions (none lost, none repeated, each
starting where the previous one ended); the hit daemon writes nothing under the lease it
held (killed: nothing at all); each provider ends with exactly one new ZSK (an ``act`` run
twice would leave two); the history chain verifies; the invariant watcher and the
validating resolver see no breach. Who wrote each transition is in the history: the
daemon's actor is ``scheduler:HOST:PID:NONCE`` (its lease holder label), and every entry's
evidence names the lease it was written under with its fencing token (state/leases.py):
one holder per token, tokens never decreasing along a zone's history, a higher token after
the take-over.

The wall time stays modest: TTL 2 s, the policy's safety margin 0 s, 1 s polls, and in
the SIGSTOP drill a 5 s lease (``MULTISIGNER_LEASE_SECONDS``).
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
    history,
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
from orchestrator.runtime import LEASE_ENV, LEASE_SECONDS

pytestmark = LAB

ZONES = ("ha1.test.", "ha2.test.", "ha3.test.")
SIGNER = {"ha1.test.": "p0", "ha2.test.": "p1", "ha3.test.": "p2"}  # whose ZSK rolls
REPLICAS = 3
ZSK = 256
MAIN = main_states("zsk")
PAUSED_LEASE = 5  # seconds: the replicas' lease in the SIGSTOP drill


@dataclass(frozen=True)
class Fault:
    """A replica hit (SIGKILL or SIGSTOP) while it held a zone's lease mid-rollover."""

    zone: str
    pid: int
    label: str  # HOST:PID:NONCE, as the history's actor names the replica
    state: str  # the zone's process state then
    token: int  # the fencing token of the lease it held
    expires: datetime  # when that lease ran out (unless renewed)
    at: datetime


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with running_lab(tmp_path_factory, "replicas", providers=3, zones=list(ZONES)) as running:
        sync_zones(running, list(ZONES))
        yield running


def _hit_a_holder_mid_process(pg: PgServer, db: str, replicas: dict[int, Any],
                              sig: signal.Signals, timeout: float) -> Fault:
    """Watch the lease table (every 10 ms) until a replica holds a zone whose rollover is
    past its first step's act, then send that replica ``sig`` at once."""
    deadline = time.monotonic() + timeout
    with pg.connect(db) as conn:
        while time.monotonic() < deadline:
            rows = conn.execute(
                "SELECT l.zone, l.holder, p.state, g.token, l.expires_at FROM lease l "
                "JOIN process p ON p.zone = l.zone AND p.status = 'running' "
                "JOIN lease_grant g ON g.zone = l.zone WHERE l.expires_at > now()").fetchall()
            for zone, holder, state, token, expires in rows:
                pid = int(holder.split(":")[1])  # HOST:PID:NONCE:PROOF
                if pid in replicas and state in MAIN[2:-1]:
                    replicas[pid].send_signal(sig)
                    at = datetime.now(UTC)
                    return Fault(zone, pid, ":".join(holder.split(":")[:3]), state, token,
                                 expires, at)
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


def _check_rollover(config: Path, proc: dict[str, Any], fault: Fault, *, dead: bool
                    ) -> list[dict[str, Any]]:
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
    # the hit replica wrote nothing under the lease it held when hit (killed: nothing at all)
    late = [e for e in entries if e["evidence"]["lease"]["holder"] == fault.label
            and when(e["at"]) > fault.at and (dead or e["evidence"]["lease"]["token"]
                                              == fault.token)]
    assert not late, f"the {'killed' if dead else 'paused'} replica wrote: {late}"
    return entries


def _drill(lab: Lab, pg: PgServer, db: str, url: str, sig: signal.Signals
           ) -> tuple[Fault, dict[str, list[dict[str, Any]]]]:
    """Three replicas roll every zone's ZSK; a lease holder mid-rollover gets ``sig``
    (SIGSTOP: resumed once another replica took its zone over). Every check common to
    both; the fault and each zone's rollover history."""
    def on_pg(data: dict[str, Any]) -> None:
        data["state"]["url"] = url

    config = write_config(lab, f"replicas-{sig.name}.toml", policy=FAST, mutate=on_pg)
    before = {z: [k for k in lab.keys(SIGNER[z], z) if k.flags == ZSK] for z in ZONES}
    assert all(len(keys) == 1 for keys in before.values()), before
    logs = [lab.directory / f"replica{i}-{sig.name}.log" for i in range(REPLICAS)]
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        watched = [stack.enter_context(Observed(lab, z)) for z in ZONES]
        replicas = {p.pid: p for p in (
            stack.enter_context(daemon(config, log, "--poll-interval", "1s"))
            for log in logs)}
        for zone in ZONES:  # started by the CLI; the replicas pick them up from the database
            ok(cli(config, "rollover", zone, "--key", "zsk", "--signer", SIGNER[zone]))
        fault = _hit_a_holder_mid_process(pg, db, replicas, sig, timeout=60)
        retries = 0
        while sig == signal.SIGSTOP and _stopped_inside_a_write(pg, db):
            # stopped inside a database write transaction: it holds the database's write
            # lock and every replica waits for it (operator guide: "this delays, it does
            # not corrupt"); that is not the lease case this drill is about: resume, retry
            replicas[fault.pid].send_signal(signal.SIGCONT)
            retries += 1
            assert retries < 10, "every pause landed inside a write transaction"
            time.sleep(0.5)
            fault = _hit_a_holder_mid_process(pg, db, replicas, sig, timeout=60)
        print(f"{sig.name} to replica {fault.label} holding {fault.zone} in {fault.state} "
              f"(token {fault.token}; {retries} pause(s) inside a write transaction undone)")
        if sig == signal.SIGKILL:
            replicas[fault.pid].wait(timeout=10)
            assert not pid_alive(fault.pid)
        else:  # resumed once another replica has written on its zone, or it finished
            wait_until(lambda: _moved_on(config, pg, db, fault), 60,
                       f"{fault.zone} taken over from the paused replica", interval=0.2)
            replicas[fault.pid].send_signal(signal.SIGCONT)
        wait_until(lambda: all(_rollover(pg, db, z)["status"] != "running" for z in ZONES),
                   120, "every rollover finishes", interval=0.5)
        for zone in ZONES:
            verify_ok(config, zone)
        alive = [p for p in replicas.values() if p.poll() is None]
        for proc in alive:  # a graceful stop: the daemon finishes its step and exits 0
            proc.send_signal(signal.SIGTERM)
        for proc in alive:
            exit_within(proc, 30)
            assert proc.returncode == 0, proc.returncode
    for obs in watched:
        obs.assert_clean()

    histories = {zone: _check_rollover(config, _rollover(pg, db, zone), fault,
                                       dead=sig == signal.SIGKILL) for zone in ZONES}
    after = [e for e in histories[fault.zone] if when(e["at"]) > fault.at]
    assert after, f"{fault.zone}: nothing happened after its holder was hit"
    assert after[0]["evidence"]["lease"]["holder"] != fault.label
    assert after[0]["evidence"]["lease"]["token"] > fault.token
    replicas_seen = {e["actor"] for h in histories.values() for e in h
                     if e["actor"].startswith("scheduler:")}
    print(f"{fault.zone} taken over {(when(after[0]['at']) - fault.at).total_seconds():.1f} s "
          f"after {sig.name} by {after[0]['actor']}; {len(replicas_seen)} replicas wrote "
          f"transitions; {time.monotonic() - started:.1f} s in all; {fault.zone}: " + ", ".join(
              f"{e['to_state']} by {e['actor']} (token {e['evidence']['lease']['token']})"
              for e in histories[fault.zone]))
    for zone in ZONES:  # on the providers: the old ZSK gone, exactly one new one, active
        keys = [k for k in lab.keys(SIGNER[zone], zone) if k.flags == ZSK]
        assert len(keys) == 1 and keys[0].active, keys
        assert keys[0].id != before[zone][0].id
    assert ok(cli(config, "audit", "verify")).rc == 0
    for log in logs:
        text = log.read_text()
        assert "Traceback" not in text, text[-3000:]
    return fault, histories


def _stopped_inside_a_write(pg: PgServer, db: str) -> bool:
    """Whether the write lock (a transaction-scoped advisory lock) is held by a session that
    stays idle in its transaction: its client is the stopped replica."""
    query = ("SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
             "WHERE l.locktype = 'advisory' AND l.granted "
             "AND a.state = 'idle in transaction'")
    with pg.connect(db) as conn:
        for _ in range(3):
            row = conn.execute(query).fetchone()
            if not row or not row[0]:
                return False
            time.sleep(0.15)
    return True


def _moved_on(config: Path, pg: PgServer, db: str, fault: Fault) -> bool:
    if _rollover(pg, db, fault.zone)["status"] != "running":
        return True
    return any(e["evidence"].get("lease", {}).get("holder") not in (None, fault.label)
               and when(e["at"]) > fault.at for e in history(config, fault.zone))


def test_a_killed_replica_hands_its_zone_over_mid_rollover(
        lab: Lab, pg_server: PgServer, pg_db: str, pg_url: str) -> None:
    fault, histories = _drill(lab, pg_server, pg_db, pg_url, signal.SIGKILL)
    after = [e for e in histories[fault.zone] if when(e["at"]) > fault.at]
    # a dead holder on this host is certain to be dead: taken over at once, not after
    # its lease runs out
    takeover = (when(after[0]["at"]) - fault.at).total_seconds()
    assert takeover < LEASE_SECONDS, f"taken over after {takeover:.1f} s"


def test_a_paused_replica_is_waited_out_then_fenced(
        lab: Lab, pg_server: PgServer, pg_db: str, pg_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGSTOP past its lease (shortened to PAUSED_LEASE s for the replicas), then SIGCONT:
    a stopped process is alive, so the others wait for its lease to run out before they
    take the zone; resumed, it writes nothing under its old lease."""
    monkeypatch.setenv(LEASE_ENV, str(PAUSED_LEASE))  # the daemons' environment
    fault, histories = _drill(lab, pg_server, pg_db, pg_url, signal.SIGSTOP)
    after = [e for e in histories[fault.zone] if when(e["at"]) > fault.at]
    assert when(after[0]["at"]) >= fault.expires, (
        f"{fault.zone} taken from a live (paused) holder before its lease ran out "
        f"({fault.expires}): {after[0]}")
