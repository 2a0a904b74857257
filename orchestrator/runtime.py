"""Everything a command needs at run time: config, provider adapters, state store, actor.

Built once per CLI invocation; adapters are shared by every zone so connection pools
are too (``--all`` over hundreds of zones reuses a handful of connections per provider).
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from core.config import Config, ZoneConfig
from core.errors import ConfigError
from orchestrator.engine.lease import check_lease
from providers import Provider, build_provider
from state.holders import process_holder
from state.store import StateStore

Reporter = Callable[[str], None]  # where progress lines go (stderr, or the daemon's log)
LEASE_ENV = "MULTISIGNER_LEASE_SECONDS"


def lease_seconds() -> float:
    """How long one holder keeps a zone without renewing (orchestrator/engine/lease.py
    renews it every third of that while work runs): 120 s, or ``$MULTISIGNER_LEASE_SECONDS``
    (2-3600), which fail-over drills and tests shorten so that a paused controller's lease
    runs out within seconds. Every controller sharing a database should use one value."""
    raw = os.environ.get(LEASE_ENV, "").strip()
    if not raw:
        return 120.0
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not 2 <= value <= 3600:
        raise ConfigError(f"{LEASE_ENV}={raw!r}: give the zone lease length in seconds, "
                          "from 2 to 3600 (default 120)")
    return value


LEASE_SECONDS = lease_seconds()


def default_actor() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"cli:{user}"


def holder_id() -> str:
    """Who holds a zone lease: ``HOST:PID:NONCE:PROOF``, unique per process even where
    containers share hostname and PID (state/holders.py); made once per process."""
    return process_holder()


@dataclass
class Runtime:
    config: Config
    store: StateStore
    actor: str = field(default_factory=default_actor)
    _providers: dict[str, Provider] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Everything a command writes about a zone's procedure is fenced by this
        # process's lease (state/leases.py): a controller paused past its lease and
        # resumed after another took the zone over has its next write refused.
        if self.store.fence_holder is None:
            self.store.fence(holder_id())

    def signers(self, zone: ZoneConfig) -> list[str]:
        """The zone's signers now: the membership in the state DB (changed only by signer
        add/remove), seeded from the config's ``signers`` the first time."""
        members = self.store.members(zone.name)
        if not members:
            self.store.seed_members(zone.name, zone.signers)
            return list(zone.signers)
        if any(state == "joining" for _, state in members) and (
                self.store.active_process(zone.name) is None):
            # A join whose process is gone (finished elsewhere, or state from an older
            # version): the provider never became a signer.
            members = [(n, s) for n, s in members if s != "joining"]
        return [name for name, _ in members]

    def member_state(self, zone: ZoneConfig, provider: str) -> str | None:
        return dict(self.store.members(zone.name)).get(provider)

    def provider(self, name: str) -> Provider:
        """The adapter of provider *name*. Inside a zone lease (engine/lease.py), refused
        once the lease may have lapsed: a controller resumed after a pause acts on no
        provider before its renewal has found out whether it still holds the zone."""
        check_lease()
        if name not in self._providers:
            self._providers[name] = build_provider(self.config.provider(name))
        return self._providers[name]

    async def aclose(self) -> None:
        for provider in self._providers.values():
            await provider.aclose()
        self._providers.clear()
