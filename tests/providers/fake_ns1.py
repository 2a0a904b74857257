"""A fake NS1 API, built from NS1's documented request/response shapes (NS1 / IBM NS1
Connect API reference: Zones, Records, DNSSEC; "Configuring external DNSSEC keys (API
only)"; "Rate limiting"), not from observing the live service.

Documented behaviour modelled: ``X-NSONE-Key`` auth, 401 for an unknown key and 403 for
a key without the "manage zones" permission, ``{"message": ...}`` errors, the zone's
DNSKEYs as ``[flags, protocol, algorithm, public_key]`` arrays, external key sets
created by PUT, replaced by POST, removed by DELETE and served as extra DNSKEY answers,
records with ``answers: [{"answer": [...]}]``, and 429 when rate limited.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
from fakeapi import ZONE, FakeApi, reply, serve_view
from unit.signing import make_key

from core.keys import Key
from core.observation import ServerView

BASE = "https://ns1.example/v1"
GOOD, READONLY = "ns1-good", "ns1-readonly"
NAME = ZONE.rstrip(".")


class FakeNs1(FakeApi):
    def __init__(self) -> None:
        super().__init__()
        self.ksk, self.zsk = make_key(ksk=True), make_key(ksk=False)
        self.key_sets: dict[str, dict[str, Any]] = {}
        self.records: dict[tuple[str, str], dict[str, Any]] = {
            (NAME, "NS"): {"ttl": 3600, "answers": [{"answer": ["dns1.p01.nsone.net"]},
                                                    {"answer": ["dns2.p01.nsone.net"]}]}}

    def rejected(self, request: httpx.Request) -> httpx.Response | None:
        key = request.headers.get("X-NSONE-Key")
        if key not in (GOOD, READONLY):
            return reply(401, {"message": "Unauthorized"})
        if key == READONLY and request.method != "GET":
            return reply(403, {"message": "insufficient permissions"})
        return None

    def throttled(self, after: str | None) -> httpx.Response:
        return reply(429, {"message": "rate limit exceeded"},
                     {"Retry-After": after} if after is not None else None)

    def handle(self, request: httpx.Request) -> httpx.Response:
        parts = request.url.path.removeprefix("/v1/").strip("/").split("/")
        if parts == ["zones"]:
            return reply(200, [{"zone": NAME}])
        if len(parts) < 2 or parts[0] != "zones" or parts[1] != NAME:
            return reply(404, {"message": "zone not found"})
        rest = parts[2:]
        if not rest:
            return reply(200, {"zone": NAME, "dnssec": True, "ttl": 3600})
        if rest == ["dnssec"]:
            return reply(200, self._dnssec())
        if rest[:2] == ["dnssec", "external_keys"]:
            return self._key_sets(request, rest[2] if len(rest) > 2 else None)
        if len(rest) == 2:
            return self._record(request, rest[0], rest[1])
        return reply(404, {"message": "not found"})

    @staticmethod
    def _array(key: Key) -> list[str]:
        return key.text.split(" ", 3)

    def _dnssec(self) -> dict[str, Any]:
        served = [self._array(k) for k in sorted(self.served_keys())]
        return {"zone": NAME, "keys": {"dnskey": served, "ttl": 3600},
                "delegation": {"dnskey": [self._array(self.ksk.key)],
                               "ds": [self.ksk.ds().text.split(" ")], "ttl": 3600}}

    def _key_sets(self, request: httpx.Request, name: str | None) -> httpx.Response:
        sets = self.read("sets", self.key_sets)
        if name is None:
            return reply(200, [{"name": n, **v} for n, v in sorted(sets.items())])
        method = request.method
        if method == "GET":
            return reply(200, {"name": name, **sets[name]}) if name in sets else \
                reply(404, {"message": "key set not found"})
        old = {k: dict(v) for k, v in self.key_sets.items()}
        if method == "DELETE":
            if name not in self.key_sets:
                return reply(404, {"message": "key set not found"})
            del self.key_sets[name]
        else:
            body = json.loads(request.content)
            for item in body["dnskey"]["data"]:
                base64.b64decode(item["public_key"], validate=True)
            if method == "PUT" and name in self.key_sets:
                return reply(400, {"message": "key set already exists"})
            if method == "POST" and name not in self.key_sets:
                return reply(404, {"message": "key set not found"})
            self.key_sets[name] = {"dnskey": body["dnskey"]}
        self.wrote("sets", old)
        return reply(200, {})

    def _record(self, request: httpx.Request, domain: str, rdtype: str) -> httpx.Response:
        key = (domain, rdtype)
        current = self.read(("record", key), self.records.get(key))
        if request.method == "GET":
            return reply(200, {"domain": domain, "type": rdtype, **current}) if current else \
                reply(404, {"message": "record not found"})
        old = self.records.get(key)
        if request.method == "DELETE":
            self.records.pop(key, None)
        else:
            body = json.loads(request.content)
            self.records[key] = {"ttl": body["ttl"], "answers": body["answers"]}
        self.wrote(("record", key), old)
        return reply(200, {})

    # -- what its nameservers serve ------------------------------------------------------

    def external(self) -> set[Key]:
        return {Key.parse(f"{d['flags']} {d['protocol']} {d['algorithm']} {d['public_key']}")
                for s in self.key_sets.values() for d in s["dnskey"]["data"]}

    def served_keys(self) -> set[Key]:
        return {self.ksk.key, self.zsk.key, *self.external()}

    async def serve(self, zone: str) -> ServerView:
        return serve_view("n0", [self.ksk], [self.zsk], self.served_keys())
