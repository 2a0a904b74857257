"""NS1's REST API as the adapter uses it.

Documented shapes this follows (NS1 / IBM NS1 Connect API reference: "Zones", "Records",
"DNSSEC", "Configuring external DNSSEC keys (API only)"): ``X-NSONE-Key`` auth; errors as
``{"message": ...}``; ``GET /zones/{zone}`` (404 for a zone not in the account);
``GET /zones/{zone}/dnssec`` lists the zone's DNSKEYs under ``keys.dnskey`` as
``[flags, protocol, algorithm, public_key]`` arrays; an external key set is
``/zones/{zone}/dnssec/external_keys/{name}`` with body ``{"dnskey": {"ttl", "data":
[{"flags", "protocol", "algorithm", "public_key"}]}}``, created by PUT, replaced by POST,
removed by DELETE, listed by ``GET /zones/{zone}/dnssec/external_keys``; a record is
``/zones/{zone}/{domain}/{type}`` with ``answers: [{"answer": [rdata fields]}]`` (PUT
creates, POST replaces, DELETE removes).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from core.errors import ZoneMissing
from core.keys import Key
from providers.rest import RestApi


def error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase
    if isinstance(body, dict) and "message" in body:
        return str(body["message"])
    return str(body)[:300]


def scope(method: str, path: str) -> str:
    if method == "GET":
        return "the API key permission to view zones (DNS: View zones)"
    return "the API key permission to manage zones (DNS: Manage zones)"


def dnskey(entry: Any) -> Key:
    """One key of a DNSSEC answer: an array ``[flags, protocol, algorithm, key]`` or an
    object with those fields."""
    if isinstance(entry, dict):
        entry = [entry["flags"], entry.get("protocol", 3), entry["algorithm"],
                 entry["public_key"]]
    flags, protocol, algorithm, public = (str(x) for x in entry)
    return Key.parse(f"{flags} {protocol} {algorithm} {public}")


def key_object(key: Key) -> dict[str, Any]:
    flags, protocol, algorithm, public = key.text.split(" ", 3)
    return {"flags": int(flags), "protocol": int(protocol), "algorithm": int(algorithm),
            "public_key": public}


class Ns1Api:
    def __init__(self, api: RestApi) -> None:
        self.api = api

    @staticmethod
    def zone_path(zone: str) -> str:
        return f"/zones/{quote(zone.rstrip('.'), safe='')}"

    async def get(self, path: str, zone: str) -> Any | None:
        """The JSON answer, or None for a 404 (after making sure the zone exists)."""
        response = await self.api.request("GET", path, zone=zone)
        if response.status_code != 404:
            return response.json()
        if path != self.zone_path(zone):
            await self.zone(zone)
        return None

    async def zone(self, zone: str) -> dict[str, Any]:
        body = await self.get(self.zone_path(zone), zone)
        if body is None:
            raise ZoneMissing("NS1 has no such zone in this API key's account",
                              provider=self.api.provider, zone=zone)
        return dict(body)

    async def write(self, method: str, path: str, zone: str, body: Any) -> None:
        await self.api.request(method, path, zone=zone, json=body)

    async def delete(self, path: str, zone: str) -> None:
        await self.api.request("DELETE", path, zone=zone)  # a 404: gone already
