#!/usr/bin/env python
"""What does the daemon (``multisigner run``) cost with many idle zones, and how late does
it drive a rollover?

1. Starts a lab with ``--zones`` (default 1,000) child zones at ``--providers`` (default 2)
   providers (no resolver; the lab's parent agent scans every ``--scanner-interval`` s), and
   writes a copy of its config with ``propagation_delay = safety_margin = "0s"``. Four
   zones (the first two and the last two in the config) are synced for part 3; the others
   are left as the lab made them. Every zone is *idle*: no process runs and no key is due
   (a key's age counts from when the controller first saw it, so no key can reach
   ``zsk_lifetime`` (90 d) here).
2. Runs the daemon as a subprocess::

       multisigner --config C run --poll-interval 10s

   through a thin wrapper (``--child-daemon``, below) that records, for every scan pass
   (the daemon's ``DaemonPassStarted``/``DaemonPass`` events, docs/hooks.md), its wall
   time, the CPU time of the process (``time.process_time``, all threads), the provider
   API requests, new TCP connections and SQL statements it
   made. From outside it samples ``/proc/PID/stat`` (utime+stime) and ``/proc/PID/status``
   (VmRSS, VmHWM) every 0.2 s, and the CPU of the lab's provider PowerDNS servers (what
   the passes cost the providers, net of the parent agent's background load). It reports CPU
   per pass, per zone, and per hour of polling at a realistic interval
   (``--real-interval``, default 60 s: passes/h = 3600 / (pass wall + interval), since the
   daemon sleeps the interval *after* each pass). A daemon with a 1-zone config is the
   baseline (RSS and cost that do not depend on N).
3. Starts ZSK rollovers (``rollover Z --key zsk --signer p0``, no ``--wait``: it runs to
   the first hold and returns, as an operator would leave it to the daemon) on the first
   and the last zone while a daemon runs, lets the daemon finish them, and analyses their
   history exactly as bench_rollover.py does (RFC 7583 minimum vs. wall time, lateness
   after each deadline). If the daemon stops ticking although a process is due, that is
   reported. (Until 6691a50 it did: a one-shot APScheduler job added from inside the
   running job for a time already due was skipped and dropped. The product now awaits
   its next wake in a loop; the bench's what-if patch for it is gone.)

``--extra-path P`` repeats part 2 with P prepended to the daemon's PYTHONPATH (an A/B test,
e.g. with a wheel of a missing dependency); ``--ab-once N`` adds N interleaved
``run --once`` passes per side. Every lab and subprocess it starts is stopped before it
exits. Run with the project's venv::

    .venv/bin/python bench/bench_daemon.py --zones 1000 --duration 60 --json /tmp/d.json
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from bench_rollover import analyse, code_version, f2, f3, table  # noqa: E402

PYTHON = sys.executable
MULTISIGNER = str(Path(sys.executable).with_name("multisigner"))
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


# =========================================================================== child mode
# ``bench_daemon.py --child-daemon -- ARGS``: the multisigner CLI with ARGS, each daemon
# pass recorded as JSON lines in $BENCH_TICKS. The passes come from the product's event
# bus (docs/hooks.md: DaemonPassStarted / DaemonPass); the I/O is counted at the libraries
# (httpx requests, anyio TCP connects, SQLAlchemy's documented cursor event).


def _child_daemon(argv: list[str]) -> int:
    import atexit
    from collections import Counter

    import anyio
    import httpx
    import sqlalchemy
    from sqlalchemy import event

    from core import events

    counts: Counter[str] = Counter()
    send = httpx.AsyncClient.send
    connect = anyio.connect_tcp

    async def counted_send(self: Any, request: Any, **kw: Any) -> Any:
        counts["http"] += 1
        what = "cryptokeys" if "/cryptokeys" in request.url.path else "zone"
        counts[f"http {request.method} {what}"] += 1
        return await send(self, request, **kw)

    async def counted_connect(*a: Any, **kw: Any) -> Any:
        counts["tcp_connect"] += 1
        return await connect(*a, **kw)

    httpx.AsyncClient.send = counted_send  # type: ignore[method-assign]
    anyio.connect_tcp = counted_connect  # type: ignore[assignment]

    @event.listens_for(sqlalchemy.engine.Engine, "before_cursor_execute")
    def _sql(*_a: Any, **_k: Any) -> None:
        counts["sql"] += 1

    out = open(os.environ["BENCH_TICKS"], "a", buffering=1)  # noqa: SIM115 (lives until exit)
    before: dict[str, int] = {}

    def on_event(ev: events.Event) -> None:
        if isinstance(ev, events.DaemonPassStarted):
            if not ev.scan:
                # a due-process pass: runs beside the scans, so it is only noted (its CPU
                # shows in the scan it overlaps, if any)
                out.write(json.dumps({"event": "due", "t": time.time()}) + "\n")
                return
            before.clear()
            before.update(counts)
            out.write(json.dumps({"event": "start", "t": time.time(),
                                  "cpu": time.process_time(), "zones": ev.zones}) + "\n")
        elif isinstance(ev, events.DaemonPass) and ev.scan:
            delta = {k: v - before.get(k, 0) for k, v in counts.items()}
            out.write(json.dumps({"event": "end", "t": time.time(), "cpu": time.process_time(),
                                  "counts": delta}) + "\n")

    events.subscribe(on_event)

    def report_failures() -> None:
        for _callback, exc in events.failures():
            print(f"bench: the event subscriber failed: {exc!r}", file=sys.stderr)

    atexit.register(report_failures)
    from orchestrator.cli import main

    return main(argv)


# =========================================================================== sampling


def proc_cpu(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15)


def proc_mem(pid: int) -> tuple[int, int] | None:
    """(VmRSS, VmHWM) in KiB."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    rss = re.search(r"VmRSS:\s+(\d+)", text)
    hwm = re.search(r"VmHWM:\s+(\d+)", text)
    return (int(rss.group(1)) if rss else 0, int(hwm.group(1)) if hwm else 0)


