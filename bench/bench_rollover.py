#!/usr/bin/env python
"""How close does a rollover come to its RFC 7583 minimum?

Starts a lab (PowerDNS parent + providers, CDS-scanning registry) with TTLs of a few
seconds, writes a copy of its config with ``propagation_delay = "0s"`` and
``safety_margin = "0s"`` (so every hold is the pure RFC 7583 TTL term), syncs the zone,
waits out the resolver caches, then for each rollover kind runs, as an operator would::

    multisigner --config C rollover ZONE --key K --signer S --wait

and measures its wall time twice: around the subprocess, and from the process history
(first transition -> ``done``). The RFC 7583 minimum of that very run is computed from the
history (``history ZONE --json``): for each step's ``*:hold`` transition the evidence
holds the TTLs the controller observed, the step's TTL terms (``hold``, ``hold_combine``)
and ``observed_after_s`` -- the time from the change to the moment every nameserver (or
the parent) served it. So

    minimum = sum over steps of the TTL term (max() for hold_combine = "max")
            + sum over steps of observed_after_s            (Dprp / Dsgn / Dreg, observed)

and everything above it is controller overhead, split into: ``act`` + ``converge`` phases
(provider API reads and writes, DB writes), lateness after a deadline (scheduling), and,
for the subprocess wall time, CLI start-up (interpreter, imports, config, the start
observation) and exit. For the registration step (``TTLds``) the lab parent agent's history tells
when the parent actually changed the DS, which splits the observed Dreg into the
registry's own delay and the controller's detection lag.

With ``--counts`` (default) one extra rollover per kind runs through a counting wrapper
(``--child-cli``, below) that attributes every provider API request and DNS query to the
engine phase that made it, to show what each phase reads and writes.

Run from the repository root with the project's venv::

    .venv/bin/python bench/bench_rollover.py                 # ttl 5 s, 3 providers
    .venv/bin/python bench/bench_rollover.py --ttl 20 --repeat 1 --json /tmp/r.json

Every lab and subprocess it starts is stopped before it exits (Ctrl-C included).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
PYTHON = sys.executable
MULTISIGNER = str(Path(sys.executable).with_name("multisigner"))
ZONE = "bench.test."
SIGNER_KIND = ("zsk", "ksk", "csk")


# =========================================================================== child mode
# ``bench_rollover.py --child-cli -- ARGS``: run the multisigner CLI with ARGS, counting
# every provider API call and DNS query by the engine phase (``<step>:<phase>``) that made
# it; the counts go to $BENCH_PHASE_COUNTS as JSON at exit. The phases and the API calls
# come from the product's event bus (docs/hooks.md: StepStarted/StepTimed, ProviderCall);
# DNS queries are counted at dnspython's query functions (a library, not product code).


def _child_cli(argv: list[str]) -> int:
    import atexit

    import dns.asyncquery
    import dns.rdatatype

    from core import events

    phase = ["start"]  # before the first phase: CLI start-up and starting the process
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    seconds: dict[str, float] = defaultdict(float)
    udp, tcp = dns.asyncquery.udp, dns.asyncquery.tcp

    def on_event(event: events.Event) -> None:
        if isinstance(event, events.StepStarted):
            phase[0] = event.state
            counts[event.state]["calls"] += 1
        elif isinstance(event, events.StepTimed):
            seconds[event.state] += event.seconds
            phase[0] = "between phases"  # the CLI's wait loop
        elif isinstance(event, events.ProviderCall):
            method = event.operation.split(" ", 1)[0]
            what = "cryptokeys" if "/cryptokeys" in event.operation else "zone"
            counts[phase[0]][f"http {method} {what}"] += 1

    def dns_counter(transport: str, real: Any) -> Any:
        async def counted(q: Any, where: str, *a: Any, **kw: Any) -> Any:
            rdtype = dns.rdatatype.to_text(q.question[0].rdtype)
            counts[phase[0]][f"dns {transport} {rdtype}"] += 1
            return await real(q, where, *a, **kw)
        return counted

    dns.asyncquery.udp = dns_counter("udp", udp)  # type: ignore[assignment]
    dns.asyncquery.tcp = dns_counter("tcp", tcp)  # type: ignore[assignment]
    events.subscribe(on_event)

    def dump() -> None:
        for _callback, exc in events.failures():
            print(f"bench: the event subscriber failed: {exc!r}", file=sys.stderr)
        out = os.environ.get("BENCH_PHASE_COUNTS")
        if out:
            Path(out).write_text(json.dumps(
                {k: {**dict(v), "seconds": round(seconds[k], 4)} for k, v in counts.items()},
                indent=1))

    atexit.register(dump)
    from orchestrator.cli import main

    return main(argv)


# =========================================================================== helpers


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def cli(config: Path, *args: str, check: bool = True,
        timeout: float = 600) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([MULTISIGNER, "--config", str(config), *args], check=False,
                            capture_output=True,
                            text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError(f"multisigner {' '.join(args)} failed ({result.returncode}):\n"
                           f"{result.stdout}\n{result.stderr}")
    return result


def hold_seconds(ttls: dict[str, int], terms: list[str], combine: str) -> float:
    """The TTL part of a hold, as orchestrator/decide/timing.py computes it."""
    names = {"TTLkey": "key", "TTLsig": "sig", "TTLds": "ds"}
    values = [ttls[names[t]] for t in terms]
    if not values:
        return 0.0
    return float(max(values) if combine == "max" else sum(values))


def parent_ds_changes(lab_dir: Path | None, zone: str) -> list[datetime]:
    """When the lab's parent agent changed the parent's DS for ``zone`` (its accepted
    ``scan-cds`` history entries)."""
    if lab_dir is None:
        return []
    from multisigner_lab.parent_automation import agent_history

    return [ts(h["at"]) for h in agent_history(lab_dir, ["scan-cds"])
            if h["to_state"] == "accepted" and h["evidence"].get("child") == zone]


def analyse(entries: list[dict[str, Any]], process_id: str, *, t_launch: float | None = None,
            t_exit: float | None = None, lab_dir: Path | None = None) -> dict[str, Any]:
    """Split one rollover process's history into the RFC 7583 minimum and the overhead.

    ``t_launch``/``t_exit`` are wall-clock (time.time()) stamps around the subprocess that
    drove it (None when a daemon drove it)."""
    rows = sorted((e for e in entries if e["process_id"] == process_id), key=lambda e: e["seq"])
    if not rows or rows[-1]["to_state"] != "done":
        raise RuntimeError(f"process {process_id} did not finish: "
                           f"{rows[-1]['to_state'] if rows else 'no history'}")
    zone = rows[0]["zone"]
    changes = parent_ds_changes(lab_dir, zone)
    phase_s: Counter[str] = Counter()
    steps: list[dict[str, Any]] = []
    for cur, nxt in itertools.pairwise(rows):
        state = cur["to_state"]
        dur = (ts(nxt["at"]) - ts(cur["at"])).total_seconds()
        step, _, ph = state.rpartition(":")
        phase_s[ph] += dur
        if ph == "act":
            steps.append({"step": step, "act_s": dur, "converge_s": 0.0})
        elif ph == "converge" and steps:
            steps[-1]["converge_s"] += dur
        elif ph == "hold":
            ev = cur["evidence"]
            ttl_term = hold_seconds(ev["ttls"], ev["hold"], ev["hold_combine"])
            margins = float(ev.get("propagation_delay_s", 0)) + float(ev.get("safety_margin_s", 0))
            deadline = ts(ev["deadline"])
            observed_at = ts(ev["observed_at"])
            since = observed_at - timedelta(seconds=float(ev["observed_after_s"]))
            computed = (deadline - observed_at).total_seconds()
            info = steps[-1]
            info.update(
                terms=("max" if ev["hold_combine"] == "max" else "+").join(ev["hold"]) or "-",
                ttls=ev["ttls"], ttl_s=ttl_term, margins_s=margins,
                propagation_s=float(ev["observed_after_s"]),
                late_s=(ts(nxt["at"]) - deadline).total_seconds(),
                hold_checks=abs(computed - (ttl_term + margins)) < 0.002)
            if "TTLds" in ev["hold"]:
                hits = [c for c in changes if since <= c <= observed_at]
                if hits:
                    info["dreg_registry_s"] = (hits[0] - since).total_seconds()
                    info["dreg_detect_lag_s"] = (observed_at - hits[0]).total_seconds()
    first, last = ts(rows[0]["at"]), ts(rows[-1]["at"])
    wall_hist = (last - first).total_seconds()
    ttl_sum = sum(s.get("ttl_s", 0.0) for s in steps)
    prop_sum = sum(s.get("propagation_s", 0.0) for s in steps)
    margins = sum(s.get("margins_s", 0.0) for s in steps)
    minimum = ttl_sum + prop_sum
    out: dict[str, Any] = {
        "zone": zone, "kind": rows[0]["kind"], "process_id": process_id,
        "signer_evidence": rows[0]["evidence"].get("old_key"),
        "wall_history_s": wall_hist, "ttl_sum_s": ttl_sum, "propagation_s": prop_sum,
        "margins_s": margins, "minimum_s": minimum,
        "ratio_history": wall_hist / minimum if minimum else None,
        "act_s": sum(s["act_s"] for s in steps),
        "converge_s": sum(s["converge_s"] for s in steps),
        "late_s": sum(s.get("late_s", 0.0) for s in steps),
        "steps": steps, "transitions": len(rows),
        "hold_checks": all(s.get("hold_checks", True) for s in steps),
    }
    out["residual_s"] = wall_hist - (out["act_s"] + out["converge_s"] + prop_sum + ttl_sum
                                     + margins + out["late_s"])
    if t_launch is not None and t_exit is not None:
        wall_sub = t_exit - t_launch
        out.update(wall_subprocess_s=wall_sub,
                   ratio_subprocess=wall_sub / minimum if minimum else None,
                   startup_s=first.timestamp() - t_launch, exit_s=t_exit - last.timestamp())
    return out


def code_version() -> str:
    """Which product code ran: the imported package's directory and its commit."""
    import orchestrator

    root = Path(orchestrator.__file__).resolve().parent.parent
    commit = "?"
    if (root / "COMMIT").exists():
        commit = (root / "COMMIT").read_text().strip()
    else:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], check=True,
                                    capture_output=True, text=True).stdout.strip()
            dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--",
                                    "orchestrator", "providers", "state", "runbooks"],
                                   check=True, capture_output=True, text=True).stdout
            commit += " (modified)" if dirty.strip() else ""
    return f"{root} @ {commit[:12]}{commit[40:]}"


