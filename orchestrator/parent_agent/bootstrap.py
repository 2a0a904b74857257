"""KEY bootstrap: how a child's SIG(0) key becomes trusted, after the child sent a
self-signed UPDATE adding that KEY at its apex. The methods of ``bootstrap`` are tried in
the configured order (the pure checks are in ``decide/key_bootstrap.py``); the first that
passes makes the key trusted; when none does, the key is refused with every method's
reason. The child follows along with KeyState inquiries (unknown -> bootstrapping ->
trusted / refused)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from datetime import timedelta

from orchestrator.decide.key_bootstrap import KeyAnswers, RoundResult, check_round
from orchestrator.parent_agent.history import Recorder
from orchestrator.parent_agent.parent_zone import read_parent
from orchestrator.parent_agent.probe import ProbeError, ask_signed
from orchestrator.parent_agent.scan import Scanner
from orchestrator.parent_agent.trust import TrustStore

log = logging.getLogger(__name__)


class Bootstrapper:
    def __init__(self, scanner: Scanner, trust: TrustStore, recorder: Recorder,
                 methods: Sequence[str], checks: int, interval: timedelta,
                 clock: Callable[[], float] = time.time) -> None:
        self._scanner = scanner
        self._trust = trust
        self._recorder = recorder
        self._methods = list(methods)
        self._checks = checks
        self._interval = interval.total_seconds()
        self._clock = clock
        self._running: dict[tuple[str, str], asyncio.Task[None]] = {}

    def start(self, child: str, key: str, actor: str) -> bool:
        """Start bootstrapping ``key`` of ``child`` unless already under way (False)."""
        running = self._running.get((child, key))
        if running is not None and not running.done():
            return False
        self._trust.set(child, key, "bootstrapping", reason="checks under way")
        task = asyncio.get_running_loop().create_task(self._run(child, key, actor))
        self._running[(child, key)] = task
        return True

    async def _run(self, child: str, key: str, actor: str) -> None:
        reasons = []
        try:
            for method in self._methods:
                result = await self._method(child, key, method)
                if result.passed:
                    self._trust.set(child, key, "trusted", method, result.reason)
                    await self._recorder.record(
                        "bootstrap", "accepted", actor=actor, reason=result.reason,
                        evidence={"child": child, "key": key, "method": method})
                    return
                reasons.append(f"{method}: {result.reason}")
                await self._recorder.record(
                    "bootstrap", "refused", actor=actor, reason=result.reason,
                    evidence={"child": child, "key": key, "method": method,
                              "servers": result.servers})
            self._trust.set(child, key, "refused", "", "; ".join(reasons))
        except asyncio.CancelledError:
            self._trust.remove(child, key)  # stopped half-way: the child may ask again
            raise
        except Exception as exc:
            log.exception("parent agent: bootstrap of a key of %s failed", child)
            self._trust.set(child, key, "refused", "", f"internal error: {exc}")

    async def _method(self, child: str, key: str, method: str) -> RoundResult:
        rounds = self._checks if method == "unsigned" else 1
        result = RoundResult(False, "not checked")
        for done in range(rounds):
            if done:
                await asyncio.sleep(self._interval)
            parent = await read_parent(self._scanner.api, self._scanner.zone)
            servers = await self._scanner.servers(child, parent)
            answers = await asyncio.gather(
                *(key_at(child, s, tcp=method == "unsigned") for s in servers))
            result = check_round(child, method, key, answers, parent.ds(child), self._clock())
            if not result.passed:
                if rounds > 1:
                    result = RoundResult(False, f"check {done + 1} of {rounds}: "
                                         f"{result.reason}", result.servers)
                return result
        if rounds > 1:
            return RoundResult(True, f"{result.reason}, {rounds} times "
                               f"{self._interval:g} s apart over TCP")
        return result

    async def stop(self) -> None:
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def wait_idle(self) -> None:
        await asyncio.gather(*self._running.values(), return_exceptions=True)


async def key_at(child: str, server: tuple[str, str, int], *, tcp: bool) -> KeyAnswers:
    label, address, port = server
    if not address:
        return KeyAnswers(label, error="no address found for this nameserver")
    try:
        key = await ask_signed(address, port, child, "KEY", tcp=tcp)
        dnskey = await ask_signed(address, port, child, "DNSKEY", tcp=tcp)
    except ProbeError as exc:
        return KeyAnswers(label, error=str(exc))
    return KeyAnswers(label, key=key, dnskey=dnskey)
