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
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests"), str(REPO / "tests" / "rfc2136")]

from followkit import Stopwatch, figures, follow_lab, sync, window  # noqa: E402
from rollover.rollkit import daemon, processes  # noqa: E402
from rollover.watcher import Watcher  # noqa: E402

ZONE = "follow.test."


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rolls", type=int, default=20)
    parser.add_argument("--zsk-lifetime", type=int, default=20, help="seconds")
    args = parser.parse_args()
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