# =========================================================================== the lab run


def settle(config: Path, until: float, deadline_s: float = 60.0) -> None:
    """Sleep until ``until`` (epoch), then until ``verify`` is OK (cached sets expired)."""
    time.sleep(max(0.0, until - time.time()))
    end = time.monotonic() + deadline_s
    while True:
        result = cli(config, "verify", ZONE, check=False)
        if result.returncode == 0:
            return
        if time.monotonic() > end:
            raise RuntimeError(f"zone did not settle:\n{result.stdout}{result.stderr}")
        time.sleep(1.0)


def run_rollover(config: Path, kind: str, signer: str, *, counts_file: Path | None = None,
                 lab_dir: Path | None = None) -> dict[str, Any]:
    if counts_file is None:
        cmd = [MULTISIGNER]
        env = None
    else:
        cmd = [PYTHON, str(Path(__file__).resolve()), "--child-cli", "--"]
        env = {**os.environ, "BENCH_PHASE_COUNTS": str(counts_file)}
    cmd += ["--config", str(config), "rollover", ZONE, "--key", kind, "--signer", signer,
            "--wait"]
    load = os.getloadavg()[0]
    t_launch = time.time()
    result = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=3600, env=env)
    t_exit = time.time()
    if result.returncode != 0:
        raise RuntimeError(f"rollover {kind} failed ({result.returncode}):\n{result.stdout}\n"
                           f"{result.stderr}")
    match = re.search(r"started \S+ ([0-9a-f]{32})", result.stdout)
    if not match:
        raise RuntimeError(f"no process id in:\n{result.stdout}")
    history = json.loads(cli(config, "history", ZONE, "--json").stdout)
    out = analyse(history, match.group(1), t_launch=t_launch, t_exit=t_exit,
                  lab_dir=lab_dir)
    out.update(key=kind, signer=signer, loadavg=load)
    verify = cli(config, "verify", ZONE, check=False)
    out["verify_after"] = "OK" if verify.returncode == 0 else verify.stdout.strip()
    if counts_file is not None:
        out["phase_counts"] = json.loads(counts_file.read_text())
    return out


