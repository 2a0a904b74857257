"""``multisigner`` command line (interface.md). Parsing and rendering only; the work is in
the modules each command calls.

Exit codes: 0 done; 1 refused or failed (reason on stderr, nothing half-applied);
2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import json
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from core.config import Config, ZoneConfig, find_config_path, load_config
from core.errors import ConfigError, MultisignerError, UsageError
from orchestrator import logs
from orchestrator.acme_commands import add_acme_parser, cmd_acme
from orchestrator.audit_commands import add_audit_parser, open_store, run_audit
from orchestrator.decide.evidence import ceil_seconds
from orchestrator.runtime import Runtime
from state.store import StateStore

T = TypeVar("T")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="multisigner",
        description="Keep a DNS zone served and DNSSEC-signed by several providers valid "
        "(RFC 8901 multi-signer).",
    )
    p.add_argument("--config", help="config file (default: $MULTISIGNER_CONFIG or "
                   "./multisigner.toml)")
    p.add_argument("--log-format", choices=["text", "json"], default="text")
    p.add_argument("-v", "--verbose", action="count", default=0)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("check", help="validate config; reach every provider API and nameserver")

    s = sub.add_parser("status", help="per zone: signers, keys, consistency, parent DS, process")
    s.add_argument("zone", nargs="?")
    s.add_argument("--json", action="store_true")

    for name, helptext in (("verify", "check the RFC 8901 invariant from the nameservers"),
                           ("sync", "bring the zone to its model's steady state")):
        s = sub.add_parser(name, help=helptext)
        s.add_argument("zone", nargs="?")
        s.add_argument("--all", action="store_true", help="every configured zone")
        if name == "verify":
            s.add_argument("--json", action="store_true")
            s.add_argument("--content", action="store_true",
                           help="also compare the zone data every signer serves (AXFR or a "
                           "sample of names)")
        else:
            s.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")

    s = sub.add_parser("rollover", help="start (or abort) a key rollover process")
    s.add_argument("zone")
    s.add_argument("--key", choices=["zsk", "ksk", "csk"])
    s.add_argument("--signer", help="the provider whose key is rolled (model 2)")
    s.add_argument("--wait", action="store_true", help="run it to the end in the foreground")
    s.add_argument("--abort", action="store_true", help="take the running process back to a "
                   "safe state")

    s = sub.add_parser("signer", help="add or remove a provider as a signer of a zone")
    s.add_argument("action", choices=["add", "remove"])
    s.add_argument("zone")
    s.add_argument("name", help="the provider (as named in the config)")
    s.add_argument("--wait", action="store_true", help="run it to the end in the foreground")

    s = sub.add_parser("ksk", help="model 1: the owner KSK ('init': a zone's first one, only "
                       "while no KSK is served and the parent has no DS)")
    s.add_argument("action", choices=["init"])
    s.add_argument("zone")

    s = sub.add_parser("step", help="advance the zone's process if its conditions hold")
    s.add_argument("zone")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("run", help="the daemon: advance processes, start rollovers by policy")
    s.add_argument("--once", action="store_true", help="one pass, then exit (for cron)")
    s.add_argument("--poll-interval", default="60s", help="longest sleep between passes")

    s = sub.add_parser("history", help="every persisted transition of the zone, oldest first")
    s.add_argument("zone")
    s.add_argument("--json", action="store_true")

    add_audit_parser(sub)
    add_acme_parser(sub)

    s = sub.add_parser("lab", help="a local lab: PowerDNS parent + providers + Unbound")
    s.add_argument("action", choices=["up", "down", "info"])
    s.add_argument("--dir", default="lab", help="lab directory (default ./lab)")
    s.add_argument("--providers", type=int, default=3)
    s.add_argument("--zones", type=int, default=1, help="number of child zones")
    s.add_argument("--ttl", type=int, default=2, help="TTL of every record, seconds")
    s.add_argument("--model", type=int, choices=[1, 2], default=2,
                   help="2: PowerDNS providers with their own KSKs; 1: Knot offline-KSK "
                   "providers and the owner KSK in SoftHSM2")
    s.add_argument("--delegated", metavar="NAMES",
                   help="comma-separated providers the parent delegates to at first "
                   "(default: all; e.g. p0,p1 leaves p2 to join with 'signer add')")
    return p


def _config(args: argparse.Namespace) -> Config:
    return load_config(find_config_path(args.config))


def _zones(config: Config, zone: str | None, all_zones: bool) -> list[ZoneConfig]:
    if all_zones and zone:
        raise UsageError("give a ZONE or --all, not both")
    if all_zones:
        if not config.zones:
            raise UsageError("no zones are configured")
        return list(config.zones)
    if not zone:
        raise UsageError("give a ZONE or --all")
    try:
        return [config.zone(zone)]
    except KeyError:
        known = ", ".join(z.name for z in config.zones) or "none"
        raise UsageError(f"zone {zone} is not in the config (configured: {known})") from None
    except ValueError as exc:
        raise UsageError(f"{zone!r} is not a zone name: {exc}") from None


def _run(config: Config, body: Callable[[Runtime], Awaitable[T]]) -> T:
    store = open_store(config)  # with the [history] key, if configured
    for provider in config.providers:
        store.ensure_provider(provider.name, provider.type)
    for zone in config.zones:
        store.ensure_zone(zone.name, zone.model)
        store.seed_members(zone.name, zone.signers)
    rt = Runtime(config=config, store=store)

    received: list[str] = []

    async def main() -> T:
        # SIGINT and SIGTERM cancel the run, so a running phase records "failed"/releases
        # its lease instead of dying between an intent and its outcome. The cancellation is
        # repeated every second until the run ends: a library on the way may turn it into
        # a timeout and retry (a cancel arriving as an HTTP timeout fires), which once
        # left an interrupted command running on. The daemon installs its own graceful
        # handlers on top of these.
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()

        def interrupt(name: str) -> None:
            if task is None or task.done():
                return
            if not received:
                received.append(name)
            task.cancel()
            loop.call_later(1.0, interrupt, name)

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, interrupt, sig.name)
        try:
            return await body(rt)
        finally:
            await rt.aclose()

    try:
        return asyncio.run(main())
    except asyncio.CancelledError:
        raise MultisignerError(f"interrupted by {received[0] if received else 'a signal'}; "
                               "the zone's process records where it stopped, and the next "
                               "run resumes or replans") from None
    finally:
        store.close()


def _out(line: str) -> None:
    print(line, flush=True)


def _err(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


async def _per_zone(
    zones: list[ZoneConfig],
    work: Callable[[ZoneConfig], Coroutine[Any, Any, T]],
    limit: int = 32,
) -> list[T | MultisignerError]:
    """Run ``work`` for every zone concurrently (bounded); a zone's failure is its result."""
    gate = asyncio.Semaphore(limit)

    async def one(zone: ZoneConfig) -> T | MultisignerError:
        async with gate:
            try:
                return await work(zone)
            except MultisignerError as exc:
                return exc

    return list(await asyncio.gather(*(one(z) for z in zones)))


