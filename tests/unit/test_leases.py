"""Unit tests of zone leases: holder ids, the dead-holder rule, fencing of zone writes, and
the renewing async lease (orchestrator/engine/lease.py).

Two controllers racing in separate OS processes (SIGSTOP past the lease) are in
tests/pg/test_pg_fencing.py, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.errors import StateError
from orchestrator.engine.lease import check_lease, current_lease, zone_lease
from state import RRsetRecord, StateStore
from state.holders import holder_dead, holder_label, make_holder, parse_holder, process_holder
from state.leases import LeaseLost

ZONE = "example.test."
HOST = socket.gethostname()


@pytest.fixture(params=["memory", "file"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    url = "sqlite://" if request.param == "memory" else f"sqlite:///{tmp_path / 'state.db'}"
    with StateStore.open(url) as opened:
        yield opened


def _now() -> datetime:
    return datetime.now(UTC)


def _with_proof(holder: str, *, pid: int | None = None, boot: str | None = None,
                pidns: int | None = None, start: int | None = None) -> str:
    """*holder* with some of its fields replaced (another container, another host...)."""
    parsed = parse_holder(holder)
    assert parsed is not None and parsed.boot is not None
    return (f"{parsed.host}:{pid if pid is not None else parsed.pid}:{parsed.nonce}:"
            f"{boot or parsed.boot}.{pidns if pidns is not None else parsed.pidns}."
            f"{start if start is not None else parsed.start}")


def _dead_child() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


# -- holder ids ------------------------------------------------------------------------------


def test_holder_is_made_once_and_unique_even_for_the_same_host_and_pid() -> None:
    assert process_holder() == process_holder()
    mine = parse_holder(process_holder())
    assert mine is not None and (mine.host, mine.pid) == (HOST, os.getpid())
    # Two containers with one hostname, both running the controller as PID 1.
    first, second = make_holder(1), make_holder(1)
    assert first.split(":")[:2] == second.split(":")[:2] == [HOST, "1"]
    assert first != second
    assert holder_label(first) == ":".join(first.split(":")[:3])


def test_a_forked_child_gets_its_own_holder() -> None:
    read, write = os.pipe()
    parent = process_holder()
    pid = os.fork()
    if pid == 0:  # the child: report its holder id and leave without pytest's cleanup
        os.write(write, process_holder().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 4096).decode()
    os.close(read)
    assert child != parent
    assert parse_holder(child) is not None and parse_holder(child).pid == pid  # type: ignore[union-attr]


def test_two_same_host_pid_1_holders_do_not_share_a_lease(store: StateStore) -> None:
    first, second = make_holder(1), make_holder(1)
    assert store.acquire_lease(ZONE, first, 60, _now())
    assert not store.acquire_lease(ZONE, second, 60, _now())
    with (pytest.raises(StateError, match=rf"zone {ZONE} is being handled by "
                        rf"{holder_label(first)} until \S+Z; wait"),
          store.lease(ZONE, second, 60)):
        pass


# -- the dead-holder rule ----------------------------------------------------------------------


def test_a_live_holder_is_never_dead() -> None:
    assert not holder_dead(process_holder())


def test_a_gone_process_of_this_namespace_is_dead() -> None:
    assert holder_dead(make_holder(os.getpid()).replace(f":{os.getpid()}:",
                                                        f":{_dead_child()}:", 1))


def test_a_reused_pid_is_dead_and_a_zombie_is_dead() -> None:
    # Our own PID, but a start time that is not ours: the holder was an earlier process.
    mine = parse_holder(process_holder())
    assert mine is not None and mine.start is not None
    assert holder_dead(_with_proof(process_holder(), start=mine.start + 1))
    zombie = subprocess.Popen(["true"])
    try:
        deadline = time.monotonic() + 10
        stat = Path(f"/proc/{zombie.pid}/stat")
        while stat.read_text().rsplit(")", 1)[1].split()[0] != "Z":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        # the holder id it would have had (its start time is still readable)
        start = int(stat.read_text().rsplit(")", 1)[1].split()[19])
        holder = _with_proof(process_holder(), pid=zombie.pid, start=start)
        assert holder_dead(holder)
    finally:
        zombie.wait()


def test_another_namespace_host_or_an_unprovable_holder_is_waited_out() -> None:
    gone = _dead_child()
    mine = process_holder()
    parsed = parse_holder(mine)
    assert parsed is not None and parsed.pidns is not None
    # The same PID that does not exist here says nothing about another PID namespace
    # (another container) or another kernel (another host with the same name).
    assert not holder_dead(_with_proof(mine, pid=gone, pidns=parsed.pidns + 1))
    assert not holder_dead(_with_proof(mine, pid=gone, boot="0" * 16))
    assert not holder_dead(f"other-{HOST}:{gone}:{parsed.nonce}:{mine.rsplit(':', 1)[1]}")
    assert not holder_dead(f"{HOST}:{gone}:{parsed.nonce}:-")  # no /proc where it ran
    assert not holder_dead(f"{HOST}:{gone}")  # an older version's id
    assert not holder_dead("ctl-a")


def test_a_dead_holder_of_this_namespace_is_taken_over_before_expiry(
        store: StateStore) -> None:
    dead = make_holder(os.getpid()).replace(f":{os.getpid()}:", f":{_dead_child()}:", 1)
    other_ns = _with_proof(dead, pidns=(parse_holder(dead).pidns or 0) + 1)  # type: ignore[union-attr]
    assert store.acquire_lease(ZONE, other_ns, 600, _now())
    assert not store.acquire_lease(ZONE, process_holder(), 60, _now())  # waited out
    store.release_lease(ZONE, other_ns)
    assert store.acquire_lease(ZONE, dead, 600, _now())
    assert store.acquire_lease(ZONE, process_holder(), 60, _now())  # taken over
    lease = store.lease_info(ZONE)
    assert lease is not None and lease.holder == process_holder()


# -- fencing ----------------------------------------------------------------------------------


def _started(store: StateStore, me: str) -> str:
    assert store.acquire_lease(ZONE, me, 60, _now())
    return store.start_process(ZONE, "sync", signer=None, actor="t", reason="start",
                               state="s0").id


def test_fenced_writes_need_the_zone_lease(store: StateStore) -> None:
    me, other = make_holder(os.getpid()), make_holder(os.getpid())
    store.fence(me)
    pid = _started(store, me)
    store.transition(pid, "s1", actor="t", reason="held")
    store.set_wait(pid, waiting_for="x", next_check_at=None)
    store.set_member(ZONE, "p0", "active")
    store.append_history(ZONE, process_id=None, kind="note", from_state=None,
                         to_state="noted", actor="t", reason="held")
    before = len(store.history(ZONE))
    # Another controller takes the zone (as after this one was paused past its lease).
    store.release_lease(ZONE, me)
    assert store.acquire_lease(ZONE, other, 60, _now())
    attempts = [
        lambda: store.transition(pid, "s2", actor="t", reason="late"),
        lambda: store.set_wait(pid, waiting_for="y", next_check_at=None),
        lambda: store.set_member(ZONE, "p1", "joining"),
        lambda: store.append_history(ZONE, process_id=pid, kind="note", from_state=None,
                                     to_state="noted", actor="t", reason="late"),
        lambda: store.start_process("other.test.", "sync", signer=None, actor="t",
                                    reason="x", state="s0"),
    ]
    for attempt in attempts:
        with pytest.raises(LeaseLost, match=r"lease lost: .* this controller \("
                           + holder_label(me) + r"\) no longer holds"):
            attempt()
    with pytest.raises(LeaseLost, match=rf"zone {ZONE} is being handled by "
                       rf"{holder_label(other)} until"):
        store.transition(pid, "s2", actor="t", reason="late")
    # Nothing of the refused writes reached the database.
    proc = store.get_process(pid)
    assert proc is not None and (proc.state, proc.waiting_for) == ("s1", "x")
    assert store.members(ZONE) == [("p0", "active")]
    assert len(store.history(ZONE)) == before
    assert store.active_process("other.test.") is None


def test_fencing_tokens_grow_with_every_grant_and_are_in_the_history(
        store: StateStore) -> None:
    a, b = make_holder(os.getpid()), make_holder(os.getpid())
    store.fence(a)
    pid = _started(store, a)  # grant 1
    assert store.acquire_lease(ZONE, a, 60, _now())  # a renewal: the same token
    store.transition(pid, "s1", actor="t", reason="by a")
    store.release_lease(ZONE, a)
    assert store.acquire_lease(ZONE, a, 60, _now())  # released and taken again: grant 2
    store.transition(pid, "s2", actor="t", reason="by a again")
    assert store.acquire_lease(ZONE, a, 0.05, _now())
    time.sleep(0.1)  # expired: b's take-over is grant 3
    assert store.acquire_lease(ZONE, b, 60, _now())
    store.fence(b)
    store.transition(pid, "s3", actor="t", reason="by b")
    store.append_history(ZONE, process_id=None, kind="note", from_state=None,
                         to_state="noted", actor="t", reason="by b")
    leases = [e.evidence["lease"] for e in store.history(ZONE)]
    assert leases == [
        {"holder": holder_label(a), "token": 1}, {"holder": holder_label(a), "token": 1},
        {"holder": holder_label(a), "token": 2}, {"holder": holder_label(b), "token": 3},
        {"holder": holder_label(b), "token": 3}]
    # the token is per zone
    assert store.acquire_lease("other.test.", b, 60, _now())
    other = store.start_process("other.test.", "sync", signer=None, actor="t", reason="x",
                                state="s0")
    assert store.history("other.test.")[0].evidence["lease"]["token"] == 1
    assert other.zone == "other.test."


def test_an_expired_lease_fences_its_own_holder(store: StateStore) -> None:
    me = make_holder(os.getpid())
    store.fence(me)
    pid = _started(store, me)
    assert store.acquire_lease(ZONE, me, 0.05, _now())
    time.sleep(0.1)
    with pytest.raises(LeaseLost, match=r"it expired at"):
        store.transition(pid, "s1", actor="t", reason="late")


def test_unfenced_writes_work_without_a_lease(store: StateStore) -> None:
    store.fence(make_holder(os.getpid()))
    # Observations (read-only commands record them) and the config mirror need no lease.
    store.record_observations([RRsetRecord(ZONE, "p0", "a:53", "SOA", "x", 60)], [], _now())
    store.ensure_zone(ZONE, 2)
    assert store.seed_members(ZONE, ["p0"])
    assert store.cached_rrsets(ZONE, "SOA", _now())
    # A store without a fence (tools, tests) is not fenced at all.
    store.fence(None)
    store.start_process(ZONE, "sync", signer=None, actor="t", reason="x", state="s0")


# -- the renewing async lease ------------------------------------------------------------------


def test_zone_lease_renews_while_work_runs_and_releases(store: StateStore) -> None:
    async def main() -> list[datetime]:
        seen: list[datetime] = []
        async with zone_lease(store, ZONE, 0.6) as held:
            assert current_lease() is held
            for _ in range(8):  # 1.6 s: over twice the lease
                await asyncio.sleep(0.2)
                check_lease()
                lease = store.lease_info(ZONE)
                assert lease is not None and lease.holder == process_holder()
                seen.append(lease.expires_at)
        assert current_lease() is None
        return seen

    seen = asyncio.run(main())
    assert len(set(seen)) > 2  # renewed, not taken once
    assert store.lease_info(ZONE) is None


def test_zone_lease_refuses_a_zone_held_by_another(store: StateStore) -> None:
    other = make_holder(1)
    assert store.acquire_lease(ZONE, other, 60, _now())

    async def main() -> None:
        async with zone_lease(store, ZONE, 60):
            raise AssertionError("entered a zone another controller holds")

    with pytest.raises(StateError, match=rf"zone {ZONE} is being handled by "
                       rf"{holder_label(other)} until"):
        asyncio.run(main())
    assert store.lease_info(ZONE) is not None  # not released: it is not ours


def test_a_lost_lease_cancels_the_work(store: StateStore) -> None:
    thief = make_holder(1)
    events: list[str] = []

    async def main() -> None:
        async with zone_lease(store, ZONE, 0.6):
            store.release_lease(ZONE, process_holder())
            assert store.acquire_lease(ZONE, thief, 60, _now())
            try:
                await asyncio.sleep(5)
            except asyncio.CancelledError:
                events.append("cancelled")
                raise
            events.append("went on")

    started = time.monotonic()
    with pytest.raises(LeaseLost, match=rf"zone {ZONE} is being handled by "
                       rf"{holder_label(thief)}"):
        asyncio.run(main())
    assert events == ["cancelled"]
    assert time.monotonic() - started < 2  # at the first renewal, not after the work
    lease = store.lease_info(ZONE)
    assert lease is not None and lease.holder == thief  # the thief's lease is untouched


def test_a_lapsed_lease_stops_provider_access_before_any_renewal(store: StateStore) -> None:
    async def main() -> None:
        async with zone_lease(store, ZONE, 60) as held:
            check_lease()
            held.valid_until = time.monotonic() - 1  # as if paused for over a minute
            check_lease()

    with pytest.raises(LeaseLost, match=r"paused or blocked past the end of its lease"):
        asyncio.run(main())


def test_an_outside_cancel_is_not_turned_into_a_lost_lease(store: StateStore) -> None:
    async def main() -> None:
        work = asyncio.current_task()
        assert work is not None
        asyncio.get_running_loop().call_later(0.1, work.cancel)
        async with zone_lease(store, ZONE, 60):
            await asyncio.sleep(5)

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(main())
    assert store.lease_info(ZONE) is None


def test_zone_lease_is_reentrant_within_a_task(store: StateStore) -> None:
    async def main() -> None:
        async with zone_lease(store, ZONE, 60) as outer:
            async with zone_lease(store, ZONE, 60) as inner:
                assert inner is outer
            assert store.lease_info(ZONE) is not None  # the inner block did not release
        assert store.lease_info(ZONE) is None

    asyncio.run(main())


def test_the_runtime_fences_its_store_and_guards_providers(store: StateStore,
                                                          tmp_path: Path) -> None:
    from core.config import load_config
    from orchestrator.runtime import Runtime, holder_id

    config = tmp_path / "multisigner.toml"
    config.write_text("""
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
""")
    rt = Runtime(config=load_config(config), store=store)
    assert store.fence_holder == holder_id()

    async def main() -> None:
        async with zone_lease(store, ZONE, 60) as held:
            rt.provider("p0")
            held.valid_until = time.monotonic() - 1
            rt.provider("p0")

    with pytest.raises(LeaseLost):
        asyncio.run(main())
