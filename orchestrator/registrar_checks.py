"""``check`` for a zone whose parent is a registrar API (``[zones.parent] type =
"route53domains"``): the credentials may read the domain, the domain is registered in
this AWS account, and which DS records the registrar holds for it now. Read-only."""

from __future__ import annotations

from typing import Any

from core.config import ZoneConfig
from core.errors import MultisignerError
from providers.registrar import Route53Domains, make_client


async def route53domains_check(zone: ZoneConfig,
                               registrar: Route53Domains | None = None) -> dict[str, Any]:
    """One ``check`` item (``label``, ``zone``, ``ok``, ``problems``, ``notes``)."""
    domain = zone.parent.registered_domain(zone.name)
    label = f"zone {zone.name} parent (route53domains {domain})"
    try:
        if registrar is None:
            registrar = Route53Domains(make_client(zone.parent), domain, zone=zone.name)
        held = await registrar.ds_records()
    except MultisignerError as exc:
        return {"label": label, "zone": zone.name, "ok": False, "problems": [str(exc)],
                "notes": []}
    listed = ", ".join(f"{r.describe()} (id {r.id})" for r in held) or "none"
    return {"label": label, "zone": zone.name, "ok": True, "problems": [],
            "notes": [f"the registrar holds DS: {listed}"]}
