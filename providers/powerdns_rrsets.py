"""Whole-zone reads and atomic multi-RRset writes through the PowerDNS adapter, for the
parent agent: it reads every delegation of the parent zone in one call, and applies a
child's DS, NS and glue changes in one PATCH (PowerDNS applies a PATCH in one
transaction, so a resolver never sees a new NS RRset without its glue)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from core.errors import ProviderError
from providers.base import ApiRRset, name_in_zone
from providers.powerdns import PowerDNSProvider


def _path(zone: str) -> str:
    return f"/zones/{quote(zone, safe='')}"


async def read_all_rrsets(api: PowerDNSProvider, zone: str) -> list[ApiRRset]:
    """Every enabled RRset of ``zone`` (names absolute, lower-case)."""
    data = await api.api_request("GET", _path(zone), zone=zone)
    try:
        out = []
        for rrset in data.get("rrsets", []):
            records = tuple(sorted(r["content"] for r in rrset.get("records", [])
                                   if not r.get("disabled")))
            if records:
                out.append(ApiRRset(str(rrset["name"]).lower(), str(rrset["type"]).upper(),
                                    int(rrset.get("ttl", 0)), records))
        return out
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise ProviderError(f"unexpected API answer ({exc.__class__.__name__}: {exc})",
                            provider=api.name, zone=zone,
                            endpoint=f"GET {_path(zone)}") from None


async def replace_rrsets(api: PowerDNSProvider, zone: str, rrsets: Sequence[ApiRRset]) -> None:
    """Replace each RRset (no records: delete it) in one PATCH; names outside ``zone``
    are refused before anything is sent."""
    changes: list[dict[str, Any]] = []
    for rrset in rrsets:
        owner = name_in_zone(api.name, zone, rrset.name)
        if rrset.records:
            changes.append({"name": owner, "type": rrset.rdtype, "ttl": rrset.ttl,
                            "changetype": "REPLACE",
                            "records": [{"content": c, "disabled": False}
                                        for c in sorted(rrset.records)]})
        else:
            changes.append({"name": owner, "type": rrset.rdtype, "changetype": "DELETE"})
    if changes:
        await api.api_request("PATCH", _path(zone), zone=zone, json={"rrsets": changes})
