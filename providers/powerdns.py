"""PowerDNS Authoritative (4.x) through its REST API.

Facts this relies on (verified on 4.7; docs/design-notes.md, "Provider facts"): with
``direct-dnskey=yes`` the
DNSKEY/CDS/CDNSKEY rrsets PATCHed into the zone are served beside the keys in the
``cryptokeys`` table and signed by PowerDNS' own KSK; the API wants one-token base64 in
DNSKEY content; ``keytype`` in a cryptokey answer is computed ("csk" when a lone SEP key
signs everything).
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import Sequence
from functools import cache
from typing import Any
from urllib.parse import quote

import httpx
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from core import events
from core.config import ProviderConfig
from core.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderUnreachable,
    ZoneMissing,
)
from core.keys import Digest, Key, Role
from core.observation import ApiKey, ApiZoneState
from providers.base import ApiRRset, Capability, Provider, name_in_zone
from providers.powerdns_http import Ambiguous, Transient, error_text, pdns_error, retryable, unsent
from providers.powerdns_keys import KeyRequest, reconcile

HTTP_CONNECTIONS = 16  # per provider (public: the benchmarks' floor uses as many)
_ZONE_PATH = re.compile(r"/zones/[^/]+")
_KEY_PATH = re.compile(r"/cryptokeys/[^/]+")


def _operation(method: str, path: str) -> str:
    """An API call's kind for ``ProviderCall`` events: the path without zone and key ids."""
    path = _ZONE_PATH.sub("/zones/{zone}", path, count=1)
    return f"{method} {_KEY_PATH.sub('/cryptokeys/{id}', path, count=1) or '/'}"


def _tls(config: ProviderConfig) -> ssl.SSLContext:
    """Trust ``ca_file`` if set, else the system's CA store (not httpx's bundled one)."""
    return _tls_context(str(config.ca_file) if config.ca_file is not None else None)


@cache
def _tls_context(ca_file: str | None) -> ssl.SSLContext:
    # One context per CA file for the whole process: loading the system store costs ~35 ms
    # each time, paid per provider by every CLI command before; a context is safe to share
    # between clients (its settings are fixed once made).
    if ca_file is not None:
        return ssl.create_default_context(cafile=ca_file)
    return ssl.create_default_context()