class Sampler(threading.Thread):
    def __init__(self, pid: int, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.samples: list[tuple[float, float, int, int]] = []  # t, cpu s, rss KiB, hwm KiB
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.is_set():
            cpu, mem = proc_cpu(self.pid), proc_mem(self.pid)
            if cpu is None or mem is None:
                return
            self.samples.append((time.time(), cpu, *mem))
            self.stop_event.wait(self.interval)


class DaemonRun:
    """The daemon child, its ticks file and its /proc sampler."""

    def __init__(self, workdir: Path, config: Path, poll: str, label: str,
                 extra_path: str | None = None,
                 once: bool = False) -> None:
        self.ticks_file = workdir / f"ticks-{label}.jsonl"
        self.ticks_file.unlink(missing_ok=True)
        self.stderr_path = workdir / f"daemon-{label}.err"
        env = {**os.environ, "BENCH_TICKS": str(self.ticks_file)}
        if extra_path:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [extra_path,
                                                              env.get("PYTHONPATH")]))
        self.t_launch = time.time()
        self.err = self.stderr_path.open("w")
        self.proc = subprocess.Popen(
            [PYTHON, str(Path(__file__).resolve()), "--child-daemon", "--", "--config",
             str(config), "run", *(["--once"] if once else ["--poll-interval", poll])],
            stdout=subprocess.DEVNULL, stderr=self.err, env=env, start_new_session=True)
        self.sampler = Sampler(self.proc.pid)
        self.sampler.start()

    def ticks(self) -> list[dict[str, Any]]:
        if not self.ticks_file.exists():
            return []
        lines = self.ticks_file.read_text().splitlines()
        return [json.loads(x) for x in lines if x.strip()]

    def passes(self) -> list[dict[str, Any]]:
        """Completed passes: start/end pairs merged."""
        out, start = [], None
        for rec in self.ticks():
            if rec["event"] == "due":
                continue
            if rec["event"] == "start":
                start = rec
            elif start is not None:
                out.append({"t0": start["t"], "t1": rec["t"], "wall": rec["t"] - start["t"],
                            "cpu": rec["cpu"] - start["cpu"], "cpu_before": start["cpu"],
                            "zones": start["zones"], **rec["counts"]})
                start = None
        return out

    def in_pass(self) -> bool:
        ticks = self.ticks()
        ticks = [t for t in ticks if t["event"] != "due"]
        return bool(ticks) and ticks[-1]["event"] == "start"

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"daemon exited with {self.proc.returncode}:\n"
                               f"{self.stderr_path.read_text()[-3000:]}")

    def wait_passes(self, n: int, timeout: float) -> None:
        end = time.monotonic() + timeout
        while len(self.passes()) < n:
            self.check_alive()
            if time.monotonic() > end:
                raise RuntimeError(f"daemon did not complete {n} passes in {timeout}s")
            time.sleep(0.2)

    def stop(self) -> None:
        """SIGTERM between passes (a SIGTERM during a pass makes APScheduler cancel it)."""
        if self.proc.poll() is None:
            end = time.monotonic() + 120
            while self.in_pass() and time.monotonic() < end:
                time.sleep(0.05)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.sampler.stop_event.set()
        self.sampler.join()
        self.err.close()


