#!/usr/bin/env python
"""How fast is the parent agent (``multisigner parent-agent``) on loopback?

1. **Signed UPDATEs**: a lab with one PowerDNS provider serving ``--clients`` child zones
   and the PowerDNS parent ``test.``; the agent runs in this process (its own event loop
   on a thread); each client thread has its own child zone and trusted SIG(0) key and
   sends ``--updates`` signed DS UPDATEs over one TCP connection, one at a time, each a
   real change (two DS sets alternate). Reported: UPDATEs applied per second, latency p50
   and p99, and the two costs inside split out: SIG(0) parse + verify of the same messages
   (in this process, no I/O) and the parent-zone write (the same PATCH through the
   PowerDNS API, timed on its own).
2. **CDS/CSYNC scan**: a lab with ``--children`` zones (default 1,000) delegated to
   ``--providers`` (default 3) PowerDNS servers; one full scan of every child (what a
   NOTIFY triggers: CDS, CDNSKEY, DNSKEY and SOA, CSYNC, NS, DNSKEY, SOA at every address),
   and one scheduled round (which looks at the first address first and stops when nothing
   is published), against the floor: ``dnsperf`` sending the same queries (DO bit) to each
   server at once, from one file per server.

Every lab is stopped even on failure or Ctrl-C. Needs what the lab needs, and dnsperf::

    .venv/bin/python bench/bench_parent_agent.py                  # 1,000 children
    .venv/bin/python bench/bench_parent_agent.py --children 100 --updates 200
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Coroutine
from concurrent.futures import Future
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import dns.update
from pydantic import SecretStr

from core import sig0
from core.config import ProviderConfig
from core.parent_agent_config import ParentAgentConfig
from multisigner_lab import Lab
from multisigner_lab.net import free_port
from orchestrator.parent_agent import update as update_module
from orchestrator.parent_agent.agent import Agent
from orchestrator.parent_agent.trust import canonical
from providers.base import ApiRRset
from providers.powerdns import PowerDNSProvider
from providers.powerdns_rrsets import replace_rrsets
from state.store import StateStore

T = TypeVar("T")
DS = ["11111 13 2 " + "ab" * 32, "22222 13 2 " + "cd" * 32]
FULL_SCAN = [("CDS", "DNSKEY"), ("CDS", "CDS"), ("CDS", "CDNSKEY"), ("CSYNC", "SOA"),
             ("CSYNC", "CSYNC"), ("CSYNC", "NS"), ("CSYNC", "DNSKEY"), ("CSYNC", "SOA")]


class Running:
    """The agent on an event loop of its own thread."""

    def __init__(self, lab: Lab, workdir: Path) -> None:
        p = lab.parent
        self.provider = ProviderConfig(name="parent", type="powerdns", api_url=p.api_url,
                                       api_key=SecretStr(p.api_key),
                                       nameservers=[p.nameserver],
                                       timeout=timedelta(seconds=60))
        config = ParentAgentConfig.model_validate({
            "zone": "test.", "provider": "parent", "target": "updater.test.",
            "listen": [f"127.0.0.1:{free_port('127.0.0.1')}"], "scan_interval": "0s",
            "rate_limit": 1e6, "ttl": 2,
            "hosts": {s.ns_name: s.nameserver for s in lab.providers}})
        self.store = StateStore.open(f"sqlite:///{workdir / 'agent.db'}")
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.api = PowerDNSProvider(self.provider)
        self.agent = Agent(config, self.api, self.store)
        self.port = self.run(self.agent.start(schedule=False))[0][1]

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(3600)

    def stop(self) -> None:
        try:
            self.run(self.agent.stop())
            self.run(self.api.aclose())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.store.close()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def signed_updates(zone: str, key: sig0.Sig0Key, count: int) -> list[bytes]:
    out = []
    for i in range(count):
        msg = dns.update.UpdateMessage("test.")
        msg.replace(zone, 2, "DS", DS[i % 2])
        out.append(sig0.sign(msg.to_wire(), key, now=int(time.time()), validity=3600))
    return out


def client(port: int, wires: list[bytes], latencies: list[float], errors: list[str]) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        for wire in wires:
            started = time.perf_counter()
            s.sendall(struct.pack("!H", len(wire)) + wire)
            size = struct.unpack("!H", recv(s, 2))[0]
            answer = recv(s, size)
            latencies.append(time.perf_counter() - started)
            if answer[3] & 0x0F:
                errors.append(f"rcode {answer[3] & 0x0F}")


def recv(s: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = s.recv(size - len(data))
        if not chunk:
            raise ConnectionError("agent closed the connection")
        data += chunk
    return data


class Timers:
    """Wall time spent inside the agent's own calls while it serves (in situ split)."""

    def __init__(self) -> None:
        self.spent: dict[str, list[float]] = {}

    def wrap(self, owner: Any, attr: str, label: str) -> None:
        inner = getattr(owner, attr)

        async def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await inner(*args, **kwargs)
            finally:
                self.spent.setdefault(label, []).append(time.perf_counter() - started)

        setattr(owner, attr, timed)

    def summary(self) -> dict[str, float]:
        return {f"{k}_p50_ms": 1000 * pct(v, 0.5) for k, v in self.spent.items()} | {
            f"{k}_p99_ms": 1000 * pct(v, 0.99) for k, v in self.spent.items()}


