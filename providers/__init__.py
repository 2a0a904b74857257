"""Provider adapters (one module or package per provider) and the parent-side observation.

Adapters are found by their config ``type`` in the ``multisigner.providers`` entry-point
group (``providers.registry``)."""

from __future__ import annotations

from providers.base import Capability, Provider
from providers.registry import build_provider

__all__ = ["Capability", "Provider", "build_provider"]
