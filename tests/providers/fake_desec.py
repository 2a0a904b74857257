"""A fake deSEC API, built from deSEC's documented request/response shapes
(desec.readthedocs.io: "Domain Management", "Retrieving and Creating DNS Records" incl.
bulk PUT and pagination, "Token Scoping: Policies", "Rate Limits"), not from observing
the live service.

Documented behaviour modelled: ``Authorization: Token <token>``; 401 ``{"detail":
"Invalid token."}``; a token policy without ``perm_write`` for (domain, subname, type)
gives 403; RRset lists are paged with a cursor and ``Link: <...>; rel="next"``; TTLs
below the domain's ``minimum_ttl`` are a 400; 429 carries ``Retry-After``; the DNSKEY,
CDS and CDNSKEY written at the apex are served *merged with deSEC's own* (one CSK, whose
CDS/CDNSKEY deSEC publishes itself), which the RRset API never shows.
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
from fakeapi import ZONE, FakeApi, reply, serve_view
from unit.signing import make_key

from core.keys import Key
from core.observation import ServerView

BASE = "https://desec.example/api/v1"
GOOD, READONLY = "tok-good", "tok-readonly"
_DOMAIN = re.compile(r"^/api/v1/domains/(?P<d>[^/]+)/(?P<rest>.*)$")


class FakeDesec(FakeApi):
    def __init__(self, *, page_size: int = 500, minimum_ttl: int = 3600) -> None:
        super().__init__()
        self.page_size = page_size
        self.minimum_ttl = minimum_ttl
        self.csk = make_key(ksk=True)
        self.domain = ZONE.rstrip(".")
        # (subname, type) → {"ttl", "records"}: what the API holds (not deSEC's own keys)
        self.rrsets: dict[tuple[str, str], dict[str, Any]] = {
            ("", "NS"): {"ttl": 3600, "records": ["ns1.desec.io.", "ns2.desec.org."]},
        }
        self.writable_types: set[str] | None = None  # None: the token may write anything
        self.link_base = BASE  # where the pagination links point
        # deSEC's own successors: served, signing nothing yet, not in the API's records
        self.prepublished: set[Key] = set()

    # -- faults --------------------------------------------------------------------------

    def rejected(self, request: httpx.Request) -> httpx.Response | None:
        token = request.headers.get("Authorization", "")
        if token not in (f"Token {GOOD}", f"Token {READONLY}"):
            return reply(401, {"detail": "Invalid token."})
        return None

    def throttled(self, after: str | None) -> httpx.Response:
        return reply(429, {"detail": "Request was throttled. Expected available in "
                                     f"{after} seconds."},
                     {"Retry-After": after} if after is not None else None)

    # -- the API -------------------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/api/v1/domains/" and request.method == "GET":
            return reply(200, [self._domain_json()])
        m = _DOMAIN.match(path)
        if m is None or m["d"] != self.domain:
            return reply(404, {"detail": "Not found."})
        rest = m["rest"]
        if rest == "" and request.method == "GET":
            return reply(200, self._domain_json())
        if rest == "rrsets/" and request.method == "GET":
            return self._list(request)
        if rest == "rrsets/" and request.method == "PUT":
            return self._bulk_put(request)
        parts = rest.split("/")
        if len(parts) == 4 and parts[0] == "rrsets" and request.method == "GET":
            sub = "" if parts[1] == "@" else parts[1]
            got = self.read((sub, parts[2]), self.rrsets.get((sub, parts[2])))
            if got is None:
                return reply(404, {"detail": "Not found."})
            return reply(200, self._rrset_json(sub, parts[2], got))
        return reply(405, {"detail": f'Method "{request.method}" not allowed.'})

    def _domain_json(self) -> dict[str, Any]:
        return {"name": self.domain, "minimum_ttl": self.minimum_ttl,
                "created": "2026-01-01T00:00:00Z", "published": "2026-01-01T00:00:00Z",
                "touched": "2026-01-01T00:00:00Z"}

    def _rrset_json(self, sub: str, rdtype: str, data: dict[str, Any]) -> dict[str, Any]:
        name = f"{sub}.{ZONE}" if sub else ZONE
        return {"domain": self.domain, "subname": sub, "name": name, "type": rdtype,
                "ttl": data["ttl"], "records": list(data["records"]),
                "created": "2026-01-01T00:00:00Z", "touched": "2026-01-01T00:00:00Z"}

    def _list(self, request: httpx.Request) -> httpx.Response:
        items = [self._rrset_json(s, t, d) for (s, t), d in sorted(self.rrsets.items())]
        cursor = request.url.params.get("cursor")
        if cursor is None and len(items) > self.page_size:
            return reply(400, {"detail": "Pagination required. You can query up to "
                                         f"{self.page_size} items at a time."})
        start = int(cursor) if cursor else 0
        page = items[start:start + self.page_size]
        headers = {}
        if start + self.page_size < len(items):
            nxt = f"{self.link_base}/domains/{self.domain}/rrsets/?cursor={start + self.page_size}"
            headers["Link"] = f'<{nxt}>; rel="next"'
        return reply(200, page, headers)

    def _bulk_put(self, request: httpx.Request) -> httpx.Response:
        token = request.headers["Authorization"].removeprefix("Token ")
        body = json.loads(request.content)
        for item in body:
            if token == READONLY or (self.writable_types is not None
                                     and item["type"] not in self.writable_types):
                return reply(403, {"detail": "You do not have permission to perform this "
                                             "action."})
            if item["records"] and item["ttl"] < self.minimum_ttl:
                return reply(400, [{"ttl": [f"Ensure this value is greater than or equal "
                                            f"to {self.minimum_ttl}."]}])
        for item in body:  # atomic: validated first, then applied
            key = (item["subname"], item["type"])
            old = self.rrsets.get(key)
            if item["records"]:
                self.rrsets[key] = {"ttl": item["ttl"], "records": list(item["records"])}
            else:
                self.rrsets.pop(key, None)
            self.wrote(key, old)
        return reply(200, body)

    # -- what its nameservers serve ------------------------------------------------------

    def written_dnskeys(self) -> set[Key]:
        data = self.rrsets.get(("", "DNSKEY"))
        return {Key.parse(t) for t in data["records"]} if data else set()

    async def serve(self, zone: str) -> ServerView:
        return serve_view("d0", [self.csk], [self.csk],
                          {self.csk.key, *self.written_dnskeys(), *self.prepublished})