def bench_updates(workdir: Path, clients: int, count: int) -> dict[str, Any]:
    zones = [f"b{i}.test." for i in range(clients)]
    with Lab.start(workdir / "ulab", providers=1, zones=zones, scanner=False,
                   unbound=False) as lab:
        running = Running(lab, workdir)
        timers = Timers()
        timers.wrap(update_module, "read_parent", "in_situ_zone_read")
        timers.wrap(update_module, "replace_rrsets", "in_situ_apply")
        timers.wrap(running.agent.recorder, "record", "in_situ_history")
        try:
            keys = {z: sig0.Sig0Key.generate(z) for z in zones}
            for zone, key in keys.items():
                running.agent.trust.set(zone, canonical(key.key_rdata()), "trusted")
            wires = {z: signed_updates(z, keys[z], count) for z in zones}
            latencies: list[float] = []
            errors: list[str] = []
            threads = [threading.Thread(target=client,
                                        args=(running.port, wires[z], latencies, errors))
                       for z in zones]
            started = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - started
            verify = verify_costs(wires, keys)
            apply = running.run(apply_costs(running.api, zones[0], count))
        finally:
            running.stop()
    total = clients * count
    return {"clients": clients, "updates": total, "errors": len(errors),
            "wall_s": wall, "per_s": total / wall,
            "p50_ms": 1000 * pct(latencies, 0.5), "p99_ms": 1000 * pct(latencies, 0.99),
            "verify_p50_ms": 1000 * pct(verify, 0.5), "verify_p99_ms": 1000 * pct(verify, 0.99),
            "apply_p50_ms": 1000 * pct(apply, 0.5), "apply_p99_ms": 1000 * pct(apply, 0.99),
            **timers.summary()}


def verify_costs(wires: dict[str, list[bytes]], keys: dict[str, sig0.Sig0Key]) -> list[float]:
    out = []
    now = int(time.time())
    for zone, messages in wires.items():
        trusted = [keys[zone].key_rdata()]
        for wire in messages:
            started = time.perf_counter()
            sig0.verify(sig0.parse(wire), trusted, now=now)
            out.append(time.perf_counter() - started)
    return out


async def apply_costs(api: PowerDNSProvider, zone: str, count: int) -> list[float]:
    out = []
    for i in range(count):
        started = time.perf_counter()
        await replace_rrsets(api, "test.", [ApiRRset(zone, "DS", 2, (DS[i % 2],))])
        out.append(time.perf_counter() - started)
    return out


def bench_scan(workdir: Path, children: int, providers: int) -> dict[str, Any]:
    zones = [f"c{i:04d}.test." for i in range(children)]
    started = time.perf_counter()
    with Lab.start(workdir / "slab", providers=providers, zones=zones, scanner=False,
                   unbound=False) as lab:
        lab_s = time.perf_counter() - started
        running = Running(lab, workdir)
        try:
            full = timed(running, "bench")
            scheduled = timed(running, "scan")
        finally:
            running.stop()
        floor = dnsperf_floor(lab, zones, workdir)
    queries = children * providers * len(FULL_SCAN)
    return {"children": children, "providers": providers, "lab_start_s": lab_s,
            "full_scan_s": full, "scheduled_round_s": scheduled, "queries": queries,
            "dnsperf_s": floor, "full_vs_floor": full / floor if floor else None}


def timed(running: Running, actor: str) -> float:
    async def go() -> None:
        async def nothing(*_: Any, **__: Any) -> None:
            return None

        running.agent.scanner.recorder.record_scan = nothing  # type: ignore[method-assign]
        await running.agent.scan_all(actor)

    started = time.perf_counter()
    running.run(go())
    return time.perf_counter() - started


def dnsperf_floor(lab: Lab, zones: list[str], workdir: Path) -> float | None:
    if shutil.which("dnsperf") is None:
        return None
    procs = []
    started = time.perf_counter()
    for server in lab.providers:
        data = workdir / f"queries-{server.name}.txt"
        data.write_text("".join(f"{z} {t}\n" for z in zones for _, t in FULL_SCAN))
        procs.append(subprocess.Popen(
            ["dnsperf", "-s", server.address, "-p", str(server.dns_port), "-d", str(data),
             "-D", "-q", "16", "-n", "1", "-t", "5"], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL))
    for p in procs:
        p.wait()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--updates", type=int, default=500, help="per client")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--children", type=int, default=1000)
    parser.add_argument("--providers", type=int, default=3)
    parser.add_argument("--no-scan", action="store_true", help="the UPDATE part only")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="msbench-agent-") as tmp:
        workdir = Path(tmp)
        result = {"update": bench_updates(workdir, args.clients, args.updates)}
        if not args.no_scan:
            result["scan"] = bench_scan(workdir, args.children, args.providers)
    print(json.dumps(result, indent=2))
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=2))
    u = result["update"]
    print(f"\nUPDATE: {u['per_s']:.0f}/s applied ({u['clients']} clients), latency p50 "
          f"{u['p50_ms']:.1f} ms p99 {u['p99_ms']:.1f} ms; of which SIG(0) verify p50 "
          f"{u['verify_p50_ms']:.2f} ms, API apply p50 {u['apply_p50_ms']:.1f} ms")
    if "scan" not in result:
        return 0 if not u["errors"] else 1
    s = result["scan"]
    print(f"scan of {s['children']} children x {s['providers']} NS: full {s['full_scan_s']:.1f} s"
          f", scheduled round {s['scheduled_round_s']:.1f} s, dnsperf floor "
          f"{s['dnsperf_s'] or float('nan'):.1f} s for the same {s['queries']} queries")
    return 0 if not u["errors"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
