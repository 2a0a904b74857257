"""knotc refused with EAGAIN ("failed to connect to socket ... (OS lacked necessary
resources)") when knotd's control-socket queue is full.

knotd 3.2 serves its control socket one connection at a time (a ``-b`` command holds it
until its zone event is done) and queues 6 more (``listen(fd, 5)``; Linux admits
backlog + 1); knotc connects without blocking, so one more fails at once. The adapter runs
at most ``KNOTC_SLOTS`` knotc per provider and retries a full queue with back-off.

The fast tests use a fake knotc that fails exactly like that while more than 6 copies run
at once. The real-knotd tests make knotd's control thread busy the way a long ``-b``
command does, deterministically: a client connects and sends nothing, and knotd waits for
its command (up to ``control: timeout``, 5 s by default) until the test closes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import stat
import subprocess
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from knotkit import NEEDS_KNOT, ZONE_TEXT, OwnerKsk, combined_skr, keyset, provider

from core.config import KnotProviderConfig
from core.errors import ProviderUnreachable
from multisigner_lab.errors import LabError
from multisigner_lab.knot import KnotInstance
from providers.knot.commands import KNOTC_SLOTS, ControlSocketBusy, KnotCommands

T = TypeVar("T")
EAGAIN_LINE = ("error: failed to connect to socket '/run/knot/knot.sock' "
               "(OS lacked necessary resources)")
QUEUE = 6  # connections knotd 3.2's control socket queues beside the one it serves


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


# ------------------------------------------------------------------ fake knotc / keymgr


def fake_tool(tmp_path: Path, tool: str, body: str) -> Path:
    """``tmp_path/bin/TOOL``, a shell script: ``running/`` holds one file per copy running
    now; ``seen.log`` gets how many ran (this one included) when it started."""
    bin_dir, running = tmp_path / "bin", tmp_path / "running"
    bin_dir.mkdir(exist_ok=True)
    running.mkdir(exist_ok=True)
    script = bin_dir / tool
    script.write_text(
        "#!/bin/sh\n"
        f'touch "{running}/$$"\n'
        f"trap 'rm -f \"{running}/$$\"' EXIT\n"
        f'n=$(ls "{running}" | wc -l)\n'
        f'echo "$n" >> "{tmp_path}/seen.log"\n'
        f"{body}\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return bin_dir


def queue_of(limit: int, hold: float) -> str:
    """knotd's queue: EAGAIN while more than ``limit`` copies run, else ``hold`` s of
    work and "ok"."""
    return f'if [ "$n" -gt {limit} ]; then echo "{EAGAIN_LINE}"; exit 1; fi; sleep {hold}; echo ok'


def seen(tmp_path: Path) -> list[int]:
    log = tmp_path / "seen.log"
    return [int(n) for n in log.read_text().split()] if log.exists() else []


@pytest.fixture
def commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> KnotCommands:
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    return KnotCommands(KnotProviderConfig.model_validate(
        {"name": "kx", "knot_config": tmp_path / "knot.conf", "nameservers": ["127.0.0.1:53"]}))


async def status_calls(cmds: KnotCommands, n: int) -> list[str | BaseException]:
    return await asyncio.gather(
        *(cmds.run("knotc", "zone-status", f"z{i}.test.", zone=f"z{i}.test.") for i in range(n)),
        return_exceptions=True)


def test_knotc_calls_stay_below_the_queue(tmp_path: Path, commands: KnotCommands) -> None:
    fake_tool(tmp_path, "knotc", queue_of(QUEUE, 0.3))
    commands.busy_retry_budget = 0  # no retry: the cap alone has to do it
    for _ in range(2):  # a second event loop: the semaphore is per loop
        assert run(status_calls(commands, 20)) == ["ok\n"] * 20
    assert len(seen(tmp_path)) == 40 and max(seen(tmp_path)) <= KNOTC_SLOTS


def test_without_the_cap_the_queue_overflows(tmp_path: Path, commands: KnotCommands) -> None:
    """The control of the test above: the same burst, uncapped and not retried, fails as
    the benchmark did; reported as busy, not as a knotd that may not be running."""
    fake_tool(tmp_path, "knotc", queue_of(QUEUE, 0.5))
    commands.knotc_slots, commands.busy_retry_budget = 100, 0
    results = run(status_calls(commands, 20))
    busy = [r for r in results if isinstance(r, ControlSocketBusy)]
    assert busy and all(r == "ok\n" or isinstance(r, ControlSocketBusy) for r in results)
    message = str(busy[0])
    assert "stayed busy" in message and "OS lacked necessary resources" in message
    assert "knotd is running but serves one control connection at a time" in message
    assert "is knotd running" not in message and "running?" not in message


def test_a_full_queue_is_retried_with_growing_pauses(
    tmp_path: Path, commands: KnotCommands
) -> None:
    # EAGAIN for the first 4 runs, then "ok"
    fake_tool(tmp_path, "knotc", f'if [ $(wc -l < "{tmp_path}/seen.log") -le 4 ]; then '
                                 f'echo "{EAGAIN_LINE}"; exit 1; fi; echo ok')
    started = time.monotonic()
    assert run(commands.run("knotc", "status")) == "ok\n"
    assert len(seen(tmp_path)) == 5
    # pauses of at least 0.025 + 0.05 + 0.1 + 0.2 s (0.05 s doubling, jittered to >= 50 %)
    assert 0.375 <= time.monotonic() - started < 5


def test_a_queue_that_stays_full_fails_after_the_budget(
    tmp_path: Path, commands: KnotCommands
) -> None:
    fake_tool(tmp_path, "knotc", f'echo "{EAGAIN_LINE}"; exit 1')
    commands.busy_retry_budget = 1.0
    started = time.monotonic()
    with pytest.raises(ControlSocketBusy, match=r"stayed busy for 1\.\d s \(\d+ attempts;"):
        run(commands.run("knotc", "zone-keys-load", "a.test.", zone="a.test.", options=["-b"]))
    assert 1.0 <= time.monotonic() - started < 3  # the budget used, not much more
    assert 5 <= len(seen(tmp_path)) <= 12


@pytest.mark.parametrize("reason", ["not exists", "connection refused"])
def test_no_knotd_is_not_retried(tmp_path: Path, commands: KnotCommands, reason: str) -> None:
    fake_tool(tmp_path, "knotc", f"echo \"error: failed to connect to socket '/x' ({reason})\"; "
                                 "exit 1")
    with pytest.raises(ProviderUnreachable, match="is knotd running") as err:
        run(commands.run("knotc", "status"))
    assert not isinstance(err.value, ControlSocketBusy)
    assert len(seen(tmp_path)) == 1


def test_keymgr_is_not_capped(tmp_path: Path, commands: KnotCommands) -> None:
    """keymgr does not use the control socket (LMDB serialises its writers itself)."""
    fake_tool(tmp_path, "keymgr", "sleep 0.5; echo ok")

    async def burst() -> list[str]:
        return await asyncio.gather(*(commands.run("keymgr", "z.test.", "list", zone="z.test.")
                                      for _ in range(12)))

    assert run(burst()) == ["ok\n"] * 12
    assert max(seen(tmp_path)) > KNOTC_SLOTS


# ------------------------------------------------------------------------- real knotd


@pytest.fixture(scope="module")
def knot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KnotInstance]:
    """One knotd serving example.test. (its SKR imported)."""
    directory = tmp_path_factory.mktemp("eagain")
    k = KnotInstance.create("k0", directory / "k0")
    try:
        k.start()
        p = provider(k)
        ksr = run(p.key_signing_request(ZONE_TEXT))
        run(p.serve_signed_keyset(ZONE_TEXT,
                                  keyset(combined_skr([ksr], [OwnerKsk.create(directory)]))))
        assert run(p.zone_loaded(ZONE_TEXT))
        yield k
    finally:
        k.stop()


class BusyKnotd:
    """Keeps knotd's control thread busy, as a long ``-b`` command does: a client that
    connects and sends nothing; with ``fill``, silent clients also fill the queue behind
    it. :meth:`release` closes them all, and knotd goes on."""

    def __init__(self, knot: KnotInstance, *, fill: bool = False) -> None:
        # The queue is first-in first-out: once a knotc of ours is answered, knotd has
        # dealt with every connection an earlier test left behind, and idles.
        for attempt in range(20):
            try:
                knot.knotc("status")
                break
            except LabError:
                if attempt == 19:
                    raise
                time.sleep(0.25)
        self.clients = [self._connect(knot, wait=True)]
        time.sleep(0.5)  # until knotd has accepted it and waits for its command
        while fill:
            try:
                self.clients.append(self._connect(knot))
            except BlockingIOError:  # EAGAIN: the queue is full
                break

    @staticmethod
    def _connect(knot: KnotInstance, *, wait: bool = False) -> socket.socket:
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if wait:
            client.settimeout(5)
        else:
            client.setblocking(False)  # as knotc connects: EAGAIN when the queue is full
        try:
            client.connect(str(knot.socket))
        except BaseException:
            client.close()
            raise
        return client

    def release(self) -> None:
        for client in self.clients:
            client.close()


@contextlib.contextmanager
def busy(knot: KnotInstance, *, fill: bool = False) -> Iterator[BusyKnotd]:
    holder = BusyKnotd(knot, fill=fill)
    try:
        yield holder
    finally:
        holder.release()


async def read_zones(p: Any, n: int, release: BusyKnotd, after: float) -> list[Any]:
    """``n`` concurrent read_zone (zone-status, zone-read and keymgr list each) while knotd
    is busy; knotd is released ``after`` seconds."""
    asyncio.get_running_loop().call_later(after, release.release)
    results = await asyncio.gather(*(p.read_zone(ZONE_TEXT) for _ in range(n)),
                                   return_exceptions=True)
    # A failed read_zone leaves its sibling commands running: let them end rather than
    # have asyncio.run cancel them (once, such a shutdown hung in a subprocess's wait).
    others = asyncio.all_tasks() - {asyncio.current_task()}
    await asyncio.gather(*others, return_exceptions=True)
    return results


@pytest.mark.lab
@NEEDS_KNOT
@pytest.mark.parametrize("capped", [True, False], ids=["capped", "uncapped"])
def test_a_burst_on_a_busy_knotd(knot: KnotInstance, capped: bool) -> None:
    """16 concurrent zone reads while knotd is busy for 2.5 s, retries cut to 0.5 s: with
    the cap they wait in the queue and all succeed; without it (the control) the burst
    overflows the queue and calls fail with ControlSocketBusy."""
    p = provider(knot)
    p._cmd.busy_retry_budget = 0.5  # shorter than the busy spell: only the cap can help
    if not capped:
        p._cmd.knotc_slots = 100
    started = time.monotonic()
    with busy(knot) as holder:
        results = run(read_zones(p, 16, holder, after=2.5))
    failed = [r for r in results if isinstance(r, BaseException)]
    if capped:
        assert failed == []
        assert {r.ns for r in results} == {frozenset({"ns1.k0.test."})}
        assert time.monotonic() - started >= 2.5  # they did wait for the busy knotd
    else:
        assert failed and all(isinstance(r, ControlSocketBusy) for r in failed)
        assert "is knotd running" not in str(failed[0])


@pytest.mark.lab
@NEEDS_KNOT
def test_a_queue_filled_by_others_is_waited_out(knot: KnotInstance) -> None:
    """Other clients hold knotd and fill its queue for 3 s: a bare knotc fails at once
    with EAGAIN, the adapter's back-off waits it out."""
    p = provider(knot)
    with busy(knot, fill=True) as holder:
        assert len(holder.clients) == 1 + QUEUE
        bare = subprocess.run(["knotc", "-c", str(knot.conf_path), "status"],
                              capture_output=True, text=True, timeout=10, check=False)
        assert bare.returncode == 1
        assert "OS lacked necessary resources" in bare.stdout + bare.stderr
        started = time.monotonic()
        (result,) = run(read_zones(p, 1, holder, after=3.0))
    assert not isinstance(result, BaseException), result
    assert time.monotonic() - started >= 3.0
