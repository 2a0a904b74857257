"""The commands that start and drive processes: ``rollover``, ``signer``, ``step`` and
the daemon ``run``."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from core.config import ZoneConfig
from core.errors import UsageError
from orchestrator import logs
from orchestrator.cli_common import config_of, err, out, run_with, zones_of
from orchestrator.decide.evidence import ceil_seconds
from orchestrator.runtime import Runtime


def cmd_rollover(args: argparse.Namespace) -> int:
    from orchestrator.engine import sig0_steps
    from orchestrator.engine.runner import Engine
    from state.leases import LeaseHeld

    config = config_of(args)
    zone = zones_of(config, args.zone, False)[0]
    if args.abort == bool(args.key):
        raise UsageError("give --key {zsk,ksk,csk,sig0} to start a rollover, or --abort")
    if args.key == "sig0" and args.signer:
        raise UsageError("--key sig0 rolls the zone's SIG(0) key, which no signer holds: "
                         "drop --signer")

    async def body(rt: Runtime) -> int:
        engine = Engine(rt, lambda line: logs.progress(line, zone.name))
        if args.abort:
            proc = engine.abort(zone)
            out(f"{zone.name}: aborting {proc.kind} {proc.id}: {proc.state}")
        else:
            proc = await (sig0_steps.start(engine, zone) if args.key == "sig0" else
                          engine.start_rollover(zone, args.key, args.signer))
            out(f"{zone.name}: started {proc.kind} {proc.id}")
            if not args.wait:
                try:
                    return await _drive(engine, zone, proc.id, to_end=False)
                except LeaseHeld as exc:
                    # The process is started and persisted; the controller holding the
                    # zone (a daemon replica) advances it. Nothing failed.
                    out(f"{zone.name}: {exc}; that controller advances the process")
                    return 0
        return await _drive(engine, zone, proc.id, to_end=args.wait)

    return run_with(config, body)


async def _drive(engine: Any, zone: ZoneConfig, process_id: str, *, to_end: bool) -> int:
    """Advance until the process waits; with ``to_end``, sleep until its next check and go
    on until it is finished, printing what it waits for."""
    from datetime import UTC, datetime

    from core.durations import format_duration

    last = ""
    while True:
        outcome = await engine.advance(zone, process_id)
        for state in outcome.moved:
            out(f"{zone.name}: -> {state}")
        if outcome.finished:
            proc = engine.rt.store.get_process(process_id)
            out(f"{zone.name}: {proc.kind} {proc.status}")
            return 0
        nxt = outcome.next_check_at or datetime.now(UTC)
        left = max(0.0, (nxt - datetime.now(UTC)).total_seconds())
        line = f"{zone.name}: {outcome.state}: waiting for {outcome.waiting_for}"
        if not to_end:
            out(f"{line} (next check {ceil_seconds(nxt)}, in "
                 f"{format_duration(nxt - datetime.now(UTC))}); continue with "
                 f"'multisigner step {zone.name}', the daemon, or --wait")
            return 0
        if line != last:
            logs.progress(f"{line} ({left:.1f}s)", zone.name)
            last = line
        await asyncio.sleep(left)


def cmd_signer(args: argparse.Namespace) -> int:
    from orchestrator.engine.runner import Engine

    config = config_of(args)
    zone = zones_of(config, args.zone, False)[0]

    async def body(rt: Runtime) -> int:
        engine = Engine(rt, lambda line: logs.progress(line, zone.name))
        proc = await engine.start_signer(zone, args.name, args.action)
        out(f"{zone.name}: started {proc.kind} {proc.id}")
        return await _drive(engine, zone, proc.id, to_end=args.wait)

    return run_with(config, body)


def cmd_step(args: argparse.Namespace) -> int:
    from orchestrator.engine.runner import Engine

    config = config_of(args)
    zone = zones_of(config, args.zone, False)[0]

    async def body(rt: Runtime) -> int:
        proc = rt.store.active_process(zone.name)
        if proc is None:
            if args.json:
                out(json.dumps({"zone": zone.name, "process": None}))
            else:
                out(f"{zone.name}: no running process")
            return 0
        engine = Engine(rt, lambda line: logs.progress(line, zone.name))
        outcome = await engine.advance(zone, proc.id)
        if args.json:
            out(json.dumps({
                "zone": zone.name, "process": proc.id, "kind": proc.kind,
                "state": outcome.state, "finished": outcome.finished, "moved": outcome.moved,
                "waiting_for": outcome.waiting_for,
                "next_check_at": outcome.next_check_at.isoformat()
                if outcome.next_check_at else None}))
            return 0
        for state in outcome.moved:
            out(f"{zone.name}: -> {state}")
        if outcome.finished:
            out(f"{zone.name}: {proc.kind} {proc.id[:8]} finished ({outcome.state})")
        else:
            when = (ceil_seconds(outcome.next_check_at)
                    if outcome.next_check_at else "now")
            out(f"{zone.name}: {proc.kind} {proc.id[:8]} in {outcome.state}: waiting for "
                 f"{outcome.waiting_for} (until {when})")
        return 0

    return run_with(config, body)


def cmd_run(args: argparse.Namespace) -> int:
    from core.durations import parse_duration
    from orchestrator.engine.daemon import Daemon

    try:
        interval = parse_duration(args.poll_interval).total_seconds()
    except ValueError as exc:
        raise UsageError(f"--poll-interval: {exc}") from None
    if args.metrics_listen:
        from orchestrator.metrics.service import parse_listen

        parse_listen(args.metrics_listen)  # a bad address is a usage error before anything runs
    config = config_of(args)

    async def body(rt: Runtime) -> int:
        # the history names the replica that wrote each transition (several daemons may
        # share one state database): "scheduler:" + the replica's log name, by default
        # its lease holder label HOST:PID:NONCE (orchestrator/logs.py)
        rt.actor = f"scheduler:{logs.replica()}"
        logs.name_replica()
        daemon = Daemon(rt, poll_interval=interval)
        service = None
        if args.metrics_listen:
            from orchestrator.metrics.service import start_metrics

            service = start_metrics(args.metrics_listen, rt.store,
                                    lambda: [z.name for z in rt.config.zones],
                                    lambda: not daemon.stopping.is_set(), interval)
            host, port = service.address
            logs.progress(f"metrics: http://{host}:{port}/metrics (and /healthz, /readyz)")
        try:
            await daemon.run(once=args.once)
        finally:
            if service is not None:
                service.close()
        if args.once and daemon.failed:
            err(f"error: {len(daemon.failed)} zone(s) failed or were refused: "
                 + ", ".join(sorted(daemon.failed)))
            return 1
        return 0

    return run_with(config, body)


