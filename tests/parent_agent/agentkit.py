"""What the parent-agent tests share: the agent in a thread of its own (so synchronous
test code can talk DNS to it), its config built for a lab, and small DNS helpers."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import dns.flags
import dns.message
import dns.opcode
import dns.query
import dns.rdatatype
from pydantic import SecretStr

from core.config import ProviderConfig
from core.parent_agent_config import ParentAgentConfig
from multisigner_lab import Lab
from multisigner_lab.net import free_port
from orchestrator.parent_agent.agent import Agent
from providers.powerdns import PowerDNSProvider
from state.store import StateStore

T = TypeVar("T")


def parent_provider(lab: Lab) -> ProviderConfig:
    p = lab.parent
    return ProviderConfig(name="parent", type="powerdns", api_url=p.api_url,
                          api_key=SecretStr(p.api_key), nameservers=[p.nameserver],
                          timeout=timedelta(seconds=30))


def agent_config(lab: Lab, **extra: Any) -> ParentAgentConfig:
    hosts = {s.ns_name: s.nameserver for s in lab.providers}
    settings: dict[str, Any] = {
        "zone": "test.", "provider": "parent", "listen": [f"127.0.0.1:{free_port('127.0.0.1')}"],
        "target": "updater.test.", "hosts": hosts, "scan_interval": "0s", "ttl": 2,
        "bootstrap": ["at-apex", "unsigned"], "bootstrap_checks": 2,
        "bootstrap_interval": "200ms", "rate_limit": 1000}
    settings.update(extra)
    return ParentAgentConfig.model_validate(settings)


class AgentThread:
    """An :class:`Agent` serving in an event loop on a thread of its own."""

    def __init__(self, config: ParentAgentConfig, provider: ProviderConfig, db: Path) -> None:
        self.config = config
        self.store = StateStore.open(f"sqlite:///{db}")
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.api = PowerDNSProvider(provider)
        self.agent = Agent(config, self.api, self.store)
        self.port = 0

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    def start(self, *, schedule: bool = False) -> AgentThread:
        bound = self.run(self.agent.start(schedule=schedule))
        self.port = bound[0][1]
        return self

    def stop(self) -> None:
        try:
            self.run(self.agent.stop())
            self.run(self.api.aclose())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()
            self.store.close()

    def history(self, kind: str | None = None) -> list[Any]:
        return [h for h in self.store.history("test.") if kind is None or h.kind == kind]


def notify(port: int, zone: str, rdtype: str, *, tcp: bool = False) -> dns.message.Message:
    """Send an RFC 9859 NOTIFY(rdtype) for ``zone`` to the agent on 127.0.0.1:port."""
    msg = dns.message.make_query(zone, rdtype)
    msg.flags = dns.flags.AA
    msg.set_opcode(dns.opcode.NOTIFY)
    send = dns.query.tcp if tcp else dns.query.udp
    response: dns.message.Message = send(msg, "127.0.0.1", timeout=5, port=port)
    return response


def raw_udp(port: int, data: bytes, timeout: float = 2.0) -> bytes | None:
    """Send raw bytes over UDP; the answer's bytes or None when none came."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(data, ("127.0.0.1", port))
        try:
            return s.recv(65535)
        except TimeoutError:
            return None


def raw_tcp(port: int, data: bytes, timeout: float = 3.0) -> bytes | None:
    """Send bytes (framing included) over one TCP connection; the framed answer or None
    when the agent closed the connection without one."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        try:
            head = _read(s, 2)
            if head is None:
                return None
            return _read(s, int.from_bytes(head, "big"))
        except TimeoutError:
            return None


def _read(s: socket.socket, size: int) -> bytes | None:
    buf = b""
    while len(buf) < size:
        chunk = s.recv(size - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.05)
    return time.monotonic() - started

