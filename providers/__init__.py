"""Provider adapters (one module per provider) and the parent-side observation."""

from __future__ import annotations

from core.config import KnotProviderConfig, ProviderConfig
from providers.base import Capability, Provider


def build_provider(config: ProviderConfig | KnotProviderConfig) -> Provider:
    """The adapter for a configured provider; the config's ``type`` selects it."""
    if isinstance(config, KnotProviderConfig):
        from providers.knot.adapter import KnotProvider

        return KnotProvider(config)
    from providers.powerdns import PowerDNSProvider

    return PowerDNSProvider(config)


__all__ = ["Capability", "Provider", "build_provider"]
