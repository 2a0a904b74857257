#!/usr/bin/env python
"""Follow-mode latency: how long after a provider publishes a key it rolled by itself
does every other provider serve it, against that provider's pre-publication window?

Starts the lab of tests/rfc2136/test_follow_knot.py (two PowerDNS providers and a real
Knot DNS 3.2 rolling its ZSK every ``--zsk-lifetime`` s with ``propagation-delay`` 8 s
and ``dnskey-ttl`` = the lab TTL, 2 s: a pre-publication window of 10 s), syncs the zone,
runs the daemon (``multisigner run``; its follow poll interval is derived from the
configured window, docs/following.md) under the cache-modelling watcher, and a stopwatch
thread that asks every nameserver every 0.1 s for its DNSKEY RRset and Knot's SOA RRSIG,
until ``--rolls`` successors were published, imported everywhere and signed with.

Reports, over the rolls: latency (successor first served at Knot → served by both PowerDNS
providers), median and max; lead (served everywhere → Knot signs with it; must be at
least the DNSKEY TTL); withdrawal delay (Knot drops the predecessor → both PowerDNS drop
it); watcher breaches; the daemon's CPU time. Every server it starts is stopped. Run::

    PYTHONPATH=$PWD .venv/bin/python bench/bench_follow.py --rolls 20

``--idle N [N ...]`` measures instead what following costs: N idle zones (Knot's ZSK
lifetime one day, so no roll happens) followed by the daemon at the poll interval the
10 s window gives (4 s) for ``--idle-seconds``, run through bench/_counted_cli.py: the
daemon's CPU time (/proc) and every request it made, per zone and hour.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests"), str(REPO / "tests" / "rfc2136")]

from followkit import Stopwatch, figures, follow_lab, sync, window  # noqa: E402
from rollover.rollkit import cli, daemon, processes  # noqa: E402
from rollover.watcher import Watcher  # noqa: E402

ZONE = "follow.test."


def idle_cost(zones: int, seconds: float) -> dict[str, object]:
    """The daemon following ``zones`` idle zones (Knot's ZSK lifetime a day: no roll) for
    ``seconds``, run through bench/_counted_cli.py: its CPU time and every request it
    made (provider APIs by HTTP, DNS queries: Knot's apex, every nameserver)."""
    names = tuple(f"idle{i:03d}.test." for i in range(zones))
    with tempfile.TemporaryDirectory(prefix="bench-follow-idle-") as tmp, \
            follow_lab(Path(tmp), 86400, names) as (lab, knot, config):
        os.environ["U0_TSIG"] = knot.secret
        out = cli(config, "sync", "--all")
        assert out.rc == 0, out.out + out.err
        counts = Path(tmp) / "counts.json"
        env = {**os.environ, "BENCH_COUNTS": str(counts),
               "BENCH_PARENT": f"{lab.parent.address}:{lab.parent.dns_port}"}
        child = subprocess.Popen(
            [sys.executable, str(REPO / "bench" / "_counted_cli.py"), "--config",
             str(config), "run", "--poll-interval", "60s"], env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(seconds)
        ticks = os.sysconf("SC_CLK_TCK")
        stat = Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu = (int(stat[11]) + int(stat[12])) / ticks  # utime + stime
        child.send_signal(signal.SIGTERM)
        child.wait(timeout=60)
        made = json.loads(counts.read_text()) if counts.exists() else {}
        total = sum(made.values())
        hour = 3600 / seconds
        return {"zones": zones, "seconds": seconds, "poll_s": 4.0,
                "daemon_cpu_s": round(cpu, 2), "requests": total, "by_kind": made,
                "cpu_s_per_zone_hour": round(cpu * hour / zones, 1),
                "requests_per_zone_hour": round(total * hour / zones)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rolls", type=int, default=20)
    parser.add_argument("--zsk-lifetime", type=int, default=20, help="seconds")
    parser.add_argument("--idle", type=int, nargs="*", metavar="N",
                        help="instead: the cost of following N idle zones (each N given)")
    parser.add_argument("--idle-seconds", type=float, default=120.0)
    args = parser.parse_args()
    if args.idle:
        for n in args.idle:
            print(json.dumps(idle_cost(n, args.idle_seconds), indent=1), flush=True)
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-follow-") as tmp, \
            follow_lab(Path(tmp), args.zsk_lifetime) as (lab, knot, config):
        os.environ["U0_TSIG"] = knot.secret
        sync(config)
        servers = {p.name: [(p.address, p.dns_port)] for p in lab.providers}
        servers["u0"] = [(knot.address, knot.port)]
        watcher = Watcher(ZONE, servers, [(lab.parent.address, lab.parent.dns_port)]).start()
        others = {p.name: (p.address, p.dns_port) for p in lab.providers}
        watch = Stopwatch((knot.address, knot.port), others).start()
        log = Path(tmp) / "daemon.log"
        started = time.monotonic()
        with daemon(config, log, "--poll-interval", "60s") as child:
            deadline = started + (args.rolls + 3) * (args.zsk_lifetime + 15)
            while len(watch.done()) < args.rolls and time.monotonic() < deadline:
                time.sleep(0.5)
            child.terminate()
            child.wait(timeout=30)
        elapsed = time.monotonic() - started
        watch.stop()
        breaches, rounds = watcher.stop()
        cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
        result = figures(watch.done()[:args.rolls], watch.retired, window(lab))
        follows = [p for p in processes(config, ZONE) if p["kind"] == "follow"]
        result.update({
            "zsk_lifetime_s": args.zsk_lifetime,
            "follow_processes": len(follows),
            "follow_done": sum(p["status"] == "done" for p in follows),
            "watcher_rounds": rounds,
            "watcher_breaches": len(breaches),
            "stopwatch_errors": watch.errors,
            "elapsed_s": round(elapsed, 1),
            "daemon_cpu_s": round(cpu.ru_utime + cpu.ru_stime, 2),
        })
        print(json.dumps(result, indent=2))
        for b in breaches[:5]:
            print(b)
        return 0 if result["rolls"] >= args.rolls and not breaches else 1


if __name__ == "__main__":
    raise SystemExit(main())
