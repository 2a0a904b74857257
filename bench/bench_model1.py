"""Benchmark Model 1: owner-KSK signing throughput per store, and the re-sign cycle of
``multisigner sync --all`` over N zones x P Knot providers against its floor.

Run::

    .venv/bin/python bench/bench_model1.py [--zones 100] [--providers 3] [--store file|pkcs11]
        [--repeat 2] [--sign-seconds 3] [--no-stores] [--no-profile] [--profile-out FILE]
        [--json-out FILE] [--keep]

**Part 1, KSK stores.** ``bench.kskstore_bench.signatures_per_second`` (a 3-key
DNSKEY RRset: the KSK + two ZSKs; one signer reused; every signature verified, as in
production) for ``--sign-seconds`` per store, each store in its own child process
(PKCS#11 module state is per process): a file store (ECDSAP256SHA256) in a temp dir; a
SoftHSM2 token made in a temp dir (``softhsm2-util --init-token``, ``SOFTHSM2_CONF`` via
``module_env``); AWS KMS faked in-process by moto (``mock_aws``, ``message_type = "RAW"``:
moto re-hashes a DIGEST). **The KMS figure is moto's in-process cost (botocore request
building, moto's signing), not real KMS latency**: no network, TLS or HSM.

**Part 2, the controller** on one ``Model1Lab`` (N zones ``z0000.test.``.., P Knot 3.2
instances, the PowerDNS parent; no scanner and no Unbound: the parent DS already names the
owner KSK, so neither has anything to do, and both would only add background load). Each
run is a child process (``bench_model1.py _child``: ``orchestrator.cli.main`` exactly as
the console script runs it, plus a counter on ``dns.asyncquery.udp/tcp`` and its own
rusage split at exit: Python vs. reaped keymgr/knotc children). Runs, in order:

1. ``sync --all`` with the lab policy (validity 60 s, refresh 30 s): the initial delivery.
2. ``--repeat`` times (default 2): ``sync --all`` with a config copy whose refresh window
   is longer than the validity of the signatures served (``Policies``: validity 3^i h,
   refresh 0.6 x validity, a new step for every re-sign of the controller or the floor),
   so **every zone is re-signed**; then the same config again: **the idle no-op**; then
   a floor and a matched floor (part 3), each on its own policy step.
3. the floor variants (PidfdChildWatcher) and components (part 3).
4. re-sign + no-op again, *counted*: a ``command_prefix`` wrapper (``/bin/sh``: one
   ``printf >> log``, then ``exec``) logs every keymgr/knotc invocation: a check, from
   outside the product, of the ``ProviderCall`` events every controller run records
   (docs/hooks.md: each keymgr/knotc call with its duration). Separate from the timed runs
   because the wrapper costs one extra ``sh`` exec per invocation.
5. ``sync z0000.test.`` on a 1-zone config: the fixed cost of one CLI run (start-up,
   imports, config, DB open, exit) plus 1/N of the no-op work.
6. a re-sign under cProfile (``--no-profile`` skips it; ``--profile-out`` keeps it).
7. one more floor, then the controller's no-op ``sync --all``, which must report every
   zone in sync: the floor reached a state the controller accepts.

A zone that fails (in the controller or in a floor) is reported, not fatal; the exit
status is 1 if any run failed or any floor is invalid. bench/MODEL1.md has the results.

**Part 3, the floor** (its own policy step), in the bench process, against the same lab,
with the controller's concurrency (32 zones in flight, ``cli.ZONE_CONCURRENCY``; within a
zone everything the controller issues concurrently issued concurrently), each command run
exactly as ``KnotProvider._run`` runs it (``asyncio.create_subprocess_exec``, own session,
``tool -c CONF [-t 10] [opts] -- args``, SKR in a 0644 temp file). Per zone:

* one observation (the query types counted in the no-op sync: per provider nameserver
  SOA DNSKEY CDS CDNSKEY NSEC3PARAM NS, at the parent DS NS; DO, no RD, payload 1232);
* per provider ``keymgr ZONE generate-ksr +0 +0`` (the requested TTL *and* the ZSKs);
* the owner's 6 signatures (2 SKR blocks x DNSKEY, CDNSKEY, CDS: the product's
  ``owner_signing.build_keyset`` + ``knot.keyset.skr_text`` with ``sign_rrset_with``, the store's
  signer opened before the timer);
* per provider ``keymgr validate-skr``, ``keymgr import-skr``, ``knotc zone-keys-load -b``;
* one served round (DNSKEY, CDS per nameserver; re-polled, and counted, only if a server
  does not serve the fresh RRSIG yet), one parent round (DS), one final observation: the
  queries the controller makes when every wait succeeds at its first poll.

Also run: the **matched floor** (the same, plus the controller's read-only commands --
``keymgr list``, ``keymgr dnskey``, ``knotc zone-read ZONE @``, ``knotc zone-status`` -- as
many of each per zone and provider as the controller's first re-sign ran, counted by its
``ProviderCall`` events (docs/hooks.md), issued in concurrent rounds before the delivery),
so that wall - matched floor is the controller's Python overhead and matched - floor is
the cost of the extra invocations (part 5 compares the matched floor's commands with the
controller's and flags any difference); and the floor's components
alone: signing (6N signatures, sequential), keymgr/knotc (the 4 commands, re-importing
the floor's SKRs), DNS (the rounds above), one observation (the no-op's floor).

Timing: wall around spawn..exit (``os.wait4``); CPU = the child's user+sys split into its
own Python and its reaped keymgr/knotc children, plus the knotd processes' CPU
(``/proc``), plus the whole box (``/proc/stat``). Peak RSS is the controller process's own
``ru_maxrss``. Nothing outside a fresh ``/tmp/msbench-m1-*`` directory (and the SKR temp
files in the temp dir, removed as the controller removes them) is touched; the lab is
stopped even on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import collections
import contextlib
import itertools
import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PACKAGES = ("core", "orchestrator", "providers", "state", "runbooks")  # the product's
CLK_TCK = os.sysconf("SC_CLK_TCK")
SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
KMS_REGION = "eu-west-1"



class Policies:
    """(signature_validity, signature_refresh) for each re-sign, in run order: validity
    3^i h, refresh 0.6 x validity. Each refresh window (1.8 x the previous validity) is
    longer than the previous re-sign's validity, so every zone is due for the controller
    (the lab's own policy is 60 s / 30 s); validity > 1.25 x refresh keeps the refresh
    block (``model1.block_times``): 2 SKR blocks every time."""

    def __init__(self) -> None:
        self.i = 0

    def next(self) -> tuple[str, str]:
        validity = 3600 * 3**self.i
        self.i += 1
        return f"{validity}s", f"{int(validity * 0.6)}s"


DNS_TIMEOUT = 2.0
# the read-only Knot commands the matched floor repeats as often as the controller ran them
READS = ("keymgr list", "keymgr dnskey", "knotc zone-read", "knotc zone-status")


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# =========================================================================== child modes


def child_main(argv: list[str]) -> int:
    """``_child OUT.json CLI-ARGS...``: run the CLI as the console script does, count DNS
    queries, dump counts and rusage (self / reaped children) to OUT.json at exit."""
    out_path, cli_args = argv[0], argv[1:]
    import dns.asyncquery
    from _kinds import dns_kind  # bench/ is sys.path[0]

    counts: collections.Counter[str] = collections.Counter()
    parent = os.environ.get("BENCH_PARENT", "")
    udp, tcp = dns.asyncquery.udp, dns.asyncquery.tcp

    async def counted_udp(q: Any, where: str, *args: Any, **kw: Any) -> Any:
        counts[dns_kind("udp", q, where, kw.get("port", 53), parent)] += 1
        return await udp(q, where, *args, **kw)

    async def counted_tcp(q: Any, where: str, *args: Any, **kw: Any) -> Any:
        counts[dns_kind("tcp", q, where, kw.get("port", 53), parent)] += 1
        return await tcp(q, where, *args, **kw)

    dns.asyncquery.udp = counted_udp
    dns.asyncquery.tcp = counted_tcp
    # keymgr/knotc calls, from the product's event bus (docs/hooks.md)
    from core import events

    calls: collections.Counter[str] = collections.Counter()
    call_s: collections.Counter[str] = collections.Counter()

    def on_event(event: events.Event) -> None:
        if isinstance(event, events.ProviderCall):
            calls[event.operation] += 1
            call_s[event.operation] += event.seconds

    events.subscribe(on_event)

    def dump() -> None:
        for _callback, exc in events.failures():
            print(f"bench: the event subscriber failed: {exc!r}", file=sys.stderr)
        me = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        orchestrator = sys.modules.get("orchestrator")
        Path(out_path).write_text(json.dumps({
            "code": getattr(orchestrator, "__file__", None),
            "counts": dict(sorted(counts.items())),
            "provider_calls": dict(sorted(calls.items())),
            "provider_call_s": dict(sorted(call_s.items())),
            "self_user": me.ru_utime, "self_sys": me.ru_stime, "self_maxrss_kb": me.ru_maxrss,
            "children_user": kids.ru_utime, "children_sys": kids.ru_stime,
        }))

    atexit.register(dump)

    def run() -> int:
        from orchestrator.cli import main as cli_main  # imported here: profiled too

        return int(cli_main(cli_args))

    profile = os.environ.get("BENCH_PROFILE")
    if not profile:
        return run()
    import cProfile

    prof = cProfile.Profile()
    try:
        return int(prof.runcall(run))
    finally:
        prof.dump_stats(profile)


def store_main(argv: list[str]) -> int:
    """``_store KIND SECONDS``: signatures/s of one store kind, as one JSON line."""
    kind, seconds = argv[0], float(argv[1])
    from bench.kskstore_bench import signatures_per_second

    scratch = Path(tempfile.mkdtemp(prefix="msbench-m1-store-"))
    result: dict[str, Any] = {"store": kind}
    try:
        if kind == "file":
            from providers.kskstore.filestore import FileKskStore

            with FileKskStore(scratch / "keys", create=True) as store:
                result.update(_measure(store, signatures_per_second, seconds))
        elif kind == "pkcs11":
            from providers.kskstore.pkcs11store import Pkcs11KskStore

            conf = scratch / "softhsm2.conf"
            (scratch / "tokens").mkdir()
            conf.write_text(f"directories.tokendir = {scratch / 'tokens'}\n"
                            "objectstore.backend = file\nlog.level = ERROR\n")
            pin = "246810"
            subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", "bench",
                            "--pin", pin, "--so-pin", "13579111"], check=True,
                           capture_output=True, env={**os.environ, "SOFTHSM2_CONF": str(conf)})
            version = subprocess.run(["softhsm2-util", "--version"], capture_output=True,
                                     text=True, check=False).stdout.strip()
            result["version"] = f"SoftHSM2 {version}"
            with Pkcs11KskStore(module=SOFTHSM_MODULE, token_label="bench", pin=pin,
                                module_env={"SOFTHSM2_CONF": str(conf)}) as store:
                result.update(_measure(store, signatures_per_second, seconds))
        elif kind == "kms":
            for name, value in {"AWS_ACCESS_KEY_ID": "testing",
                                "AWS_SECRET_ACCESS_KEY": "testing",
                                "AWS_SESSION_TOKEN": "testing",
                                "AWS_DEFAULT_REGION": KMS_REGION}.items():
                os.environ[name] = value
            import moto
            from moto import mock_aws

            from providers.kskstore.kmsstore import KmsKskStore

            result["version"] = f"moto {moto.__version__}"
            with mock_aws(), KmsKskStore(region=KMS_REGION, message_type="RAW") as store:
                result.update(_measure(store, signatures_per_second, seconds))
        else:
            raise SystemExit(f"unknown store {kind!r}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(json.dumps(result))
    return 0


def _measure(store: Any, sps: Callable[..., float], seconds: float) -> dict[str, Any]:
    from bench.kskstore_bench import ZONE, typical_dnskey_rrset
    from providers.kskstore.base import sign_rrset_with

    t0 = time.perf_counter()
    ksk = store.generate()
    generate_s = time.perf_counter() - t0
    # the first signature with a fresh signer (what one controller run per zone pays)
    from datetime import UTC, datetime, timedelta

    t0 = time.perf_counter()
    signer = store.signer(ksk.key_id)
    rrset = typical_dnskey_rrset(signer.stored.dnskey.text)
    now = datetime.now(UTC)
    sign_rrset_with(rrset, signer, ZONE, now - timedelta(hours=1), now + timedelta(days=14))
    first_s = time.perf_counter() - t0
    rate = sps(store, ksk.key_id, seconds)
    return {"generate_s": generate_s, "first_signature_s": first_s, "signatures_per_s": rate,
            "seconds": seconds}


# =========================================================================== measuring


def proc_cpu(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def box_busy() -> float:
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / CLK_TCK


@dataclass
class Meter:
    """CPU of the lab's processes, the whole box, and this process (self and children)."""

    lab: dict[str, float] = field(default_factory=dict)
    box: float = 0.0
    self_cpu: float = 0.0
    children_cpu: float = 0.0

    @classmethod
    def snapshot(cls, lab: Any) -> Meter:
        me = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = {p.name: c for p in lab.procs if (c := proc_cpu(p.pid)) is not None}
        return cls(cpu, box_busy(), me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime)

    def since(self, before: Meter) -> Meter:
        return Meter({n: self.lab[n] - before.lab[n] for n in before.lab if n in self.lab},
                     self.box - before.box, self.self_cpu - before.self_cpu,
                     self.children_cpu - before.children_cpu)

    @property
    def knotd(self) -> float:
        return sum(v for k, v in self.lab.items() if re.fullmatch(r"k\d+", k))


@dataclass
class Run:
    label: str
    argv: list[str]
    wall: float
    rc: int
    py_cpu: float  # the controller's own user+sys
    tools_cpu: float  # its reaped children (keymgr, knotc, sh wrapper)
    maxrss_mb: float
    meter: Meter
    dns: dict[str, int]
    synced: int
    in_sync: int
    stderr_tail: str
    commands: dict[str, int] = field(default_factory=dict)  # wrapper log: kind -> count
    history: dict[str, Any] = field(default_factory=dict)
    load: float = 0.0  # 1-minute load average at the start
    provider_calls: dict[str, int] = field(default_factory=dict)  # ProviderCall events
    provider_call_s: dict[str, float] = field(default_factory=dict)  # their seconds, summed
    errors: list[str] = field(default_factory=list)  # its "error:" lines (and details)

    @property
    def other_cpu(self) -> float:
        """Box CPU not used by the controller, its children or the lab: other jobs."""
        return self.meter.box - self.py_cpu - self.tools_cpu - sum(self.meter.lab.values())


def command_kind(words: Sequence[str]) -> str:
    """``keymgr generate-ksr``, ``knotc zone-keys-load``, ... from an argv or a logged
    command (options, ``-c CONF``, ``-t N`` and ``--`` skipped). knotc: the first word is
    the verb; keymgr: the second (after the zone)."""
    tool = Path(words[0]).name
    rest: list[str] = []
    skip = False
    for w in words[1:]:
        if skip:
            skip = False
        elif w in ("-c", "-t"):
            skip = True
        elif w == "--" or (w.startswith("-") and not rest):
            continue
        else:
            rest.append(w)
    if tool == "keymgr":
        verb = rest[1] if len(rest) > 1 else (rest[0] if rest else "?")
    else:
        verb = rest[0] if rest else "?"
    return f"{tool} {verb}"


def run_cli(label: str, lab: Any, config: Path, args: Sequence[str], workdir: Path, *,
            profile: Path | None = None,
            command_log: Path | None = None) -> Run:
    """Run the controller CLI as a child process; wall time, rusage, counts."""
    out_json = workdir / f"{label}.usage.json"
    out_path, err_path = workdir / f"{label}.out", workdir / f"{label}.err"
    env = dict(os.environ)
    env["BENCH_PARENT"] = f"{lab.parent.address}:{lab.parent.dns_port}"
    if profile is not None:
        env["BENCH_PROFILE"] = str(profile)
    argv = [sys.executable, str(Path(__file__).resolve()), "_child", str(out_json),
            "--config", str(config), *args]
    load = os.getloadavg()[0]
    before = Meter.snapshot(lab)
    with out_path.open("wb") as out, err_path.open("wb") as err:
        t0 = time.perf_counter()
        child = subprocess.Popen(argv, stdout=out, stderr=err, env=env, cwd=workdir)
        try:
            _, status, _usage = os.wait4(child.pid, 0)
        except BaseException:
            child.terminate()
            try:
                child.wait(5)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            raise
        wall = time.perf_counter() - t0
    rc = os.waitstatus_to_exitcode(status)
    meter = Meter.snapshot(lab).since(before)
    usage = json.loads(out_json.read_text()) if out_json.exists() else {}
    stdout = out_path.read_text(errors="replace")
    stderr = err_path.read_text(errors="replace")
    commands: collections.Counter[str] = collections.Counter()
    if command_log is not None and command_log.exists():
        for line in command_log.read_text().splitlines():
            if line.strip():
                commands[command_kind(line.split())] += 1
    run = Run(
        label=label, argv=[*args], wall=wall, rc=rc,
        py_cpu=usage.get("self_user", 0.0) + usage.get("self_sys", 0.0),
        tools_cpu=usage.get("children_user", 0.0) + usage.get("children_sys", 0.0),
        maxrss_mb=usage.get("self_maxrss_kb", 0) / 1024, meter=meter,
        dns=usage.get("counts", {}),
        synced=sum(1 for ln in stdout.splitlines() if ln.endswith(": synced")),
        in_sync=sum(1 for ln in stdout.splitlines() if ln.endswith("in sync; nothing to change")),
        stderr_tail="\n".join(stderr.splitlines()[-6:]),
        errors=[ln for ln in stderr.splitlines() if ln.startswith(("error:", "  - "))],
        commands=dict(sorted(commands.items())), load=load,
        provider_calls=usage.get("provider_calls", {}),
        provider_call_s=usage.get("provider_call_s", {}),
    )
    log(f"{label}: {wall:.2f} s, rc {rc}, synced {run.synced}, in sync {run.in_sync}, "
        f"CPU py {run.py_cpu:.2f} + tools {run.tools_cpu:.2f} + knotd {meter.knotd:.2f} s, "
        f"other jobs {run.other_cpu:.2f} s, RSS {run.maxrss_mb:.0f} MB, load {load:.1f}")
    if rc != 0:
        log(f"  {label} FAILED; stderr tail:\n{run.stderr_tail}")
    code = os.environ.get("PYTHONPATH", "").split(os.pathsep)[0]
    if usage.get("code") and code and not usage["code"].startswith(code):
        raise RuntimeError(f"{label}: the controller imported {usage['code']}, not the "
                           f"snapshot in {code}")
    return run


def sync_history(config: Path, zones: Sequence[str]) -> dict[str, Any]:
    """Per-zone phase times of each zone's last sync process, from the state history."""
    from core.config import load_config
    from state.store import StateStore

    store = StateStore.open(load_config(config).state.url)
    try:
        entries = store.history()
    finally:
        store.close()
    # each zone's last sync process: its persisted states in order (a wait that stays in
    # its state is not a new one), from the process start to ``done``
    by_zone: dict[str, list[Any]] = {}
    for e in entries:
        if e.process_id is None or e.kind != "sync":
            continue
        if e.from_state is None:
            by_zone[e.zone] = [e]
        elif e.zone in by_zone and e.to_state != by_zone[e.zone][-1].to_state:
            by_zone[e.zone].append(e)
    phases: dict[str, list[float]] = collections.defaultdict(list)
    totals, first, last = [], None, None
    for zone in zones:
        seq = by_zone.get(zone, [])
        if len(seq) < 2 or seq[-1].to_state != "done":
            continue
        for a, b in itertools.pairwise(seq):
            phases[f"{a.to_state} -> {b.to_state}"].append((b.at - a.at).total_seconds())
        totals.append((seq[-1].at - seq[0].at).total_seconds())
        p, d = seq[0].at.timestamp(), seq[-1].at.timestamp()
        first = p if first is None else min(first, p)
        last = d if last is None else max(last, d)
    return {"zones_done": len(totals), "zone_s": stats(totals),
            "phases_s": {k: stats(v) for k, v in phases.items()},
            "first_planned": first, "last_done": last}


def stats(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {}
    s = sorted(values)
    return {"mean": statistics.fmean(s), "p50": s[len(s) // 2],
            "p95": s[min(len(s) - 1, int(len(s) * 0.95))], "max": s[-1], "sum": sum(s),
            "n": len(s)}


# =========================================================================== configs


def config_copy(lab: Any, name: str, policy: tuple[str, str], *,
                prefix: Sequence[str] | None = None, zones: int | None = None) -> Path:
    """The lab's config with every zone's signature validity/refresh replaced, optionally a
    ``command_prefix`` for every provider and only the first ``zones`` zones (same DB)."""
    text = lab.config_path.read_text()
    n = len(lab.zones)
    for key, old, new in (("signature_validity", "60s", policy[0]),
                          ("signature_refresh", "30s", policy[1])):
        line = f'{key} = "{old}"'
        if text.count(line) != n:
            raise RuntimeError(f"lab config: expected {n} lines {line!r}")
        text = text.replace(line, f'{key} = "{new}"')
    if prefix is not None:
        quoted = ", ".join(json.dumps(p) for p in prefix)
        text = text.replace('type = "knot"\n', f'type = "knot"\ncommand_prefix = [{quoted}]\n')
    if zones is not None:
        head, *chunks = text.split("[[zones]]\n")
        text = head + "".join("[[zones]]\n" + c for c in chunks[:zones])
    path: Path = lab.directory / name
    path.write_text(text)
    path.chmod(0o600)
    return path


def command_wrapper(workdir: Path, label: str) -> tuple[list[str], Path]:
    """A ``command_prefix`` logging each invocation's argv to a file, then exec'ing it."""
    logfile = workdir / f"{label}.cmds"
    script = workdir / f"wrap-{label}.sh"
    script.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{logfile}'\nexec \"$@\"\n")
    script.chmod(0o755)
    return [str(script)], logfile


# =========================================================================== the floor


@dataclass
class FloorResult:
    label: str
    wall: float
    commands: dict[str, int]
    command_ms: dict[str, list[float]]
    dns: dict[str, int]
    meter: Meter
    sign_s: float = 0.0  # time inside the 6N signing calls (part of the wall)
    signatures: int = 0
    repolls: int = 0
    problems: list[str] = field(default_factory=list)
    load: float = 0.0  # 1-minute load average at the start

    @property
    def valid(self) -> bool:
        return not self.problems

    @property
    def other_cpu(self) -> float:
        """Box CPU not used by this process, its children or the lab: other jobs."""
        m = self.meter
        return m.box - m.self_cpu - m.children_cpu - sum(m.lab.values())


class Floor:
    """The controller's Model 1 re-sign work, done directly (see the module docstring)."""

    def __init__(self, lab: Any, config: Path, mix: tuple[tuple[str, ...], tuple[str, ...]],
                 zone_limit: int, timeout: float, reads: dict[str, int]) -> None:
        from core.config import load_config
        from providers.kskstore import make_store

        self.lab = lab
        self.cfg = load_config(config)
        self.zones = [z.name for z in self.cfg.zones]
        self.zone_cfg = {z.name: z for z in self.cfg.zones}
        self.apex_types, self.parent_types = mix
        self.zone_limit = zone_limit
        self.knotc_t = str(max(1, int(-(-timeout // 1))))
        self.knots = {k.name: (str(k.conf_path), k.address, k.dns_port) for k in lab.providers}
        self.parent = (lab.parent.address, lab.parent.dns_port)
        self.parent_label = f"{lab.parent.address}:{lab.parent.dns_port}"
        # The owner's signers, opened before any timer (a long-running signer would keep
        # them open; the controller opens the store once per zone and run).
        self.stores: list[Any] = []
        self.signers: dict[str, Any] = {}
        for zone in self.zones:
            owner_ksk = self.zone_cfg[zone].owner_ksk
            assert owner_ksk is not None  # a Model 1 zone
            store = make_store(owner_ksk)
            self.stores.append(store)
            key_id, _ = lab.owner_ksk(zone)
            self.signers[zone] = store.signer(key_id)
        self.children: set[asyncio.subprocess.Process] = set()
        self.skrs: dict[str, str] = {}
        # The matched floor's extra reads: how many of each read-only command the
        # controller ran per zone and provider in its first re-sign (ProviderCall events).
        self.reads = {k: v for k, v in reads.items() if v > 0}
        self.key_ids: dict[tuple[str, str], list[str]] = {}
        self._reset()

    def use(self, config: Path) -> None:
        """Sign with the policies of ``config`` (same zones) from now on."""
        from core.config import load_config

        self.zone_cfg = {z.name: z for z in load_config(config).zones}

    def close(self) -> None:
        for store in self.stores:
            with contextlib.suppress(Exception):
                store.close()

    def _reset(self) -> None:
        self.commands: collections.Counter[str] = collections.Counter()
        self.command_ms: dict[str, list[float]] = collections.defaultdict(list)
        self.dns: collections.Counter[str] = collections.Counter()
        self.sign_s = 0.0
        self.signatures = 0
        self.repolls = 0
        self.problems: list[str] = []

    # -- primitives

    async def cmd(self, provider: str, tool: str, *args: str, options: Sequence[str] = (),
                  error_lines_fail: bool = False) -> str:
        conf = self.knots[provider][0]
        extra = ["-t", self.knotc_t] if tool == "knotc" else []
        argv = [tool, "-c", conf, *extra, *options, "--", *args]
        kind = command_kind(argv)
        self.commands[kind] += 1
        t0 = time.perf_counter()
        process = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, start_new_session=True)
        self.children.add(process)
        try:
            out, err = await process.communicate()
        finally:
            self.children.discard(process)
        self.command_ms[kind].append((time.perf_counter() - t0) * 1000)
        text = err.decode(errors="replace") + "\n" + out.decode(errors="replace")
        bad = error_lines_fail and any(ln.startswith("error:") for ln in text.splitlines())
        if process.returncode != 0 or bad:
            raise RuntimeError(f"{provider}: {' '.join(argv)}: exit {process.returncode}: "
                               f"{text.strip()[-300:]}")
        return out.decode(errors="replace")

    async def query(self, where: str, port: int, qname: Any, rdtype: str) -> Any:
        import dns.asyncquery
        import dns.flags
        import dns.message
        import dns.rdatatype
        from _kinds import dns_kind

        from providers import nameservers

        request = dns.message.make_query(qname, dns.rdatatype.from_text(rdtype),
                                         want_dnssec=True, payload=nameservers.PAYLOAD)
        request.flags &= ~dns.flags.RD
        self.dns[dns_kind("udp", request, where, port, self.parent_label)] += 1
        response = await dns.asyncquery.udp(request, where, port=port, timeout=DNS_TIMEOUT)
        if response.flags & dns.flags.TC:
            self.dns[dns_kind("tcp", request, where, port, self.parent_label)] += 1
            response = await dns.asyncquery.tcp(request, where, port=port, timeout=DNS_TIMEOUT)
        return response

    async def server_round(self, qname: Any, types: Sequence[str]) -> list[Any]:
        return list(await asyncio.gather(*(
            self.query(address, port, qname, t)
            for _, address, port in self.knots.values() for t in types)))

    async def parent_round(self, qname: Any, types: Sequence[str]) -> list[Any]:
        return list(await asyncio.gather(*(
            self.query(self.parent[0], self.parent[1], qname, t) for t in types)))

    async def observation(self, qname: Any) -> list[Any]:
        servers: list[Any]
        servers, _ = await asyncio.gather(self.server_round(qname, self.apex_types),
                                          self.parent_round(qname, self.parent_types))
        return servers

    # -- the controller's extra reads (matched floor only)

    async def read(self, provider: str, zone: str, kind: str) -> None:
        """One read-only command of ``READS``; ``keymgr dnskey`` reads a key ``list`` found."""
        if kind == "keymgr list":
            listing = await self.cmd(provider, "keymgr", zone, "list", options=["-j"])
            ids = [str(k["id"]) for k in json.loads(listing or "[]")]
            self.key_ids[(provider, zone)] = ids
        elif kind == "keymgr dnskey":
            ids = self.key_ids.get((provider, zone)) or ["0"]
            await self.cmd(provider, "keymgr", zone, "dnskey", f"id={ids[0]}")
        elif kind == "knotc zone-read":
            await self.cmd(provider, "knotc", "zone-read", zone, "@")
        else:
            await self.cmd(provider, "knotc", "zone-status", zone)

    async def extra_reads(self, provider: str, zone: str) -> None:
        """The controller's read-only commands for one zone at one provider, as many of
        each as it ran (``self.reads``), in concurrent rounds; a round's ``list`` first
        (``dnskey`` needs a key id)."""
        for r in range(max(self.reads.values(), default=0)):
            kinds = [k for k, n in self.reads.items() if r < n]
            if "keymgr list" in kinds:
                await self.read(provider, zone, "keymgr list")
            await asyncio.gather(*(self.read(provider, zone, k) for k in kinds
                                   if k != "keymgr list"))

    # -- one zone

    async def zone(self, zone: str, mode: str) -> None:
        """``floor`` | ``matched`` | ``keymgr`` (the 4 commands, re-importing the last SKR
        made) | ``dns`` (the floor's DNS rounds) | ``observation`` (one observation)."""
        import dns.name

        from core.keys import Key
        from orchestrator.decide.owner_signing import Model1Target, build_keyset
        from providers.knot.keyset import skr_text
        from providers.knot.skr import parse_ksr

        qname = dns.name.from_text(zone)
        providers = list(self.knots)
        matched = mode == "matched"
        if mode == "observation":
            self.check_final(qname, zone, await self.observation(qname))
            return
        if mode != "keymgr":  # observe first (and, matched: the controller's reads)
            await asyncio.gather(self.observation(qname),
                                 *(self.extra_reads(p, zone) for p in providers if matched))
        if mode == "dns":
            await self.after_import(qname, zone, None)
            return
        ksrs = await asyncio.gather(*(self.cmd(p, "keymgr", zone, "generate-ksr", "+0", "+0")
                                      for p in providers))
        expected: int | None = None
        if mode in ("floor", "matched"):
            zsks: dict[str, frozenset[Key]] = {}
            ttl = 0
            for p, ksr_text in zip(providers, ksrs, strict=True):
                ksr = parse_ksr(ksr_text, zone=zone)
                zsks[p] = frozenset(k for b in ksr for k in b.keys)
                ttl = max([ttl, *(b.ttl or 0 for b in ksr)])
            signer = self.signers[zone]
            owner = frozenset({signer.stored.dnskey})
            target = Model1Target(zone=zone, owner=owner, signing=owner, cds=owner, zsks=zsks)
            policy = self.zone_cfg[zone].policy

            def sign_one(rrset: Any, inception: Any, expiration: Any) -> Any:
                from providers.kskstore import sign_rrset_with

                t0 = time.perf_counter()
                try:
                    return sign_rrset_with(rrset, signer, zone, inception, expiration)
                finally:
                    self.sign_s += time.perf_counter() - t0
                    self.signatures += 1

            from datetime import UTC, datetime

            keyset = build_keyset(target, sign_one, datetime.now(UTC), policy, ttl or 3600)
            text = skr_text(keyset)
            self.skrs[zone] = text
            validity = int(policy.signature_validity.total_seconds())
            expected = keyset.blocks[0].valid_from + validity
        else:
            text = self.skrs[zone]

        async def deliver(p: str) -> None:
            fd, path = tempfile.mkstemp(prefix="multisigner-", suffix=".skr")
            try:
                with os.fdopen(fd, "w") as f:
                    f.write(text)
                os.chmod(path, 0o644)
                await self.cmd(p, "keymgr", zone, "validate-skr", path, error_lines_fail=True)
                await self.cmd(p, "keymgr", zone, "import-skr", path, error_lines_fail=True)
            finally:
                with contextlib.suppress(OSError):
                    os.unlink(path)
            await self.cmd(p, "knotc", "zone-keys-load", zone, options=["-b"])

        await asyncio.gather(*(deliver(p) for p in providers))
        if mode != "keymgr":
            await self.after_import(qname, zone, expected)

    async def after_import(self, qname: Any, zone: str, expected: int | None) -> None:
        """Served round (re-polled while stale), parent round, final observation."""
        for _ in range(200):
            answers = await self.server_round(qname, ("DNSKEY", "CDS"))
            stale = [] if expected is None else self.stale(qname, answers, expected)
            if not stale:
                break
            self.repolls += 1
            await asyncio.sleep(0.05)
        else:
            self.problems.append(f"{zone}: not served fresh: {stale[:2]}")
        await self.parent_round(qname, ("DS",))
        final = await self.observation(qname)
        self.check_final(qname, zone, final)

    def stale(self, qname: Any, answers: Sequence[Any], expected: int) -> list[str]:
        import dns.rdataclass
        import dns.rdatatype

        out = []
        for r in answers:
            if r.question[0].rdtype != dns.rdatatype.DNSKEY:
                continue
            try:
                sigs = r.find_rrset(r.answer, qname, dns.rdataclass.IN, dns.rdatatype.RRSIG,
                                    dns.rdatatype.DNSKEY)
                newest = max(int(s.expiration) for s in sigs)
            except (KeyError, ValueError):
                newest = 0
            if newest < expected - 1:
                out.append(f"expiry {newest} < {expected}")
        return out

    def check_final(self, qname: Any, zone: str, final: Sequence[Any]) -> None:
        import dns.rdataclass
        import dns.rdatatype

        want = {dns.rdatatype.DNSKEY: 1 + len(self.knots), dns.rdatatype.CDS: 1}
        for r in final:
            rdtype = r.question[0].rdtype
            if rdtype not in want:
                continue
            try:
                got = len(r.find_rrset(r.answer, qname, dns.rdataclass.IN, rdtype))
            except KeyError:
                got = 0
            if got != want[rdtype]:
                self.problems.append(f"{zone} {dns.rdatatype.to_text(rdtype)}: {got} records, "
                                     f"expected {want[rdtype]}")

    # -- runs

    async def _all(self, work: Callable[[str], Awaitable[None]]) -> float:
        gate = asyncio.Semaphore(self.zone_limit)

        async def one(zone: str) -> None:
            async with gate:
                try:
                    await work(zone)
                except Exception as exc:  # a zone fails, the others go on (as in the CLI)
                    self.problems.append(f"{zone}: {exc}")

        t0 = time.perf_counter()
        try:
            await asyncio.gather(*(one(z) for z in self.zones))
        finally:
            for process in list(self.children):  # cancelled: leave no child behind
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)
                with contextlib.suppress(ProcessLookupError):
                    await process.wait()
        return time.perf_counter() - t0

    def run(self, label: str, mode: str, *, pidfd: bool = False) -> FloorResult:
        """One floor run; ``pidfd``: asyncio's PidfdChildWatcher (one pidfd per child in
        the loop) instead of 3.11's default ThreadedChildWatcher (one thread per child)."""
        import warnings

        self._reset()
        load = os.getloadavg()[0]
        before = Meter.snapshot(self.lab)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            if pidfd:
                asyncio.set_child_watcher(asyncio.PidfdChildWatcher())
            try:
                wall = asyncio.run(self._all(lambda z: self.zone(z, mode)))
            finally:
                if pidfd:
                    # back to the default, made on demand
                    asyncio.set_child_watcher(None)  # type: ignore[arg-type]
        meter = Meter.snapshot(self.lab).since(before)
        result = FloorResult(label, wall, dict(sorted(self.commands.items())),
                             dict(self.command_ms), dict(sorted(self.dns.items())), meter,
                             self.sign_s, self.signatures, self.repolls, list(self.problems),
                             load)
        log(f"{label}: {wall:.2f} s, {sum(self.commands.values())} invocations, "
            f"{sum(self.dns.values())} DNS queries, {self.signatures} signatures in "
            f"{self.sign_s:.2f} s, re-polls {self.repolls}, CPU self {meter.self_cpu:.2f} + "
            f"children {meter.children_cpu:.2f} + knotd {meter.knotd:.2f}, other jobs "
            f"{result.other_cpu:.2f}, load {load:.1f}"
            + (f" INVALID: {self.problems[:3]}" if self.problems else ""))
        return result

    def sign_only(self) -> FloorResult:
        """The 6N signatures alone (and the SKR text around them), sequential."""
        from datetime import UTC, datetime

        from core.keys import Key
        from orchestrator.decide.owner_signing import Model1Target, build_keyset
        from providers.knot.keyset import skr_text
        from providers.knot.skr import parse_skr
        from providers.kskstore import sign_rrset_with

        self._reset()
        targets = {}
        for zone in self.zones:  # the floor's targets, from the SKRs it made (untimed)
            keys = frozenset(Key.from_rdata(rd) for rd in parse_skr(self.skrs[zone])[0].dnskey)
            signer = self.signers[zone]
            owner = frozenset({signer.stored.dnskey})
            targets[zone] = Model1Target(zone=zone, owner=owner, signing=owner, cds=owner,
                                         zsks={"all": keys - owner})
        before = Meter.snapshot(self.lab)
        t0 = time.perf_counter()
        for zone in self.zones:
            signer = self.signers[zone]

            def sign_one(rrset: Any, inception: Any, expiration: Any, z: str = zone,
                         s: Any = signer) -> Any:
                t1 = time.perf_counter()
                try:
                    return sign_rrset_with(rrset, s, z, inception, expiration)
                finally:
                    self.sign_s += time.perf_counter() - t1
                    self.signatures += 1

            skr_text(build_keyset(targets[zone], sign_one, datetime.now(UTC),
                                  self.zone_cfg[zone].policy, 2))
        wall = time.perf_counter() - t0
        meter = Meter.snapshot(self.lab).since(before)
        log(f"sign only: {self.signatures} signatures in {self.sign_s:.3f} s "
            f"(with RRset building and SKR text {wall:.3f} s)")
        return FloorResult("signing only", wall, {}, {}, {}, meter, self.sign_s,
                           self.signatures, load=os.getloadavg()[0])


# =========================================================================== profile


PROFILE_CATEGORIES = (
    ("idle: epoll wait (subprocesses, DNS)", ("method 'poll' of 'select.epoll",
                                                "method 'select' of")),
    ("subprocess plumbing (fork/exec, pipes, watcher)", ("_posixsubprocess", "subprocess.py",
                                                         "unix_events.py",
                                                         "base_subprocess.py")),
    ("state DB (SQLAlchemy, sqlite3, state/)", ("sqlalchemy", "sqlmodel", "sqlite3",
                                                "/state/", "alembic")),
    ("dnspython", ("/dns/",)),
    ("crypto (signing, verifying, key loading)", ("cryptography", "kskstore", "_hashlib",
                                                  "openssl")),
    ("pydantic (config, models)", ("pydantic",)),
    ("thread start / lock waits (asyncio child watcher)", ("_thread.lock", "threading.py",
                                                            "start_new_thread")),
    ("imports (incl. module-level exec/compile)", ("<frozen importlib", "importlib",
                                                   "built-in method marshal",
                                                   "built-in method _imp",
                                                   "built-in method builtins.compile",
                                                   "built-in method builtins.exec",
                                                   "builtins.__build_class__")),
    ("asyncio machinery", ("/asyncio/",)),
    ("multisigner code (core/, orchestrator/, providers/)", ("/core/", "/orchestrator/",
                                                             "/providers/")),
)


def profile_breakdown(path: Path) -> dict[str, Any]:
    import pstats

    st = pstats.Stats(str(path))
    raw: dict[Any, Any] = st.stats  # type: ignore[attr-defined]
    by_cat: collections.Counter[str] = collections.Counter()
    total = 0.0
    for (filename, _line, name), (_cc, _nc, tt, _ct, _callers) in raw.items():
        key = f"{filename}:{name}" if filename != "~" else name
        total += tt
        for cat, needles in PROFILE_CATEGORIES:
            if any(n in key for n in needles):
                by_cat[cat] += tt
                break
        else:
            by_cat["other"] += tt
    # cumulative time of the product's own functions (any module of its packages), most
    # first: no list of names to go stale when the code moves
    product = tuple(f"/{p}/" for p in PACKAGES)
    funcs: dict[str, dict[str, float]] = {}
    for (filename, _line, name), (_cc, nc, tt, ct, _callers) in raw.items():
        if any(p in filename for p in product):
            parts = Path(filename).parts
            root = max(i for i, part in enumerate(parts) if f"/{part}/" in product)
            label = f"{'/'.join(parts[root:])}:{name}"
            cur = funcs.setdefault(label, {"calls": 0, "tottime": 0.0, "cumtime": 0.0})
            cur["calls"] += nc
            cur["tottime"] += tt
            cur["cumtime"] = max(cur["cumtime"], ct)
    top = sorted(raw.items(), key=lambda kv: kv[1][2], reverse=True)[:15]
    return {
        "total_tottime": total,
        "categories": dict(by_cat.most_common()),
        "functions": dict(sorted(funcs.items(), key=lambda kv: -kv[1]["cumtime"])),
        "top_tottime": [{"function": f"{Path(k[0]).name}:{k[1]}:{k[2]}", "calls": v[1],
                         "tottime": v[2], "cumtime": v[3]} for k, v in top],
    }


# =========================================================================== the bench


def git_tree() -> str:
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "-uno",
                                "--", *PACKAGES], capture_output=True, text=True,
                               check=True).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (f" + {len(dirty)} modified file(s)" if dirty else "")


def snapshot_code(kind: str, workdir: Path) -> tuple[Path, str]:
    """A frozen copy of the product packages in ``workdir/code`` (other sessions may
    commit or edit while the bench runs): ``head`` = ``git archive HEAD``, ``worktree`` =
    the files as they are now. Every child and this process import from it."""
    code = workdir / "code"
    code.mkdir()
    if kind == "head":
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", head, *PACKAGES],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(code)], input=archive, check=True)
        what = f"git archive of HEAD {head[:7]}"
    else:
        for package in PACKAGES:
            shutil.copytree(ROOT / package, code / package,
                            ignore=shutil.ignore_patterns("__pycache__"))
        what = f"working tree copied at {time.strftime('%H:%M:%S')} ({git_tree()})"
    return code, what


def bench_stores(seconds: float) -> list[dict[str, Any]]:
    results = []
    for kind in ("file", "pkcs11", "kms"):
        if kind == "pkcs11" and not (shutil.which("softhsm2-util")
                                     and os.path.exists(SOFTHSM_MODULE)):
            results.append({"store": kind, "error": "SoftHSM2 not installed"})
            continue
        env = dict(os.environ)
        env.pop("SOFTHSM2_CONF", None)
        done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "_store", kind,
                               str(seconds)], capture_output=True, text=True, env=env,
                              timeout=120 + seconds, check=False)
        if done.returncode != 0:
            results.append({"store": kind, "error": done.stderr.strip()[-400:]})
            log(f"store {kind} FAILED: {done.stderr.strip()[-400:]}")
            continue
        result = json.loads(done.stdout.strip().splitlines()[-1])
        results.append(result)
        log(f"store {kind}: {result['signatures_per_s']:.0f} signatures/s")
    return results


def observation_mix(run: Run | None, zones: int, servers: int,
                    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """One observation's query types, read from a no-op sync that found every zone in sync
    (one observation per zone); the product's own lists otherwise."""
    apex: list[str] = []
    parent: list[str] = []
    for key, count in (run.dns if run is not None else {}).items():
        parts = key.split()
        if parts[:2] != ["dns", "udp"]:
            continue
        per = zones * (servers if parts[3] == "provider" else 1)
        if count % per:
            apex, parent = [], []
            break
        (apex if parts[3] == "provider" else parent).extend([parts[2]] * (count // per))
    if apex and parent:
        return tuple(apex), tuple(parent)
    import dns.rdatatype

    from providers import nameservers

    types = tuple(dns.rdatatype.to_text(t) for t in nameservers.APEX_TYPES)
    log(f"observation query types not read from a no-op run; the product's: {types}, DS NS")
    return types, ("DS", "NS")


def bench(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from core.config import KnotProviderConfig
    from multisigner_lab.model1 import Model1Lab
    from orchestrator import cli

    zone_limit = cli.ZONE_CONCURRENCY
    knot_timeout = KnotProviderConfig.model_fields["timeout"].default.total_seconds()
    zones = [f"z{i:04d}.test." for i in range(args.zones)]
    result: dict[str, Any] = {
        "zones": args.zones, "providers": args.providers, "store": args.store,
        "cpus": os.cpu_count(), "zone_limit": zone_limit, "tree": git_tree(),
        "loadavg_start": os.getloadavg(), "runs": {}, "floors": {},
        "knot": subprocess.run(["knotc", "--version"], capture_output=True, text=True,
                               check=False).stdout.strip(),
    }
    if not args.no_stores:
        result["stores"] = bench_stores(args.sign_seconds)
    runs: dict[str, Run] = result["runs"]
    floors: dict[str, FloorResult] = result["floors"]

    t0 = time.perf_counter()
    lab = Model1Lab.start(workdir / "lab", providers=args.providers, zones=zones, ttl=2,
                          store=args.store, scanner=False, unbound=False)
    result["lab_start_s"] = time.perf_counter() - t0
    log(f"lab up in {result['lab_start_s']:.1f} s ({args.zones} zones x {args.providers} Knot, "
        f"{args.store} store)")
    floor: Floor | None = None
    try:
        def cli_run(label: str, config: Path, cmd: Sequence[str] = ("sync", "--all"),
                    **kw: Any) -> Run:
            run = run_cli(label, lab, config, cmd, workdir, **kw)
            runs[label] = run
            return run

        cli_run("initial", lab.config_path)
        policies = Policies()
        mix: tuple[tuple[str, ...], tuple[str, ...]] | None = None
        for i in range(1, args.repeat + 1):
            cfg = config_copy(lab, f"resign{i}.toml", policies.next())
            cli_run(f"resign#{i}", cfg)
            runs[f"resign#{i}"].history = sync_history(cfg, zones)
            cli_run(f"noop#{i}", cfg)
            if mix is None:
                quiet = runs[f"noop#{i}"]
                mix = observation_mix(quiet if quiet.in_sync == len(zones) else None,
                                      len(zones), args.providers)
                result["observation_mix"] = {"provider": mix[0], "parent": mix[1]}
                calls = runs[f"resign#{i}"].provider_calls
                reads = {k: round(calls.get(k, 0) / (len(zones) * args.providers))
                         for k in READS}
                result["matched_reads"] = reads
                floor = Floor(lab, cfg, mix, zone_limit, knot_timeout, reads)
            assert floor is not None
            floor.use(config_copy(lab, f"floor{i}.toml", policies.next()))
            floors[f"floor#{i}"] = floor.run(f"floor #{i} (4 commands + 6 sigs + DNS)", "floor")
            floor.use(config_copy(lab, f"matched{i}.toml", policies.next()))
            floors[f"matched#{i}"] = floor.run(f"matched floor #{i} (controller's commands)",
                                               "matched")
        assert floor is not None
        floor.use(config_copy(lab, "floor-pidfd.toml", policies.next()))
        floors["pidfd"] = floor.run("floor with asyncio PidfdChildWatcher", "floor", pidfd=True)
        floor.use(config_copy(lab, "matched-pidfd.toml", policies.next()))
        floors["matched-pidfd"] = floor.run("matched floor with PidfdChildWatcher", "matched",
                                            pidfd=True)
        floors["keymgr"] = floor.run("keymgr/knotc only (4 commands)", "keymgr")
        floors["dns"] = floor.run("DNS only (the floor's rounds)", "dns")
        floors["observation"] = floor.run("one observation (no-op floor)", "observation")
        floors["sign"] = floor.sign_only()

        prefix, cmds = command_wrapper(workdir, "resign-counted")
        policy = policies.next()
        counted = config_copy(lab, "counted.toml", policy, prefix=prefix)
        cli_run("resign-counted", counted, command_log=cmds)
        prefix, cmds = command_wrapper(workdir, "noop-counted")
        counted_noop = config_copy(lab, "counted-noop.toml", policy, prefix=prefix)
        cli_run("noop-counted", counted_noop, command_log=cmds)
        cli_run("noop-1zone", config_copy(lab, "one-zone.toml", policy, zones=1),
                ("sync", zones[0]))
        if not args.no_profile:
            prof = workdir / "resign.prof"
            cli_run("resign-profiled", config_copy(lab, "profiled.toml", policies.next()),
                    profile=prof)
            result["profile"] = profile_breakdown(prof)
            if args.profile_out:
                shutil.copy(prof, args.profile_out)
        # the last re-sign was the controller's: a floor re-import now, then the no-op
        # check that the controller accepts what the floor left
        floor.use(config_copy(lab, "floor-last.toml", policy := policies.next()))
        floors["floor-last"] = floor.run("floor, before the check below", "floor")
        floor_cfg = config_copy(lab, "floor-check.toml", policy)
        cli_run("noop-after-floor", floor_cfg)
    finally:
        if floor is not None:
            floor.close()
        lab.stop()
        log("lab stopped")
    result["loadavg_end"] = os.getloadavg()
    return result


# =========================================================================== report


def per_pz(count: float, zones: int, providers: int) -> str:
    return f"{count / (zones * providers):.2f}"


def report(result: dict[str, Any]) -> str:
    n, p = result["zones"], result["providers"]
    runs: dict[str, Run] = result["runs"]
    floors: dict[str, FloorResult] = result["floors"]
    lines = [
        f"multisigner Model 1 bench: {n} zones x {p} Knot providers, owner KSK store "
        f"{result['store']}, {result['cpus']} CPUs, {result['zone_limit']} zones in flight; "
        f"{result['knot']}; code: {result.get('code', '?')}",
        "load average (1/5/15 min) at start " + "/".join(f"{x:.1f}" for x in
                                                        result["loadavg_start"])
        + ", at end " + "/".join(f"{x:.1f}" for x in result.get("loadavg_end", ())),
        "",
    ]
    sigs_needed = 6 * n
    if result.get("stores"):
        lines += ["1. Owner-KSK signing throughput (3-key DNSKEY RRset, signer reused, every "
                  "signature verified)", ""]
        head = (f"  {'store':<40} {'sig/s':>8} {'ms/sig':>7} {'1st sig ms':>10} "
                f"{'generate ms':>11} {f'{sigs_needed} sigs s':>11}")
        lines += [head, "  " + "-" * (len(head) - 2)]
        names = {"file": "file (ECDSAP256SHA256, PEM)",
                 "pkcs11": "pkcs11 (SoftHSM2, token in a temp dir)",
                 "kms": "kms (moto in-process, RAW) *"}
        for s in result["stores"]:
            if "error" in s:
                lines.append(f"  {names[s['store']]:<40} error: {s['error'][:80]}")
                continue
            rate = s["signatures_per_s"]
            lines.append(f"  {names[s['store']]:<40} {rate:8.0f} {1000 / rate:7.3f} "
                         f"{s['first_signature_s'] * 1000:10.1f} {s['generate_s'] * 1000:11.1f} "
                         f"{sigs_needed / rate:11.3f}")
        lines += [f"  {sigs_needed} sigs = one re-sign cycle of {n} zones (2 SKR blocks x "
                  "DNSKEY, CDNSKEY, CDS per zone).",
                  "  * moto: botocore + moto in this process; no network, TLS or HSM. NOT "
                  "real KMS latency (a real Sign call is a network round trip).", ""]

    resigns = [r for k, r in runs.items() if k.startswith("resign#")]
    noops = [r for k, r in runs.items() if k.startswith("noop#")]
    floor_runs = [f for k, f in floors.items() if k.startswith(("floor#", "floor-last"))]
    matched_runs = [f for k, f in floors.items() if k.startswith("matched#")]
    floor = floor_runs[0] if floor_runs else None
    matched = matched_runs[0] if matched_runs else None
    w_floor = statistics.median(f.wall for f in floor_runs) if floor_runs else None
    w_matched = statistics.median(f.wall for f in matched_runs) if matched_runs else None
    w_resign = statistics.median(r.wall for r in resigns) if resigns else None
    observation = floors.get("observation")
    lines += ["2. The controller (each run a child process). CPU s: py = its own Python, tools "
              "= its keymgr/knotc children, knotd = the Knot servers, other = the rest of the "
              "box (other jobs: contention); load = 1-min load average at the start", ""]
    head = (f"  {'run':<44} {'wall s':>7} {'/zone ms':>8} {'CPU py':>7} {'tools':>6} "
            f"{'knotd':>6} {'other':>6} {'load':>5} {'RSS MB':>7} {'floor s':>8} {'wall/fl':>7}")
    lines += [head, "  " + "-" * (len(head) - 2)]

    def row(name: str, r: Run | None, fl: float | None = None, zones: int = n) -> None:
        if r is None:
            return
        f = f"{fl:8.2f}" if fl else f"{'-':>8}"
        ratio = f"{r.wall / fl:7.2f}" if fl else f"{'-':>7}"
        lines.append(f"  {name:<44} {r.wall:7.2f} {r.wall / zones * 1000:8.1f} {r.py_cpu:7.2f} "
                     f"{r.tools_cpu:6.2f} {r.meter.knotd:6.2f} {r.other_cpu:6.2f} {r.load:5.1f} "
                     f"{r.maxrss_mb:7.1f} {f} {ratio}" + ("  FAILED" if r.rc else ""))

    obs = observation.wall if observation else None
    row("sync --all: initial delivery", runs.get("initial"), w_floor)
    for r in resigns:
        row(f"sync --all: re-sign, every zone due ({r.label[-2:]})", r, w_floor)
    row("  same, counted (sh wrapper)", runs.get("resign-counted"), w_floor)
    row("  same, under cProfile (times inflated)", runs.get("resign-profiled"), w_floor)
    for r in noops:
        row(f"sync --all: idle no-op ({r.label[-2:]})", r, obs)
    row("  same, counted (sh wrapper)", runs.get("noop-counted"), obs)
    row("  same, after the floors (validates them)", runs.get("noop-after-floor"), obs)
    row("sync ZONE: 1 zone, no-op (fixed CLI cost)", runs.get("noop-1zone"), None, zones=1)
    lines.append(f"  floor s: the median floor ({len(floor_runs)} runs) for re-signs and the "
                 "initial delivery; one DNS observation per zone for the no-op.")
    for r in runs.values():
        if r.errors:
            lines.append(f"  {r.label}: " + " ".join(x.strip() for x in r.errors[:2])[:400])
        if r.label.startswith(("initial", "resign")) and r.synced != n:
            lines.append(f"  WARNING: {r.label}: {r.synced} of {n} zones synced")
        if r.label.startswith("noop") and r.label != "noop-1zone" and r.in_sync != n:
            lines.append(f"  WARNING: {r.label}: {r.in_sync} of {n} zones in sync")

    lines += ["", "3. The floor (bench process, same lab, same concurrency; CPU py = the bench "
              "process, tools = its keymgr/knotc children)", ""]
    head = (f"  {'floor':<44} {'wall s':>7} {'/zone ms':>8} {'CPU py':>7} {'tools':>6} "
            f"{'knotd':>6} {'other':>6} {'load':>5} {'calls':>6} {'DNS q':>6} {'sign s':>7}")
    lines += [head, "  " + "-" * (len(head) - 2)]
    for fl in floors.values():
        lines.append(f"  {fl.label[:44]:<44} {fl.wall:7.2f} {fl.wall / n * 1000:8.1f} "
                     f"{fl.meter.self_cpu:7.2f} {fl.meter.children_cpu:6.2f} "
                     f"{fl.meter.knotd:6.2f} {fl.other_cpu:6.2f} {fl.load:5.1f} "
                     f"{sum(fl.commands.values()):6d} {sum(fl.dns.values()):6d} "
                     f"{fl.sign_s:7.3f}" + ("  INVALID" if not fl.valid else "")
                     + (f"  re-polls {fl.repolls}" if fl.repolls else ""))
    for fl in floors.values():
        if not fl.valid:
            lines.append(f"  {fl.label} INVALID ({len(fl.problems)}): "
                         f"{'; '.join(fl.problems[:2])[:400]}")

    if w_resign and w_floor and w_matched:
        fixed = runs["noop-1zone"].wall if "noop-1zone" in runs else 0.0
        lines += ["", "4. Where the re-sign wall time goes (medians)", ""]
        parts = [
            ("floor: 4 commands/provider + 6 signatures + DNS", w_floor),
            ("+ the controller's extra keymgr/knotc calls (matched - floor)",
             w_matched - w_floor),
            ("+ one CLI run's fixed cost (1-zone no-op sync)", fixed),
            ("+ the rest: Python per zone (DB, parsing, store, polls)",
             w_resign - w_matched - fixed),
        ]
        for name, value in parts:
            lines.append(f"  {name:<64} {value:7.2f} s  {value / w_resign * 100:5.1f} %")
        lines.append(f"  {'= sync --all re-sign wall':<64} {w_resign:7.2f} s")
        lines.append(f"  wall / floor = {w_resign / w_floor:.2f}; wall / matched floor = "
                     f"{w_resign / w_matched:.2f}")
        lines += ["", f"  CPU s (medians)        {'py':>7} {'tools':>7} {'knotd':>7} "
                  f"{'total':>7} {'total/CPUs':>10} {'wall':>7}"]
        cpus = result["cpus"] or 1

        def cpu_row(name: str, py: list[float], tools: list[float], knotd: list[float],
                    wall: list[float]) -> None:
            m = [statistics.median(x) for x in (py, tools, knotd, wall)]
            total = m[0] + m[1] + m[2]
            lines.append(f"  {name:<22} {m[0]:7.2f} {m[1]:7.2f} {m[2]:7.2f} {total:7.2f} "
                         f"{total / cpus:10.2f} {m[3]:7.2f}")

        cpu_row("controller re-sign", [r.py_cpu for r in resigns],
                [r.tools_cpu for r in resigns], [r.meter.knotd for r in resigns],
                [r.wall for r in resigns])
        for name, group in (("matched floor", matched_runs), ("floor", floor_runs)):
            cpu_row(name, [f.meter.self_cpu for f in group],
                    [f.meter.children_cpu for f in group], [f.meter.knotd for f in group],
                    [f.wall for f in group])
        lines.append("  (total/CPUs: the wall time if the run had every core to itself and "
                     "used them all)")
        pid, mpid = floors.get("pidfd"), floors.get("matched-pidfd")
        if pid and mpid:
            lines += ["", f"  asyncio child watcher: floor {w_floor:.2f} s with 3.11's default "
                      f"ThreadedChildWatcher, {pid.wall:.2f} s with PidfdChildWatcher; matched "
                      f"floor {w_matched:.2f} s vs {mpid.wall:.2f} s (CPU py "
                      f"{statistics.median(f.meter.self_cpu for f in matched_runs):.2f} vs "
                      f"{mpid.meter.self_cpu:.2f})"]

    # invocations
    rc = runs.get("resign-counted")
    ev_resign, ev_noop = (resigns[0] if resigns else None), (noops[0] if noops else None)
    if ev_resign or floor:
        lines += ["", "5. keymgr/knotc invocations per provider per zone (controller: its "
                  "ProviderCall events in the first re-sign and no-op) and mean ms per call "
                  "(ctrl: the same events)", ""]
        cols = [("re-sign", ev_resign.provider_calls if ev_resign else {}),
                ("no-op", ev_noop.provider_calls if ev_noop else {}),
                ("floor", floor.commands if floor else {}),
                ("matched", matched.commands if matched else {})]
        kinds = sorted({k for _, c in cols for k in c})
        lines.append(f"  {'command':<24}" + "".join(f" {c:>8}" for c, _ in cols)
                     + f" {'ctrl ms':>8} {'floor ms':>8} {'match ms':>8}")

        def pooled(runs_: Sequence[FloorResult], k: str) -> list[float]:
            return [x for f in runs_ for x in f.command_ms.get(k, [])]

        for k in kinds:
            calls = ev_resign.provider_calls.get(k, 0) if ev_resign else 0
            cms = [1000 * ev_resign.provider_call_s[k] / calls] if ev_resign and calls else []
            fms = pooled(floor_runs, k)
            mms = pooled(matched_runs, k)
            lines.append(f"  {k:<24}" + "".join(f" {per_pz(c.get(k, 0), n, p):>8}"
                                                 for _, c in cols)
                         + "".join(f" {statistics.fmean(x):8.1f}" if x else f" {'-':>8}"
                                   for x in (cms, fms, mms)))
        lines.append(f"  {'total':<24}" + "".join(
            f" {per_pz(sum(c.values()), n, p):>8}" for _, c in cols))
        if ev_resign and matched and ev_resign.provider_calls != matched.commands:
            lines.append("  NOTE: the matched floor's command set differs from the controller's"
                         " (the product changed?): compare the re-sign and matched columns")
        if result.get("matched_reads"):
            lines.append("  matched floor's reads per zone and provider (from the events): "
                         + ", ".join(f"{k} x{v}" for k, v in result["matched_reads"].items()))
        if rc:
            lines.append(f"  (cross-check, the counted re-sign: the command_prefix wrapper "
                         f"logged {sum(rc.commands.values())} invocations, the adapter's "
                         f"events {sum(rc.provider_calls.values())})")

    resign = resigns[0] if resigns else None
    if resign and floor:
        lines += ["", "6. DNS queries per zone, controller re-sign / floor", ""]
        keys = sorted(set(resign.dns) | set(floor.dns))
        for k in keys:
            lines.append(f"  {k:<28} {resign.dns.get(k, 0) / n:7.1f} / "
                         f"{floor.dns.get(k, 0) / n:7.1f}")
        lines.append(f"  {'total':<28} {sum(resign.dns.values()) / n:7.1f} / "
                     f"{sum(floor.dns.values()) / n:7.1f}")

    h = resign.history if resign else {}
    if h and resign is not None:
        lines += ["", f"7. Re-sign ({resign.label}): per-zone phase times from the history, "
                  f"s ({h['zones_done']} zones)", ""]
        lines.append(f"  {'':<40} {'mean':>7} {'p50':>7} {'p95':>7} {'max':>7}")
        for name, s in [("start -> done", h["zone_s"]), *h["phases_s"].items()]:
            if s:
                lines.append(f"  {name:<40} {s['mean']:7.3f} {s['p50']:7.3f} {s['p95']:7.3f} "
                             f"{s['max']:7.3f}")
        if h.get("zone_s"):
            slots = min(result["zone_limit"], n)
            inside = h["zone_s"]["sum"] / slots
            lines.append(f"  sum(start -> done) / {slots} slots = {inside:.2f} s of the "
                         f"{resign.wall:.2f} s wall; the rest is before a zone's process starts"
                         " (observation, Knot key reads, store open, decisions) and "
                         "start-up/exit")

    prof = result.get("profile")
    if prof:
        lines += ["", "8. cProfile of a re-sign run (main thread; tottime by category; "
                  f"total {prof['total_tottime']:.2f} s, inflated by profiling)", ""]
        for cat, t in prof["categories"].items():
            lines.append(f"  {cat:<48} {t:7.2f} s {t / prof['total_tottime'] * 100:5.1f} %")
        lines += ["", "  product functions, cumulative s (coroutines: time on the CPU while "
                  "resumed, not while suspended)"]
        for name, f in list(prof["functions"].items())[:24]:
            lines.append(f"  {name:<48} {f['calls']:>7} calls {f['cumtime']:8.2f} cum "
                         f"{f['tottime']:7.2f} own")
        lines += ["", "  top functions by own time"]
        for f in prof["top_tottime"][:12]:
            lines.append(f"  {f['function'][:70]:<70} {f['calls']:>8} {f['tottime']:7.2f}")
    return "\n".join(lines)


def to_json(result: dict[str, Any]) -> dict[str, Any]:
    out = dict(result)
    out["runs"] = {k: asdict(v) for k, v in result["runs"].items()}
    out["floors"] = {k: asdict(v) for k, v in result["floors"].items()}
    for f in out["floors"].values():
        f["command_ms"] = {k: statistics.fmean(v) for k, v in f["command_ms"].items() if v}
    return out


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        return child_main(sys.argv[2:])
    if len(sys.argv) > 1 and sys.argv[1] == "_store":
        return store_main(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zones", type=int, default=100)
    ap.add_argument("--providers", type=int, default=3)
    ap.add_argument("--store", choices=["file", "pkcs11"], default="file",
                    help="the lab's owner-KSK store (default file)")
    ap.add_argument("--repeat", type=int, default=2, choices=(1, 2, 3),
                    help="re-sign + no-op runs, and floors, each this many times (median)")
    ap.add_argument("--sign-seconds", type=float, default=3.0,
                    help="seconds of signing per store in part 1")
    ap.add_argument("--no-stores", action="store_true", help="skip part 1")
    ap.add_argument("--no-profile", action="store_true", help="skip the cProfile run")
    ap.add_argument("--profile-out", metavar="FILE", help="keep the cProfile stats")
    ap.add_argument("--json-out", metavar="FILE", help="also write all results as JSON")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--code", choices=["head", "worktree"], default="head",
                    help="measure a snapshot of git HEAD (default) or of the working tree")
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="msbench-m1-"))
    log(f"work directory {workdir}")
    try:
        code, what = snapshot_code(args.code, workdir)
        # children inherit it; PYTHONPATH comes before the editable install's finder
        os.environ["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(code), os.environ.get("PYTHONPATH")]))
        sys.path.insert(0, str(code))
        import orchestrator

        if not Path(orchestrator.__file__).resolve().is_relative_to(code.resolve()):
            raise SystemExit(f"the snapshot is not used: orchestrator from {orchestrator.__file__}")
        log(f"code: {what}")
        result = bench(args, workdir)
        result["code"] = what
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