# =========================================================================== measurements


def pdns_cpu(lab: Any) -> float:
    """CPU seconds of the provider PowerDNS servers (p0, p1, ...; not the parent)."""
    return sum(proc_cpu(p.pid) or 0.0 for p in lab.procs if re.fullmatch(r"p\d+", p.name))


def pdns_background(lab: Any, seconds: float = 10.0) -> float:
    """CPU s/s the providers burn with no daemon running (the lab's parent agent scans)."""
    before = pdns_cpu(lab)
    time.sleep(seconds)
    return (pdns_cpu(lab) - before) / seconds


def idle_window(run: DaemonRun, duration: float, lab: Any,
                background: float = 0.0) -> dict[str, Any]:
    """Let the daemon poll idle zones for ``duration`` s after its first pass started."""
    run.wait_passes(1, timeout=600)
    first = run.passes()[0]
    end = first["t0"] + duration
    pdns0, t_pdns0 = pdns_cpu(lab), time.time()
    while time.time() < end:
        run.check_alive()
        time.sleep(0.2)
    while run.in_pass():  # let the pass in progress finish: whole passes only
        run.check_alive()
        time.sleep(0.1)
    pdns1 = pdns_cpu(lab)
    pdns_net = pdns1 - pdns0 - background * (time.time() - t_pdns0)
    passes = [p for p in run.passes() if p["t0"] < end]
    samples = [s for s in run.sampler.samples if s[0] <= passes[-1]["t1"] + 0.3]
    return {"passes": passes, "samples": samples, "pdns_cpu": pdns_net,
            "startup_cpu": first["cpu_before"], "startup_wall": first["t0"] - run.t_launch,
            "window_end": time.time()}


def summarise(idle: dict[str, Any], zones: int, providers: int, poll: float,
              real_interval: float) -> dict[str, Any]:
    passes = idle["passes"]
    steady = passes[1:] or passes  # the first pass also opens connections, warms imports
    cpu = statistics.median(p["cpu"] for p in steady)
    wall = statistics.median(p["wall"] for p in steady)
    samples = [s for s in idle["samples"] if s[0] >= passes[0]["t0"] - 0.2]
    ext_cpu = samples[-1][1] - samples[0][1] if len(samples) > 1 else 0.0
    ext_span = samples[-1][0] - samples[0][0] if len(samples) > 1 else 0.0
    rss_series = [s[2] for s in samples]
    per_hour = 3600 / (wall + real_interval)
    period_now = statistics.median(b["t0"] - a["t0"] for a, b in itertools.pairwise(passes)) \
        if len(passes) > 1 else None
    return {
        "zones": zones, "providers": providers, "poll_interval": poll, "passes": len(passes),
        "first_pass_cpu": passes[0]["cpu"], "first_pass_wall": passes[0]["wall"],
        "cpu_per_pass": cpu, "wall_per_pass": wall, "period": period_now,
        "cpu_per_zone_ms": 1000 * cpu / zones,
        "http_per_pass": statistics.median(p.get("http", 0) for p in steady),
        "tcp_connects_per_pass": statistics.median(p.get("tcp_connect", 0) for p in steady),
        "sql_per_pass": statistics.median(p.get("sql", 0) for p in steady),
        "real_interval": real_interval, "passes_per_hour": per_hour,
        "cpu_s_per_hour": per_hour * cpu, "core_fraction": per_hour * cpu / 3600,
        "cpu_s_per_hour_per_zone": per_hour * cpu / zones,
        "ext_cpu_s": ext_cpu, "ext_span_s": ext_span,
        "in_pass_cpu_s": sum(p["cpu"] for p in passes),
        "rss_first_kib": rss_series[0] if rss_series else None,
        "rss_last_kib": rss_series[-1] if rss_series else None,
        "peak_rss_kib": max((s[3] for s in samples), default=None),
        "startup_cpu": idle["startup_cpu"], "startup_wall": idle["startup_wall"],
        "pdns_cpu_per_pass": idle["pdns_cpu"] / max(1, len(passes)),
        "rss_by_pass_kib": [max((s[2] for s in samples if p["t0"] <= s[0] <= p["t1"] + 0.2),
                                default=None) for p in passes],
    }


