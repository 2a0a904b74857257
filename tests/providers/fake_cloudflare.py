"""A fake Cloudflare v4 API, built from Cloudflare's documented request/response shapes
(developers.cloudflare.com: API reference for Zones, DNS Records, DNSSEC and DNS
Settings; "Multi-signer DNSSEC: setup"; "API token permissions"; "Rate limits"), not
from observing the live service.

Documented behaviour modelled: ``Authorization: Bearer``; the ``{"success", "errors",
"result", "result_info"}`` envelope; pages of ``per_page`` with ``total_pages``; DNSKEY
records only with ``dnssec_multi_signer`` on; code 81058 for a record identical to an
existing one; 403 code 10000 for a token without the permission; 429 with
``Retry-After``. The *reported* (not documented) behaviour that it leaves other signers'
KSKs out of the DNSKEY RRset it serves is on by default (``drop_foreign_ksks``).
"""

from __future__ import annotations

import base64
import itertools
import json
import re
from typing import Any

import httpx
from fakeapi import ZONE, FakeApi, reply, serve_view
from unit.signing import make_key

from core.keys import Key
from core.observation import ServerView

BASE = "https://cf.example/client/v4"
GOOD, READONLY = "cf-good", "cf-readonly"
ZONE_ID = "023e105f4ecef8ad9ca31a8372d0c353"
_ZONE = re.compile(r"^/client/v4/zones/(?P<id>[0-9a-f]{32})/(?P<rest>.*)$")


def _envelope(result: Any, info: dict[str, int] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"success": True, "errors": [], "messages": [], "result": result}
    if info is not None:
        body["result_info"] = info
    return body


def _error(status: int, code: int, message: str) -> httpx.Response:
    return reply(status, {"success": False, "errors": [{"code": code, "message": message}],
                          "messages": [], "result": None})


class FakeCloudflare(FakeApi):
    def __init__(self, *, page_size: int = 100) -> None:
        super().__init__()
        self.page_size = page_size
        self.ksk, self.zsk = make_key(ksk=True), make_key(ksk=False)
        # Cloudflare's own successors: served, signing nothing yet, not in its DNS records
        self.prepublished: set[Key] = set()
        self.multi_signer = True
        self.multi_provider = True
        self.drop_foreign_ksks = True
        self.records: list[dict[str, Any]] = []
        self._ids = itertools.count(1)

    def rejected(self, request: httpx.Request) -> httpx.Response | None:
        token = request.headers.get("Authorization", "")
        if token not in (f"Bearer {GOOD}", f"Bearer {READONLY}"):
            return _error(401, 1000, "Invalid API Token")
        if token == f"Bearer {READONLY}" and request.method != "GET":
            return _error(403, 10000, "Authentication error")
        return None

    def throttled(self, after: str | None) -> httpx.Response:
        response = _error(429, 971, "Please wait and consider throttling your request speed")
        if after is not None:
            response.headers["Retry-After"] = after
        return response

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/client/v4/user/tokens/verify":
            return reply(200, _envelope({"id": "t1", "status": "active"}))
        if path == "/client/v4/zones":
            name = request.url.params.get("name")
            found = [{"id": ZONE_ID, "name": ZONE.rstrip(".")}] if name == ZONE.rstrip(".") \
                else []
            return reply(200, _envelope(found, {"page": 1, "per_page": 20, "total_pages": 1,
                                                "count": len(found),
                                                "total_count": len(found)}))
        m = _ZONE.match(path)
        if m is None or m["id"] != ZONE_ID:
            return _error(404, 7003, "Could not route to /zones/..., perhaps your object "
                                     "identifier is invalid?")
        rest = m["rest"]
        if rest == "dnssec":
            return reply(200, _envelope(self._dnssec()))
        if rest == "dns_settings":
            return reply(200, _envelope({"multi_provider": self.multi_provider}))
        if rest == "dns_records" and request.method == "GET":
            return self._list(request)
        if rest == "dns_records" and request.method == "POST":
            return self._create(json.loads(request.content))
        if rest.startswith("dns_records/") and request.method == "DELETE":
            return self._delete(rest.split("/", 1)[1])
        return _error(405, 10405, "Method not allowed")

    def _dnssec(self) -> dict[str, Any]:
        rd = self.ksk.dnskey
        return {"status": "active", "dnssec_multi_signer": self.multi_signer,
                "flags": rd.flags, "algorithm": str(int(rd.algorithm)), "key_tag": self.ksk.tag,
                "public_key": base64.b64encode(rd.key).decode(), "ds": self.ksk.ds().text}

    def _list(self, request: httpx.Request) -> httpx.Response:
        params = request.url.params
        per_page = min(int(params.get("per_page", "100")), self.page_size)
        page = int(params.get("page", "1"))
        items = [r for r in self.read("records", self.records)
                 if r["type"] == params.get("type", r["type"])
                 and r["name"] == params.get("name", r["name"])]
        pages = max(1, -(-len(items) // per_page))
        chunk = items[(page - 1) * per_page: page * per_page]
        return reply(200, _envelope(chunk, {"page": page, "per_page": per_page,
                                            "total_pages": pages, "count": len(chunk),
                                            "total_count": len(items)}))

    def _create(self, body: dict[str, Any]) -> httpx.Response:
        record = {"id": f"r{next(self._ids):031d}", "type": body["type"],
                  "name": body["name"], "ttl": body.get("ttl", 1)}
        if body["type"] == "DNSKEY":
            if not self.multi_signer:
                return _error(400, 1004, "DNS Validation Error: DNSKEY records require "
                                         "multi-signer DNSSEC")
            data = body["data"]
            record["data"] = data
            record["content"] = (f"{data['flags']} {data['protocol']} {data['algorithm']} "
                                 f"{data['public_key']}")
        else:
            record["content"] = body["content"]
        if any(r["type"] == record["type"] and r["name"] == record["name"]
               and r["content"] == record["content"] for r in self.records):
            return _error(400, 81058, "An identical record already exists.")
        old = list(self.records)
        self.records.append(record)
        self.wrote("records", old)
        return reply(200, _envelope(record))

    def _delete(self, record_id: str) -> httpx.Response:
        old = list(self.records)
        if not any(r["id"] == record_id for r in self.records):
            return _error(404, 81044, "Record does not exist.")
        self.records = [r for r in self.records if r["id"] != record_id]
        self.wrote("records", old)
        return reply(200, _envelope({"id": record_id}))

    # -- what its nameservers serve ------------------------------------------------------

    def foreign(self) -> set[Key]:
        return {Key.parse(r["content"]) for r in self.records if r["type"] == "DNSKEY"}

    async def serve(self, zone: str) -> ServerView:
        served = {k for k in self.foreign() if not (self.drop_foreign_ksks and k.sep)}
        return serve_view("c0", [self.ksk], [self.zsk],
                          {self.ksk.key, self.zsk.key, *served, *self.prepublished})