def bench(args: argparse.Namespace) -> dict[str, Any]:
    from multisigner_lab import Lab

    n = args.providers
    csk_provider = f"p{n - 1}"
    signers = {"zsk": "p0", "ksk": "p1" if n >= 3 else "p0", "csk": csk_provider}
    kinds = [k for k in args.kinds.split(",") if k]
    workdir = Path(tempfile.mkdtemp(prefix="bench-roll-"))
    lab = None
    results: dict[str, Any] = {"ttl": args.ttl, "ds_ttl": args.ds_ttl, "providers": n,
                               "signers": signers, "runs": [], "counted": [],
                               "code": code_version()}
    try:
        t0 = time.monotonic()
        lab = Lab.start(workdir / "lab", providers=n, zones=[ZONE], ttl=args.ttl,
                        ds_ttl=args.ds_ttl, csk={csk_provider}, scanner=True, unbound=False,
                        scanner_interval=args.scanner_interval)
        results["lab_start_s"] = time.monotonic() - t0
        text = lab.config_path.read_text()
        text, a = re.subn(r'propagation_delay = "[^"]*"', 'propagation_delay = "0s"', text)
        text, b = re.subn(r'safety_margin = "[^"]*"', 'safety_margin = "0s"', text)
        if a != 1 or b != 1:
            raise RuntimeError("lab config has no policy to rewrite")
        config = workdir / "bench.toml"
        config.write_text(text)
        config.chmod(0o600)
        cache = max(args.ttl, args.ds_ttl) + 1.0
        print(f"lab: {n} providers ({csk_provider} uses a CSK), ttl {args.ttl}s, ds_ttl "
              f"{args.ds_ttl}s, scanner interval {args.scanner_interval}s; config {config}",
              flush=True)
        cli(config, "sync", ZONE)
        settle(config, time.time() + cache)
        plan = [(r, k, False) for r in range(args.repeat) for k in kinds]
        if args.counts:
            plan += [(args.repeat, k, True) for k in kinds]
        for rep, kind, counted in plan:
            counts_file = workdir / f"counts-{kind}-{rep}.json" if counted else None
            res = run_rollover(config, kind, signers[kind], counts_file=counts_file,
                               lab_dir=lab.directory)
            res["repeat"] = rep
            (results["counted"] if counted else results["runs"]).append(res)
            print(f"  {kind} at {signers[kind]}{' (counted)' if counted else ''}: "
                  f"{res['wall_subprocess_s']:.2f}s wall, minimum {res['minimum_s']:.2f}s, "
                  f"verify {res['verify_after'][:60]}", flush=True)
            settle(config, time.time() + cache)
    finally:
        if lab is not None:
            lab.stop()
            if lab.alive():
                print(f"WARNING: lab processes survived: {lab.alive()}", file=sys.stderr)
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return results


