"""Cloudflare's v4 API as the adapter uses it.

Documented shapes this follows (developers.cloudflare.com: "API reference: DNS Records,
DNSSEC, DNS Settings, Zones", "Multi-signer DNSSEC: setup"): every answer is an envelope
``{"success", "errors": [{"code", "message"}], "result", "result_info"}``; lists are paged
by ``page``/``per_page`` with ``result_info.total_pages``; ``GET /zones?name=`` finds the
zone id; ``GET /zones/{id}/dnssec`` has ``status``, ``dnssec_multi_signer`` and the KSK
(``public_key``, ``flags``, ``algorithm``); ``GET /zones/{id}/dns_settings`` has
``multi_provider``; a DNSKEY record is created as ``{"type": "DNSKEY", "name", "ttl",
"data": {"flags", "protocol", "algorithm", "public_key"}}``; creating a record identical
to an existing one fails with code 81058 (so a repeated create is recognised as done).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import httpx

from core.errors import ProviderError, ZoneMissing
from core.keys import Key
from providers.rest import RestApi

PER_PAGE = 100
IDENTICAL_RECORD = 81058  # "An identical record already exists."
MIN_TTL = 60  # below this Cloudflare refuses a TTL (1 means "automatic")


def error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase
    errors = body.get("errors") if isinstance(body, dict) else None
    if errors:
        return "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors)
    return str(body)[:300]


def scope(method: str, path: str) -> str:
    """The API token permission an endpoint needs (Cloudflare's permission groups)."""
    if path.rstrip("/") == "/zones" or path == "/user/tokens/verify":
        return "Zone → Zone → Read (to find the zone's id)"
    if "/dnssec" in path:
        return "Zone → DNS → Read (DNSSEC details)" if method == "GET" else \
            "Zone → DNS → Edit (DNS Write)"
    return "Zone → DNS → Read" if method == "GET" else "Zone → DNS → Edit (DNS Write)"


def record_text(record: dict[str, Any]) -> str:
    """A record in presentation format (DNSKEY from its structured ``data``)."""
    data = record.get("data")
    if record.get("type") == "DNSKEY" and isinstance(data, dict):
        return (f"{data['flags']} {data.get('protocol', 3)} {data['algorithm']} "
                f"{data['public_key']}")
    return str(record.get("content", ""))


def dnskey_body(zone: str, key: Key, ttl: int) -> dict[str, Any]:
    rdata = key.rdata
    return {"type": "DNSKEY", "name": zone.rstrip("."), "ttl": max(ttl, MIN_TTL),
            "data": {"flags": rdata.flags, "protocol": rdata.protocol,
                     "algorithm": int(rdata.algorithm),
                     "public_key": key.text.split(" ", 3)[3]}}


class CloudflareApi:
    def __init__(self, api: RestApi, zone_ids: dict[str, str], window: float,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.api = api
        self.window = window
        self.clock = clock
        self.sleep = sleep
        self._ids = {k.rstrip(".").lower(): v for k, v in zone_ids.items()}

    async def _get(self, path: str, zone: str | None = None,
                   params: dict[str, str] | None = None) -> Any:
        response = await self.api.request("GET", path, zone=zone, params=params)
        if response.status_code == 404:
            raise ZoneMissing("Cloudflare answered 404 (no such zone id in this account?)",
                              provider=self.api.provider, zone=zone, endpoint=f"GET {path}")
        return response.json().get("result")

    async def zone_id(self, zone: str) -> str:
        name = zone.rstrip(".").lower()
        if name not in self._ids:
            found = await self._get("/zones", zone, {"name": name})
            if not found:
                raise ZoneMissing("no Cloudflare zone of this name is visible to the token "
                                  "(is it in this account, and the token's zone resources "
                                  "include it?)", provider=self.api.provider, zone=zone)
            self._ids[name] = str(found[0]["id"])
        return self._ids[name]

    async def dnssec(self, zone: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._get(f"/zones/{await self.zone_id(zone)}/dnssec",
                                                 zone)
        return result

    async def dns_settings(self, zone: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._get(
            f"/zones/{await self.zone_id(zone)}/dns_settings", zone)
        return result

    async def records(self, zone: str, rdtype: str, name: str | None = None
                      ) -> list[dict[str, Any]]:
        """Every record of ``rdtype`` (at ``name``, default the apex), all pages."""
        path = f"/zones/{await self.zone_id(zone)}/dns_records"
        params = {"type": rdtype, "name": (name or zone).rstrip("."),
                  "per_page": str(PER_PAGE)}
        out: list[dict[str, Any]] = []
        page = 1
        while True:
            response = await self.api.request("GET", path, zone=zone,
                                              params={**params, "page": str(page)})
            if response.status_code == 404:
                raise ZoneMissing("Cloudflare answered 404 for the zone's records",
                                  provider=self.api.provider, zone=zone)
            body = response.json()
            out.extend(body.get("result") or [])
            pages = int((body.get("result_info") or {}).get("total_pages") or 1)
            if page >= pages:
                return out
            page += 1

    async def create(self, zone: str, body: dict[str, Any]) -> None:
        path = f"/zones/{await self.zone_id(zone)}/dns_records"
        try:
            await self.api.request("POST", path, zone=zone, json=body)
        except ProviderError as exc:
            # A retried create whose first attempt went through: the record is there.
            if str(IDENTICAL_RECORD) not in str(exc):
                raise

    async def delete(self, zone: str, record_id: str) -> None:
        path = f"/zones/{await self.zone_id(zone)}/dns_records/{quote(record_id, safe='')}"
        await self.api.request("DELETE", path, zone=zone)  # a 404: already gone
