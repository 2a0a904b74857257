"""Provider adapters (one module per provider) and the parent-side observation."""

from __future__ import annotations

from orchestrator.config import ProviderConfig
from providers.base import Capability, Provider


def build_provider(config: ProviderConfig) -> Provider:
    """The adapter for a configured provider; the config's ``type`` selects it."""
    if config.type == "powerdns":
        from providers.powerdns import PowerDNSProvider

        return PowerDNSProvider(config)
    raise ValueError(f"provider type {config.type!r} has no adapter")  # pragma: no cover


__all__ = ["Capability", "Provider", "build_provider"]