# =========================================================================== report


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    line = "  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out)


def f2(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def f3(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def report(results: dict[str, Any]) -> str:
    runs = results["runs"]
    out = [f"\nRollover vs. RFC 7583 minimum: ttl {results['ttl']}s, ds_ttl "
           f"{results['ds_ttl']}s, {results['providers']} providers, propagation_delay = "
           f"safety_margin = 0s; code {results['code']}; seconds\n"]
    headers = ["kind", "#", "wall sub", "wall hist", "TTL sum", "prop", "minimum", "ratio sub",
               "ratio hist", "act", "converge", "late", "startup", "exit", "load"]
    rows = [[r["key"], str(r["repeat"]), f2(r["wall_subprocess_s"]), f2(r["wall_history_s"]),
             f2(r["ttl_sum_s"]), f3(r["propagation_s"]), f2(r["minimum_s"]),
             f3(r["ratio_subprocess"]), f3(r["ratio_history"]), f3(r["act_s"]),
             f3(r["converge_s"]), f3(r["late_s"]), f3(r["startup_s"]), f3(r["exit_s"]),
             f"{r['loadavg']:.1f}"] for r in runs]
    out.append(table(headers, rows))
    kinds = sorted({r["key"] for r in runs}, key=SIGNER_KIND.index)
    summary = []
    for k in kinds:
        rs = [r for r in runs if r["key"] == k]

        def med(field: str, rs: list[dict[str, Any]] = rs) -> float:
            return statistics.median(r[field] for r in rs)

        for r in rs:
            r["overhead_s"] = r["wall_subprocess_s"] - r["minimum_s"]
            r["api_phases_s"] = r["act_s"] + r["converge_s"]
            r["cli_fixed_s"] = r["startup_s"] + r["exit_s"]
        summary.append([k, str(len(rs)), f2(med("wall_subprocess_s")), f2(med("wall_history_s")),
                        f2(med("minimum_s")), f3(med("ratio_subprocess")),
                        f3(med("ratio_history")), f3(med("overhead_s")),
                        f3(med("api_phases_s")), f3(med("late_s")), f3(med("cli_fixed_s"))])
    out.append("\nmedians (overhead = wall sub - minimum = API phases + lateness + CLI "
               "start/exit + residual)\n")
    out.append(table(["kind", "n", "wall sub", "wall hist", "minimum", "ratio sub",
                      "ratio hist", "overhead", "act+conv", "late", "start+exit"], summary))
    out.append("\nper step (last run of each kind): TTL term held, observed propagation, "
               "API phases, lateness after the deadline\n")
    rows = []
    for k in kinds:
        r = [x for x in runs if x["key"] == k][-1]
        for s in r["steps"]:
            dreg = ""
            if "dreg_registry_s" in s:
                dreg = f"{s['dreg_registry_s']:.3f}+{s['dreg_detect_lag_s']:.3f}"
            rows.append([k, s["step"], s.get("terms", "-"), f2(s.get("ttl_s")),
                         f3(s.get("propagation_s")), dreg, f3(s["act_s"]), f3(s["converge_s"]),
                         f3(s.get("late_s"))])
    out.append(table(["kind", "step", "terms", "TTL", "prop", "Dreg=registry+detect", "act",
                      "converge", "late"], rows))
    if results["counted"]:
        out.append("\nrequests per engine phase (counted run; 'calls' = times the phase ran, "
                   "observe polls included; 'start' = before the first phase, 'between "
                   "phases' = the CLI's wait loop)\n")
        rows = []
        for r in results["counted"]:
            for label, c in r["phase_counts"].items():
                http = sum(v for kk, v in c.items() if kk.startswith("http"))
                gets = sum(v for kk, v in c.items() if kk.startswith("http GET"))
                dns_q = sum(v for kk, v in c.items() if kk.startswith("dns"))
                tcp_q = sum(v for kk, v in c.items() if kk.startswith("dns tcp"))
                ds_q = sum(v for kk, v in c.items() if kk.startswith("dns") and kk.endswith(" DS"))
                rows.append([r["key"], label, str(c.get("calls", 0)), str(gets),
                             str(http - gets), str(dns_q), str(tcp_q), str(ds_q),
                             f"{c.get('seconds', 0):.3f}"])
        out.append(table(["kind", "phase", "calls", "API GET", "API write", "DNS q",
                          "of which TCP", "of which DS", "seconds"], rows))
    checks = all(r["hold_checks"] for r in runs)
    out.append(f"\nevery deadline = observed_at + TTL term + margins: {checks}; verify after "
               f"every rollover: {sorted({r['verify_after'][:40] for r in runs})}")
    return "\n".join(out)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child-cli":
        argv = sys.argv[2:]
        return _child_cli(argv[1:] if argv[:1] == ["--"] else argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ttl", type=int, default=5)
    p.add_argument("--ds-ttl", type=int, default=None, help="default: --ttl")
    p.add_argument("--providers", type=int, default=3)
    p.add_argument("--kinds", default="zsk,ksk,csk")
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--scanner-interval", type=float, default=0.5)
    p.add_argument("--no-counts", dest="counts", action="store_false",
                   help="skip the extra counted rollover per kind")
    p.add_argument("--json", help="write the raw results here")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    args = p.parse_args()
    if args.ds_ttl is None:
        args.ds_ttl = args.ttl
    if args.providers < 2:
        p.error("--providers must be at least 2 (one of them uses a CSK)")
    results = bench(args)
    print(report(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
