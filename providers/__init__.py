"""Provider adapters (one module per provider) and the parent-side observation."""

from __future__ import annotations

from core.config import AnyProviderConfig, KnotProviderConfig, Rfc2136ProviderConfig
from providers.base import Capability, Provider


def build_provider(config: AnyProviderConfig) -> Provider:
    """The adapter for a configured provider; the config's ``type`` selects it."""
    if isinstance(config, KnotProviderConfig):
        from providers.knot.adapter import KnotProvider

        return KnotProvider(config)
    if isinstance(config, Rfc2136ProviderConfig):
        from providers.rfc2136.adapter import Rfc2136Provider

        return Rfc2136Provider(config)
    from providers.powerdns import PowerDNSProvider

    return PowerDNSProvider(config)


__all__ = ["Capability", "Provider", "build_provider"]