def cmd_sync(args: argparse.Namespace) -> int:
    from orchestrator.engine.sync import sync_zone

    config = _config(args)
    zones = _zones(config, args.zone, args.all)

    async def body(rt: Runtime) -> int:
        results = await _per_zone(zones, lambda z: sync_zone(
            rt, z, dry_run=args.dry_run, report=logs.progress, out=_out))
        failed = 0
        for zone, result in zip(zones, results, strict=True):
            if isinstance(result, MultisignerError):
                failed += 1
                text = str(result)
                prefixed = len(zones) > 1 and not text.startswith(zone.name)
                _err(f"error: {zone.name}: {text}" if prefixed else f"error: {text}")
        return 1 if failed else 0

    return _run(config, body)


def cmd_verify(args: argparse.Namespace) -> int:
    from orchestrator.reports import verify_zone

    config = _config(args)
    zones = _zones(config, args.zone, args.all)

    async def body(rt: Runtime) -> int:
        results = await _per_zone(zones, lambda z: verify_zone(rt, z, content=args.content))
        report: list[dict[str, Any]] = []
        for zone, result in zip(zones, results, strict=True):
            if isinstance(result, MultisignerError):
                report.append({"name": zone.name, "ok": False, "error": str(result),
                               "breaches": [], "warnings": []})
            else:
                report.append(result)
        if args.json:
            _out(json.dumps({"zones": report}, indent=2))
        else:
            for item in report:
                _render_verify(item)
        return 0 if all(z["ok"] for z in report) else 1

    return _run(config, body)


def _render_verify(item: dict[str, Any]) -> None:
    if "error" in item:
        _out(f"{item['name']}: cannot verify: {item['error']}")
        return
    verdict = "OK" if item["ok"] else f"BROKEN ({len(item['breaches'])} breach(es))"
    _out(f"{item['name']}: {verdict} — {item['servers']} nameservers checked, "
         f"{item['cached_dnskey_sets']} cached DNSKEY set(s) considered")
    for f in item["breaches"]:
        _out(f"  BREACH {f['code']}: {f['message']}")
    for f in item["warnings"]:
        _out(f"  warning {f['code']}: {f['message']}")