def cli(config: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([MULTISIGNER, "--config", str(config), *args], check=False,
                            capture_output=True,
                            text=True, timeout=900)
    if check and result.returncode != 0:
        raise RuntimeError(f"multisigner {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result


def start_rollovers(config: Path, zones: list[str]) -> list[tuple[str, str, float, float]]:
    """``rollover Z --key zsk --signer p0`` without --wait: runs to the first hold."""
    started = []
    for zone in zones:
        t_launch = time.time()
        res = cli(config, "rollover", zone, "--key", "zsk", "--signer", "p0")
        m = re.search(r"started \S+ ([0-9a-f]{32})", res.stdout)
        if not m:
            raise RuntimeError(res.stdout + res.stderr)
        started.append((zone, m.group(1), t_launch, time.time()))
    return started


def await_rollovers(run: DaemonRun, config: Path,
                    started: list[tuple[str, str, float, float]], lab_dir: Path,
                    timeout: float, poll_interval: float) -> dict[str, Any]:
    """Wait until the daemon finished them, or stopped ticking (no pass for poll interval +
    15 s although one is due); analyse what finished."""
    from core.config import load_config
    from state.store import StateStore

    # Read the history straight from the state DB: a `history` CLI call would parse the
    # 1,000-zone config every half second and compete with the daemon for the CPUs.
    store = StateStore.open(load_config(config).state.url)
    end = time.monotonic() + timeout
    done: list[dict[str, Any]] = []
    pending = list(started)
    stalled = None
    try:
        while pending:
            run.check_alive()
            if time.monotonic() > end:
                raise RuntimeError(f"rollovers not done after {timeout}s: "
                                   f"{[p[0] for p in pending]}")
            time.sleep(0.5)
            for item in list(pending):
                zone, pid, t_launch, t_cli = item
                hist = [e.as_json() for e in store.history(zone)]
                mine = [e for e in hist if e["process_id"] == pid]
                if mine and mine[-1]["to_state"] in ("done", "failed", "aborted"):
                    res = analyse(hist, pid, lab_dir=lab_dir)
                    finished = _ts(mine[-1]["at"])
                    res.update(zone=zone, cli_s=t_cli - t_launch,
                               from_launch_s=finished - t_launch)
                    res["ratio_from_launch"] = res["from_launch_s"] / res["minimum_s"]
                    done.append(res)
                    pending.remove(item)
            passes = run.passes()
            last_end = passes[-1]["t1"] if passes else run.t_launch
            if pending and not run.in_pass() and time.time() - last_end > poll_interval + 15:
                err = run.stderr_path.read_text()
                skipped = [x for x in err.splitlines() if "skipped" in x]
                states = {}
                for zone, pid, *_ in pending:
                    proc = store.get_process(pid)
                    states[zone] = (f"{proc.state}, next check "
                                    f"{proc.next_check_at.isoformat(timespec='seconds')}"
                                    if proc and proc.next_check_at else str(proc and proc.state))
                stalled = {"idle_for_s": time.time() - last_end, "last_pass_end": last_end,
                           "skipped_lines": skipped[-3:], "pending": states}
                break
    finally:
        store.close()
    return {"done": done, "stalled": stalled,
            "pending": [p[1] for p in pending]}


def wait_finished(config: Path, process_ids: list[str], timeout: float) -> None:
    from core.config import load_config
    from state.store import StateStore

    store = StateStore.open(load_config(config).state.url)
    end = time.monotonic() + timeout
    try:
        while any((p := store.get_process(pid)) is not None and p.status == "running"
                  for pid in process_ids):
            if time.monotonic() > end:
                raise RuntimeError(f"processes {process_ids} still running after {timeout}s")
            time.sleep(0.5)
    finally:
        store.close()


def passes_between(run: DaemonRun, t0: float, t1: float) -> dict[str, Any]:
    during = [p for p in run.passes() if t0 - 1 <= p["t0"] <= t1]
    return {"count": len(during), "span_s": t1 - t0, "cpu_s": sum(p["cpu"] for p in during),
            "wall_median_s": statistics.median(p["wall"] for p in during) if during else None,
            "gaps_s": [round(b["t0"] - a["t1"], 3) for a, b in itertools.pairwise(during)]}


def _ts(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# =========================================================================== main flow


def bench(args: argparse.Namespace) -> dict[str, Any]:
    from multisigner_lab import Lab

    names = [f"z{i:04d}.test." for i in range(args.zones)]
    if args.rollover and args.zones < 4:
        raise SystemExit("part 3 needs at least 4 zones (or --no-rollover)")
    zones_a = [names[0], names[-1]]  # first and last in the config: advanced early / late
    zones_b = [names[1], names[-2]]  # in each pass
    workdir = Path(tempfile.mkdtemp(prefix="bench-daemon-"))
    results: dict[str, Any] = {"zones": args.zones, "providers": args.providers,
                               "poll_interval": args.poll_interval, "cpus": os.cpu_count(),
                               "code": code_version()}
    lab = None
    runs: list[DaemonRun] = []
    try:
        t0 = time.monotonic()
        lab = Lab.start(workdir / "lab", providers=args.providers, zones=names, ttl=args.ttl,
                        ds_ttl=args.ttl, scanner=True, unbound=False,
                        scanner_interval=args.scanner_interval)
        results["lab_start_s"] = time.monotonic() - t0
        print(f"lab: {args.zones} zones x {args.providers} providers up in "
              f"{results['lab_start_s']:.1f}s", flush=True)
        text = lab.config_path.read_text()
        text = re.sub(r'propagation_delay = "[^"]*"', 'propagation_delay = "0s"', text)
        text = re.sub(r'safety_margin = "[^"]*"', 'safety_margin = "0s"', text)
        config = workdir / "bench.toml"
        config.write_text(text)
        config.chmod(0o600)
        # a 1-zone config over the same providers: the N-independent baseline
        blocks = text.split("[[zones]]")
        small = workdir / "one.toml"
        small.write_text(blocks[0] + "[[zones]]" + blocks[1])
        small.chmod(0o600)
        if args.rollover:
            for zone in zones_a + zones_b:
                cli(config, "sync", zone)
        poll = f"{args.poll_interval:g}s"
        background = pdns_background(lab)
        results["pdns_background_cpu_per_s"] = background

        print("baseline: daemon with 1 zone ...", flush=True)
        base = DaemonRun(workdir, small, poll, "one")
        runs.append(base)
        base_idle = idle_window(base, min(args.duration, 3 * args.poll_interval + 1), lab,
                                background)
        base.stop()
        results["baseline"] = summarise(base_idle, 1, args.providers, args.poll_interval,
                                        args.real_interval)

        # Part 2 first, with no process running anywhere: a running process changes what a
        # pass does (and, see part 3, whether the daemon keeps ticking at all).
        variants = [("plain", None)] + [(f"extra{i}", p) for i, p in enumerate(args.extra_path)]
        for label, extra in variants:
            print(f"daemon ({label}{': ' + extra if extra else ''}): {args.zones} idle zones, "
                  f"poll {poll}, {args.duration:g}s ...", flush=True)
            run = DaemonRun(workdir, config, poll, label, extra)
            runs.append(run)
            idle = idle_window(run, args.duration, lab, background)
            summary = summarise(idle, args.zones, args.providers, args.poll_interval,
                                args.real_interval)
            summary.update(label=label, extra_path=extra, loadavg=os.getloadavg()[0])
            results.setdefault("idle", []).append(summary)
            run.stop()
            note_errors(results, run)

        if args.ab_once and args.extra_path:
            # Interleaved single passes (`run --once`), so load drift hits both sides alike.
            print(f"A/B: {args.ab_once} x `run --once` without / with {args.extra_path[0]} ...",
                  flush=True)
            ab: dict[str, list[float]] = {"plain": [], "extra": []}
            for i in range(args.ab_once):
                for side, extra in (("plain", None), ("extra", args.extra_path[0])):
                    run = DaemonRun(workdir, config, poll, f"once-{side}-{i}", extra, once=True)
                    runs.append(run)
                    run.proc.wait(600)
                    run.stop()
                    ab[side] += [p["cpu"] for p in run.passes()]
            results["ab_once"] = {"extra_path": args.extra_path[0], **ab}

        if args.rollover:
            rolled = zones_a + zones_b
            print(f"rollovers under the daemon: ZSK at p0 of {', '.join(rolled)} ...",
                  flush=True)
            run = DaemonRun(workdir, config, poll, "rollover")
            runs.append(run)
            run.wait_passes(1, timeout=600)
            t_roll = time.time()
            started = start_rollovers(config, rolled)
            part = await_rollovers(run, config, started, lab.directory,
                                   args.rollover_timeout, args.poll_interval)
            part["passes"] = passes_between(run, t_roll, time.time())
            results["rollovers_product"] = part
            run.stop()

    finally:
        for run in runs:
            with contextlib.suppress(Exception):
                run.stop()
        if lab is not None:
            lab.stop()
            if lab.alive():
                print(f"WARNING: lab processes survived: {lab.alive()}", file=sys.stderr)
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return results


def note_errors(results: dict[str, Any], run: DaemonRun) -> None:
    err = run.stderr_path.read_text()
    if "Traceback" in err or "error" in err.lower() or "skipped" in err:
        results.setdefault("daemon_errors", []).append(err[-2000:])


def report(results: dict[str, Any]) -> str:
    out = [f"\nDaemon with {results['zones']} idle zones x {results['providers']} providers "
           f"({results['cpus']} CPUs; lab up in {results['lab_start_s']:.1f}s), "
           f"--poll-interval {results['poll_interval']:g}s; code {results['code']}\n"]
    rows = []
    for s in [results["baseline"], *results.get("idle", [])]:
        rows.append([s.get("label", "1 zone"), str(s["zones"]), str(s["passes"]),
                     f2(s["startup_wall"]), f2(s["startup_cpu"]), f3(s["first_pass_cpu"]),
                     f3(s["wall_per_pass"]), f3(s["cpu_per_pass"]), f3(s["cpu_per_zone_ms"]),
                     str(int(s["http_per_pass"])), str(int(s["tcp_connects_per_pass"])),
                     str(int(s["sql_per_pass"])), f3(s["pdns_cpu_per_pass"]),
                     f"{s['peak_rss_kib'] / 1024:.1f}" if s["peak_rss_kib"] else "-"])
    out.append(table(["run", "zones", "passes", "start wall", "start CPU", "1st pass CPU",
                      "pass wall", "pass CPU", "CPU ms/zone", "API req", "TCP conn", "SQL",
                      "pdns CPU", "peak RSS MiB"], rows))
    rows = []
    for s in [results["baseline"], *results.get("idle", [])]:
        rows.append([s.get("label", "1 zone"), str(s["zones"]), f"{s['real_interval']:g}",
                     f"{s['passes_per_hour']:.1f}", f"{s['cpu_s_per_hour']:.0f}",
                     f"{100 * s['core_fraction']:.1f}%",
                     f"{1000 * s['cpu_s_per_hour_per_zone']:.0f}",
                     f"{s['ext_cpu_s']:.2f}/{s['in_pass_cpu_s']:.2f}",
                     " ".join(f"{(x or 0) / 1024:.0f}" for x in s["rss_by_pass_kib"][:8])])
    if results.get("ab_once"):
        ab = results["ab_once"]
        plain, extra = statistics.median(ab["plain"]), statistics.median(ab["extra"])
        out.append(f"A/B `run --once` CPU s per pass, interleaved: without "
                   f"{[round(x, 2) for x in ab['plain']]}, with {ab['extra_path']} "
                   f"{[round(x, 2) for x in ab['extra']]}: median {plain:.2f} -> {extra:.2f} "
                   f"({100 * (extra - plain) / plain:+.0f}%)")
    base_rss = results["baseline"]["peak_rss_kib"]
    for s in results.get("idle", []):
        if base_rss and s["peak_rss_kib"]:
            out.append(f"{s['label']}: peak RSS {s['peak_rss_kib'] / 1024:.1f} MiB = 1-zone "
                       f"baseline {base_rss / 1024:.1f} MiB + "
                       f"{(s['peak_rss_kib'] - base_rss) / max(1, s['zones'] - 1):.1f} KiB/zone; "
                       f"per zone and pass: {s['http_per_pass'] / s['zones']:.1f} API requests "
                       f"(each a new TCP connection: {s['tcp_connects_per_pass'] / s['zones']:.1f}"
                       f"), {s['sql_per_pass'] / s['zones']:.1f} SQL statements")
    out.append("\nper hour of polling at the realistic interval (the daemon sleeps the interval "
               "after each pass)\n")
    out.append(table(["run", "zones", "interval s", "passes/h", "CPU s/h", "of a core",
                      "CPU ms/h/zone", "CPU /proc vs in-pass", "RSS MiB by pass"], rows))
    for key, title in (("rollovers_product", "the daemon"),):
        part = results.get(key)
        if not part:
            continue
        out.append(f"\nZSK rollovers started by the CLI (no --wait), driven by {title}; "
                   "seconds\n")
        rows = []
        for r in part["done"]:
            rows.append([r["zone"], f2(r["cli_s"]), f2(r["from_launch_s"]),
                         f2(r["wall_history_s"]),
                         f2(r["minimum_s"]), f3(r["ratio_from_launch"]),
                         f3(r["ratio_history"]), f3(r["act_s"] + r["converge_s"]),
                         f3(r["late_s"]), " ".join(f"{s.get('late_s', 0):.1f}"
                                                   for s in r["steps"])])
        if rows:
            out.append(table(["zone", "CLI", "launch->done", "wall hist", "minimum",
                              "ratio launch",
                              "ratio hist", "act+conv", "late", "late per step"], rows))
        if part["stalled"]:
            st = part["stalled"]
            out.append(f"DAEMON STOPPED TICKING: no pass for {st['idle_for_s']:.0f}s although "
                       f"processes are due: {st['pending']}")
            out += [f"  daemon stderr: {line}" for line in st["skipped_lines"]]
        d = part["passes"]
        out.append(f"daemon passes meanwhile: {d['count']} in {d['span_s']:.0f}s, "
                   f"{d['cpu_s']:.1f} CPU s, median pass {f2(d['wall_median_s'])}s; gaps "
                   f"between passes (s): {d['gaps_s'][:20]}")
    if results.get("daemon_errors"):
        out.append("\ndaemon stderr had errors:\n" + "\n---\n".join(results["daemon_errors"]))
    return "\n".join(out)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child-daemon":
        argv = sys.argv[2:]
        return _child_daemon(argv[1:] if argv[:1] == ["--"] else argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--zones", type=int, default=1000)
    p.add_argument("--providers", type=int, default=2)
    p.add_argument("--ttl", type=int, default=5)
    p.add_argument("--poll-interval", type=float, default=10.0,
                   help="the daemon's --poll-interval for the measurement, seconds")
    p.add_argument("--real-interval", type=float, default=60.0,
                   help="poll interval to extrapolate an hour of polling to, seconds")
    p.add_argument("--duration", type=float, default=60.0, help="idle window, seconds")
    p.add_argument("--scanner-interval", type=float, default=2.0)
    p.add_argument("--no-rollover", dest="rollover", action="store_false",
                   help="skip part 3 (rollovers driven by the daemon)")
    p.add_argument("--rollover-timeout", type=float, default=600.0)
    p.add_argument("--extra-path", action="append", default=[],
                   help="repeat the idle run with this prepended to PYTHONPATH")
    p.add_argument("--ab-once", type=int, default=0, metavar="N",
                   help="with --extra-path: N interleaved `run --once` passes per side")
    p.add_argument("--json", help="write the raw results here")
    p.add_argument("--keep", action="store_true")
    args = p.parse_args()
    results = bench(args)
    print(report(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
