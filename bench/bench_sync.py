"""Benchmark ``multisigner sync --all`` / ``status`` against a local lab, and against the
raw I/O floor of the same requests.

Run::

    .venv/bin/python bench/bench_sync.py [--zones 200] [--providers 3]
        [--scanner-interval 2.0] [--no-preseed] [--no-variants] [--profile DIR]
        [--json-out FILE] [--keep]

What runs (each lab: N zones z0000.test. ... x P PowerDNS providers + a PowerDNS parent
``test.`` + the lab's CDS scanner; no Unbound; in a temporary directory; always stopped):

* **Lab A** (fresh): ``sync --all`` (the first, real sync: import keys, publish CDS, wait
  for every nameserver, wait for the scanner to put the multi-DS at the parent), then a
  second ``sync --all`` (the idempotent no-op pass), ``status --json`` (all zones), the same
  ``status`` through the plain ``multisigner`` console script (uncounted control, see
  below), ``status ZONE`` for one zone (the fixed start-up cost of a CLI run), and the
  *reads floor*.
* **Lab B** (fresh): the *sync floor* (the PATCHes are real: lab B is in the same
  unsynced state lab A was in before its first sync).
* **Lab D** (fresh, unless ``--no-variants``): the sync floor again with 8 instead of 16
  HTTP connections per provider (the reads floor is also run at 8 on lab A).
* **Lab C** (fresh, unless ``--no-preseed``): the parent's DS RRset is set beforehand to
  the final multi-DS (one DS per provider KSK), then ``sync --all`` is timed. The
  controller does exactly the same work but its parent wait ends on the first poll: a
  *direct* measurement of sync without the parent DS wait. (This start state is safe:
  every provider's DNSKEY RRset is still signed by a KSK matching a DS.)

Only one lab runs at a time; each has the scanner running, so every measurement has the
same background load. The scanner polls every zone every ``--scanner-interval`` seconds
(the lab default is 0.5 s; at 200 zones that costs ~0.25 core before CDS exist and
~0.45 core after, on a 2-core box, so the default here is 2.0 s: ~0.1 core. The parent DS
wait of the first sync grows with the interval: about interval/2 + the controller's
polling back-off (0.1 s x 1.5^n, capped at 5 s)).

Controller runs are child processes. Wall time is measured around spawn..exit; peak RSS
and CPU (user+sys) come from ``os.wait4`` for that one child (not RUSAGE_CHILDREN, which is
a high-water mark over all children). The CPU used meanwhile by the PowerDNS servers and
the scanner is read from /proc. Children run through ``bench/_counted_cli.py``, which calls
``orchestrator.cli.main`` like the console script and counts every HTTP request
(``httpx.AsyncClient.send``) and DNS query (``dns.asyncquery.udp/tcp``) the controller
makes (about 1 us per request); one uncounted ``status`` run through the console script is
the control.

The floor: the same network requests, issued directly with asyncio + httpx.AsyncClient +
dns.asyncquery, with no logic in between (no parsing beyond what dnspython does to receive
a message, no planning, no validation, no state database), with the controller's
concurrency limits: at most 32 zones in flight (``cli.ZONE_CONCURRENCY``), one AsyncClient
per provider with at most 16 connections (``powerdns.HTTP_CONNECTIONS``), and within a
zone everything that the controller issues concurrently issued concurrently. A DNS query
is exactly the controller's (``providers.nameservers.query``): DO bit, RD clear, EDNS
payload 1232, one fresh UDP socket per query via ``dns.asyncquery.udp``, TCP on
truncation. An HTTP 5xx (the lab's PowerDNS answers 500 "database is locked" to concurrent
writes to its SQLite backend) is retried after 20 ms with no back-off, and counted: the
floor must reach the same state, so it pays for the retries the server forces, not for a
back-off policy.

One *observation* = the query types the controller asks each provider nameserver and each
parent nameserver for one zone. The floor does not hard-code them: it reads them from the
counted no-op ``sync`` (exactly one observation per zone), so it follows the controller
when its observation changes (at the time of writing: SOA, DNSKEY, CDS, CDNSKEY,
NSEC3PARAM, NS per provider nameserver = T types; DS, NS per parent server = U types).

* **reads floor** (for ``status`` and the no-op ``sync``), per zone, all concurrent:
  per provider GET /zones/Z + GET /zones/Z/cryptokeys; one observation.
  = 2P HTTP + (T*P + U) DNS per zone (P=3: 6 + 20). Measured on lab A after the controller.
* **sync floor**, per zone, phases in the controller's order, each phase concurrent:
  1. the reads above (the controller's first observation);
  2. per provider one PATCH of the apex DNSKEY RRset (the foreign keys: every other
     provider's published KSK and ZSK, as with the default ``import_ksks = true``);
  3. one round of the T*P nameserver queries (DNSKEY served?);
  4. per provider one PATCH of CDS+CDNSKEY (one request for both, as the controller);
  5. one round of the T*P nameserver queries (DNSKEY+CDS served?);
  6. one round of the U parent queries (parent follows?);
  7. the final observation: T*P nameserver queries + U parent queries.
  = 2P GET + 2P PATCH + (4*T*P + 3*U) DNS per zone (P=3: 6 + 6 + 78).
  That is every request the controller must make if every wait succeeds on its first
  poll; it leaves out only the *re-polls* of waits (the controller's counts show how many
  it made: on the lab, DNSKEY/CDS are live at once, so re-polls are the parent DS
  polls while the scanner has not yet acted). The PATCH bodies are computed before the
  timer starts, from lab B's keys, with the controller's own Key/Digest text forms, so
  they are the same changes. After the timer stops, the final round's answers are
  checked (every server serves 2P DNSKEYs and P CDS); a floor that did not reach the
  synced state is reported as invalid.

The floor therefore excludes: interpreter start-up and imports, config loading, state DB
migrations, leases, history and observation writes, planning, interlocks (DNSSEC
validation), waiting for the parent, and the controller's polling back-off. The ratio
wall/floor is how far the controller is from being bound by the network requests it
makes. For the first sync, also shown: the time excluding the parent DS wait, estimated
from the history evidence (sum over zones of the parent step's ``observed_after_s`` / 32
concurrent zone slots: each zone holds its slot while it waits) and measured directly on lab C.

Output: the main table (operation, wall s, per-zone ms, peak RSS MB, floor s, ratio, and
the same ratio in CPU seconds: controller child vs. the bench process during the floor,
steadier than wall time on a small or shared machine),
request counts (controller vs floor), CPU seconds per process during each run, and the
first sync's per-zone phase times from the history. ``--profile DIR`` runs the controller
children under cProfile (their times are then inflated; use it for where, not how long).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import itertools
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import dns.asyncquery
import dns.flags
import dns.message
import dns.name
import dns.rdatatype
import httpx

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

from _kinds import dns_kind, http_kind  # noqa: E402

from core.config import load_config  # noqa: E402
from core.keys import Key  # noqa: E402
from multisigner_lab import powerdns as lab_pdns  # noqa: E402
from multisigner_lab.lab import Lab  # noqa: E402
from multisigner_lab.zones import PARENT_ZONE  # noqa: E402
from orchestrator import cli  # noqa: E402
from providers import nameservers, powerdns  # noqa: E402
from state.store import StateStore  # noqa: E402

# The product's concurrency and query shape, from its public constants (docs/hooks.md).
ZONE_LIMIT = cli.ZONE_CONCURRENCY
HTTP_CONNECTIONS = powerdns.HTTP_CONNECTIONS
PAYLOAD = nameservers.PAYLOAD
DNS_TIMEOUT = 2.0
RETRIES, RETRY_PAUSE = 50, 0.02  # floor: retry a 5xx at once (no back-off)
# One observation's queries, as the controller makes them: per provider nameserver
# (observe_server) and per parent nameserver (observe_parent). The defaults come from the
# product; bench() replaces both with what the controller's no-op sync was *counted*
# doing, so the floor follows the controller when its observation changes.
APEX_TYPES: tuple[str, ...] = tuple(dns.rdatatype.to_text(t) for t in nameservers.APEX_TYPES)
PARENT_TYPES: tuple[str, ...] = ("DS",)
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- children


def proc_cpu(pid: int) -> float | None:
    """utime+stime of a running process, seconds (None when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def lab_cpu(lab: Lab) -> dict[str, float]:
    out = {}
    for p in lab.procs:
        cpu = proc_cpu(p.pid)
        if cpu is not None:
            out[p.name] = cpu
    return out


def box_busy() -> float:
    """CPU seconds the whole machine spent not idle (all cores), from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / CLK_TCK


def listen_overflows() -> int:
    """TcpExt ListenOverflows (system-wide): SYNs dropped because a listen backlog was full."""
    lines = Path("/proc/net/netstat").read_text().splitlines()
    for names, values in itertools.pairwise(lines):
        if names.startswith("TcpExt:") and values.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], values.split()[1:], strict=True))
            return int(table.get("ListenOverflows", 0))
    return 0


def api_errors(lab: Lab) -> int:
    """HTTP 500s the providers' API answered so far (PowerDNS logs each as 'HTTP ISE')."""
    total = 0
    for p in lab.procs:
        if p.name != "parent" and p.name.startswith("p"):
            with contextlib.suppress(OSError):
                total += p.log.read_text(errors="replace").count("HTTP ISE")
    return total


@dataclass
class Meter:
    """What the lab and the machine did while one measured thing ran."""

    lab_cpu: dict[str, float] = field(default_factory=dict)  # CPU s per lab process
    box_busy: float = 0.0  # CPU s the whole machine was busy (all processes, all cores)
    self_cpu: float = 0.0  # CPU s of this (bench) process: the floor's own CPU
    listen_overflows: int = 0
    api_500s: int = 0

    @classmethod
    def snapshot(cls, lab: Lab) -> Meter:
        me = resource.getrusage(resource.RUSAGE_SELF)
        return cls(lab_cpu(lab), box_busy(), me.ru_utime + me.ru_stime, listen_overflows(),
                   api_errors(lab))

    def since(self, before: Meter) -> Meter:
        return Meter(
            {n: self.lab_cpu[n] - before.lab_cpu[n] for n in before.lab_cpu if n in self.lab_cpu},
            self.box_busy - before.box_busy, self.self_cpu - before.self_cpu,
            self.listen_overflows - before.listen_overflows, self.api_500s - before.api_500s,
        )


@dataclass
class Run:
    label: str
    argv: list[str]
    wall: float
    rc: int
    maxrss_mb: float
    cpu_user: float
    cpu_sys: float
    started_at: float  # epoch seconds
    meter: Meter
    counts: dict[str, int] = field(default_factory=dict)
    stderr_tail: str = ""

    @property
    def cpu(self) -> float:
        return self.cpu_user + self.cpu_sys


def run_child(
    label: str,
    lab: Lab,
    args: Sequence[str],
    workdir: Path,
    *,
    counted: bool = True,
    profile_dir: Path | None = None,
) -> Run:
    """Run the controller CLI on ``lab`` as a child process; time it and take its rusage."""
    out_path, err_path = workdir / f"{label}.out", workdir / f"{label}.err"
    counts_path = workdir / f"{label}.counts.json"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    config = ["--config", str(lab.config_path)]
    if counted:
        argv = [sys.executable, str(BENCH / "_counted_cli.py"), *config, *args]
        env["BENCH_COUNTS"] = str(counts_path)
        env["BENCH_PARENT"] = f"{lab.parent.address}:{lab.parent.dns_port}"
        if profile_dir is not None:
            env["BENCH_PROFILE"] = str(profile_dir / f"{label}.prof")
    else:
        argv = [str(Path(sys.executable).parent / "multisigner"), *config, *args]
    before = Meter.snapshot(lab)
    with out_path.open("wb") as out, err_path.open("wb") as err:
        started_at = time.time()
        t0 = time.perf_counter()
        child = subprocess.Popen(argv, stdout=out, stderr=err, env=env, cwd=workdir)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - t0
        child.returncode = os.waitstatus_to_exitcode(status)
    meter = Meter.snapshot(lab).since(before)
    stderr = err_path.read_text(errors="replace")
    run = Run(
        label=label,
        argv=[Path(argv[1] if counted else argv[0]).name, *args],
        wall=wall,
        rc=child.returncode,
        maxrss_mb=usage.ru_maxrss / 1024,
        cpu_user=usage.ru_utime,
        cpu_sys=usage.ru_stime,
        started_at=started_at,
        meter=meter,
        counts=json.loads(counts_path.read_text()) if counted and counts_path.exists() else {},
        stderr_tail="\n".join(stderr.splitlines()[-5:]),
    )
    log(f"{label}: {wall:.2f} s, rc {run.rc}, RSS {run.maxrss_mb:.0f} MB, CPU {run.cpu:.2f} s, "
        f"API 500s {meter.api_500s}, listen overflows {meter.listen_overflows}")
    if run.rc != 0:
        log(f"  {label} FAILED; stderr tail:\n{run.stderr_tail}")
    return run


# ----------------------------------------------------------------------------- the floor


@dataclass
class FloorResult:
    label: str
    wall: float
    counts: dict[str, int]
    problems: list[str]
    connections: int
    meter: Meter

    @property
    def valid(self) -> bool:
        return not self.problems


class Floor:
    """The controller's requests, issued directly (see the module docstring)."""

    def __init__(self, lab: Lab, zones: Sequence[str],
                 connections: int = HTTP_CONNECTIONS,
                 mix: tuple[tuple[str, ...], tuple[str, ...]] = (APEX_TYPES, PARENT_TYPES),
                 ) -> None:
        self.lab = lab
        self.apex_types, self.parent_types = mix
        self.connections = connections
        self.zones = list(zones)
        self.servers = [(p.name, p.address, p.dns_port) for p in lab.providers]
        self.apis = [(p.name, p.api_url, p.api_key) for p in lab.providers]
        self.parents = [(lab.parent.address, lab.parent.dns_port)]
        self.parent_label = f"{lab.parent.address}:{lab.parent.dns_port}"
        self.counts: collections.Counter[str] = collections.Counter()
        self.clients: dict[str, httpx.AsyncClient] = {}

    # -- the two request primitives

    async def query(self, where: str, port: int, qname: dns.name.Name, rdtype: str) -> Any:
        request = dns.message.make_query(
            qname, dns.rdatatype.from_text(rdtype), want_dnssec=True, payload=PAYLOAD
        )
        request.flags &= ~dns.flags.RD
        self.counts[dns_kind("udp", request, where, port, self.parent_label)] += 1
        response = await dns.asyncquery.udp(request, where, port=port, timeout=DNS_TIMEOUT)
        if response.flags & dns.flags.TC:
            self.counts[dns_kind("tcp", request, where, port, self.parent_label)] += 1
            response = await dns.asyncquery.tcp(request, where, port=port, timeout=DNS_TIMEOUT)
        return response

    async def http(self, provider: str, method: str, path: str, body: Any = None) -> None:
        # A 5xx is retried after RETRY_PAUSE (the lab's PowerDNS answers 500 "database is
        # locked" to concurrent writes): the floor must reach the same state, so it pays
        # for retries too, but with no back-off.
        client = self.clients[provider]
        for _ in range(RETRIES):
            self.counts[http_kind(method, client.base_url.path + path)] += 1
            response = await client.request(method, path, json=body)
            if response.status_code < 500:
                break
            self.counts["http 5xx (retried)"] += 1
            await asyncio.sleep(RETRY_PAUSE)
        if response.status_code >= 400:
            raise RuntimeError(f"{provider} {method} {path}: HTTP {response.status_code}: "
                               f"{response.text[:300]}")

    # -- request groups, as the controller issues them

    async def server_round(self, qname: dns.name.Name) -> list[Any]:
        return list(await asyncio.gather(*(
            self.query(address, port, qname, t)
            for _, address, port in self.servers for t in self.apex_types
        )))

    async def parent_round(self, qname: dns.name.Name) -> list[Any]:
        return list(await asyncio.gather(*(
            self.query(address, port, qname, t)
            for address, port in self.parents for t in self.parent_types
        )))

    async def reads(self, zone: str) -> None:
        qname = dns.name.from_text(zone)
        path = f"/zones/{zone}"
        await asyncio.gather(
            *(self.http(name, "GET", path) for name, _, _ in self.apis),
            *(self.http(name, "GET", f"{path}/cryptokeys") for name, _, _ in self.apis),
            self.server_round(qname),
            self.parent_round(qname),
        )

    async def sync(self, zone: str, bodies: dict[str, tuple[Any, Any]]) -> list[Any]:
        qname = dns.name.from_text(zone)
        path = f"/zones/{zone}"
        await self.reads(zone)
        await asyncio.gather(*(self.http(p, "PATCH", path, bodies[p][0]) for p in bodies))
        await self.server_round(qname)
        await asyncio.gather(*(self.http(p, "PATCH", path, bodies[p][1]) for p in bodies))
        await self.server_round(qname)
        await self.parent_round(qname)
        final, _ = await asyncio.gather(self.server_round(qname), self.parent_round(qname))
        return final

    async def per_zone(self, work: Callable[[str], Any]) -> list[Any]:
        gate = asyncio.Semaphore(ZONE_LIMIT)

        async def one(zone: str) -> Any:
            async with gate:
                return await work(zone)

        return list(await asyncio.gather(*(one(z) for z in self.zones)))

    async def _timed(self, work: Callable[[str], Any]) -> tuple[float, list[Any]]:
        t0 = time.perf_counter()
        for name, url, key in self.apis:
            self.clients[name] = httpx.AsyncClient(
                base_url=url + lab_pdns.API_PATH,
                headers={"X-API-Key": key, "Accept": "application/json"},
                timeout=httpx.Timeout(10.0, connect=5.0),
                limits=httpx.Limits(max_connections=self.connections,
                                    max_keepalive_connections=self.connections),
            )
        try:
            results = await self.per_zone(work)
        finally:
            for client in self.clients.values():
                await client.aclose()
        return time.perf_counter() - t0, results

    def _run(self, label: str, work: Callable[[str], Any],
             check: Callable[[list[Any]], list[str]]) -> FloorResult:
        self.counts.clear()
        before = Meter.snapshot(self.lab)
        wall, results = asyncio.run(self._timed(work))
        meter = Meter.snapshot(self.lab).since(before)
        problems = check(results)
        log(f"{label}: {wall:.2f} s, {self.connections} connections/provider, "
            f"5xx retried {self.counts['http 5xx (retried)']}, listen overflows "
            f"{meter.listen_overflows}" + (f" INVALID: {problems[:3]}" if problems else ""))
        return FloorResult(label, wall, dict(sorted(self.counts.items())), problems,
                           self.connections, meter)

    def run_reads(self, label: str) -> FloorResult:
        return self._run(label, self.reads, lambda _: [])

    def run_sync(self, label: str, bodies: dict[str, dict[str, tuple[Any, Any]]]) -> FloorResult:
        return self._run(label, lambda z: self.sync(z, bodies[z]),
                         lambda finals: check_synced(self.zones, finals, len(self.servers)))


def check_synced(zones: Sequence[str], finals: Sequence[list[Any]], providers: int) -> list[str]:
    """After the sync floor: every server serves 2P DNSKEYs and P CDS (P KSKs, P ZSKs)."""
    problems = []
    for zone, responses in zip(zones, finals, strict=True):
        qname = dns.name.from_text(zone)
        for response in responses:
            rdtype = response.question[0].rdtype
            want = {dns.rdatatype.DNSKEY: 2 * providers, dns.rdatatype.CDS: providers}.get(rdtype)
            if want is None:
                continue
            try:
                got = len(response.find_rrset(response.answer, qname, 1, rdtype))
            except KeyError:
                got = 0
            if got != want:
                problems.append(f"{zone} {dns.rdatatype.to_text(rdtype)}: {got} records, "
                                f"expected {want}")
    return problems


def observation_mix(run: Run, zones: int, servers: int, parents: int,
                    ) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """The query types of one observation, read from a counted controller run that made
    exactly one observation per zone (the no-op sync): per provider nameserver and per
    parent nameserver. None if the counts do not divide evenly (then the defaults hold)."""
    apex, parent = [], []
    for key, count in run.counts.items():
        parts = key.split()
        if parts[:2] != ["dns", "udp"]:
            continue
        rdtype, dest = parts[2], parts[3]
        per = zones * (servers if dest == "provider" else parents)
        if count % per:
            return None
        (apex if dest == "provider" else parent).extend([rdtype] * (count // per))
    return (tuple(apex), tuple(parent)) if apex and parent else None


def lab_keys(lab: Lab, zones: Sequence[str]) -> dict[tuple[str, str], list[lab_pdns.CryptoKey]]:
    """Every provider's own keys of every zone, from the lab's APIs (untimed preparation)."""
    names = [p.name for p in lab.providers]
    with ThreadPoolExecutor(8) as pool:
        futures = {(n, z): pool.submit(lab.keys, n, z) for n in names for z in zones}
        return {k: f.result() for k, f in futures.items()}


def sync_bodies(lab: Lab, zones: Sequence[str]) -> dict[str, dict[str, tuple[Any, Any]]]:
    """Per zone, per provider: the two PATCH bodies ``sync`` sends (PowerDNSProvider
    ``set_foreign_dnskeys`` and ``set_cds``), in the controller's canonical text forms."""
    names = [p.name for p in lab.providers]
    keys = lab_keys(lab, zones)
    ttl = lab.ttl
    out: dict[str, dict[str, tuple[Any, Any]]] = {}
    for zone in zones:
        published = {n: [Key.parse(k.dnskey) for k in keys[(n, zone)] if k.published]
                     for n in names}
        ksks = sorted({Key.parse(k.dnskey) for n in names for k in keys[(n, zone)]
                       if k.flags == 257 and k.active})
        cds = sorted(k.ds(zone).text for k in ksks)
        cdnskey = sorted(k.text for k in ksks)
        per: dict[str, tuple[Any, Any]] = {}
        for n in names:
            foreign = sorted(k.text for o in names if o != n for k in published[o])
            dnskey_body = {"rrsets": [_rrset(zone, "DNSKEY", ttl, foreign)]}
            cds_body = {"rrsets": [_rrset(zone, "CDS", ttl, cds),
                                   _rrset(zone, "CDNSKEY", ttl, cdnskey)]}
            per[n] = (dnskey_body, cds_body)
        out[zone] = per
    return out


def _rrset(zone: str, rrtype: str, ttl: int, contents: list[str]) -> dict[str, Any]:
    return {"name": zone, "type": rrtype, "ttl": ttl, "changetype": "REPLACE",
            "records": [{"content": c, "disabled": False} for c in contents]}


def preseed_parent(lab: Lab, zones: Sequence[str]) -> None:
    """Set the parent's DS RRset of every zone to one DS per provider KSK (the state the
    scanner would produce after the sync), so the controller's parent wait ends at once.
    One PATCH of the parent zone for all of them (concurrent PATCHes of one zone fail)."""
    names = [p.name for p in lab.providers]
    keys = lab_keys(lab, zones)
    changes = [
        _rrset(zone, "DS", lab.ds_ttl, sorted(k.ds(zone) for n in names
                                               for k in keys[(n, zone)]
                                               if k.flags == 257 and k.active))
        for zone in zones
    ]
    with lab.pdns_api("parent") as client:
        resp = client.patch(f"/zones/{PARENT_ZONE}", json={"rrsets": changes})
        resp.raise_for_status()


# ----------------------------------------------------------------------------- history


# The transition that leaves each step of the sync runbook (runbooks/sync-model2.toml)
# ``<step>:observe`` carries the evidence ``observed_after_s``: from the end of the step's
# converge phase to the moment every nameserver (the parent, for the last step) served the
# change. (It enters the next step, or ``<step>:hold`` for a step that holds for a TTL.)
OBSERVED = {"import-keys:observe": "dnskey_propagation_s",
            "publish-cds:observe": "cds_propagation_s", "parent:observe": "parent_ds_wait_s"}


def sync_history(lab: Lab, zones: Sequence[str]) -> dict[str, Any]:
    """Per-zone phase times of each zone's last sync process, from the history: its
    persisted states in order (a wait that stays in its state is not a new one)."""
    store = StateStore.open(load_config(lab.config_path).state.url)
    try:
        entries = store.history()
    finally:
        store.close()
    by_zone: dict[str, list[Any]] = {}
    for e in entries:
        if e.process_id is None or e.kind != "sync":
            continue
        if e.from_state is None:
            by_zone[e.zone] = [e]
        elif e.zone in by_zone and e.to_state != by_zone[e.zone][-1].to_state:
            by_zone[e.zone].append(e)
    phase_times: dict[str, list[float]] = collections.defaultdict(list)
    observed: dict[str, list[float]] = collections.defaultdict(list)
    totals, excl = [], []
    first_planned, last_done = None, None
    missing = []
    for zone in zones:
        seq = by_zone.get(zone, [])
        if len(seq) < 2 or seq[-1].to_state != "done":
            missing.append(zone)
            continue
        for a, b in itertools.pairwise(seq):
            phase_times[f"{a.to_state} -> {b.to_state}"].append((b.at - a.at).total_seconds())
        mine = {OBSERVED[e.from_state]: float(e.evidence["observed_after_s"]) for e in seq
                if e.from_state in OBSERVED and "observed_after_s" in e.evidence}
        for name, value in mine.items():
            observed[name].append(value)
        total = (seq[-1].at - seq[0].at).total_seconds()
        totals.append(total)
        excl.append(total - mine.get("parent_ds_wait_s", 0.0))
        p, d = seq[0].at, seq[-1].at
        first_planned = p if first_planned is None or p < first_planned else first_planned
        last_done = d if last_done is None or d > last_done else last_done
    waits = observed["parent_ds_wait_s"]
    return {
        "zones_done": len(totals),
        "zones_missing": missing,
        "zone_s": _stats(totals),
        "zone_excl_parent_s": _stats(excl),
        "parent_ds_wait_s": _stats(waits),
        "parent_ds_wait_sum_s": round(sum(waits), 3),
        "dnskey_propagation_s": _stats(observed["dnskey_propagation_s"]),
        "cds_propagation_s": _stats(observed["cds_propagation_s"]),
        "phases_s": {k: _stats(v) for k, v in phase_times.items()},
        "first_planned": first_planned.timestamp() if first_planned else None,
        "last_done": last_done.timestamp() if last_done else None,
    }


def _stats(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {}
    s = sorted(values)
    return {"mean": round(statistics.fmean(s), 3), "p50": round(s[len(s) // 2], 3),
            "p95": round(s[min(len(s) - 1, int(len(s) * 0.95))], 3), "max": round(s[-1], 3),
            "sum": round(sum(s), 3)}


# ----------------------------------------------------------------------------- the runs


def git_tree() -> str:
    """The product version measured: HEAD and how many tracked files differ from it."""
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "-uno"],
                               capture_output=True, text=True, check=True).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (f" + {len(dirty)} modified file(s)" if dirty else "")


def start_lab(directory: Path, zones: Sequence[str], args: argparse.Namespace) -> Lab:
    t0 = time.perf_counter()
    lab = Lab.start(directory, providers=args.providers, zones=zones, ttl=2, scanner=True,
                    unbound=False, scanner_interval=args.scanner_interval)
    log(f"lab {directory.name} up in {time.perf_counter() - t0:.1f} s")
    return lab


def bench(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    zones = [f"z{i:04d}.test." for i in range(args.zones)]
    prof = Path(args.profile).resolve() if args.profile else None
    if prof:
        prof.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "zones": args.zones, "providers": args.providers,
        "scanner_interval_s": args.scanner_interval, "zone_limit": ZONE_LIMIT,
        "http_connections": HTTP_CONNECTIONS, "cpus": os.cpu_count(),
        "profiled": bool(prof), "runs": {}, "floors": {},
        "loadavg_start": os.getloadavg(),
        "tree": git_tree(),
    }
    runs, floors = result["runs"], result["floors"]

    def child(label: str, lab: Lab, cmd: Sequence[str], **kw: Any) -> Run:
        run = run_child(label, lab, cmd, workdir, profile_dir=prof, **kw)
        runs[label] = run
        return run

    # Lab A: the controller, then the reads floor on the synced lab.
    lab = start_lab(workdir / "lab-a", zones, args)
    try:
        child("sync1", lab, ["sync", "--all"])
        result["history"] = sync_history(lab, zones)
        child("sync2", lab, ["sync", "--all"])
        child("status", lab, ["status", "--json"])
        child("status-plain", lab, ["status", "--json"], counted=False)
        child("status-1zone", lab, ["status", zones[0], "--json"])
        counted = observation_mix(runs["sync2"], len(zones), len(lab.providers), 1)
        if counted is None:
            log("could not read one observation's queries from the no-op sync's counts; "
                f"the floor uses {APEX_TYPES} / {PARENT_TYPES}")
        mix = counted or (APEX_TYPES, PARENT_TYPES)
        result["observation_mix"] = {"provider": mix[0], "parent": mix[1]}
        log(f"one observation = {mix[0]} per provider nameserver, {mix[1]} per parent server")
        floors["reads"] = Floor(lab, zones, mix=mix).run_reads("reads floor")
        if not args.no_variants:
            floors["reads@8"] = Floor(lab, zones, 8, mix=mix).run_reads("reads floor @8")
    finally:
        lab.stop()

    # Lab B (and D): the sync floor, from the same unsynced start state.
    variants = [("sync", HTTP_CONNECTIONS, "lab-b")]
    if not args.no_variants:
        variants.append(("sync@8", 8, "lab-d"))
    for key, conns, name in variants:
        lab = start_lab(workdir / name, zones, args)
        try:
            bodies = sync_bodies(lab, zones)
            floors[key] = Floor(lab, zones, conns, mix=mix).run_sync(f"{key} floor", bodies)
        finally:
            lab.stop()

    # Lab C: sync with the parent's DS already final (no parent wait).
    if not args.no_preseed:
        lab = start_lab(workdir / "lab-c", zones, args)
        try:
            preseed_parent(lab, zones)
            child("sync-preseeded", lab, ["sync", "--all"])
            result["history_preseeded"] = sync_history(lab, zones)
        finally:
            lab.stop()
    result["loadavg_end"] = os.getloadavg()
    return result


# ----------------------------------------------------------------------------- report


def report(result: dict[str, Any]) -> str:
    n = result["zones"]
    runs: dict[str, Run] = result["runs"]
    floors: dict[str, FloorResult] = result["floors"]
    hist = result.get("history", {})
    lines = [
        f"multisigner bench: {n} zones x {result['providers']} providers, scanner interval "
        f"{result['scanner_interval_s']} s, {result['cpus']} CPUs, controller: "
        f"{result['zone_limit']} zones in flight, {result['http_connections']} HTTP "
        "connections/provider" + ("  [PROFILED: times inflated]" if result["profiled"] else ""),
        f"product tree {result.get('tree', '?')}; one observation = "
        + (" ".join(result["observation_mix"]["provider"]) + " per provider nameserver, "
           + " ".join(result["observation_mix"]["parent"]) + " per parent server"
           if "observation_mix" in result else "?"),
        "load average (1/5/15 min) at start "
        + "/".join(f"{x:.1f}" for x in result["loadavg_start"]) + ", at end "
        + "/".join(f"{x:.1f}" for x in result.get("loadavg_end", ())),
        "",
    ]
    head = (f"{'operation':<46} {'wall s':>8} {'per-zone ms':>12} {'peak RSS MB':>12} "
            f"{'floor s':>8} {'wall/floor':>10} | {'CPU s':>6} {'floor CPU s':>11} "
            f"{'CPU/floor':>9}")
    lines += [head, "-" * len(head)]

    def row(name: str, wall: float | None, rss: float | None, floor: FloorResult | None,
            zones: int = n, cpu: float | None = None) -> None:
        w = f"{wall:8.2f}" if wall is not None else f"{'-':>8}"
        pz = f"{wall / zones * 1000:12.1f}" if wall is not None else f"{'-':>12}"
        r = f"{rss:12.1f}" if rss is not None else f"{'-':>12}"
        if floor is not None:
            f = f"{floor.wall:8.2f}" + ("!" if not floor.valid else "")
            ratio = f"{wall / floor.wall:10.1f}" if wall is not None else f"{'-':>10}"
            fc = f"{floor.meter.self_cpu:11.2f}"
            cr = f"{cpu / floor.meter.self_cpu:9.1f}" if cpu is not None else f"{'-':>9}"
        else:
            f, ratio, fc, cr = f"{'-':>8}", f"{'-':>10}", f"{'-':>11}", f"{'-':>9}"
        c = f"{cpu:6.2f}" if cpu is not None else f"{'-':>6}"
        lines.append(f"{name:<46} {w} {pz} {r} {f} {ratio} | {c} {fc} {cr}")

    sync_floor, reads_floor = floors.get("sync"), floors.get("reads")
    if "sync1" in runs:
        s1 = runs["sync1"]
        row("sync --all (1st: full sync)", s1.wall, s1.maxrss_mb, sync_floor, cpu=s1.cpu)
        waits = hist.get("parent_ds_wait_sum_s", 0.0)
        est = s1.wall - waits / min(result["zone_limit"], n)
        row("  excl. parent DS wait (est. from history)", est, None, sync_floor)
    if "sync-preseeded" in runs:
        sp = runs["sync-preseeded"]
        row("  excl. parent DS wait (measured, lab C)", sp.wall, sp.maxrss_mb, sync_floor,
            cpu=sp.cpu)
    if "sync2" in runs:
        row("sync --all (2nd: no-op)", runs["sync2"].wall, runs["sync2"].maxrss_mb, reads_floor,
            cpu=runs["sync2"].cpu)
    if "status" in runs:
        row("status --json (all zones)", runs["status"].wall, runs["status"].maxrss_mb,
            reads_floor, cpu=runs["status"].cpu)
    if "status-plain" in runs:
        row("  same, plain console script (uncounted)", runs["status-plain"].wall,
            runs["status-plain"].maxrss_mb, reads_floor, cpu=runs["status-plain"].cpu)
    if "status-1zone" in runs:
        r1 = runs["status-1zone"]
        row("status ZONE --json (1 zone: start-up cost)", r1.wall, r1.maxrss_mb, None, zones=1,
            cpu=r1.cpu)
    lines += [
        "",
        "per-zone ms = wall / zones (32 zones run at once: throughput, not latency). floor: "
        f"same requests, no logic, {HTTP_CONNECTIONS} connections/provider; ! = invalid.",
        "1st-sync floor excludes the parent wait (the scanner's pace, not the controller's).",
        "The history estimate assumes the 32 zone slots are the bottleneck; when the controller"
        " is CPU-bound (see the CPU table) it is too low: trust the measured (lab C) row.",
        "CPU s = the controller child's user+sys; floor CPU s = the bench process's during the "
        "floor. On a shared or small box, CPU/floor is the steadier ratio.",
    ]
    for f in floors.values():
        if not f.valid:
            lines.append(f"  {f.label} INVALID: {'; '.join(f.problems[:5])}")
    others = [f for k, f in floors.items() if k not in ("sync", "reads")]
    if others:
        lines += ["", "Floor variants (same requests, fewer HTTP connections per provider):"]
        for f in [floors[k] for k in ("sync", "reads") if k in floors] + others:
            lines.append(f"  {f.label:<20} {f.connections:>3} connections/provider: "
                         f"{f.wall:6.2f} s, 5xx retried {f.counts.get('http 5xx (retried)', 0)}"
                         f", TCP listen overflows {f.meter.listen_overflows}")

    # request counts
    lines += ["", "Requests, controller / floor (controller 5xx: from the PowerDNS logs):"]
    pairs = [("sync1", "sync"), ("sync-preseeded", "sync"), ("sync2", "reads"),
             ("status", "reads")]
    pairs = [(r, f) for r, f in pairs if r in runs and f in floors]

    def ccount(r: str, k: str) -> int:
        if k == "http 5xx (retried)":
            return runs[r].meter.api_500s
        return runs[r].counts.get(k, 0)

    keys = sorted({k for r, f in pairs for k in (*runs[r].counts, *floors[f].counts)}
                  | {"http 5xx (retried)"})
    lines.append(f"  {'request':<28}" + "".join(f" {r + ' / ' + f:>23}" for r, f in pairs))
    for k in keys:
        lines.append(f"  {k:<28}" + "".join(
            f" {ccount(r, k):>11} /{floors[f].counts.get(k, 0):>10}" for r, f in pairs))
    lines.append(f"  {'total requests':<28}" + "".join(
        f" {sum(runs[r].counts.values()):>11} /"
        f"{sum(v for k, v in floors[f].counts.items() if not k.startswith('http 5xx')):>10}"
        for r, f in pairs))

    # CPU
    lines += ["", "CPU seconds during each measurement (box = whole machine, all cores; other = "
              "box - controller - lab - bench):"]
    names = sorted({k for r in runs.values() for k in r.meter.lab_cpu})
    lines.append(f"  {'measurement':<16} {'wall':>7} {'ctrl':>6} {'(user':>6} {'sys)':>5}"
                 + "".join(f" {x:>7}" for x in names)
                 + f" {'bench':>6} {'box':>6} {'other':>6} {'500s':>5} {'ovfl':>5}")

    def cpu_line(label: str, wall: float, ctrl: float, user: float, sys_: float,
                 m: Meter, bench_cpu: float) -> None:
        lab_total = sum(m.lab_cpu.values())
        other = m.box_busy - ctrl - lab_total - bench_cpu
        lines.append(f"  {label:<16} {wall:7.2f} {ctrl:6.2f} {user:6.2f} {sys_:5.2f}"
                     + "".join(f" {m.lab_cpu.get(x, 0):7.2f}" for x in names)
                     + f" {bench_cpu:6.2f} {m.box_busy:6.2f} {other:6.2f} {m.api_500s:5d}"
                     f" {m.listen_overflows:5d}")

    for label, r in runs.items():
        cpu_line(label, r.wall, r.cpu, r.cpu_user, r.cpu_sys, r.meter, r.meter.self_cpu)
    for key, f in floors.items():
        cpu_line(f"floor {key}", f.wall, 0.0, 0.0, 0.0, f.meter, f.meter.self_cpu)

    # history
    for key, title in (("history", "1st sync"), ("history_preseeded", "pre-set parent sync")):
        h = result.get(key)
        if not h:
            continue
        run = runs["sync1" if key == "history" else "sync-preseeded"]
        lines += ["", f"{title}: per-zone times from the history, s ({h['zones_done']} zones "
                  "done" + (f", {len(h['zones_missing'])} missing" if h["zones_missing"] else "")
                  + ")"]
        lines.append(f"  {'':<44} {'mean':>7} {'p50':>7} {'p95':>7} {'max':>7} {'sum':>9}")
        stats = [("zone: start -> done", h["zone_s"]),
                 ("zone excl. the parent wait", h["zone_excl_parent_s"]),
                 ("parent wait (parent:observe observed_after_s)", h["parent_ds_wait_s"]),
                 ("DNSKEY propagation (import-keys:observe ...)", h["dnskey_propagation_s"]),
                 ("CDS propagation (publish-cds:observe ...)", h["cds_propagation_s"])]
        stats += [(f"  {phase}", s) for phase, s in h["phases_s"].items()]
        for name, s in stats:
            if s:
                lines.append(f"  {name:<44} {s['mean']:7.3f} {s['p50']:7.3f} {s['p95']:7.3f} "
                             f"{s['max']:7.3f} {s['sum']:9.2f}")
        if h["first_planned"] and h["last_done"]:
            lines.append(
                f"  run start -> first zone's process {h['first_planned'] - run.started_at:.2f} s;"
                f" last zone done -> exit {run.started_at + run.wall - h['last_done']:.2f} s")
    return "\n".join(lines)


def to_json(result: dict[str, Any]) -> dict[str, Any]:
    out = dict(result)
    out["runs"] = {k: asdict(v) for k, v in result["runs"].items()}
    out["floors"] = {k: asdict(v) for k, v in result["floors"].items()}
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--zones", type=int, default=200)
    p.add_argument("--providers", type=int, default=3)
    p.add_argument("--scanner-interval", type=float, default=2.0,
                   help="lab CDS scanner polling interval, s (lab default 0.5)")
    p.add_argument("--no-preseed", action="store_true",
                   help="skip lab C (sync with the parent DS pre-set)")
    p.add_argument("--no-variants", action="store_true",
                   help="skip the floor variants with 8 HTTP connections per provider")
    p.add_argument("--profile", metavar="DIR",
                   help="run the controller under cProfile, stats to DIR/<run>.prof")
    p.add_argument("--json-out", metavar="FILE", help="also write all results as JSON")
    p.add_argument("--keep", action="store_true",
                   help="keep the work directory (lab dirs, child stdout/stderr)")
    args = p.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="msbench-"))
    log(f"work directory {workdir}")
    try:
        result = bench(args, workdir)
    finally:
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(report(result))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(to_json(result), indent=1, default=str) + "\n")
    failed = [r.label for r in result["runs"].values() if r.rc != 0]
    invalid = [f.label for f in result["floors"].values() if not f.valid]
    if failed or invalid:
        print(f"\nFAILED runs: {failed}; invalid floors: {invalid}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