class PowerDNSProvider(Provider):
    capabilities = (
        Capability.IMPORT_FOREIGN_DNSKEY | Capability.PUBLISH_CDS | Capability.GENERATE_KEYS
        | Capability.MANAGE_NS | Capability.WRITE_RRSETS
    )
    type_name = "powerdns"

    def __init__(
        self,
        config: ProviderConfig,
        *,
        attempts: int = 4,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(config.name)
        self._base = f"{config.api_url}/api/v1/servers/{quote(config.server_id, safe='')}"
        self._attempts = attempts
        timeout = config.timeout.total_seconds()
        self._client = httpx.AsyncClient(
            headers={"X-API-Key": config.api_key.get_secret_value(), "Accept": "application/json"},
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            limits=httpx.Limits(max_connections=HTTP_CONNECTIONS,
                                max_keepalive_connections=HTTP_CONNECTIONS),
            transport=transport,
            verify=_tls(config),
            # Proxy (and SSL_CERT_FILE, .netrc) settings from the environment only if the
            # provider says so: the API key must not go through a proxy nobody configured.
            trust_env=config.proxy_from_env,
        )
        self._writes = asyncio.Semaphore(2)

    # -- the one HTTP seam ------------------------------------------------------------

    async def _request(
        self, method: str, path: str, *, zone: str | None = None, json: Any = None,
        idempotent: bool = True,
    ) -> Any:
        """One API call, retried on transient failures. Not ``idempotent``: retried only
        when the request cannot have been sent; an ``Ambiguous`` failure is raised as is
        for the caller to reconcile."""
        endpoint = f"{method} {path}"
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception(retryable if idempotent else unsent),
                stop=stop_after_attempt(self._attempts),
                wait=wait_exponential(multiplier=0.2, max=5.0) + wait_random(0, 0.2),
                reraise=True,
            ):
                with attempt:
                    return await events.timed(self.name, lambda: _operation(method, path),
                                              self._once(method, path, zone=zone, json=json))
        except Transient as exc:
            if isinstance(exc, Ambiguous) and not idempotent:
                raise
            raise ProviderUnreachable(
                f"{exc.detail} (gave up after {self._attempts} attempts); check that the API "
                f"is up at {self._base} and reachable from here",
                provider=self.name,
                zone=zone,
                endpoint=endpoint,
            ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _once(self, method: str, path: str, *, zone: str | None, json: Any) -> Any:
        endpoint = f"{method} {path}"
        try:
            if method == "GET":
                response = await self._client.request(method, self._base + path, json=json)
            else:
                # Concurrent writes to one PowerDNS (SQLite backend) collide on its database
                # lock and come back as HTTP 500 "database is locked"; writes one or two at a
                # time cost nothing in throughput and spare the retry back-off.
                async with self._writes:
                    response = await self._client.request(method, self._base + path, json=json)
        except (httpx.ConnectTimeout, httpx.PoolTimeout):
            raise Transient("connecting timed out") from None
        except httpx.TimeoutException:
            raise Ambiguous("request timed out") from None
        except httpx.ConnectError as exc:
            raise Transient(f"cannot connect: {exc.__class__.__name__}: {exc}") from None
        except httpx.TransportError as exc:
            raise Ambiguous(f"connection failed: {exc.__class__.__name__}: {exc}") from None
        status = response.status_code
        if status >= 500:
            raise Ambiguous(f"HTTP {status}: {error_text(response)}",
                             finished=status == 500 and pdns_error(response))
        if status in (401, 403):
            raise ProviderAuthError(
                f"API key rejected (HTTP {status}); check api_key in the config",
                provider=self.name,
                zone=zone,
                endpoint=endpoint,
            )
        if status == 404 and zone is not None:
            raise ZoneMissing(
                f"zone {zone} does not exist at this provider (HTTP 404); create it there "
                "and sign it, or remove the provider from the zone's signers",
                provider=self.name,
                zone=zone,
                endpoint=endpoint,
            )
        if status >= 400:
            raise ProviderError(
                f"HTTP {status}: {error_text(response)}",
                provider=self.name,
                zone=zone,
                endpoint=endpoint,
            )
        if status == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise ProviderError(
                f"HTTP {status} with a body that is not JSON",
                provider=self.name,
                zone=zone,
                endpoint=endpoint,
            ) from None

    def _zone_path(self, zone: str) -> str:
        return f"/zones/{quote(zone, safe='')}"

    async def api_request(
        self, method: str, path: str, *, zone: str | None = None, json: Any = None,
        idempotent: bool = True,
    ) -> Any:
        """One API call (``path`` under ``/servers/{server_id}``) with this adapter's
        retries and errors, for a caller that needs a call outside the provider contract
        (the test lab creates its zones with it). Returns the decoded JSON or None; not
        ``idempotent`` (a POST): as ``_request``, retried only when it cannot have been
        sent, an ambiguous failure raised as is."""
        return await self._request(method, path, zone=zone, json=json, idempotent=idempotent)

    # -- contract -----------------------------------------------------------------------

    async def check_access(self) -> None:
        info = await self._request("GET", "")
        if not isinstance(info, dict) or "daemon_type" not in info:
            raise ProviderError(
                "the API answered, but not like a PowerDNS server object; check api_url "
                "and server_id",
                provider=self.name,
                endpoint="GET /servers/{server_id}",
            )

    async def read_zone(self, zone: str) -> ApiZoneState:
        zpath = self._zone_path(zone)
        data, keys = await asyncio.gather(
            self._request("GET", zpath, zone=zone),
            self._request("GET", f"{zpath}/cryptokeys", zone=zone),
        )
        try:
            return self._parse_zone(zone, data, keys)
        except (KeyError, TypeError, ValueError) as exc:
            raise ProviderError(
                f"unexpected API answer ({exc.__class__.__name__}: {exc})",
                provider=self.name,
                zone=zone,
                endpoint=f"GET {zpath}",
            ) from None

    async def read_keys(self, zone: str) -> ApiZoneState:
        zpath = self._zone_path(zone)
        keys = await self._request("GET", f"{zpath}/cryptokeys", zone=zone)
        try:
            return self._parse_zone(zone, {"rrsets": []}, keys)
        except (KeyError, TypeError, ValueError) as exc:
            raise ProviderError(
                f"unexpected API answer ({exc.__class__.__name__}: {exc})",
                provider=self.name, zone=zone, endpoint=f"GET {zpath}/cryptokeys",
            ) from None

    def _parse_zone(self, zone: str, data: Any, keys: Any) -> ApiZoneState:
        own: list[ApiKey] = []
        for item in keys:
            key = Key.parse(item["dnskey"])
            # PowerDNS computes keytype; with no active KSK it calls every key "csk", even
            # a flags-256 ZSK. The SEP flag decides; "csk" only for a SEP key it says so of.
            keytype = str(item.get("keytype", "")).lower()
            role: Role = ("csk" if keytype == "csk" else "ksk") if key.sep else "zsk"
            own.append(
                ApiKey(
                    key=key,
                    role=role,
                    active=bool(item["active"]),
                    published=bool(item.get("published", True)),
                    key_id=str(item["id"]),
                )
            )
        foreign: set[Key] = set()
        cds: set[Digest] = set()
        cdnskey: set[Key] = set()
        ns: set[str] = set()
        csync: set[str] = set()
        max_ttl = 0
        apex = zone.lower()
        for rrset in data.get("rrsets", []):
            max_ttl = max(max_ttl, int(rrset.get("ttl", 0)))
            if rrset["name"].lower() != apex:
                continue
            records = [r["content"] for r in rrset.get("records", []) if not r.get("disabled")]
            if rrset["type"] == "DNSKEY":
                foreign |= {Key.parse(r) for r in records}
            elif rrset["type"] == "CDS":
                cds |= {Digest.parse(r) for r in records}
            elif rrset["type"] == "CDNSKEY":
                cdnskey |= {Key.parse(r) for r in records}
            elif rrset["type"] == "NS":
                ns |= {r.lower() if r.endswith(".") else f"{r.lower()}." for r in records}
            elif rrset["type"] == "CSYNC":
                csync |= set(records)
        # A key we PATCHed that is also one of its own would be served once; don't
        # count it as foreign.
        foreign -= {k.key for k in own}
        return ApiZoneState(
            provider=self.name,
            own_keys=tuple(own),
            foreign_dnskeys=frozenset(foreign),
            cds=frozenset(cds),
            cdnskey=frozenset(cdnskey),
            max_ttl=max_ttl or None,
            ns=frozenset(ns),
            csync=frozenset(csync),
        )

    async def _replace(self, zone: str, rrtype: str, contents: Sequence[str], ttl: int) -> None:
        if contents:
            rrset: dict[str, Any] = {
                "name": zone,
                "type": rrtype,
                "ttl": ttl,
                "changetype": "REPLACE",
                "records": [{"content": c, "disabled": False} for c in contents],
            }
        else:
            rrset = {"name": zone, "type": rrtype, "changetype": "DELETE"}
        await self._request("PATCH", self._zone_path(zone), zone=zone, json={"rrsets": [rrset]})

    async def set_apex_rrset(
        self, zone: str, rrtype: str, contents: Sequence[str], ttl: int
    ) -> None:
        await self._replace(zone, rrtype, sorted(contents), ttl)

    async def set_foreign_dnskeys(self, zone: str, keys: Sequence[Key], ttl: int) -> None:
        await self._replace(zone, "DNSKEY", sorted(k.text for k in keys), ttl)

    async def set_cds(
        self, zone: str, cds: Sequence[Digest], cdnskey: Sequence[Key], ttl: int
    ) -> None:
        # One PATCH for both so a provider never serves a CDS without its CDNSKEY twin.
        rrsets: list[dict[str, Any]] = []
        for rrtype, contents in (
            ("CDS", sorted(d.text for d in cds)),
            ("CDNSKEY", sorted(k.text for k in cdnskey)),
        ):
            if contents:
                rrsets.append(
                    {
                        "name": zone,
                        "type": rrtype,
                        "ttl": ttl,
                        "changetype": "REPLACE",
                        "records": [{"content": c, "disabled": False} for c in contents],
                    }
                )
            else:
                rrsets.append({"name": zone, "type": rrtype, "changetype": "DELETE"})
        await self._request("PATCH", self._zone_path(zone), zone=zone, json={"rrsets": rrsets})

    async def read_rrset(self, zone: str, name: str, rdtype: str) -> ApiRRset | None:
        owner = name_in_zone(self.name, zone, name)
        rtype = rdtype.strip().upper()
        # rrset_name/rrset_type filter on PowerDNS >= 4.8; older versions ignore them and
        # return the whole zone, so the answer is filtered here either way.
        query = f"?rrset_name={quote(owner, safe='')}&rrset_type={quote(rtype, safe='')}"
        data = await self._request("GET", self._zone_path(zone) + query, zone=zone)
        try:
            for rrset in data.get("rrsets", []):
                if rrset["name"].lower() != owner or rrset["type"].upper() != rtype:
                    continue
                records = tuple(sorted(r["content"] for r in rrset.get("records", [])
                                       if not r.get("disabled")))
                return ApiRRset(owner, rtype, int(rrset.get("ttl", 0)), records) if (
                    records) else None
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise ProviderError(
                f"unexpected API answer ({exc.__class__.__name__}: {exc})",
                provider=self.name, zone=zone, endpoint=f"GET {self._zone_path(zone)}",
            ) from None
        return None

    async def set_rrset(
        self, zone: str, name: str, rdtype: str, records: Sequence[str], ttl: int
    ) -> None:
        owner = name_in_zone(self.name, zone, name)
        rtype = rdtype.strip().upper()
        change: dict[str, Any] = {"name": owner, "type": rtype, "changetype": "DELETE"}
        if records:
            change = {"name": owner, "type": rtype, "ttl": ttl, "changetype": "REPLACE",
                      "records": [{"content": c, "disabled": False} for c in sorted(records)]}
        await self._request("PATCH", self._zone_path(zone), zone=zone,
                            json={"rrsets": [change]})

    async def create_key(
        self, zone: str, role: Role, algorithm: str, *, active: bool, published: bool
    ) -> ApiKey:
        """POST a new key, never blindly repeated: after an ambiguous failure the zone's
        keys are listed again and the one that appeared is adopted (see ``powerdns_keys``)."""
        path = f"{self._zone_path(zone)}/cryptokeys"
        want = KeyRequest(role, algorithm, active=active, published=published)
        before = {str(k["id"]) for k in await self._request("GET", path, zone=zone)}
        for attempt in range(self._attempts):
            try:
                item = await self._request("POST", path, zone=zone, json=want.body(),
                                           idempotent=False)
            except Ambiguous as exc:
                after = await self._request("GET", path, zone=zone)
                found = reconcile(want, before, after, exc.detail, exc.finished,
                                  provider=self.name, zone=zone)
                if found is not None:
                    return found
                if attempt + 1 < self._attempts:  # nothing was created: safe to ask again
                    await asyncio.sleep(min(0.2 * 2**attempt, 5.0))
                continue
            return ApiKey(key=Key.parse(item["dnskey"]), role=role, active=active,
                          published=published, key_id=str(item["id"]))
        raise ProviderUnreachable(
            f"creating a {role} failed {self._attempts} times (PowerDNS answered HTTP 500 "
            "each time and no key appeared); check its log", provider=self.name, zone=zone,
            endpoint=f"POST {path}")

    async def set_key_state(
        self, zone: str, key_id: str, *, active: bool, published: bool
    ) -> None:
        await self._request(
            "PUT",
            f"{self._zone_path(zone)}/cryptokeys/{quote(key_id, safe='')}",
            zone=zone,
            json={"active": active, "published": published},
        )

    async def delete_key(self, zone: str, key_id: str) -> None:
        path = f"{self._zone_path(zone)}/cryptokeys"
        try:
            await self._request("DELETE", f"{path}/{quote(key_id, safe='')}", zone=zone)
        except ZoneMissing:
            # PowerDNS answers 404 for a key that is gone as for a zone that is: after a
            # DELETE repeated because its first answer was lost, the key is gone and the
            # job done. Only a missing zone (the listing 404s too) or a key still listed
            # is an error.
            keys = await self._request("GET", path, zone=zone)
            if any(str(k.get("id")) == key_id for k in keys):
                raise

    async def aclose(self) -> None:
        await self._client.aclose()
