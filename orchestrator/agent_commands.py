"""``multisigner parent-agent``: run the parent-side agent of ``[parent_agent]`` in the
foreground until SIGINT/SIGTERM (docs/parent-agent.md)."""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import Any

from core.config import Config, ProviderConfig, find_config_path, load_config
from core.errors import ConfigError, MultisignerError
from orchestrator.audit_commands import open_store
from orchestrator.cli_common import out
from providers.powerdns import PowerDNSProvider


def agent_parts(config: Config) -> tuple[Any, PowerDNSProvider]:
    """The ``[parent_agent]`` table and the adapter of its provider; ConfigError (exit 2)
    when either is missing or the provider cannot host the parent zone."""
    agent = config.parent_agent
    if agent is None:
        raise ConfigError("no [parent_agent] table in the config; see docs/parent-agent.md")
    provider = config.provider(agent.provider)
    if not isinstance(provider, ProviderConfig) or provider.type != "powerdns":
        raise ConfigError(f"parent_agent.provider: {agent.provider} is of type "
                          f"{provider.type}; the agent writes the parent zone through the "
                          "PowerDNS API only")
    return agent, PowerDNSProvider(provider)


def cmd_parent_agent(args: argparse.Namespace) -> int:
    from orchestrator.parent_agent.agent import Agent

    config = load_config(find_config_path(args.config))
    settings, api = agent_parts(config)
    store = open_store(config)

    async def main() -> int:
        agent = Agent(settings, api, store)
        try:
            if args.scan_once:
                for child, outcome in sorted((await agent.scan_all()).items()):
                    out(f"{child} " + " ".join(f"{k}={v}" for k, v in sorted(outcome.items())))
                return 0
            stopping = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stopping.set)
            try:
                bound = await agent.start()
            except OSError as exc:
                raise MultisignerError(f"cannot listen on {', '.join(settings.listen)}: "
                                       f"{exc.strerror or exc}") from None
            out("parent agent for {} listening on {}".format(
                settings.zone, ", ".join(f"{h}:{p}" for h, p in bound)))
            await stopping.wait()
            await agent.stop()
            return 0
        finally:
            await api.aclose()

    try:
        return asyncio.run(main())
    finally:
        store.close()
