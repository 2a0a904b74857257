"""``check``: can every zone's signers do what its model needs?

The engine refuses a process whose signers lack a capability when it starts one
(``Engine.converger``); ``check`` says so up front, per zone, naming the provider, its
type and what it cannot do, so a zone that can never sync is found before its first
``sync``. Processes that need more than the model (signer add/remove: the apex NS and
CSYNC) are reported as notes: the zone works, those processes will be refused.
"""

from __future__ import annotations

from typing import Any

from core.config import ZoneConfig
from orchestrator.runtime import Runtime
from providers.base import Capability


def _words(missing: Capability) -> str:
    return ", ".join(str(c.name).lower().replace("_", " ") for c in missing)


def model_needs(zone: ZoneConfig) -> tuple[str, Capability]:
    """The converger's kind and what it needs of every signer (read from the engine's
    converger classes, so this check and the engine's refusal cannot disagree)."""
    if zone.model == 1:
        from orchestrator.engine.owner_signed import OwnerSigned

        return "owner-signed", OwnerSigned.capability
    from orchestrator.engine.cross_import import CrossImport

    return "cross-import", CrossImport.capability


def zone_capabilities(rt: Runtime, zone: ZoneConfig) -> dict[str, Any]:
    kind, need = model_needs(zone)
    problems: list[str] = []
    notes: list[str] = []
    for name in rt.signers(zone):
        provider = rt.provider(name)
        missing = need & ~provider.capabilities
        if missing:
            problems.append(f"provider {name} ({provider.type_name}) cannot {_words(missing)}; "
                            f"it cannot be a signer of a model {zone.model} ({kind}) zone "
                            f"(docs/providers/{provider.type_name}.md)")
        elif not provider.can(Capability.MANAGE_NS):
            notes.append(f"provider {name} ({provider.type_name}) cannot manage ns: signer "
                         "add/remove will be refused while it is a signer")
    return {"label": f"zone {zone.name}", "zone": zone.name, "ok": not problems,
            "problems": problems, "notes": notes}


def capability_check(rt: Runtime) -> list[dict[str, Any]]:
    """One item per zone with something to say (a zone whose signers can do everything
    adds no line to ``check``'s output)."""
    items = [zone_capabilities(rt, zone) for zone in rt.config.zones]
    return [i for i in items if i["problems"] or i["notes"]]