def cmd_status(args: argparse.Namespace) -> int:
    from orchestrator.reports import zone_status
    from orchestrator.status_view import render_status

    config = _config(args)
    zones = _zones(config, args.zone, all_zones=not args.zone)

    async def body(rt: Runtime) -> int:
        results = await _per_zone(zones, lambda z: zone_status(rt, z))
        items: list[dict[str, Any]] = []
        for zone, result in zip(zones, results, strict=True):
            if isinstance(result, MultisignerError):
                items.append({"name": zone.name, "model": zone.model, "consistent": False,
                              "error": str(result), "process": None, "signers": [],
                              "parent": {"ds": []}})
            else:
                items.append(result)
        if args.json:
            _out(json.dumps({"zones": items}, indent=2))
        else:
            render_status(items)
        return 0

    return _run(config, body)


def cmd_check(args: argparse.Namespace) -> int:
    from orchestrator.reports import check_all

    config = _config(args)
    _out(f"config {find_config_path(args.config)}: OK ({len(config.providers)} providers, "
         f"{len(config.zones)} zones)")

    async def body(rt: Runtime) -> int:
        results = await check_all(rt)
        for item in results:
            label = item.get("label") or f"provider {item['provider']}"
            for note in item.get("notes", []):
                _out(f"{label}: note: {note}")
            if item["ok"]:
                _out(f"{label}: OK")
            else:
                _out(f"{label}: {len(item['problems'])} problem(s)")
                for problem in item["problems"]:
                    _out(f"  - {problem}")
        return 0 if all(i["ok"] for i in results) else 1

    return _run(config, body)


def cmd_rollover(args: argparse.Namespace) -> int:
    from orchestrator.engine.runner import Engine

    config = _config(args)
    zone = _zones(config, args.zone, False)[0]
    if args.abort == bool(args.key):
        raise UsageError("give --key {zsk,ksk,csk} to start a rollover, or --abort")

    async def body(rt: Runtime) -> int:
        engine = Engine(rt, lambda line: logs.progress(line, zone.name))
        if args.abort:
            proc = engine.abort(zone)
            _out(f"{zone.name}: aborting {proc.kind} {proc.id}: {proc.state}")
        else:
            proc = await engine.start_rollover(zone, args.key, args.signer)
            _out(f"{zone.name}: started {proc.kind} {proc.id}")
        return await _drive(engine, zone, proc.id, to_end=args.wait)

    return _run(config, body)


async def _drive(engine: Any, zone: ZoneConfig, process_id: str, *, to_end: bool) -> int:
    """Advance until the process waits; with ``to_end``, sleep until its next check and go
    on until it is finished, printing what it waits for."""
    from datetime import UTC, datetime

    from core.durations import format_duration

    last = ""
    while True:
        outcome = await engine.advance(zone, process_id)
        for state in outcome.moved:
            _out(f"{zone.name}: -> {state}")
        if outcome.finished:
            proc = engine.rt.store.get_process(process_id)
            _out(f"{zone.name}: {proc.kind} {proc.status}")
            return 0
        nxt = outcome.next_check_at or datetime.now(UTC)
        left = max(0.0, (nxt - datetime.now(UTC)).total_seconds())
        line = f"{zone.name}: {outcome.state}: waiting for {outcome.waiting_for}"
        if not to_end:
            _out(f"{line} (next check {ceil_seconds(nxt)}, in "
                 f"{format_duration(nxt - datetime.now(UTC))}); continue with "
                 f"'multisigner step {zone.name}', the daemon, or --wait")
            return 0
        if line != last:
            logs.progress(f"{line} ({left:.1f}s)", zone.name)
            last = line
        await asyncio.sleep(left)


def cmd_signer(args: argparse.Namespace) -> int:
    from orchestrator.engine.runner import Engine

    config = _config(args)
    zone = _zones(config, args.zone, False)[0]

    async def body(rt: Runtime) -> int:
        engine = Engine(rt, lambda line: logs.progress(line, zone.name))
        proc = await engine.start_signer(zone, args.name, args.action)
        _out(f"{zone.name}: started {proc.kind} {proc.id}")
        return await _drive(engine, zone, proc.id, to_end=args.wait)

    return _run(config, body)


