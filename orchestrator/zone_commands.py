"""The commands about zones as they are: ``sync``, ``verify``, ``status``, ``check`` and
``history`` (rendering only; the work is in the engine and the reports)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from core.config import find_config_path
from core.config_types import _fqdn
from core.errors import MultisignerError
from orchestrator import logs
from orchestrator.cli_common import config_of, err, out, per_zone, run_with, zones_of
from orchestrator.runtime import Runtime
from state.store import StateStore


def cmd_sync(args: argparse.Namespace) -> int:
    from orchestrator.engine.sync import sync_zone

    config = config_of(args)
    zones = zones_of(config, args.zone, args.all)

    async def body(rt: Runtime) -> int:
        results = await per_zone(zones, lambda z: sync_zone(
            rt, z, dry_run=args.dry_run, report=logs.progress, out=out))
        failed = 0
        for zone, result in zip(zones, results, strict=True):
            if isinstance(result, MultisignerError):
                failed += 1
                text = str(result)
                prefixed = len(zones) > 1 and not text.startswith(zone.name)
                err(f"error: {zone.name}: {text}" if prefixed else f"error: {text}")
        return 1 if failed else 0

    return run_with(config, body)


def cmd_verify(args: argparse.Namespace) -> int:
    from orchestrator.reports import verify_zone

    config = config_of(args)
    zones = zones_of(config, args.zone, args.all)

    async def body(rt: Runtime) -> int:
        results = await per_zone(zones, lambda z: verify_zone(rt, z, content=args.content))
        report: list[dict[str, Any]] = []
        for zone, result in zip(zones, results, strict=True):
            if isinstance(result, MultisignerError):
                report.append({"name": zone.name, "ok": False, "error": str(result),
                               "breaches": [], "warnings": []})
            else:
                report.append(result)
        if args.json:
            out(json.dumps({"zones": report}, indent=2))
        else:
            for item in report:
                _render_verify(item)
        return 0 if all(z["ok"] for z in report) else 1

    return run_with(config, body)


def _render_verify(item: dict[str, Any]) -> None:
    if "error" in item:
        out(f"{item['name']}: cannot verify: {item['error']}")
        return
    verdict = "OK" if item["ok"] else f"BROKEN ({len(item['breaches'])} breach(es))"
    out(f"{item['name']}: {verdict} — {item['servers']} nameservers checked, "
         f"{item['cached_dnskey_sets']} cached DNSKEY set(s) considered")
    for f in item["breaches"]:
        out(f"  BREACH {f['code']}: {f['message']}")
    for f in item["warnings"]:
        out(f"  warning {f['code']}: {f['message']}")


def cmd_status(args: argparse.Namespace) -> int:
    from orchestrator.reports import zone_status
    from orchestrator.status_view import render_status

    config = config_of(args)
    zones = zones_of(config, args.zone, all_zones=not args.zone)

    async def body(rt: Runtime) -> int:
        results = await per_zone(zones, lambda z: zone_status(rt, z))
        items: list[dict[str, Any]] = []
        for zone, result in zip(zones, results, strict=True):
            if isinstance(result, MultisignerError):
                items.append({"name": zone.name, "model": zone.model, "consistent": False,
                              "error": str(result), "process": None, "signers": [],
                              "parent": {"ds": []}})
            else:
                items.append(result)
        if args.json:
            out(json.dumps({"zones": items}, indent=2))
        else:
            render_status(items)
        return 0

    return run_with(config, body)


def cmd_check(args: argparse.Namespace) -> int:
    from orchestrator.reports import check_all

    config = config_of(args)
    out(f"config {find_config_path(args.config)}: OK ({len(config.providers)} providers, "
         f"{len(config.zones)} zones)")

    async def body(rt: Runtime) -> int:
        results = await check_all(rt)
        for item in results:
            label = item.get("label") or f"provider {item['provider']}"
            for note in item.get("notes", []):
                out(f"{label}: note: {note}")
            if item["ok"]:
                out(f"{label}: OK")
            else:
                out(f"{label}: {len(item['problems'])} problem(s)")
                for problem in item["problems"]:
                    out(f"  - {problem}")
        return 0 if all(i["ok"] for i in results) else 1

    return run_with(config, body)


def _same_name(given: str, zone: str) -> bool:
    try:
        return bool(_fqdn(given) == zone)
    except ValueError:
        return False  # not a name at all: zones_of says so


def cmd_history(args: argparse.Namespace) -> int:
    config = config_of(args)
    agent = config.parent_agent
    if agent is not None and args.zone and _same_name(args.zone, agent.zone):
        name = agent.zone  # the parent agent's requests (docs/parent-agent.md)
    else:
        name = zones_of(config, args.zone, False)[0].name
    store = StateStore.open(config.state.url)
    try:
        entries = store.history(name)
    finally:
        store.close()
    if args.json:
        out(json.dumps([e.as_json() for e in entries], indent=2))
        return 0
    if not entries:
        out(f"{name}: no history yet")
    for e in entries:
        data = e.as_json()
        out(f"{data['seq']:>5} {data['at']} {data['kind']:<14} "
             f"{data['from_state'] or '-'} -> {data['to_state']}  [{data['actor']}] "
             f"{data['reason']}")
    return 0


