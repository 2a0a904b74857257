"""What every command shares: loading the config, picking zones, running a command's
body with a runtime (state store, provider adapters, signal handling), output, and
running one piece of work per zone concurrently."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from core.config import Config, ZoneConfig, find_config_path, load_config
from core.errors import MultisignerError, UsageError
from orchestrator.audit_commands import open_store
from orchestrator.runtime import Runtime
from providers.registry import check_config

T = TypeVar("T")
ZONE_CONCURRENCY = 32  # zones worked on at once by `--all` (each reads every provider)


def config_of(args: argparse.Namespace) -> Config:
    config = load_config(find_config_path(args.config))
    check_config(list(config.providers))  # third-party adapters load, their keys validate
    return config


def zones_of(config: Config, zone: str | None, all_zones: bool) -> list[ZoneConfig]:
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


def run_with(config: Config, body: Callable[[Runtime], Awaitable[T]]) -> T:
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


def out(line: str) -> None:
    print(line, flush=True)


def err(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


async def per_zone(
    zones: list[ZoneConfig],
    work: Callable[[ZoneConfig], Coroutine[Any, Any, T]],
    limit: int = ZONE_CONCURRENCY,
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