def cmd_step(args: argparse.Namespace) -> int:
    from orchestrator.engine.runner import Engine

    config = _config(args)
    zone = _zones(config, args.zone, False)[0]

    async def body(rt: Runtime) -> int:
        proc = rt.store.active_process(zone.name)
        if proc is None:
            if args.json:
                _out(json.dumps({"zone": zone.name, "process": None}))
            else:
                _out(f"{zone.name}: no running process")
            return 0
        engine = Engine(rt, lambda line: logs.progress(line, zone.name))
        outcome = await engine.advance(zone, proc.id)
        if args.json:
            _out(json.dumps({
                "zone": zone.name, "process": proc.id, "kind": proc.kind,
                "state": outcome.state, "finished": outcome.finished, "moved": outcome.moved,
                "waiting_for": outcome.waiting_for,
                "next_check_at": outcome.next_check_at.isoformat()
                if outcome.next_check_at else None}))
            return 0
        for state in outcome.moved:
            _out(f"{zone.name}: -> {state}")
        if outcome.finished:
            _out(f"{zone.name}: {proc.kind} {proc.id[:8]} finished ({outcome.state})")
        else:
            when = (ceil_seconds(outcome.next_check_at)
                    if outcome.next_check_at else "now")
            _out(f"{zone.name}: {proc.kind} {proc.id[:8]} in {outcome.state}: waiting for "
                 f"{outcome.waiting_for} (until {when})")
        return 0

    return _run(config, body)


def cmd_ksk(args: argparse.Namespace) -> int:
    from orchestrator.ksk_commands import ksk_init

    config = _config(args)
    zone = _zones(config, args.zone, False)[0]

    async def body(rt: Runtime) -> int:
        for line in (await ksk_init(rt, zone)).lines():
            _out(line)
        return 0

    return _run(config, body)


def cmd_run(args: argparse.Namespace) -> int:
    from core.durations import parse_duration
    from orchestrator.engine.daemon import Daemon

    try:
        interval = parse_duration(args.poll_interval).total_seconds()
    except ValueError as exc:
        raise UsageError(f"--poll-interval: {exc}") from None
    config = _config(args)

    async def body(rt: Runtime) -> int:
        rt.actor = "scheduler"
        daemon = Daemon(rt, poll_interval=interval)
        await daemon.run(once=args.once)
        if args.once and daemon.failed:
            _err(f"error: {len(daemon.failed)} zone(s) failed or were refused: "
                 + ", ".join(sorted(daemon.failed)))
            return 1
        return 0

    return _run(config, body)


def cmd_history(args: argparse.Namespace) -> int:
    config = _config(args)
    zone = _zones(config, args.zone, False)[0]
    store = StateStore.open(config.state.url)
    try:
        entries = store.history(zone.name)
    finally:
        store.close()
    if args.json:
        _out(json.dumps([e.as_json() for e in entries], indent=2))
        return 0
    if not entries:
        _out(f"{zone.name}: no history yet")
    for e in entries:
        data = e.as_json()
        _out(f"{data['seq']:>5} {data['at']} {data['kind']:<14} "
             f"{data['from_state'] or '-'} -> {data['to_state']}  [{data['actor']}] "
             f"{data['reason']}")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    return run_audit(args, _config(args), find_config_path(args.config))


def cmd_lab(args: argparse.Namespace) -> int:
    from multisigner_lab.cli import lab_down, lab_info, lab_up

    directory = Path(args.dir).resolve()
    if args.action == "up":
        zones = ["example.test."] if args.zones == 1 else [
            f"z{i:04d}.test." for i in range(args.zones)]
        delegated = ([n.strip() for n in args.delegated.split(",") if n.strip()]
                     if args.delegated else None)
        lab = lab_up(directory, providers=args.providers, zones=zones, ttl=args.ttl,
                     model=args.model, delegated=delegated)
        _out(f"lab running in {directory}")
        _out(f"config: {lab.config_path}")
        _out(f"try:    multisigner --config {lab.config_path} status")
        _out(f"stop:   multisigner lab down --dir {directory}")
    elif args.action == "down":
        lab_down(directory)
        _out(f"lab in {directory} stopped")
    else:
        _out(json.dumps(lab_info(directory), indent=2))
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "sync": cmd_sync,
    "verify": cmd_verify,
    "status": cmd_status,
    "check": cmd_check,
    "history": cmd_history,
    "rollover": cmd_rollover,
    "step": cmd_step,
    "ksk": cmd_ksk,
    "signer": cmd_signer,
    "run": cmd_run,
    "audit": cmd_audit,
    "lab": cmd_lab,
    "acme": cmd_acme,
}


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logs.setup(args.log_format, args.verbose)
    if argv is None and hasattr(signal, "SIGUSR1"):
        # `kill -USR1 PID` prints every thread's stack to stderr: where a controller that
        # seems stuck is, without stopping it (the console script only, not when embedded)
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        _err(f"configuration error: {exc}")
        return exc.exit_code
    except MultisignerError as exc:
        _err(f"error: {exc}")
        return exc.exit_code
    except KeyboardInterrupt:
        _err("interrupted")
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
